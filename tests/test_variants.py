"""The cell variants the library runs in its fused kernels: cell_clip (ONNX's clip) and coupled_gates
(ONNX's input_forget). Against the reference (float64 1e-12, float32 1e-5) across layers, directions,
projection, peepholes, lengths, dtypes, thread teams and instruction sets; the core's own gradients
against finite differences; frozen models of every precision; files; the torch module; ONNX Runtime
through to_onnx; and bad arguments."""

import itertools

import numpy as np
import pytest
from conftest import TOLERANCE, finite_difference, num_threads, random_case, reference_forward
from test_core import assert_core_gradients_match_finite_differences, run_and_compare, zoneout_masks
from test_untrusted_files import _save_with

import lstm_fast as lf
from lstm_fast import _core
from lstm_fast import reference as ref
from lstm_fast._lstm import zoneout_masks_of

VARIANTS = [dict(cell_clip=0.5), dict(coupled_gates=True), dict(cell_clip=0.8, coupled_gates=True)]
VARIANT_IDS = ["clip", "coupled", "clip_coupled"]
DTYPES = (np.float64, np.float32)


def _case(rng, variant, dtype=np.float64, scale=2.5, **kwargs):
    """random_case with the variant, its weights scaled so that many pre-activations pass the clip."""
    model, *rest = random_case(rng, dtype=dtype, **variant, **kwargs)
    model.load_state_dict({name: value * scale for name, value in model.state_dict().items()})
    return (model, *rest)


FEATURES = list(itertools.product([1, 2], [False, True], [0, 2], [False, True], [False, True]))


def _features(num_layers, bidirectional, proj_size, peephole, with_lengths, I=3, H=5):
    """_case's arguments for one entry of FEATURES, at T 7, B 4 (and I 3, H 5 unless given)."""
    return dict(
        T=7,
        B=4,
        I=I,
        H=H,
        num_layers=num_layers,
        bidirectional=bidirectional,
        proj_size=proj_size,
        peephole=peephole,
        with_lengths=with_lengths,
    )


