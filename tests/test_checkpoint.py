"""Checkpointed backpropagation through time: forward(train=True, checkpoint=k | "auto").

The trace is kept only as each cell's state every k steps (rounded up to the backward's blocks of
1024 rows: 16 steps at B = 64) and backward() runs the steps between again. Outputs, states and every
gradient must be bitwise those of the whole trace (checkpoint=None), for every configuration; and the
memory a training step takes must actually shrink.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import num_threads

import lstm_fast as lf

T, B, I = 70, 64, 7  # blocks of 16 steps: 5, the last of 6; segments of 16 or 32 steps

VARIANTS = {
    "plain": dict(),
    "peephole_projection": dict(peephole=True, proj_size=6),
    "dropout": dict(dropout=0.3),
    "layer_norm": dict(layer_norm=True),
    "zoneout": dict(zoneout=(0.2, 0.4)),
    "recurrent_dropout": dict(recurrent_dropout=0.25),
    "clip_coupled_no_bias": dict(cell_clip=0.5, coupled_gates=True, bias=False),
    "all_five": dict(layer_norm=True, zoneout=0.1, recurrent_dropout=0.2, cell_clip=2.0, coupled_gates=True),
}
SHAPES = {"one_layer": dict(num_layers=1), "two_layers_bidirectional": dict(num_layers=2, bidirectional=True)}


def _training_step(kwargs, dtype, checkpoint, lengths, x, state, dy, dstate):
    """One forward(train=True) + backward of a fresh model (the same seed: the same parameters and the
    same dropout and zoneout draws), all outputs and gradients in a list."""
    model = lf.LSTM(I, dtype=dtype, seed=3, **kwargs)
    y, (h_n, c_n) = model.forward(x, state, lengths, checkpoint=checkpoint)
    dx, (dh0, dc0) = model.backward(dy, dstate)
    return [y, h_n, c_n, dx, dh0, dc0] + [model.grads[name] for name in model.grads]


def _case(rng, kwargs, with_lengths, steps=T, batch=B):
    model = lf.LSTM(I, **kwargs)
    L, D, R, H = model.num_layers, model.num_directions, model.output_size, model.hidden_size
    x = rng.normal(size=(steps, batch, I))
    state = (rng.normal(size=(L * D, batch, R)), rng.normal(size=(L * D, batch, H)))
    lengths = None
    if with_lengths:
        lengths = rng.integers(1, steps + 1, size=batch)
        lengths[rng.integers(batch)] = steps
    dy = rng.normal(size=(steps, batch, D * R))
    dstate = (rng.normal(size=state[0].shape), rng.normal(size=state[1].shape))
    return x, state, lengths, dy, dstate


def _assert_bitwise(kwargs, dtype, with_lengths, checkpoints, rng, steps=T, batch=B):
    x, state, lengths, dy, dstate = _case(rng, kwargs, with_lengths, steps, batch)
    whole = _training_step(kwargs, dtype, None, lengths, x, state, dy, dstate)
    names = ["y", "h_n", "c_n", "dx", "dh0", "dc0"] + list(lf.LSTM(I, dtype=dtype, **kwargs).state_dict())
    for checkpoint in checkpoints:
        parts = _training_step(kwargs, dtype, checkpoint, lengths, x, state, dy, dstate)
        for name, a, b in zip(names, parts, whole):
            assert a.dtype == b.dtype and a.shape == b.shape, name
            if not np.array_equal(a, b):
                raise AssertionError(
                    f"checkpoint={checkpoint!r}: {name} differs from the whole trace's by up to {np.max(np.abs(a - b))}"
                )


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_checkpointed_gradients_are_bitwise_the_whole_traces(rng, variant, shape, with_lengths, dtype, threads):
    # H = 40: two threads form a team (two packets of units at AVX-512's 16 lanes); without a projection
    # it splits the rows (segments of 16 steps), with one the units.
    kwargs = dict(hidden_size=40, **VARIANTS[variant], **SHAPES[shape])
    with num_threads(threads):
        _assert_bitwise(kwargs, dtype, with_lengths, [1, 21, "auto"], rng)


@pytest.mark.parametrize("variant", ["plain", "peephole_projection", "layer_norm", "zoneout"])
def test_checkpointed_gradients_bitwise_on_every_isa(rng, isa, variant):
    kwargs = dict(hidden_size=24, num_layers=2, bidirectional=True, **VARIANTS[variant])
    _assert_bitwise(kwargs, np.float32, True, [1, "auto"], rng)


@pytest.mark.parametrize("threads", [1, 2])
def test_segments_of_many_blocks_with_a_partial_last(rng, threads):
    # B = 20: blocks of 52 steps rounded up to 64 (whole segments of the row split); T = 150: segments of 64, 64 and 22
    # steps (processing order: the reverse direction's first segment is steps 86..149).
    kwargs = dict(hidden_size=32, bidirectional=True, peephole=True)
    with num_threads(threads):
        _assert_bitwise(kwargs, np.float32, True, [1, 64, 65], rng, steps=150, batch=20)


def test_small_calls_keep_the_whole_trace_and_agree(rng):
    # 3 steps x 16 rows are too few to pack (the products are then Eigen's): checkpoint changes nothing.
    _assert_bitwise(dict(hidden_size=16), np.float64, False, [1, "auto"], rng, steps=3, batch=16)


def test_checkpoint_is_checked():
    model = lf.LSTM(3, 4)
    x = np.zeros((5, 2, 3), dtype=np.float32)
    for bad, error, words in [
        (0, ValueError, "checkpoint must be >= 1, got 0"),
        (-3, ValueError, "checkpoint must be >= 1, got -3"),
        ("sqrt", ValueError, "checkpoint must be None, \"auto\" or an int >= 1, got 'sqrt'"),
        (2.0, TypeError, 'checkpoint must be None, "auto" or an int >= 1, got float 2.0'),
        (True, TypeError, "got bool True"),
    ]:
        with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
            model.forward(x, checkpoint=bad)
    with pytest.raises(ValueError, match="checkpoint is a training option"):
        model.forward(x, train=False, checkpoint="auto")
    with pytest.raises(ValueError, match="backward"):  # the failed calls left no training run behind
        model.backward(np.zeros((5, 2, 4), dtype=np.float32))


MEMORY_CHILD = r"""
import json, resource, sys
import numpy as np
import lstm_fast as lf

