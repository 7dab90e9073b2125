"""Data-parallel training on torch.distributed: lstm_fast.torch.LSTM under DistributedDataParallel with
the gloo backend, 2 processes on localhost, takes exactly the steps of one process trained on the
combined batch (float64). Runs examples/ddp_train.py, both as its own launcher and under torchrun."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
import torch.distributed  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="needs torch.distributed with the gloo backend",
)

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "ddp_train.py"
ARGS = ["--steps", "8", "--batch", "16", "--seq-len", "12", "--hidden", "8"]


def train(tmp_path, name, *launcher_and_args, extra=()):
    out = tmp_path / f"{name}.safetensors"
    done = subprocess.run(
        [*launcher_and_args, *ARGS, *extra, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return load_file(str(out))


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One process, no DDP, on the combined batch."""
    return train(tmp_path_factory.mktemp("single"), "single", sys.executable, SCRIPT, "--world-size", "1")


def assert_same_parameters(actual, expected):
    assert list(actual) == list(expected)
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-12, atol=1e-12, err_msg=name)


def test_training_moved_the_parameters(tmp_path, single):
    start = train(tmp_path, "start", sys.executable, SCRIPT, "--world-size", "1", extra=["--steps", "0"])
    assert max(np.abs(single[k] - start[k]).max() for k in start) > 1e-3


def test_two_processes_under_ddp_equal_one_process_on_the_combined_batch(tmp_path, single):
    parallel = train(tmp_path, "ddp", sys.executable, SCRIPT, "--world-size", "2")
    assert_same_parameters(parallel, single)


def test_torchrun_launch_equals_one_process(tmp_path, single):
    parallel = train(
        tmp_path,
        "torchrun",
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        SCRIPT,
    )
    assert_same_parameters(parallel, single)