def _assert_inference_matches(model, x, state, lengths, dtype):
    """The model's inference (y, h_n, c_n) against the reference's."""
    y, (h, c) = model(x, state, lengths)
    y_ref, (h_ref, c_ref), _ = reference_forward(model, x, state, lengths)
    for name, got, want in (("y", y, y_ref), ("h_n", h, h_ref), ("c_n", c, c_ref)):
        np.testing.assert_allclose(got, want, **TOLERANCE[dtype], err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("num_layers,bidirectional,proj_size,peephole,with_lengths", FEATURES)
def test_matches_the_reference(rng, variant, dtype, num_layers, bidirectional, proj_size, peephole, with_lengths):
    case = _case(rng, variant, dtype, **_features(num_layers, bidirectional, proj_size, peephole, with_lengths))
    run_and_compare(*case, dtype)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_the_variant_changes_the_outputs_and_the_clip_binds(rng, variant):
    # The comparisons above could pass with the variant ignored by both sides: it must matter here.
    model, x, state, *_ = _case(rng, variant, T=7, B=4, I=3, H=5, peephole=True)
    plain = lf.LSTM(3, 5, peephole=True, dtype=np.float64)
    plain.load_state_dict(model.state_dict())
    assert np.abs(model(x, state)[0] - plain(x, state)[0]).max() > 0.05


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_every_instruction_set(rng, isa, variant):
    for dtype in DTYPES:
        model, x, state, lengths, dy, dstate = _case(
            rng, variant, dtype, T=6, B=5, I=4, H=37, peephole=True, with_lengths=True
        )
        run_and_compare(model, x, state, lengths, dy, dstate, dtype)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("B,H", [(41, 44), (3, 96)], ids=["row_split", "unit_split"])
def test_teams_of_threads(rng, variant, B, H):
    model, x, state, lengths, dy, dstate = _case(
        rng, variant, np.float32, scale=1.5, T=9, B=B, I=7, H=H, peephole=True, with_lengths=True
    )
    results = []
    for threads in (1, 2):
        with num_threads(threads):
            y, (h, c) = model.forward(x, state, lengths)
            dx, (dh, dc) = model.backward(dy, dstate)
            results.append([y, h, c, dx, dh, dc])  # (weight gradients: summed in another order)
            run_and_compare(model, x, state, lengths, dy, dstate, np.float32)
    if B > H:  # the row split gives each row the FMA chains of one thread (test_core.py); the unit split
        for a, b in zip(*results):  # sums the input gradient over its members' columns in another order
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_core_gradients_against_finite_differences(rng, variant):
    model, x, state, _, dy, dstate = _case(rng, variant, T=5, B=3, I=2, H=3, num_layers=2, peephole=True)
    assert_core_gradients_match_finite_differences(model, x, state, np.array([5, 2, 4]), dy, dstate)
    if variant.get("coupled_gates"):  # the forget rows are not read
        H = model.hidden_size
        assert not model.grads["weight_ih_l0"][H : 2 * H].any() and not model.grads["bias_hh_l1"][H : 2 * H].any()
        assert not model.grads["weight_peep_l0"][1].any()


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_frozen_models_match_the_reference_of_their_precision(rng, tmp_path, variant, precision):
    from test_model import _assert_within_contract

    lstm, x, state, lengths, *_ = _case(rng, variant, np.float32, scale=1.5, T=6, B=20, I=6, H=40, peephole=True)
    model = lstm.freeze(precision)
    reference = "fp64" if precision == "fp32" else precision
    y_ref, (h_ref, c_ref), _ = reference_forward(lstm, x, state, precision=reference)
    y, (h, c) = model(x, state)
    for got, want in ((y, y_ref), (h, h_ref), (c, c_ref)):
        _assert_within_contract(got, want, precision)
    steps, step_state = [], state
    for t in range(x.shape[0]):  # the step kernels: the sequence's numbers
        y_t, step_state = model.step(x[t], step_state)
        steps.append(y_t)
    np.testing.assert_allclose(np.stack(steps), y, rtol=0, atol=1e-6)
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = lf.load_model(path)
    assert (loaded.cell_clip, loaded.coupled_gates) == (lstm.cell_clip, lstm.coupled_gates)
    np.testing.assert_array_equal(loaded(x, state)[0], y)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_saved_and_loaded_with_the_variant(rng, tmp_path, variant):
    model, x, state, *_ = _case(rng, variant, T=4, B=2, I=3, H=5, num_layers=2)
    path = tmp_path / "lstm.safetensors"
    model.save(path)
    loaded = lf.load(path)
    assert (loaded.cell_clip, loaded.coupled_gates) == (model.cell_clip, model.coupled_gates)
    np.testing.assert_array_equal(loaded(x, state)[0], model(x, state)[0])
    assert "cell_clip" in repr(model) or "coupled_gates" in repr(model)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_onnx_runtime_runs_the_export(rng, tmp_path, variant):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model, x, state, lengths, *_ = _case(
        rng, variant, np.float32, scale=1.5, T=6, B=3, I=4, H=5, num_layers=2, bidirectional=True, peephole=True
    )
    path = tmp_path / "lstm.onnx"
    model.to_onnx(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"x": x.astype(np.float32)}
    names = [i.name for i in session.get_inputs()]
    if "h0" in names:
        feeds.update(h0=state[0].astype(np.float32), c0=state[1].astype(np.float32))
    y_ort = session.run(None, feeds)[0]
    y = model(x, state if "h0" in names else None)[0]
    np.testing.assert_allclose(y_ort, y, **TOLERANCE[np.float32])


def _assert_module_matches(module, xt, y, y_ref, dx_ref, grads):
    """A torch module's outputs y of xt, and after y.sum().backward() the gradients of xt and of its
    parameters, against y_ref, dx_ref and grads (by parameter name) at 1e-12."""
    np.testing.assert_allclose(y.detach().numpy(), y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xt.grad.numpy(), dx_ref, rtol=1e-12, atol=1e-12)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), grads[name], rtol=1e-12, atol=1e-12, err_msg=name)


