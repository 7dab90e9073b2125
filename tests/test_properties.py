"""Property-based tests (hypothesis) over the Python API: random configurations and shapes against the
reference, and random garbage everywhere a user can pass something, which must give a result or a
ValueError / TypeError, never anything else.

Examples are derandomized (the same every run, so CI cannot flake) and few (the whole file runs in
well under 30 s); HYPOTHESIS_PROFILE=explore runs many more, freshly random ones:
    HYPOTHESIS_PROFILE=explore python -m pytest tests/test_properties.py
"""

from __future__ import annotations

import os
import struct
import tempfile

import numpy as np
import pytest
from conftest import reference_run
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lstm_fast as lf

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "explore", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

# A float64 beyond float32's range becomes inf when a float32 model converts it, and NumPy warns; that
# is the documented outcome (non-finite values propagate), not a failure here.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")


def profile(**overrides):
    """This file's settings: the chosen profile, with per-test overrides of the CI example count."""
    if PROFILE != "ci":
        overrides.pop("max_examples", None)
    return settings(settings.get_profile(PROFILE), **overrides)


# ---- strategies -------------------------------------------------------------------------------------


@st.composite
def configs(draw):
    hidden, bias = draw(st.integers(1, 6)), draw(st.booleans())
    return dict(
        input_size=draw(st.integers(1, 5)),
        hidden_size=hidden,
        num_layers=draw(st.integers(1, 3)),
        bias=bias,
        batch_first=draw(st.booleans()),
        bidirectional=draw(st.booleans()),
        proj_size=draw(st.integers(0, hidden - 1)),
        peephole=draw(st.booleans()),
        forget_bias=draw(st.sampled_from([0.0, 1.0])) if bias else 0.0,
        dtype=np.float64,
        seed=draw(st.integers(0, 2**32)),
    )


