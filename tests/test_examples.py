"""Each script in examples/ runs end to end on a tiny budget (--quick), for the LSTM and the RNN."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

CASES = [
    ("adding.py", ["--seq-len", "100"], "adding_T100"),
    ("temporal_order.py", ["--variant", "a"], "temporal_order_6a"),
    ("temporal_order.py", ["--variant", "b", "--model", "rnn"], "temporal_order_6b"),
    ("reber.py", ["--trials", "2"], "embedded_Reber"),
    ("adding.py", ["--seq-len", "20", "--model", "rnn"], "adding_T20"),
    ("adding.py", ["--seq-len", "200", "--precision", "bf16", "--checkpoint", "auto"], "adding_T200"),
]


@pytest.mark.parametrize("script, extra, stem", CASES, ids=[" ".join([c[0]] + c[1]) for c in CASES])
def test_example_quick_run_prints_a_result_row_and_writes_its_files(tmp_path, script, extra, stem):
    pytest.importorskip("matplotlib")
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--quick", "--out", str(tmp_path)] + extra,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    model = "rnn" if "rnn" in extra else "lstm bf16" if "bf16" in extra else "lstm"
    assert "| task | model | sequences to criterion | wrong of test | wall time | threads |" in out.stdout
    row = [line for line in out.stdout.splitlines() if line.startswith("| ") and f"| {model} |" in line]
    assert len(row) == 1, out.stdout
    file = f"{stem}_{model}".replace(" ", "_")
    result = json.loads((tmp_path / f"{file}.json").read_text())
    assert result["model"] == model and result["sequences"] > 0 and result["test_size"] == 64
    assert result["peak_rss_mib"] > 0 and result["precision"] == ("bf16" if "bf16" in extra else "fp32")
    assert 0 <= result["test_wrong"] <= 64
    png = (tmp_path / f"{file}.png").read_bytes()
    assert png.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seq-len", "5"], "--seq-len must be >= 10"),
        (["--checkpoint", "often"], '--checkpoint must be "auto" or an integer >= 1'),
        (["--model", "rnn", "--precision", "bf16"], "--precision and --checkpoint are lstm_fast.LSTM's"),
    ],
)
def test_example_rejects_bad_flags(tmp_path, flags, message):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "adding.py")] + flags,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 2 and message in out.stderr


def test_vanishing_gradient_example_prints_its_table(tmp_path):
    pytest.importorskip("matplotlib")
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "vanishing_gradient.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {line.split("|")[1].strip(): line for line in out.stdout.splitlines() if line.startswith("| ")}
    assert "tanh RNN" in rows and "LSTM, chrono t_max 1000" in rows
    assert (tmp_path / "vanishing_gradient.png").read_bytes().startswith(b"\x89PNG")


def test_zoneout_text_example_prints_its_table_and_writes_its_plot(tmp_path):
    pytest.importorskip("matplotlib")
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "zoneout_text.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| model | training bpc | validation bpc |" in out.stdout
    assert "| plain |" in out.stdout and "| zoneout (0.05, 0.5) |" in out.stdout
    curves = json.loads((tmp_path / "zoneout_text.json").read_text())["curves"]
    assert all(len(c["valid_bpc"]) == 2 and all(v > 0 for v in c["valid_bpc"]) for c in curves.values())
    assert (tmp_path / "zoneout_text.png").read_bytes().startswith(b"\x89PNG")
