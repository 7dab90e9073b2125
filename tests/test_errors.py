"""Bad input gets a ValueError or TypeError that names the argument, what was expected and what came."""

import numpy as np
import pytest

import lstm_fast as lf


@pytest.fixture
def model():
    return lf.LSTM(3, 4, 2, seed=0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(input_size=0), ValueError, r"input_size must be >= 1, got 0"),
        (dict(input_size=2.5), TypeError, r"input_size must be an int, got float"),
        (dict(hidden_size=-3), ValueError, r"hidden_size must be >= 1, got -3"),
        (dict(hidden_size=True), TypeError, r"hidden_size must be an int, got bool"),
        (dict(num_layers=0), ValueError, r"num_layers must be >= 1, got 0"),
        (dict(proj_size=4), ValueError, r"proj_size must be < hidden_size \(4\), got 4"),
        (dict(proj_size=-1), ValueError, r"proj_size must be >= 0, got -1"),
        (dict(dropout=1.0), ValueError, r"dropout must be in \[0, 1\), got 1.0"),
        (dict(dropout=float("nan")), ValueError, r"dropout must be finite, got nan"),
        (dict(dtype=np.int32), TypeError, r"dtype must be np.float32 or np.float64, got int32"),
        (dict(dtype="nonsense"), TypeError, r"dtype must be np.float32 or np.float64"),
        (dict(bias=False, forget_bias=1.0), ValueError, r"forget_bias needs bias=True"),
        (dict(bidirectional="yes"), TypeError, r"bidirectional must be a bool, got str"),
        (dict(seed=-1), ValueError, r"seed must be >= 0, got -1"),
    ],
)
def test_constructor_arguments(kwargs, error, match):
    args = dict(input_size=3, hidden_size=4)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        lf.LSTM(**args)


@pytest.mark.parametrize(
    "x, error, match",
    [
        (np.zeros((5, 2, 7)), ValueError, r"x must have shape \(T, B, 3\) or \(T, 3\), got \(5, 2, 7\)"),
        (np.zeros((5,)), ValueError, r"x must have shape .* got \(5,\)"),
        (np.zeros((2, 5, 2, 3)), ValueError, r"x must have shape .* got \(2, 5, 2, 3\)"),
        (np.zeros((0, 2, 3)), ValueError, r"x must have >= 1 step \(a sequence length T >= 1\), got shape \(0, 2, 3\)"),
        (np.zeros((0, 3)), ValueError, r"x must have >= 1 step"),
        (np.zeros((5, 2, 3), dtype=complex), TypeError, r"x must hold real numbers .* got dtype complex128"),
        (np.array([["a", "b", "c"]]), TypeError, r"x must hold real numbers"),
        ([[1, 2], [3]], TypeError, r"x must be an array of real numbers"),
    ],
)
def test_bad_inputs(model, x, error, match):
    with pytest.raises(error, match=match):
        model(x)


def test_batch_first_names_its_layout():
    model = lf.LSTM(3, 4, batch_first=True)
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, 3\) or \(T, 3\), got \(2, 5, 4\)"):
        model(np.zeros((2, 5, 4)))