def garbage():
    """Anything a user might pass by mistake."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(),
        st.text(max_size=4),
        st.binary(max_size=8),
        st.lists(st.integers(-3, 3), max_size=4),
        st.lists(st.lists(st.floats(width=32), max_size=3), max_size=3),
        st.tuples(st.integers(-2, 5), st.floats()),
        hnp.arrays(
            st.sampled_from(
                [np.float32, np.float64, np.int8, np.int64, np.uint16, np.bool_, np.complex64, np.float16, "U1"]
            ),
            hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
        ),
    )


def is_refusal(exc: BaseException) -> bool:
    # The contract: ValueError or TypeError, with a message.
    return isinstance(exc, (ValueError, TypeError)) and bool(str(exc))


# ---- the core against the reference -------------------------------------------------------------------


@profile(max_examples=150)
@given(config=configs(), T=st.integers(1, 6), B=st.integers(1, 4), data=st.data())
def test_random_configurations_match_the_reference(config, T, B, data):
    model = lf.LSTM(**config)
    D, R, H, L = model.num_directions, model.output_size, config["hidden_size"], config["num_layers"]
    rng = np.random.default_rng(config["seed"])
    x = rng.normal(size=(T, B, config["input_size"]))
    state = (rng.normal(size=(L * D, B, R)), rng.normal(size=(L * D, B, H)))
    lengths = None
    if data.draw(st.booleans(), label="with lengths"):
        lengths = data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B), label="lengths")
        lengths[data.draw(st.integers(0, B - 1))] = T
    dy = rng.normal(size=(T, B, D * R))
    dstate = (rng.normal(size=state[0].shape), rng.normal(size=state[1].shape))
    swap = (lambda a: a.transpose(1, 0, 2)) if config["batch_first"] else (lambda a: a)

    y, (h_n, c_n) = model.forward(swap(x), state, lengths)
    dx, (dh0, dc0) = model.backward(swap(dy), dstate)
    expected, grads = reference_run(model, x, state, lengths, dy, dstate)
    actual = dict(y=swap(y), h_n=h_n, c_n=c_n, dx=swap(dx), dh0=dh0, dc0=dc0)
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=1e-10, atol=1e-10, err_msg=name)
    for name, value in grads.items():
        np.testing.assert_allclose(model.grads[name], value, rtol=1e-10, atol=1e-10, err_msg=name)


@profile(max_examples=60)
@given(config=configs(), T=st.integers(1, 8), B=st.integers(1, 3))
def test_stepping_equals_the_whole_sequence_and_files_round_trip(config, T, B):
    config = {**config, "bidirectional": False}
    model = lf.LSTM(**config)
    x = np.random.default_rng(config["seed"]).normal(size=(T, B, config["input_size"]))
    y, (h_n, c_n) = model(x.transpose(1, 0, 2) if config["batch_first"] else x)
    if config["batch_first"]:
        y = y.transpose(1, 0, 2)
    state = model.initial_state(B)
    for t in range(T):
        y_t, state = model.step(x[t], state)
        np.testing.assert_allclose(y_t, y[t], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state[0], h_n, rtol=1e-12, atol=1e-12)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.safetensors")
        model.save(path)
        loaded = lf.load(path)
    assert loaded.config() == model.config()
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value)


# ---- garbage in: a result or a ValueError / TypeError --------------------------------------------------

ARGUMENTS = [
    "input_size",
    "hidden_size",
    "num_layers",
    "bias",
    "batch_first",
    "dropout",
    "bidirectional",
    "proj_size",
    "peephole",
    "forget_bias",
    "dtype",
    "seed",
]


@profile(max_examples=300)
@given(name=st.sampled_from(ARGUMENTS), value=st.one_of(garbage(), st.integers(-3, 12)))
def test_constructor_takes_any_value_of_any_argument(name, value):
    # A valid but large size (LSTM(3, 20000) is 6.4 GB that fits in RAM) is no garbage: it would just
    # make the test slow and hungry.
    assume(
        not (name in ("input_size", "hidden_size", "num_layers") and isinstance(value, int) and 1000 < value < 2**31)
    )
    args = dict(input_size=3, hidden_size=4)
    args[name] = value
    try:
        model = lf.LSTM(**args)
    except Exception as exc:  # noqa: BLE001 - the property is about which exceptions
        assert is_refusal(exc), repr(exc)
        return
    y, _ = model(np.ones((2, 1, model.input_size)))  # a model that was built also runs
    assert y.shape[-1] == model.num_directions * model.output_size


@pytest.fixture(scope="module")
def model():
    return lf.LSTM(3, 4, num_layers=2, seed=0)


@profile(max_examples=400)
@given(
    x=garbage(),
    state=st.one_of(st.none(), garbage(), st.tuples(garbage(), garbage())),
    lengths=st.one_of(st.none(), garbage()),
    train=st.one_of(st.booleans(), garbage()),
)
def test_forward_takes_any_input(model, x, state, lengths, train):
    try:
        y, (h_n, c_n) = model.forward(x, state, lengths, train=train)
    except Exception as exc:  # noqa: BLE001
        assert is_refusal(exc), repr(exc)
        return
    x = np.asarray(x, dtype=np.float32)  # what the float32 model computed on
    assert y.shape == x.shape[:-1] + (4,)
    if state is None and np.all(np.abs(x) < 1e30):  # beyond, W x may overflow: inf - inf is NaN
        assert np.isfinite(y).all() and np.isfinite(h_n).all() and np.isfinite(c_n).all()
    if train is True:  # a successful training forward can be backpropagated
        dx, _ = model.backward(np.ones_like(y))
        assert dx.shape == x.shape


@profile(max_examples=200)
@given(dy=garbage(), dstate=st.one_of(st.none(), garbage(), st.tuples(garbage(), garbage())))
def test_backward_takes_any_gradient(model, dy, dstate):
    model.forward(np.ones((2, 3, 3)), train=True)
    try:
        dx, (dh0, dc0) = model.backward(dy, dstate)
    except Exception as exc:  # noqa: BLE001
        assert is_refusal(exc), repr(exc)
        return
    assert dx.shape == (2, 3, 3) and dh0.shape == (2, 3, 4)


@profile(max_examples=200)
@given(
    x_t=garbage(),
    state=st.one_of(st.none(), garbage(), st.tuples(garbage(), garbage())),
    batch_size=st.one_of(st.none(), garbage()),
)
def test_step_and_initial_state_take_anything(model, x_t, state, batch_size):
    for call in (lambda: model.step(x_t, state), lambda: model.initial_state(batch_size)):
        try:
            call()
        except Exception as exc:  # noqa: BLE001
            assert is_refusal(exc), repr(exc)


@profile(max_examples=200)
@given(
    state_dict=st.dictionaries(
        st.sampled_from(["weight_ih_l0", "bias_hh_l1", "weight_hr_l0", "x"]), garbage(), max_size=3
    ),
    strict=st.booleans(),
)
def test_load_state_dict_takes_anything_and_changes_nothing_when_it_refuses(state_dict, strict):
    model = lf.LSTM(3, 4, num_layers=2, seed=0)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    try:
        model.load_state_dict(state_dict, strict=strict)
    except Exception as exc:  # noqa: BLE001
        assert is_refusal(exc), repr(exc)
        for name, value in model.state_dict().items():
            np.testing.assert_array_equal(value, before[name])


# ---- files: random bytes and mutated models -------------------------------------------------------------


def _load_bytes(data: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.safetensors")
        with open(path, "wb") as f:
            f.write(data)
        return lf.load(path)


@profile(max_examples=300)
@given(
    data=st.one_of(
        st.binary(max_size=64),
        st.builds(
            lambda n, rest: struct.pack("<Q", n) + rest,
            st.one_of(st.integers(0, 200), st.integers(0, 2**64 - 1)),
            st.binary(max_size=200),
        ),
    )
)
def test_load_refuses_random_bytes(data):
    with pytest.raises(ValueError):
        _load_bytes(data)


@pytest.fixture(scope="module")
def good_file():
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.safetensors")
        lf.LSTM(2, 3, num_layers=2, proj_size=1, peephole=True, seed=0).save(path)
        with open(path, "rb") as f:
            return f.read()


@profile(max_examples=400)
@given(
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_mutated_model_files_load_or_are_refused(good_file, edits, cut):
    data = bytearray(good_file)
    for at, value in edits:
        data[at % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    assume(bytes(data) != good_file)
    try:
        model = _load_bytes(bytes(data))
    except ValueError as exc:
        assert str(exc)
        return
    # Only the tensor bytes changed (or nothing that matters): the model loads and runs.
    y, _ = model(np.ones((3, 1, model.input_size)))
    assert y.shape == (3, 1, model.output_size)
