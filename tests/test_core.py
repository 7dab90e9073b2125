"""The C++ core against the pure-NumPy reference: outputs, final states and every gradient."""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_close, finite_difference, num_threads, random_case, reference_run

import lstm_fast as lf
from lstm_fast import _core
from lstm_fast._lstm import zoneout_masks_of

DTYPES = [np.float64, np.float32]


@pytest.fixture(autouse=True, params=lf.supported_isas())
def isa(request):
    """Every test here runs once per instruction set this build and CPU support."""
    before = lf.isa()
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa(before)


def zoneout_masks(model, run):
    """The zoneout masks of a model's training run (packed rows: (L*D, N, R), (L*D, N, H)), or None."""
    if run.zoneout_seed is None:
        return None
    return zoneout_masks_of(model._lstm_config, run.zoneout_seed, sum(run.packing.batch_sizes))


def run_and_compare(model, x, state, lengths, dy, dstate, dtype):
    """x, dy time-major; a batch_first model gets them as (B, T, F) and its outputs are compared back.
    The reference gets the recurrent dropout and zoneout masks the forward drew; the recurrent ones are
    returned (or None)."""
    swap = (lambda a: a.transpose(1, 0, 2)) if model.batch_first else (lambda a: a)
    y, (h_n, c_n) = model.forward(swap(x), state, lengths)
    run = model._training_run
    masks, zoneout = run.recurrent_masks, zoneout_masks(model, run)
    if zoneout is not None:  # packed rows -> (L*D, T, B, *)
        zoneout = tuple(np.stack([run.packing.unpack(d) for d in cells]) for cells in zoneout)
    dx, (dh0, dc0) = model.backward(swap(dy), dstate)
    y, dx = swap(y), swap(dx)
    # The reference sees the inputs as the model computed with them (rounded to float32 for a float32
    # model; layer norm's gradients are sensitive enough to show the difference).
    x, dy = (np.asarray(a, dtype=dtype) for a in (x, dy))
    state, dstate = (None if s is None else tuple(np.asarray(a, dtype=dtype) for a in s) for s in (state, dstate))
    expected, grads = reference_run(model, x, state, lengths, dy, dstate, recurrent_masks=masks, zoneout_masks=zoneout)
    actual = dict(y=y, h_n=h_n, c_n=c_n, dx=dx, dh0=dh0, dc0=dc0)
    for name in expected:
        assert actual[name].dtype == np.dtype(dtype), name
        assert_close(name, actual[name], expected[name], dtype, scaled=model.layer_norm)
    assert list(model.grads) == list(model.state_dict())
    for name in grads:
        assert model.grads[name].dtype == np.dtype(dtype), name
        assert_close(f"grads[{name}]", model.grads[name], grads[name], dtype, scaled=model.layer_norm)
    return masks


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(12))
def test_random_shapes_single_layer(rng, dtype, case):
    # T from 1 to 50, B from 1 to 8, sizes down to 1.
    T = int(rng.choice([1, 2, rng.integers(3, 51)]))
    B, I, H = (int(v) for v in rng.integers(1, [9, 7, 9]))
    model, x, state, lengths, dy, dstate = random_case(rng, T=T, B=B, I=I, H=H, dtype=dtype, seed=case)
    run_and_compare(model, x, state, lengths, dy, dstate, dtype)


FEATURES = list(
    itertools.product([1, 2, 3], [False, True], [0, 2], [True, False], [False, True], [False, True], [False, True])
)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_layers,bidirectional,proj_size,bias,batch_first,peephole,with_lengths", FEATURES)
def test_every_feature_combination(
    rng, dtype, num_layers, bidirectional, proj_size, bias, batch_first, peephole, with_lengths
):
    model, x, state, lengths, dy, dstate = random_case(
        rng,
        T=7,
        B=4,
        I=3,
        H=5,
        num_layers=num_layers,
        bidirectional=bidirectional,
        proj_size=proj_size,
        bias=bias,
        batch_first=batch_first,
        peephole=peephole,
        with_lengths=with_lengths,
        dtype=dtype,
    )
    run_and_compare(model, x, state, lengths, dy, dstate, dtype)


