"""The plan's choices made from the machine change no bits (docs/guarantees.md). The row split's bound on
the weights is the L2 a core that the OS reports (cpp/src/runtime/caches.hpp); the same call planned as
on a core of 1 KiB of L2 (the unit split) and of 1 GiB (the row split) must give the same outputs,
gradients and weight gradients, bit for bit, at the same thread count."""

from pathlib import Path

import numpy as np
import pytest
from conftest import num_threads, reference_forward

import lstm_fast as lf
from lstm_fast import _core

TINY, HUGE = 1 << 10, 1 << 30


@pytest.fixture
def l2():
    """Sets the L2 the plan sees (bytes) for the test; the machine's is given back after."""
    yield lambda size: _core._set_cache_sizes(32 << 10, size)
    _core._set_cache_sizes(0, 0)


def test_the_caches_are_read_from_the_machine():
    sizes = _core._cache_sizes()
    for level, low, high in [("l1d", 4 << 10, 4 << 20), ("l2", 64 << 10, 64 << 20)]:
        assert low <= sizes[level] <= high, sizes
    sysfs = Path("/sys/devices/system/cpu/cpu0/cache/index2/size")
    level = Path("/sys/devices/system/cpu/cpu0/cache/index2/level")
    if sysfs.exists() and level.exists() and level.read_text().strip() == "2":
        assert sizes["l2"] == int(sysfs.read_text().strip().rstrip("K")) * 1024


def test_the_row_split_bound_follows_the_l2(l2):
    config = lf.LSTM(input_size=40, hidden_size=64)._config  # 104 KiB of weights
    with num_threads(2):
        l2(TINY)
        units = _core._plan(config, 0, 50, 32, training=True)
        l2(HUGE)
        rows = _core._plan(config, 0, 50, 32, training=True)
    assert (units["split"], rows["split"]) == ("units", "rows")
    assert units["team"] == rows["team"] == 2
    assert units["gradient_block"] == rows["gradient_block"]


def _training_run(model, x, lengths, dy, precision):
    out = {}
    y, (h, c) = model(x, lengths=lengths)
    out.update(inference_y=y, inference_h=h, inference_c=c)
    kwargs = {} if precision is None else dict(precision=precision)
    y, (h, c) = model.forward(x, lengths=lengths, train=True, **kwargs)
    dx, (dh0, dc0) = model.backward(dy)
    out.update(y=y, h=h, c=c, dx=dx, dh0=dh0, dc0=dc0)
    out.update({"grad_" + k: v for k, v in model.grads.items()})
    return out


# name: (configuration, T, B, dtype, training precision, with lengths)
F32, F64 = np.float32, np.float64
CASES = {
    "plain": (dict(input_size=40, hidden_size=64), 50, 32, F32, None, False),
    "peephole_lengths": (dict(input_size=40, hidden_size=64, peephole=True), 70, 24, F32, None, True),
    "bidirectional_2_layers": (
        dict(input_size=9, hidden_size=64, num_layers=2, bidirectional=True),
        40,
        20,
        F32,
        None,
        True,
    ),
    "clip_coupled": (dict(input_size=40, hidden_size=64, cell_clip=2.0, coupled_gates=True), 50, 32, F32, None, False),
    "float64": (dict(input_size=20, hidden_size=64), 40, 16, F64, None, False),
    "bf16_training": (dict(input_size=40, hidden_size=64), 50, 32, F32, "bf16", False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_split_the_l2_picks_changes_no_bits(rng, l2, name):
    kwargs, T, B, dtype, precision, with_lengths = CASES[name]
    model = lf.LSTM(seed=3, dtype=dtype, **kwargs)
    x = rng.normal(size=(T, B, model.input_size)).astype(dtype)
    lengths = None
    if with_lengths:
        lengths = rng.integers(1, T + 1, size=B)
        lengths[0] = T
    dy = rng.normal(size=(T, B, model.num_directions * model.output_size)).astype(model.dtype)
    with num_threads(4 if model.bidirectional else 2):  # (two directions side by side: a team each)
        runs = []
        for size in (TINY, HUGE):
            l2(size)
            assert _core._plan(model._config, 0, T, B, training=True, float64=model.dtype == np.float64)["split"] == (
                "units" if size == TINY else "rows"
            )
            runs.append(_training_run(model, x, lengths, dy, precision))
    units, rows = runs
    assert units.keys() == rows.keys()
    for key in units:
        np.testing.assert_array_equal(units[key], rows[key], err_msg=key)
    reference = reference_forward(model, x.astype(np.float64), lengths=lengths, precision=precision or "fp64")[0]
    np.testing.assert_allclose(units["y"], reference, atol=1e-4)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_a_frozen_model_gives_the_same_bits_whichever_split(rng, l2, precision):
    model = lf.LSTM(input_size=40, hidden_size=64, seed=5).freeze(precision)
    x = rng.normal(size=(60, 32, 40)).astype(np.float32)
    with num_threads(2):
        l2(TINY)
        y_units, (h_units, c_units) = model(x)
        l2(HUGE)
        y_rows, (h_rows, c_rows) = model(x)
    for a, b in [(y_units, y_rows), (h_units, h_rows), (c_units, c_rows)]:
        np.testing.assert_array_equal(a, b)