def test_the_torch_module_takes_the_variants(rng):
    torch = pytest.importorskip("torch")
    from lstm_fast.torch import LSTM

    module = LSTM(3, 5, 2, dtype=torch.float64, cell_clip=0.5, coupled_gates=True, peephole=True)
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(2.5)
    model = lf.LSTM(3, 5, 2, dtype=np.float64, cell_clip=0.5, coupled_gates=True, peephole=True)
    model.load_state_dict({name: p.detach().numpy() for name, p in module.state_dict().items()})
    x = rng.normal(size=(6, 2, 3))
    xt = torch.tensor(x, requires_grad=True)
    y, _ = module(xt)
    y.sum().backward()
    y_ref, _ = model.forward(x)
    dx_ref, _ = model.backward(np.ones_like(y_ref))
    _assert_module_matches(module, xt, y, y_ref, dx_ref, model.grads)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(cell_clip=0), ValueError, "cell_clip must be None or a finite number > 0, got 0.0"),
        (dict(cell_clip=-1.5), ValueError, "cell_clip must be None or a finite number > 0, got -1.5"),
        (dict(cell_clip=float("inf")), ValueError, "cell_clip must be finite"),
        (dict(cell_clip=float("nan")), ValueError, "cell_clip must be finite"),
        (dict(cell_clip="1"), TypeError, "cell_clip must be a float"),
        (dict(cell_clip=True), TypeError, "cell_clip must be a float"),
        (dict(coupled_gates="yes"), TypeError, "coupled_gates"),
    ],
)
def test_bad_variant_arguments_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        lf.LSTM(3, 4, **kwargs)


def test_keras_has_no_variants():
    with pytest.raises(ValueError, match="no cell_clip, coupled_gates, zoneout or layer norm"):
        lf.LSTM(3, 4, cell_clip=1.0).to_keras_weights()


@pytest.mark.parametrize(
    "value, message", [(0, "must be null or a finite number > 0"), (-2, "must be null"), ("a", "must be null")]
)
def test_model_files_with_a_bad_cell_clip_are_refused(tmp_path, value, message):
    model, path = lf.LSTM(3, 4, cell_clip=1.0), tmp_path / "lstm.safetensors"
    _save_with(path, model, config={**model.config(), "cell_clip": value})
    with pytest.raises(ValueError, match=message):
        lf.load_model(path)


# --- recurrent dropout (training only; masks from the model's seeded generator) -----------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", [{}, VARIANTS[2]], ids=["alone", "clip_coupled"])
@pytest.mark.parametrize("num_layers,bidirectional,proj_size,peephole,with_lengths", FEATURES)
def test_recurrent_dropout_matches_the_reference(
    rng, dtype, variant, num_layers, bidirectional, proj_size, peephole, with_lengths
):
    features = _features(num_layers, bidirectional, proj_size, peephole, with_lengths)
    model, x, state, lengths, dy, dstate = _case(rng, dict(variant, recurrent_dropout=0.4), dtype, **features)
    masks = run_and_compare(model, x, state, lengths, dy, dstate, dtype)
    assert masks.shape == state[0].shape and set(np.unique(masks)) <= {0.0, np.float64(dtype(1 / 0.6))}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("B,H", [(41, 44), (3, 96)], ids=["row_split", "unit_split"])
def test_recurrent_dropout_in_teams_of_threads(rng, threads, B, H):
    for dtype in DTYPES:
        model, x, state, lengths, dy, dstate = _case(
            rng, dict(recurrent_dropout=0.3), dtype, scale=1.0, T=9, B=B, I=7, H=H, peephole=True, with_lengths=True
        )
        with num_threads(threads):
            run_and_compare(model, x, state, lengths, dy, dstate, dtype)


def _assert_training_gradients_match_finite_differences(model, x, state, lengths, dy, dstate, masks_of):
    """The core's gradients of a training forward against central differences of training forwards,
    the masks fixed by seeding the model's generator before each; masks_of(model, run) are the masks drawn,
    each of which must have both zeros and ones."""

    def forward():
        model._rng = np.random.default_rng(11)
        return model.forward(x, state, lengths)

    def loss():
        y, (h_n, c_n) = forward()
        return np.sum(y * dy) + np.sum(h_n * dstate[0]) + np.sum(c_n * dstate[1])

    forward()
    for mask in masks_of(model, model._training_run):
        assert 0 < np.count_nonzero(mask) < mask.size
    dx, (dh0, dc0) = model.backward(dy, dstate)
    checks = [("x", x, dx), ("h0", state[0], dh0), ("c0", state[1], dc0)]
    checks += [(name, p, model.grads[name]) for name, p in model.state_dict().items()]
    for name, array, grad in checks:
        np.testing.assert_allclose(grad, finite_difference(loss, array), rtol=1e-6, atol=1e-8, err_msg=name)


