"""The README's demo, `python -m lstm_fast`, end to end on a tiny budget."""

import subprocess
import sys


def test_demo_runs_and_reports_what_it_learned(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstm_fast",
            "--seconds",
            "1",
            "--seq-len",
            "10",
            "--hidden",
            "4",
            "--test-size",
            "20",
            "--val-size",
            "20",
            "--eval-every",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "the adding problem" in out.stdout
    assert "Test on 20 fresh sequences:" in out.stdout
    assert ("Solved:" in out.stdout) or ("Not solved within the 1 s budget" in out.stdout)


def test_demo_rejects_bad_flags(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "lstm_fast", "--seq-len", "5"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 2
    assert "--seq-len must be >= 10" in out.stderr