def _unaligned_copy(a):
    """A C-contiguous copy of `a` whose data starts 4 bytes past an 8-byte boundary."""
    raw = np.empty(a.nbytes + 12, np.uint8)
    start = (-raw.ctypes.data) % 8 + 4
    out = raw[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def test_unaligned_inputs_are_copied_not_read_in_place(rng):
    # A float64 view at an odd byte offset is C-contiguous but not aligned: reading it in place would
    # be undefined behaviour in the core (UBSan flagged it), so the Python layer copies it.
    model = lf.LSTM(3, 4, dtype=np.float64, seed=0)
    x = rng.normal(size=(5, 2, 3))
    h0, c0 = rng.normal(size=(1, 2, 4)), rng.normal(size=(1, 2, 4))
    ux, uh0, uc0 = _unaligned_copy(x), _unaligned_copy(h0), _unaligned_copy(c0)
    assert ux.flags.c_contiguous and not ux.flags.aligned
    y, (h_n, c_n) = model.forward(ux, (uh0, uc0))
    dx, _ = model.backward(_unaligned_copy(np.ones_like(y)))
    y2, (h_n2, c_n2) = model.forward(x, (h0, c0))
    dx2, _ = model.backward(np.ones_like(y))
    for a, b in ((y, y2), (h_n, h_n2), (c_n, c_n2), (dx, dx2)):
        np.testing.assert_array_equal(a, b)


def test_non_contiguous_and_integer_inputs_are_converted(model):
    x = np.arange(5 * 2 * 6, dtype=np.float64).reshape(5, 2, 6)[:, :, ::2] / 50  # strided float64
    y1, _ = model(x)
    y2, _ = model(np.ascontiguousarray(x, dtype=np.float32))
    np.testing.assert_array_equal(y1, y2)
    y3, _ = model(np.ones((5, 2, 3), dtype=np.int64))
    y4, _ = model(np.ones((5, 2, 3), dtype=np.float32))
    np.testing.assert_array_equal(y3, y4)


@pytest.mark.parametrize(
    "state, error, match",
    [
        (
            (np.zeros((2, 2, 4)), np.zeros((2, 3, 4))),
            ValueError,
            r"state\[1\] \(c0\) must have shape \(2, 2, 4\), got \(2, 3, 4\)",
        ),
        (
            (np.zeros((1, 2, 4)), np.zeros((2, 2, 4))),
            ValueError,
            r"state\[0\] \(h0\) must have shape \(2, 2, 4\), got \(1, 2, 4\)",
        ),
        ((np.zeros((2, 2, 4)),), TypeError, r"state must be a pair \(h0, c0\) or None"),
        (np.zeros((2, 2, 4)), TypeError, r"state must be a pair \(h0, c0\) or None, got ndarray"),
    ],
)
def test_bad_state(model, state, error, match):
    with pytest.raises(error, match=match):
        model(np.zeros((5, 2, 3)), state)


@pytest.mark.parametrize(
    "lengths, error, match",
    [
        ([5, 6], ValueError, r"lengths must be in \[1, 5\] \(the sequence length\), got 6"),
        ([0, 5], ValueError, r"lengths must be in \[1, 5\] \(the sequence length\), got 0"),
        ([5], ValueError, r"lengths must have shape \(2,\), got \(1,\)"),
        ([5.0, 2.0], TypeError, r"lengths must hold integers, got dtype float64"),
        ([[5], [2, 3]], TypeError, r"lengths must be an array of integers, got list"),
    ],
)
def test_bad_lengths(model, lengths, error, match):
    with pytest.raises(error, match=match):
        model(np.zeros((5, 2, 3)), lengths=lengths)


def test_backward_without_training_forward(model):
    with pytest.raises(ValueError, match=r"backward\(\) needs a training forward first"):
        model.backward(np.zeros((5, 2, 4)))
    model(np.zeros((5, 2, 3)))  # inference keeps nothing
    with pytest.raises(ValueError, match=r"backward\(\) needs a training forward first"):
        model.backward(np.zeros((5, 2, 4)))
    model.forward(np.zeros((5, 2, 3)))
    model.backward(np.zeros((5, 2, 4)))
    with pytest.raises(ValueError, match=r"backward\(\) needs a training forward first"):
        model.backward(np.zeros((5, 2, 4)))  # each forward is backpropagated once


def test_bad_incoming_gradients(model):
    model.forward(np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match=r"dy must have shape \(5, 2, 4\), got \(5, 2, 3\)"):
        model.backward(np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match=r"dstate\[1\] \(dc_n\) must have shape \(2, 2, 4\), got \(2, 4\)"):
        model.backward(np.zeros((5, 2, 4)), (None, np.zeros((2, 4))))
    with pytest.raises(TypeError, match=r"dy must hold real numbers"):
        model.backward(np.zeros((5, 2, 4), dtype=bool))


def test_step_errors(model):
    with pytest.raises(ValueError, match=r"x_t must have shape \(B, 3\) or \(3,\), got \(2, 5\)"):
        model.step(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"state\[0\] \(h0\) must have shape \(2, 2, 4\)"):
        model.step(np.zeros((2, 3)), model.initial_state(3))
    with pytest.raises(ValueError, match=r"step\(\) runs unidirectional models only"):
        lf.LSTM(3, 4, bidirectional=True).step(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"batch_size must be >= 1, got 0"):
        model.initial_state(0)


def test_unbatched_input_refuses_lengths(model):
    with pytest.raises(ValueError, match=r"lengths needs batched input"):
        model(np.zeros((5, 3)), lengths=[5])


def test_load_state_dict_errors_change_nothing(model):
    before = {k: v.copy() for k, v in model.state_dict().items()}
    good = {k: np.ones_like(v) for k, v in before.items()}
    with pytest.raises(ValueError, match=r"unexpected key\(s\) \['weight_hr_l0'\]"):
        model.load_state_dict({**good, "weight_hr_l0": np.zeros((2, 4))})
    with pytest.raises(ValueError, match=r"missing key\(s\) \['bias_hh_l1'\]"):
        model.load_state_dict({k: v for k, v in good.items() if k != "bias_hh_l1"})
    bad = dict(good)
    bad["weight_hh_l1"] = np.zeros((16, 5))
    with pytest.raises(ValueError, match=r"state_dict\['weight_hh_l1'\] must have shape \(16, 4\), got \(16, 5\)"):
        model.load_state_dict(bad)
    with pytest.raises(TypeError, match=r"state_dict\['bias_ih_l0'\] must hold real numbers"):
        model.load_state_dict({**good, "bias_ih_l0": np.zeros(16, dtype=complex)})
    with pytest.raises(TypeError, match=r"state_dict must be a mapping"):
        model.load_state_dict([1, 2])
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    model.load_state_dict({"bias_ih_l0": np.zeros(16)}, strict=False)  # partial when not strict
    assert np.all(model.state_dict()["bias_ih_l0"] == 0)


def test_core_rejects_arrays_that_do_not_match_the_config():
    # The bindings re-check every array the core reads, so a bug upstream cannot read out of bounds.
    from lstm_fast import _core

    config = _core.Config(
        input_size=3, hidden_size=4, num_layers=1, proj_size=0, bias=True, bidirectional=False, peephole=False
    )
    arrays = dict(
        weight_ih=np.zeros((16, 3), np.float32),
        weight_hh=np.zeros((16, 4), np.float32),
        bias_ih=np.zeros(16, np.float32),
        bias_hh=np.zeros(16, np.float32),
    )
    w = _core.CellWeights(**arrays)
    x = np.zeros((10, 3), np.float32)

    def forward(weights, x, batch_sizes):
        return _core.forward(config, weights, x, batch_sizes=batch_sizes, batch=2)

    forward([w], x, [2] * 5)
    with pytest.raises(ValueError, match=r"x must have shape \(8, 3\), got \(10, 3\)"):
        forward([w], x, [2] * 4)
    with pytest.raises(ValueError, match=r"cell 0 weight_hh must have shape \(16, 4\), got \(16, 3\)"):
        forward([_core.CellWeights(**{**arrays, "weight_hh": arrays["weight_ih"]})], x, [2] * 5)
    with pytest.raises(TypeError, match=r"cell 0 bias_ih must be a C-contiguous float32 array"):
        forward([_core.CellWeights(**{**arrays, "bias_ih": np.zeros(16)})], x, [2] * 5)
    with pytest.raises(ValueError, match=r"cell 0 bias_hh is required, got None"):
        forward([_core.CellWeights(**{**arrays, "bias_hh": None})], x, [2] * 5)
    unaligned = np.empty(10 * 3 * 4 + 1, np.uint8)[1:].view(np.float32).reshape(10, 3)
    assert unaligned.flags.c_contiguous and not unaligned.flags.aligned
    with pytest.raises(TypeError, match=r"x must be aligned to its dtype"):
        forward([w], unaligned, [2] * 5)
    with pytest.raises(ValueError, match=r"batch_sizes must be >= 1 and non-increasing, got 2 at step 2"):
        forward([w], x[:5], [2, 1, 2])
    with pytest.raises(ValueError, match=r"proj_size must be >= 0 and < hidden_size"):
        _core.Config(
            input_size=3, hidden_size=4, num_layers=1, proj_size=4, bias=True, bidirectional=False, peephole=False
        )


def test_core_forward_and_backward_take_cell_weights_and_keywords():
    from lstm_fast import _core
    from lstm_fast._config import CELL_KINDS, cell_arrays, cell_weights

    config = _core.Config(
        input_size=3, hidden_size=4, num_layers=1, proj_size=0, bias=True, bidirectional=False, peephole=False
    )
    rng = np.random.default_rng(0)
    shapes = {"weight_ih": (16, 3), "weight_hh": (16, 4), "bias_ih": (16,), "bias_hh": (16,)}
    arrays = [rng.standard_normal(shapes[k]) if k in shapes else None for k in CELL_KINDS]
    w = cell_weights(arrays)
    assert cell_arrays(w) == tuple(arrays) and w.weight_hr is None and w.ln_cell_bias is None
    assert repr(w) == "CellWeights(weight_ih=(16, 3), weight_hh=(16, 4), bias_ih=(16,), bias_hh=(16,))"
    w.weight_peep = np.ones(3)  # read/write; ignored where the config has none (no peephole)
    x = rng.standard_normal((6, 3))
    y, h_n, c_n, trace = _core.forward(config, [w], x, batch_sizes=[2] * 3, batch=2, train=True)
    assert y.shape == (6, 4) and h_n.shape == c_n.shape == (1, 2, 4) and isinstance(trace, _core.Trace64)
    dx, dh0, dc0, grads = _core.backward([w], trace, np.ones_like(y), dc_n=np.zeros_like(c_n))
    assert dx.shape == x.shape and dh0.shape == dc0.shape == (1, 2, 4)
    assert len(grads) == 1 and isinstance(grads[0], _core.CellWeights)
    assert [k for k, g in zip(CELL_KINDS, cell_arrays(grads[0])) if g is not None] == list(shapes)
    assert all(getattr(grads[0], k).shape == s for k, s in shapes.items())
    with pytest.raises(TypeError, match=r"CellWeights has no array 'weight_xh'"):
        _core.CellWeights(weight_xh=None)
    with pytest.raises(TypeError, match=r"weights\[0\] must be a CellWeights, got <class 'tuple'>"):
        _core.forward(config, [tuple(arrays)], x, batch_sizes=[2] * 3, batch=2)
    with pytest.raises(ValueError, match=r"weights must hold 1 cells, got 2"):
        _core.forward(config, [w, w], x, batch_sizes=[2] * 3, batch=2)
    with pytest.raises(ValueError, match=r'precision must be "fp32" or "bf16", got "int8"'):
        _core.forward(config, [w], x, batch_sizes=[2] * 3, batch=2, train=True, precision="int8")
    with pytest.raises(TypeError):  # keyword-only past x
        _core.forward(config, [w], x, [2] * 3, 2)


def test_fma_peak_checks_its_arguments():
    from lstm_fast import _core

    assert _core.fma_peak_gflops(0.01, 1) > 0
    with pytest.raises(ValueError, match=r"seconds must be in \(0, 60\], got 0"):
        _core.fma_peak_gflops(0.0, 1)
    with pytest.raises(ValueError, match=r"threads must be in \[1, 1024\], got 0"):
        _core.fma_peak_gflops(0.1, 0)