def test_recurrent_dropout_core_gradients_against_finite_differences(rng):
    model, x, state, _, dy, dstate = _case(
        rng, dict(recurrent_dropout=0.5), T=5, B=3, I=2, H=3, num_layers=2, peephole=True, bidirectional=True
    )
    _assert_training_gradients_match_finite_differences(
        model, x, state, np.array([5, 2, 4]), dy, dstate, lambda model, run: [run.recurrent_masks]
    )


def test_recurrent_dropout_masks_are_seeded_fresh_and_off_in_inference(rng):
    x = rng.normal(size=(6, 50, 3))
    a, b = (lf.LSTM(3, 8, recurrent_dropout=0.25, seed=5) for _ in range(2))
    a.forward(x)
    b.forward(x)
    first = a._training_run.recurrent_masks
    np.testing.assert_array_equal(first, b._training_run.recurrent_masks)  # seeded
    a.forward(x)
    assert not np.array_equal(first, a._training_run.recurrent_masks)  # fresh at every forward
    assert abs(np.count_nonzero(first) / first.size - 0.75) < 0.05
    plain = lf.LSTM(3, 8, seed=5)
    np.testing.assert_array_equal(a(x)[0], plain(x)[0])  # inference: no dropout
    np.testing.assert_array_equal(a.freeze("fp32")(x)[0], plain(x)[0])


def test_recurrent_dropout_in_the_torch_module(rng):
    torch = pytest.importorskip("torch")
    from lstm_fast.torch import LSTM

    module = LSTM(3, 5, 1, dtype=torch.float64, recurrent_dropout=0.4, bidirectional=True)
    model = lf.LSTM(3, 5, 1, dtype=np.float64, bidirectional=True)
    model.load_state_dict({name: p.detach().numpy() for name, p in module.state_dict().items()})
    x = rng.normal(size=(6, 4, 3))
    torch.manual_seed(3)
    xt = torch.tensor(x, requires_grad=True)
    y, _ = module(xt)
    y.sum().backward()
    torch.manual_seed(3)  # the module's draw, replayed
    masks = torch.empty((2, 4, 5), dtype=torch.float64).bernoulli_(0.6).div_(0.6).numpy()
    y_ref, _, cache = reference_forward(model, x, recurrent_masks=list(masks))
    dx_ref, _, grads = ref.backward(np.ones_like(y_ref), cache)
    _assert_module_matches(module, xt, y, y_ref, dx_ref, grads)
    module.eval()
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.tensor(x))[0].numpy(), model(x)[0], rtol=1e-12, atol=1e-12)


def test_recurrent_dropout_is_saved_and_checked(tmp_path):
    model = lf.LSTM(3, 4, recurrent_dropout=0.3)
    model.save(tmp_path / "m.safetensors")
    assert lf.load(tmp_path / "m.safetensors").recurrent_dropout == 0.3
    for bad, error in ((1.0, ValueError), (-0.1, ValueError), ("0.2", TypeError)):
        with pytest.raises(error, match="recurrent_dropout"):
            lf.LSTM(3, 4, recurrent_dropout=bad)


# --- zoneout (training: fresh 0/1 masks from the model's seeded generator; inference: d = z) ------------