T, B, I, H = 3000, 16, 32, 128
checkpoint = None if sys.argv[1] == "none" else sys.argv[1]
model = lf.LSTM(I, H, seed=0)
x = np.random.default_rng(0).standard_normal((T, B, I), dtype=np.float32)
dy = np.ones((T, B, H), dtype=np.float32)
model.forward(x[:2]); model.backward(dy[:2])
with open("/proc/self/statm") as f:
    baseline = int(f.read().split()[1]) * (resource.getpagesize() // 1024)
model.forward(x, checkpoint=checkpoint)
model.backward(dy)
with open("/proc/self/status") as f:  # (not ru_maxrss: Linux carries the forking parent's over exec)
    peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(json.dumps(dict(growth_kib=peak - baseline)))
"""


def _step_growth_kib(checkpoint):
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, checkpoint], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["growth_kib"]


@pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="AddressSanitizer's quarantine keeps freed blocks resident (tools/sanitize.sh): not the library's memory",
)
def test_a_checkpointed_step_takes_a_fraction_of_the_memory():
    # T 3000, B 16, H 128: the whole trace is about 1,100 floats a row (210 MB); checkpointed, what is
    # left a row is y, dx and the layer's input (about 230 floats) and the trace of one segment.
    whole, checkpointed = _step_growth_kib("none"), _step_growth_kib("auto")
    assert whole > 150_000, whole
    assert checkpointed < 0.3 * whole, (checkpointed, whole)


def test_torch_module_checkpoint_gives_the_same_gradients(rng):
    torch = pytest.importorskip("torch")
    from lstm_fast.torch import LSTM as TorchLSTM

    x, _, _, dy, _ = _case(rng, dict(hidden_size=40, num_layers=2, bidirectional=True), False)
    results = []
    for checkpoint in [None, 1, "auto"]:
        torch.manual_seed(0)  # the same parameters, dropout masks and zoneout seed
        module = TorchLSTM(I, 40, 2, dropout=0.3, bidirectional=True, zoneout=0.1, checkpoint=checkpoint)
        assert module.checkpoint == checkpoint
        x_t = torch.tensor(x, dtype=torch.float32, requires_grad=True)
        y, (h_n, c_n) = module(x_t)
        ((y * torch.tensor(dy, dtype=torch.float32)).sum() + h_n.sum() + 2 * c_n.sum()).backward()
        results.append([y.detach(), x_t.grad] + [p.grad for p in module.parameters()])
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="checkpoint must be >= 1, got 0"):
        TorchLSTM(3, 4, checkpoint=0)
    module = TorchLSTM(3, 4)
    with pytest.raises(ValueError, match="checkpoint must be None"):
        module.checkpoint = "often"
    assert module.checkpoint is None  # a refused value changes nothing


def test_truncated_bptt_passes_checkpoint_on(rng):
    from lstm_fast.training import truncated_bptt

    x, *_ = _case(rng, dict(hidden_size=16), False)
    results = []
    for checkpoint in [None, "auto"]:
        model = lf.LSTM(I, 16, seed=1)
        result = truncated_bptt(model, x, 35, lambda y, t0: (float(np.sum(y)), np.ones_like(y)), checkpoint=checkpoint)
        results.append(result)
    assert results[0].loss == results[1].loss
    for name, g in results[0].grads.items():
        np.testing.assert_array_equal(results[1].grads[name], g)
