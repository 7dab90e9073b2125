"""Never crash the process: absurd sizes refused before allocating, NaN and Inf propagated, calls out of
order refused. (Shapes and dtypes are in test_errors.py, files in test_untrusted_files.py.)"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import lstm_fast as lf
from lstm_fast import _checks


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (
            (10**9, 10**9),
            {},
            r"the parameters of LSTM\(1000000000, 1000000000, dtype=float32\): "
            r"8000000008000000000 numbers .* are more than",
        ),
        ((2**31 - 1, 2**31 - 1), {}, r"the parameters of LSTM\(2147483647, 2147483647.* are more than"),
        ((10, 1000), dict(num_layers=2**31 - 1, bidirectional=True), r"num_layers=2147483647.* are more than"),
        ((2**31, 3), {}, r"input_size must be <= 2147483647, got 2147483648"),
        ((3, 10**30), {}, r"hidden_size must be <= 2147483647, got 10{30}"),
        ((3, 4, 2**40), {}, r"num_layers must be <= 2147483647, got 1099511627776"),
    ],
)
def test_absurd_sizes_fail_before_allocating(args, kwargs, match):
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match):
            lf.LSTM(*args, **kwargs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_the_core_checks_sizes_too():
    # The compiled Config re-checks (for callers that bypass the Python class), with 64-bit safe maths.
    from lstm_fast import _core

    with pytest.raises(ValueError, match=r"number more than 2\^48: too many to allocate"):
        _core.Config(
            input_size=2**31 - 1,
            hidden_size=2**31 - 1,
            num_layers=1,
            proj_size=0,
            bias=True,
            bidirectional=False,
            peephole=False,
        )
    with pytest.raises(ValueError, match=r"input_size must be <= 2\^31 - 1, got 4294967296"):
        _core.Config(
            input_size=2**32, hidden_size=3, num_layers=1, proj_size=0, bias=True, bidirectional=False, peephole=False
        )


def test_sizes_beyond_this_machines_memory_are_refused(monkeypatch):
    # Pretend the machine has 2 MiB: the checks compare with its memory, not with an allocation.
    monkeypatch.setattr(_checks, "_physical_memory", lambda: 2 * 2**20)
    lf.LSTM(3, 300)  # 4*300*(3 + 300) + 8*300 = 366,000 float32 numbers: 1.4 MiB, fits
    with pytest.raises(
        ValueError,
        match=r"the parameters of LSTM\(3, 300, dtype=float64\): 366000 numbers "
        r"\(0.00273 GiB of float64\) are more than this machine's memory",
    ):
        lf.LSTM(3, 300, dtype=np.float64)
    model = lf.LSTM(2, 8)
    with pytest.raises(ValueError, match=r"the state of initial_state\(batch_size=100000\)"):
        model.initial_state(100000)
    x = np.zeros((2000, 10, 2), np.float32)  # 160 KB in, 2000*10*8 float32 = 640 KB out
    model(x)
    with pytest.raises(ValueError, match=r"the output and trace of x of shape \(2000, 10, 2\)"):
        model.forward(x, train=True)  # the trace keeps 6H + R numbers a row: 4.5 MB


def test_nan_and_inf_in_the_input_propagate_without_crash(rng):
    model = lf.LSTM(3, 5, num_layers=2, bidirectional=True, seed=0, dtype=np.float64)
    x = rng.normal(size=(6, 3, 3))
    bad = x.copy()
    bad[2, 0, 1] = np.nan
    bad[4, 1, 0] = np.inf
    y_clean, _ = model(x)
    y, (h_n, c_n) = model(bad)
    # The reverse direction carries the NaN of sequence 0 to all its steps, and the second layer reads
    # both directions; sequence 2, untouched, is exactly what it is without the others.
    assert np.isnan(y[:, 0]).all()
    np.testing.assert_allclose(y[:, 2], y_clean[:, 2], rtol=1e-12, atol=1e-12)
    assert np.isnan(h_n[:, 0]).all()
    # Inf saturates the gates; whatever comes out, no exception and no hang, and backward runs.
    model.forward(bad, train=True)
    dx, (dh0, dc0) = model.backward(np.ones_like(y))
    assert dx.shape == x.shape and np.isnan(dx[:, 0]).any()
    assert all(g.shape == p.shape for g, p in zip(model.grads.values(), model.state_dict().values()))
    # Forward direction only: NaN from the step where it enters, not before.
    uni = lf.LSTM(3, 4, seed=1)
    y, _ = uni(bad)
    assert np.isnan(y[2:, 0]).all() and np.isfinite(y[:2, 0]).all() and np.isfinite(y[:, 2]).all()
    # Step by step, and NaN weights, too.
    state = uni.initial_state(2)
    y_t, state = uni.step(np.array([[np.nan, 0, 0], [np.inf, -np.inf, 0]]), state)
    assert np.isnan(y_t[0]).all()
    uni.state_dict()["weight_hh_l0"][...] = np.nan
    y, _ = uni(x)
    assert np.isnan(y[1:]).all()


def test_calls_out_of_order_are_refused():
    model = lf.LSTM(3, 4, seed=0)
    with pytest.raises(ValueError, match=r"backward\(\) needs a training forward first"):
        model.backward(np.zeros((2, 1, 4)))
    model.forward(np.zeros((2, 1, 3)), train=True)
    model(np.zeros((5, 1, 3)))  # an inference call in between does not disturb the training run
    dx, _ = model.backward(np.zeros((2, 1, 4)))
    assert dx.shape == (2, 1, 3)
    with pytest.raises(ValueError, match=r"step\(\) runs unidirectional models only"):
        lf.LSTM(3, 4, bidirectional=True).step(np.zeros(3))


@pytest.mark.parametrize("batch_first", [False, True])
def test_a_batch_of_no_sequences_gives_empty_outputs(batch_first):
    # As torch.nn.LSTM: B = 0 gives y (T, 0, D*R) and (L*D, 0, R), (L*D, 0, H) states (empty lengths
    # too), the trainable model's backward() empty dx and zero gradients; T = 0 is refused (test_errors).
    model = lf.LSTM(3, 5, 2, bidirectional=True, proj_size=2, batch_first=batch_first)
    x = np.zeros((0, 4, 3) if batch_first else (4, 0, 3))
    y_shape = (0, 4, 4) if batch_first else (4, 0, 4)
    state = (np.zeros((4, 0, 2)), np.zeros((4, 0, 5)))
    for run in (model, model.freeze("int8")):
        for y, (h, c) in (run(x), run(x, state), run(x, lengths=np.zeros(0, dtype=int))):
            assert y.shape == y_shape and h.shape == (4, 0, 2) and c.shape == (4, 0, 5)
    y, _ = model.forward(x, state)
    dx, (dh0, dc0) = model.backward(y, (np.zeros((4, 0, 2)), None))
    assert dx.shape == x.shape and dh0.shape == (4, 0, 2) and dc0.shape == (4, 0, 5)
    assert list(model.grads) == list(model.state_dict())
    assert all(g.shape == model.state_dict()[k].shape and not g.any() for k, g in model.grads.items())
    with pytest.raises(ValueError, match="backward\\(\\) needs a training forward first"):
        model.backward(y)