def test_zero_state_and_no_dstate_mean_zeros(rng):
    model, x, state, lengths, dy, dstate = random_case(rng, T=5, B=2, I=3, H=4, num_layers=2)
    zeros = model.initial_state(2)
    y1, s1 = model.forward(x)
    g1 = model.backward(dy)
    y2, s2 = model.forward(x, zeros)
    g2 = model.backward(dy, (np.zeros_like(s2[0]), np.zeros_like(s2[1])))
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(g1[0], g2[0])
    np.testing.assert_array_equal(g1[1][0], g2[1][0])


def test_padded_outputs_are_zero_and_final_state_is_taken_at_each_length(rng):
    model, x, state, _, _, _ = random_case(rng, T=9, B=3, I=2, H=4, bidirectional=True)
    lengths = np.array([9, 3, 6])
    y, (h_n, c_n) = model(x, state, lengths)
    for b, L in enumerate(lengths):
        assert np.all(y[L:, b] == 0)
        # The same sequence alone, cut at its length, gives the same outputs and final state.
        yb, (hb, cb) = model(x[:L, b : b + 1], (state[0][:, b : b + 1], state[1][:, b : b + 1]))
        np.testing.assert_allclose(y[:L, b], yb[:, 0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(h_n[:, b], hb[:, 0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(c_n[:, b], cb[:, 0], rtol=1e-6, atol=1e-6)


def test_lengths_all_full_equals_no_lengths(rng):
    model, x, state, _, dy, _ = random_case(rng, T=6, B=3, I=2, H=3, num_layers=2, bidirectional=True)
    y1, s1 = model.forward(x, state, lengths=[6, 6, 6])
    d1 = model.backward(dy)
    y2, s2 = model.forward(x, state)
    d2 = model.backward(dy)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(d1[0], d2[0])


@pytest.mark.parametrize("kwargs", [dict(), dict(num_layers=2, proj_size=2), dict(peephole=True, num_layers=3)])
def test_step_by_step_equals_whole_sequence(rng, kwargs):
    model, x, state, _, _, _ = random_case(rng, T=8, B=3, I=4, H=5, **kwargs)
    y, (h_n, c_n) = model(x, state)
    s = state
    for t in range(x.shape[0]):
        y_t, s = model.step(x[t], s)
        np.testing.assert_allclose(y_t, y[t], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s[0], h_n, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s[1], c_n, rtol=1e-12, atol=1e-12)


def test_step_from_initial_state_unbatched(rng):
    model = lf.LSTM(3, 4, 2, seed=1)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    y, (h_n, c_n) = model(x)
    s = model.initial_state()
    for t in range(5):
        y_t, s = model.step(x[t], s)
        np.testing.assert_allclose(y_t, y[t], rtol=1e-6, atol=1e-6)
    assert s[0].shape == h_n.shape == (2, 4)


def test_batch_first_and_unbatched_layouts(rng):
    model, x, state, lengths, dy, dstate = random_case(rng, T=5, B=3, I=2, H=4, num_layers=2, bidirectional=True)
    y, (h_n, c_n) = model.forward(x, state)
    dx, (dh0, dc0) = model.backward(dy, dstate)

    first = lf.LSTM(2, 4, 2, bidirectional=True, batch_first=True, dtype=np.float64)
    first.load_state_dict(model.state_dict())
    yb, (hb, cb) = first.forward(x.transpose(1, 0, 2), state)
    dxb, (dh0b, dc0b) = first.backward(dy.transpose(1, 0, 2), dstate)
    np.testing.assert_allclose(yb, y.transpose(1, 0, 2), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dxb, dx.transpose(1, 0, 2), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dh0b, dh0, rtol=1e-13, atol=1e-13)
    for name, g in model.grads.items():
        np.testing.assert_allclose(first.grads[name], g, rtol=1e-13, atol=1e-13)

    # Unbatched (T, I): the same as a batch of one.
    yu, (hu, cu) = model.forward(x[:, 0], (state[0][:, 0], state[1][:, 0]))
    dxu, (dh0u, _) = model.backward(dy[:, 0], (dstate[0][:, 0], dstate[1][:, 0]))
    y1, _ = model.forward(x[:, :1], (state[0][:, :1], state[1][:, :1]))
    dx1, (dh01, _) = model.backward(dy[:, :1], (dstate[0][:, :1], dstate[1][:, :1]))
    assert yu.shape == (5, 8) and hu.shape == (4, 4)
    np.testing.assert_allclose(yu, y1[:, 0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dxu, dx1[:, 0], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(dh0u, dh01[:, 0], rtol=1e-13, atol=1e-13)


def test_inference_over_many_steps_matches_training_forward(rng):
    # Inference projects the input a chunk of steps at a time; training all at once.
    model = lf.LSTM(3, 6, 2, bidirectional=True, dtype=np.float64, seed=2)
    x = rng.normal(size=(300, 2, 3))
    lengths = [300, 170]
    y1, (h1, c1) = model(x, lengths=lengths)
    y2, (h2, c2) = model.forward(x, lengths=lengths, train=True)
    np.testing.assert_allclose(y1, y2, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(h1, h2, rtol=1e-13, atol=1e-13)


def test_backward_uses_the_weights_of_its_forward(rng):
    model, x, state, _, dy, _ = random_case(rng, T=4, B=2, I=3, H=3)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    model.forward(x, state)
    for v in model.state_dict().values():
        v += 0.5  # an optimizer step between forward and backward
    model.backward(dy)
    fresh = lf.LSTM(3, 3, dtype=np.float64)
    fresh.load_state_dict(before)
    fresh.forward(x, state)
    fresh.backward(dy)
    for name in before:
        np.testing.assert_array_equal(model.grads[name], fresh.grads[name])


def test_dropout_masks_are_seeded_and_backward_uses_them(rng):
    """Finite differences through a training forward with dropout: two models with the same seed draw
    the same masks, so the loss is a fixed function of the parameters."""
    T, B, I, H = 4, 2, 3, 3
    x = rng.normal(size=(T, B, I))
    w = rng.normal(size=(T, B, 2 * H))

    def loss_and_grads(params=None):
        model = lf.LSTM(I, H, 3, bidirectional=True, dropout=0.5, dtype=np.float64, seed=11)
        if params is not None:
            model.load_state_dict(params)
        y, _ = model.forward(x, train=True)
        model.backward(w)
        return float(np.sum(y * w)), model

    _, model = loss_and_grads()
    y_eval, _ = model(x)
    y_train, _ = model.forward(x)
    y_train2, _ = model.forward(x)
    assert not np.allclose(y_eval, y_train)  # dropout applied in training only
    assert not np.allclose(y_train, y_train2)  # a fresh mask each forward
    params = {k: v.copy() for k, v in model.state_dict().items()}
    _, trained = loss_and_grads(params)
    for name in ["weight_ih_l0", "weight_hh_l1_reverse", "bias_ih_l2"]:
        idx = (0,) * params[name].ndim
        eps = 1e-6
        plus = {**params, name: params[name].copy()}
        minus = {**params, name: params[name].copy()}
        plus[name][idx] += eps
        minus[name][idx] -= eps
        fd = (loss_and_grads(plus)[0] - loss_and_grads(minus)[0]) / (2 * eps)
        np.testing.assert_allclose(trained.grads[name][idx], fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("threads", [1, 2])
def test_bidirectional_same_numbers_on_one_or_two_threads(rng, threads):
    # Big enough that the two directions run on two threads when allowed.
    model, x, state, lengths, dy, dstate = random_case(
        rng, T=40, B=8, I=32, H=48, num_layers=2, bidirectional=True, proj_size=16, with_lengths=True
    )
    with num_threads(threads):
        assert lf.get_num_threads() == threads
        run_and_compare(model, x, state, lengths, dy, dstate, np.float64)


def test_set_num_threads_checks_its_argument():
    with pytest.raises(ValueError, match=r"num_threads must be >= 1, got 0"):
        lf.set_num_threads(0)
    with pytest.raises(TypeError, match=r"num_threads must be an int, got float"):
        lf.set_num_threads(2.0)
    with pytest.raises(ValueError, match=r"num_threads must be <= 1024, got 100000000000000000000"):
        lf.set_num_threads(10**20)
    with pytest.raises(ValueError, match=r"num_threads must be in \[1, 1024\], got 1025"):
        _core.set_num_threads(1025)


@pytest.mark.parametrize(
    "kwargs", [dict(num_layers=2, bidirectional=True, proj_size=2, peephole=True), dict(bias=False, peephole=True)]
)
def test_core_gradients_against_finite_differences(rng, kwargs):
    """The C++ core's own gradients (not just the reference's) against central differences."""
    model, x, state, _, dy, dstate = random_case(rng, T=5, B=3, I=2, H=3, **kwargs)
    assert_core_gradients_match_finite_differences(model, x, state, np.array([5, 2, 4]), dy, dstate)


def assert_core_gradients_match_finite_differences(model, x, state, lengths, dy, dstate):
    """The model's backward against central differences of sum(y dy) + sum(h_n dh_n) + sum(c_n dc_n), for
    x, the state and every parameter."""

    def loss():
        y, (h_n, c_n) = model(x, state, lengths)
        return np.sum(y * dy) + np.sum(h_n * dstate[0]) + np.sum(c_n * dstate[1])

    model.forward(x, state, lengths)
    dx, (dh0, dc0) = model.backward(dy, dstate)
    checks = [("x", x, dx), ("h0", state[0], dh0), ("c0", state[1], dc0)]
    checks += [(name, p, model.grads[name]) for name, p in model.state_dict().items()]
    for name, array, grad in checks:
        np.testing.assert_allclose(grad, finite_difference(loss, array), rtol=1e-6, atol=1e-8, err_msg=name)


def test_isa_is_the_best_supported_or_forced_by_the_environment():
    code = "import lstm_fast as lf; print(lf.isa(), ','.join(lf.supported_isas()))"
    best = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert best[0] == best[1].split(",")[-1]  # the best is chosen by default
    for name in best[1].split(","):
        forced = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "LSTM_FAST_ISA": name},
        ).stdout.split()
        assert forced[0] == name
    bad = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "LSTM_FAST_ISA": "avx9000"}
    )
    assert bad.returncode != 0
    assert "LSTM_FAST_ISA must name an instruction set" in bad.stderr and "got 'avx9000'" in bad.stderr
    with pytest.raises(ValueError, match=r"isa must be one of .* got 'nope'"):
        _core.set_isa("nope")


def misaligned(a, offset_bytes):
    """A C-contiguous copy of `a` whose data starts `offset_bytes` past a 64-byte boundary."""
    raw = np.empty(a.nbytes + 128, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64 + offset_bytes
    out = raw[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [dict(B=1, H=3), dict(B=2, H=5), dict(B=3, H=13, proj_size=4, peephole=True)])
def test_results_do_not_depend_on_where_the_arrays_lie(rng, dtype, shape):
    """SIMD kernels must not round differently for data at another alignment (bitwise equality)."""
    model, x, state, lengths, dy, dstate = random_case(rng, T=6, I=7, num_layers=2, dtype=dtype, **shape)
    x, dy = x.astype(dtype), dy.astype(dtype)
    state = tuple(s.astype(dtype) for s in state)
    params = {k: v.copy() for k, v in model.state_dict().items()}
    results = []
    for offset in (0, 4, 8, 16, 32):
        model._params = {k: misaligned(v, offset) for k, v in params.items()}
        y, (h_n, c_n) = model.forward(misaligned(x, offset), tuple(misaligned(s, offset) for s in state))
        dx, (dh0, dc0) = model.backward(misaligned(dy, offset))
        results.append([y, h_n, c_n, dx, dh0, dc0] + [model.grads[k] for k in params])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B", [7, 13])
@pytest.mark.parametrize("kwargs", [dict(), dict(proj_size=131)])
@pytest.mark.parametrize("I", [5, 150])
def test_recurrent_products_deeper_than_one_block(rng, threads, dtype, B, kwargs, I):
    # The packed kernel (cpp/src/kernels/recurrent.hpp, used from 64 rows on) sums K in blocks of 128:
    # forward K = R and backward K = 4H both exceed it here, and with I = 150 so do the input
    # projection's K = I and the columns of dX = dZ W_ih (three full panel blocks and a narrow one).
    # B = 7 and 13 leave tails of 3, 4 and 1 rows after the 4- or 8-row tiles; with B = 13 the
    # N = 130 rows of the projection are a 128-row block and 2 rows; H = 150 ends each slice in a
    # partial panel block.
    model, x, state, lengths, dy, dstate = random_case(rng, T=10, B=B, I=I, H=150, dtype=dtype, **kwargs)
    with num_threads(threads):
        run_and_compare(model, x, state, lengths, dy, dstate, dtype)


@pytest.mark.parametrize("threads", [2, 3, 4])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(peephole=True, with_lengths=True), dict(bidirectional=True, num_layers=2, with_lengths=True)],
)
def test_batch_rows_shared_by_a_team_of_threads(rng, threads, dtype, kwargs):
    # With B >= 8 per member and small weights a team splits the batch rows instead of the hidden
    # units (the row split of cpp/src/plan/plan.cpp): member k runs rows k, k + team, ... with no barrier per
    # step. B = 41 is not a multiple of the team; lengths end rows at different steps; H = 44 ends
    # the gates in a partial packet. The outputs and the gradients of the input and the state must
    # be bitwise those of one thread (the same FMA chains), and all must match the reference.
    model, x, state, lengths, dy, dstate = random_case(rng, T=12, B=41, I=9, H=44, dtype=dtype, **kwargs)
    with num_threads(1):
        y1, (h1, c1) = model.forward(x, state, lengths)
        dx1, (dh1, dc1) = model.backward(dy, dstate)
        inference1, _ = model(x, state, lengths)
    with num_threads(threads):
        run_and_compare(model, x, state, lengths, dy, dstate, dtype)
        y, (h, c) = model.forward(x, state, lengths)
        dx, (dh, dc) = model.backward(dy, dstate)
        inference, _ = model(x, state, lengths)
    if not kwargs.get("bidirectional"):  # (with two directions a second one adds its dX on its own thread)
        for a, b in [(y, y1), (h, h1), (c, c1), (dx, dx1), (dh, dh1), (dc, dc1), (inference, inference1)]:
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("threads", [2, 4])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [dict(), dict(peephole=True, with_lengths=True, cell_clip=3.0)])
@pytest.mark.parametrize("B, H", [(8, 32), (18, 16)])
def test_a_small_cell_shares_its_rows_from_four_a_member(rng, threads, dtype, kwargs, B, H):
    # A cell too small for the unit split's barrier a step (H 32: 16 units a member) takes the row split
    # from 4 rows a member, and one whose steps are too small for any team (B 18, H 16: 18 * 64 * 16
    # multiply-adds a step) takes it when a member's 16 steps are not (cpp/src/plan/plan.cpp). T 70
    # ends in a partial segment. Outputs and gradients w.r.t. the input and state are bitwise those of
    # one thread, every call at a thread count gives the same bits, and all match the reference.
    model, x, state, lengths, dy, dstate = random_case(rng, T=70, B=B, I=2, H=H, dtype=dtype, **kwargs)
    with num_threads(1):
        one = [*model.forward(x, state, lengths), *model.backward(dy, dstate)]
    with num_threads(threads):
        run_and_compare(model, x, state, lengths, dy, dstate, dtype)
        runs = []
        for _ in range(2):
            runs.append([*model.forward(x, state, lengths), *model.backward(dy, dstate), dict(model.grads)])
    flat = lambda outs: [outs[0], *outs[1], outs[2], *outs[3]]  # noqa: E731
    for a, b in zip(flat(runs[0]), flat(one)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(flat(runs[0]) + list(runs[0][4].values()), flat(runs[1]) + list(runs[1][4].values())):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [dict(), dict(proj_size=12, peephole=True)])
def test_few_rows_shared_by_a_team_of_threads(rng, threads, dtype, kwargs):
    # Under 64 rows per call nothing is packed, and a team projects the columns of its own units
    # (cpp/src/plan/plan.cpp, cell/forward.cpp): N = 2 * 16 = 32 rows, but B * 4H * R and N * 4H * (I + R)
    # are big enough for a team; H = 100 ends a slice in a partial packet.
    model, x, state, lengths, dy, dstate = random_case(rng, T=2, B=16, I=9, H=100, dtype=dtype, **kwargs)
    with num_threads(threads):
        run_and_compare(model, x, state, lengths, dy, dstate, dtype)
        # The streaming step too: one row per call, a team for H = 100 with I = 400.
        stepper = lf.LSTM(400, 100, dtype=dtype, seed=3, **kwargs)
        xs = rng.normal(size=(3, 1, 400)).astype(dtype)
        expected, _ = stepper(xs)
        state_t = None
        for t in range(3):
            y_t, state_t = stepper.step(xs[t], state_t)
            assert_close("y_t", y_t, expected[t], dtype)


@pytest.mark.parametrize("threads", [1, 2, 4])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [dict(), dict(proj_size=12, peephole=True), dict(bidirectional=True, num_layers=2)])
def test_steps_shared_by_a_team_of_threads(rng, threads, dtype, kwargs):
    # Big enough per step (B * 4H * R >= 32k multiply-adds) that a team shares each step; H = 44 is
    # not a multiple of the SIMD width, so a slice ends in a partial packet. With 4 threads a
    # bidirectional layer runs two teams of two, one per direction.
    model, x, state, lengths, dy, dstate = random_case(
        rng, T=30, B=24, I=9, H=44, with_lengths=True, dtype=dtype, **kwargs
    )
    with num_threads(threads):
        run_and_compare(model, x, state, lengths, dy, dstate, dtype)
        y_inference, _ = model(x, state, lengths)  # inference projects a few steps at a time
        y_training, _ = model.forward(x, state, lengths)
        np.testing.assert_allclose(y_inference, y_training, rtol=1e-6, atol=1e-6)


def test_recycled_outputs_are_never_shared_between_live_arrays(rng):
    # Outputs of 64 KiB and more live in the library's recycled blocks (cpp/bindings/module.cpp):
    # a block goes back to the cache only when its array dies, and comes out for the next output.
    model = lf.LSTM(16, 64, dtype=np.float32, seed=0)
    x1 = rng.normal(size=(50, 32, 16)).astype(np.float32)
    x2 = rng.normal(size=(50, 32, 16)).astype(np.float32)
    y1, _ = model(x1)
    assert y1.nbytes >= 64 << 10
    kept = y1.copy()
    y2, _ = model(x2)
    assert not np.shares_memory(y1, y2)
    np.testing.assert_array_equal(y1, kept)  # the second call did not write into the first output
    view = y2[3:7]  # a view keeps its base's block alive
    expected_view = view.copy()
    del y1, y2
    for _ in range(3):  # reuses the freed blocks
        y3, _ = model(x1)
        np.testing.assert_array_equal(y3, kept)
    np.testing.assert_array_equal(view, expected_view)


def test_parameters_changed_in_place_or_replaced_are_seen_by_the_next_call(rng):
    # The model keeps the list of weight arrays it hands the core between calls (_lstm.py _weights).
    model = lf.LSTM(5, 7, dtype=np.float64, seed=0)
    x = rng.normal(size=(4, 3, 5))
    y0, _ = model(x)

    def fresh():  # the same parameters in a model that never ran
        other = lf.LSTM(5, 7, dtype=np.float64, seed=1)
        other.load_state_dict({k: v.copy() for k, v in model.state_dict().items()})
        return other(x)[0]

    model.state_dict()["weight_hh_l0"][...] *= 2.0  # in place, as an optimizer does
    y1, _ = model(x)
    assert not np.allclose(y1, y0)
    np.testing.assert_array_equal(y1, fresh())
    model.load_state_dict({k: v * 0.5 for k, v in model.state_dict().items()})
    y2, _ = model(x)
    np.testing.assert_array_equal(y2, fresh())
    y_t, _ = model.step(x[0], None)
    np.testing.assert_allclose(y_t, y2[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(proj_size=3, peephole=True), dict(peephole=True, layer_norm=True), dict(zoneout=0.3)],
    ids=["plain", "proj_peephole", "layer_norm", "zoneout"],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_weight_gradients_summed_over_blocks_of_steps(rng, dtype, kwargs, threads):
    # B = 64 rows a step: the backward sums the weight gradients over blocks of 16 steps (plan.hpp's
    # kGradientBlockRows), the last partial; lengths make the blocks' rows unequal, both directions
    # visit them in opposite orders, and the layers and teams split them.
    if kwargs.get("layer_norm") and dtype == np.float32:
        pytest.skip("layer norm at T 37: gradients of scale 2,000, float32 within 9e-5 of it before and after blocks")
    model, x, state, lengths, dy, dstate = random_case(
        rng, T=37, B=64, I=8, H=24, num_layers=2, bidirectional=True, with_lengths=True, dtype=dtype, **kwargs
    )
    with num_threads(threads):
        run_and_compare(model, x, state, lengths, dy, dstate, dtype)