ZONEOUTS = [dict(zoneout=0.3), dict(zoneout=(0.5, 0.2)), dict(zoneout=(0.4, 0.3), cell_clip=0.8, coupled_gates=True)]
ZONEOUT_IDS = ["zoneout", "pair", "clip_coupled"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", ZONEOUTS, ids=ZONEOUT_IDS)
@pytest.mark.parametrize("num_layers,bidirectional,proj_size,peephole,with_lengths", FEATURES)
def test_zoneout_matches_the_reference(
    rng, dtype, variant, num_layers, bidirectional, proj_size, peephole, with_lengths
):
    features = _features(num_layers, bidirectional, proj_size, peephole, with_lengths)
    model, x, state, lengths, dy, dstate = _case(rng, variant, dtype, scale=1.5, **features)
    run_and_compare(model, x, state, lengths, dy, dstate, dtype)
    _assert_inference_matches(model, x, state, lengths, dtype)  # inference: the expectation, d = z


def test_zoneout_with_recurrent_dropout_and_inter_layer_dropout(rng):
    variant = dict(zoneout=(0.3, 0.4), recurrent_dropout=0.3, dropout=0.2)
    for dtype in DTYPES:
        model, x, state, lengths, dy, dstate = _case(
            rng, variant, dtype, scale=1.0, T=6, B=4, I=3, H=5, num_layers=2, bidirectional=True, with_lengths=True
        )
        y, _ = model.forward(x, state, lengths)
        run = model._training_run
        dx, _ = model.backward(dy, dstate)
        assert run.zoneout_seed is not None and run.recurrent_masks is not None
        assert not np.array_equal(y, model.forward(x, state, lengths)[0])  # masks fresh at every forward


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("B,H,proj_size", [(41, 44, 0), (3, 96, 0), (5, 96, 40)], ids=["row", "unit", "proj"])
def test_zoneout_in_teams_of_threads(rng, threads, B, H, proj_size):
    for dtype in DTYPES:
        model, x, state, lengths, dy, dstate = _case(
            rng,
            dict(zoneout=(0.3, 0.6)),
            dtype,
            scale=1.0,
            T=9,
            B=B,
            I=7,
            H=H,
            proj_size=proj_size,
            peephole=True,
            with_lengths=True,
        )
        with num_threads(threads):
            run_and_compare(model, x, state, lengths, dy, dstate, dtype)
            _assert_inference_matches(model, x, state, lengths, dtype)


def test_zoneout_every_instruction_set(rng, isa):
    for dtype in DTYPES:
        model, x, state, lengths, dy, dstate = _case(
            rng, dict(zoneout=(0.3, 0.5)), dtype, scale=1.5, T=6, B=5, I=4, H=37, peephole=True, with_lengths=True
        )
        run_and_compare(model, x, state, lengths, dy, dstate, dtype)


def test_zoneout_core_gradients_against_finite_differences(rng):
    # The masks fixed by seeding the model's generator before every training forward.
    model, x, state, _, dy, dstate = _case(
        rng, dict(zoneout=(0.4, 0.5)), T=5, B=3, I=2, H=3, num_layers=2, peephole=True, bidirectional=True
    )
    _assert_training_gradients_match_finite_differences(model, x, state, np.array([5, 2, 4]), dy, dstate, zoneout_masks)


def test_zoneout_masks_are_seeded_fresh_and_at_the_rate(rng):
    x = rng.normal(size=(6, 50, 3))
    a, b = (lf.LSTM(3, 8, zoneout=(0.25, 0.6), seed=5) for _ in range(2))
    a.forward(x)
    b.forward(x)
    first = zoneout_masks(a, a._training_run)
    for one, other in zip(first, zoneout_masks(b, b._training_run)):
        np.testing.assert_array_equal(one, other)  # seeded
    a.forward(x)
    assert not np.array_equal(first[0], zoneout_masks(a, a._training_run)[0])  # fresh at every forward
    assert abs(first[0].mean() - 0.25) < 0.03 and abs(first[1].mean() - 0.6) < 0.03
    assert first[0].shape == (1, 6 * 50, 8) and set(np.unique(first[1])) == {0.0, 1.0}
    plain = lf.LSTM(3, 8, seed=5)
    assert np.abs(a(x)[0] - plain(x)[0]).max() > 0.01  # inference keeps the expectation


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("B,H", [(20, 40), (41, 44)], ids=["units", "rows"])
def test_zoneout_in_frozen_models(rng, tmp_path, precision, B, H):
    from test_model import _assert_within_contract

    lstm, x, state, *_ = _case(
        rng, dict(zoneout=(0.3, 0.5)), np.float32, scale=1.5, T=6, B=B, I=6, H=H, num_layers=2, peephole=True
    )
    model = lstm.freeze(precision)
    reference = "fp64" if precision == "fp32" else precision
    y_ref, (h_ref, c_ref), _ = reference_forward(lstm, x, state, precision=reference)
    for threads in (1, 2):
        with num_threads(threads):
            y, (h, c) = model(x, state)
        for got, want in ((y, y_ref), (h, h_ref), (c, c_ref)):
            _assert_within_contract(got, want, precision)
    steps, step_state = [], state
    for t in range(x.shape[0]):
        y_t, step_state = model.step(x[t], step_state)
        steps.append(y_t)
    np.testing.assert_allclose(np.stack(steps), y, rtol=0, atol=1e-6)
    model.save(tmp_path / "model.safetensors")
    loaded = lf.load_model(tmp_path / "model.safetensors")
    assert loaded.zoneout == (0.3, 0.5)
    np.testing.assert_array_equal(loaded(x, state)[0], y)


def test_zoneout_in_the_torch_module(rng):
    torch = pytest.importorskip("torch")
    from lstm_fast.torch import LSTM

    module = LSTM(3, 5, 2, dtype=torch.float64, zoneout=(0.3, 0.5), bidirectional=True, peephole=True)
    model = lf.LSTM(3, 5, 2, dtype=np.float64, zoneout=(0.3, 0.5), bidirectional=True, peephole=True)
    model.load_state_dict({name: p.detach().numpy() for name, p in module.state_dict().items()})
    x = rng.normal(size=(6, 4, 3))
    torch.manual_seed(3)
    xt = torch.tensor(x, requires_grad=True)
    y, _ = module(xt)
    y.sum().backward()
    torch.manual_seed(3)  # the module's seed, replayed (packed rows of a dense batch: time-major)
    seed = int(torch.randint(0, 2**62, (1,)).item())
    masks = zoneout_masks_of(model._lstm_config, seed, 24)
    pairs = [(d_h.reshape(6, 4, 5), d_c.reshape(6, 4, 5)) for d_h, d_c in zip(*masks)]
    y_ref, _, cache = reference_forward(model, x, zoneout_masks=pairs)
    dx_ref, _, grads = ref.backward(np.ones_like(y_ref), cache)
    _assert_module_matches(module, xt, y, y_ref, dx_ref, grads)
    module.eval()
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.tensor(x))[0].numpy(), model(x)[0], rtol=1e-12, atol=1e-12)
    module.train()
    with torch.no_grad():  # masks in train mode without gradients too
        assert module(torch.tensor(x))[0].shape == (6, 4, 10)


def test_zoneout_is_saved_and_checked(tmp_path):
    model = lf.LSTM(3, 4, zoneout=(0.1, 0.2))
    model.save(tmp_path / "m.safetensors")
    assert lf.load(tmp_path / "m.safetensors").zoneout == (0.1, 0.2)
    assert "zoneout=(0.1, 0.2)" in repr(model)
    bad = [(1.0, ValueError), (-0.1, ValueError), ("0.2", TypeError), ((0.1,), ValueError), ((0.1, 1.5), ValueError)]
    for value, error in bad:
        with pytest.raises(error, match="zoneout"):
            lf.LSTM(3, 4, zoneout=value)
    with pytest.raises(ValueError, match="no zoneout"):
        model.to_onnx(tmp_path / "m.onnx")


@pytest.mark.parametrize("value, message", [("a", "must be a number or a pair"), ([0.1, 1.0], "zoneout_c")])
def test_model_files_with_a_bad_zoneout_are_refused(tmp_path, value, message):
    model, path = lf.LSTM(3, 4, zoneout=0.25), tmp_path / "lstm.safetensors"
    _save_with(path, model, config={**model.config(), "zoneout": value})
    with pytest.raises(ValueError, match=message):
        lf.load_model(path)


def test_zoneout_masks_are_independent_and_any_rows_redraw_alike():
    # The core's generator: rows drawn again alone are the same; neighbours, rows and cells uncorrelated.
    d_h, d_c = _core.zoneout_masks(7, 2, 4000, 64, 128, 0.3, 0.5)
    again_h, again_c = _core.zoneout_masks(7, 2, 10, 64, 128, 0.3, 0.5)
    np.testing.assert_array_equal(again_h, d_h[:, :10])
    np.testing.assert_array_equal(again_c, d_c[:, :10])
    assert abs(d_h.mean() - 0.3) < 0.005 and abs(d_c.mean() - 0.5) < 0.005
    for a, b in (
        (d_c[0, :, :-1], d_c[0, :, 1:]),
        (d_c[0, :-1], d_c[0, 1:]),
        (d_c[0], d_c[1]),
        (d_h[0], d_c[0, :, :64]),
    ):
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.01
    assert not np.array_equal(_core.zoneout_masks(8, 1, 10, 64, 128, 0.3, 0.5)[1], d_c[:1, :10])  # the seed matters
