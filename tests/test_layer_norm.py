"""The layer-normalised LSTM (Ba, Kiros & Hinton 2016) in the fused passes: against the reference (float64
1e-12, float32 5e-5 of each array's scale: conftest.TOLERANCE_LAYER_NORM) across layers, directions,
projection, peepholes, lengths and the other variants; teams and splits; every instruction set; the
core's gradients against finite differences; frozen models of every precision; files; the torch module;
and what refuses it."""

import itertools

import numpy as np
import pytest
from conftest import num_threads, random_case, reference_forward
from test_core import assert_core_gradients_match_finite_differences, run_and_compare, zoneout_masks
from test_untrusted_files import _save_with
from test_variants import DTYPES, FEATURES, _assert_inference_matches, _assert_module_matches, _features

import lstm_fast as lf

VARIANTS = [
    dict(layer_norm=True),
    dict(layer_norm=True, cell_clip=0.8, coupled_gates=True),
    dict(layer_norm=True, zoneout=(0.3, 0.4), recurrent_dropout=0.3),
    dict(layer_norm=True, zoneout=(0.3, 0.4), recurrent_dropout=0.3, cell_clip=0.8, coupled_gates=True),
]
VARIANT_IDS = ["alone", "clip_coupled", "zoneout_dropout", "all_five"]

# bf16 and int8 against the reference of their precision: test_model.py's contract (an operand that
# rounds the other way moves its row by one step of that operand from then on), with the step's move
# amplified by layer norm's 1 / std: three quarters of the outputs within 1e-5, all within 2e-2.
LN_FLIP = 2e-2


def _case(rng, variant, dtype=np.float64, **kwargs):
    """random_case with the variant, its layer norm gains and biases drawn around 1 and 0."""
    model, *rest = random_case(rng, dtype=dtype, **variant, **kwargs)
    model.load_state_dict(
        {
            name: value + rng.normal(scale=0.3, size=value.shape).astype(dtype) if name.startswith("ln_") else value
            for name, value in model.state_dict().items()
        }
    )
    return (model, *rest)


def _ln_features(num_layers, bidirectional, proj_size, peephole, with_lengths, dtype):
    """test_variants' shapes of a FEATURES case; float32 at I 8, H 16, R 8. LN's statistics over 5 cell
    values can be small enough (std 0.07) that float32 rounding of the parameters alone moves the
    gradients by 3e-5 of their scale (measured: the float64 kernels on parameters perturbed by 6e-8),
    which no float32 arithmetic can undercut; over 16 units and 64 gate values they sit within the 1e-5
    contract. So do the projection and the input: LN over the 4H values of W_hh h_{t-1} with h_{t-1} of 2
    numbers, or of W_ih x_t with x_t of 3, is as ill-conditioned."""
    if dtype == np.float64:
        return _features(num_layers, bidirectional, proj_size, peephole, with_lengths)
    return _features(num_layers, bidirectional, proj_size * 4, peephole, with_lengths, I=8, H=16)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("num_layers,bidirectional,proj_size,peephole,with_lengths", FEATURES)
def test_matches_the_reference(rng, dtype, variant, num_layers, bidirectional, proj_size, peephole, with_lengths):
    features = _ln_features(num_layers, bidirectional, proj_size, peephole, with_lengths, dtype)
    model, x, state, lengths, dy, dstate = _case(rng, variant, dtype, **features)
    run_and_compare(model, x, state, lengths, dy, dstate, dtype)
    _assert_inference_matches(model, x, state, lengths, dtype)


def test_parameters_names_shapes_and_initialisation():
    model = lf.LSTM(3, 5, 2, bidirectional=True, layer_norm=True, seed=0)
    params = model.state_dict()
    for k, sfx in itertools.product((0, 1), ("", "_reverse")):
        for part, size in (("ih", 20), ("hh", 20), ("cell", 5)):
            np.testing.assert_array_equal(params[f"ln_{part}_weight_l{k}{sfx}"], np.ones(size, np.float32))
            np.testing.assert_array_equal(params[f"ln_{part}_bias_l{k}{sfx}"], np.zeros(size, np.float32))
    assert len(params) == 4 * (4 + 6)
    assert "layer_norm=True" in repr(model)
    plain = lf.LSTM(3, 5, 2, bidirectional=True, seed=0)
    x = np.random.default_rng(0).normal(size=(4, 2, 3))
    assert np.abs(model(x)[0] - plain(x)[0]).max() > 0.05  # layer norm changes the outputs


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("B,H,proj_size", [(41, 44, 0), (3, 96, 0), (5, 96, 40)], ids=["row", "unit", "proj"])
def test_teams_of_threads(rng, threads, B, H, proj_size):
    for dtype in DTYPES:
        model, x, state, lengths, dy, dstate = _case(
            rng, dict(layer_norm=True), dtype, T=9, B=B, I=7, H=H, proj_size=proj_size, peephole=True, with_lengths=True
        )
        with num_threads(threads):
            run_and_compare(model, x, state, lengths, dy, dstate, dtype)
            _assert_inference_matches(model, x, state, lengths, dtype)


def test_the_row_split_and_a_team_of_one_give_the_same_bits(rng):
    # Layer norm runs with one thread a cell, or split by rows: each row's operations are the same.
    model, x, state, lengths, dy, dstate = _case(
        rng, dict(layer_norm=True), np.float32, T=9, B=41, I=7, H=44, peephole=True, with_lengths=True
    )
    results = []
    for threads in (1, 2):
        with num_threads(threads):
            y, (h, c) = model.forward(x, state, lengths)
            dx, (dh, dc) = model.backward(dy, dstate)
            results.append([y, h, c, dx, dh, dc])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_every_instruction_set(rng, isa):
    for dtype in DTYPES:
        model, x, state, lengths, dy, dstate = _case(
            rng, dict(layer_norm=True, zoneout=0.2), dtype, T=6, B=5, I=4, H=37, peephole=True, with_lengths=True
        )
        run_and_compare(model, x, state, lengths, dy, dstate, dtype)


@pytest.mark.parametrize("proj_size,bidirectional", [(0, True), (2, False)])
def test_core_gradients_against_finite_differences(rng, proj_size, bidirectional):
    model, x, state, _, dy, dstate = _case(
        rng,
        dict(layer_norm=True),
        T=5,
        B=3,
        I=2,
        H=3,
        num_layers=2,
        peephole=True,
        proj_size=proj_size,
        bidirectional=bidirectional,
    )
    assert_core_gradients_match_finite_differences(model, x, state, np.array([5, 2, 4]), dy, dstate)


def test_all_five_variants_core_gradients_against_finite_differences(rng):
    # Training forwards with the zoneout and recurrent dropout masks fixed by seeding the generator.
    from test_variants import _assert_training_gradients_match_finite_differences

    model, x, state, _, dy, dstate = _case(
        rng, VARIANTS[3], T=5, B=3, I=2, H=3, num_layers=2, peephole=True, bidirectional=True
    )
    _assert_training_gradients_match_finite_differences(
        model,
        x,
        state,
        np.array([5, 2, 4]),
        dy,
        dstate,
        lambda model, run: [run.recurrent_masks, *zoneout_masks(model, run)],
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("B,H,proj_size", [(20, 40, 0), (41, 44, 0), (5, 40, 8)], ids=["units", "rows", "proj"])
def test_frozen_models_match_the_reference_of_their_precision(rng, tmp_path, precision, B, H, proj_size):
    from test_model import CONTRACT

    lstm, x, state, *_ = _case(
        rng,
        dict(layer_norm=True, zoneout=(0.2, 0.3)),
        np.float32,
        T=6,
        B=B,
        I=6,
        H=H,
        num_layers=2,
        peephole=True,
        proj_size=proj_size,
    )
    model = lstm.freeze(precision)
    y_ref, (h_ref, c_ref), _ = reference_forward(lstm, x, state, precision="fp64" if precision == "fp32" else precision)
    for threads in (1, 2):
        with num_threads(threads):
            y, (h, c) = model(x, state)
        for got, want in ((y, y_ref), (h, h_ref), (c, c_ref)):
            error = np.abs(got - want)
            if precision == "fp32":
                assert error.max() <= CONTRACT, error.max()
            else:
                assert (error <= CONTRACT).mean() >= 0.75 and error.max() <= LN_FLIP, error.max()
    steps, step_state = [], state
    for t in range(x.shape[0]):
        y_t, step_state = model.step(x[t], step_state)
        steps.append(y_t)
    np.testing.assert_allclose(np.stack(steps), y, rtol=0, atol=1e-5)
    model.save(tmp_path / "model.safetensors")
    loaded = lf.load_model(tmp_path / "model.safetensors")
    assert loaded.layer_norm
    np.testing.assert_array_equal(loaded(x, state)[0], y)


def test_streams_run_a_layer_norm_model(rng):
    lstm, x, *_ = _case(rng, dict(layer_norm=True), np.float32, T=5, B=3, I=4, H=24, num_layers=2)
    model = lstm.freeze("fp32")
    streams = lf.Streams(model)
    ids = [streams.open() for _ in range(3)]
    ys = np.stack([streams.step(ids, x[t]) for t in range(5)])
    np.testing.assert_allclose(ys, lstm(x)[0], rtol=0, atol=1e-5)


def test_saved_loaded_and_refused_where_it_cannot_go(rng, tmp_path):
    model, x, state, *_ = _case(rng, dict(layer_norm=True), T=4, B=2, I=3, H=5, num_layers=2, bidirectional=True)
    model.save(tmp_path / "lstm.safetensors")
    loaded = lf.load(tmp_path / "lstm.safetensors")
    assert loaded.layer_norm and list(loaded.state_dict()) == list(model.state_dict())
    np.testing.assert_array_equal(loaded(x, state)[0], model(x, state)[0])
    with pytest.raises(ValueError, match="no zoneout or layer norm"):
        model.to_onnx(tmp_path / "lstm.onnx")
    with pytest.raises(ValueError, match="layer norm"):
        lf.LSTM(3, 4, layer_norm=True).to_keras_weights()
    with pytest.raises(TypeError, match="layer_norm"):
        lf.LSTM(3, 4, layer_norm="yes")


def test_a_file_missing_a_layer_norm_tensor_is_refused(tmp_path):
    model, path = lf.LSTM(3, 4, layer_norm=True), tmp_path / "lstm.safetensors"
    _save_with(path, model, tensors={k: v for k, v in model.state_dict().items() if k != "ln_cell_bias_l0"})
    for load in (lf.load, lf.load_model):
        with pytest.raises(ValueError, match="missing tensor ln_cell_bias_l0"):
            load(path)


def test_the_torch_module_takes_layer_norm(rng):
    torch = pytest.importorskip("torch")
    from lstm_fast.torch import LSTM

    module = LSTM(3, 5, 2, dtype=torch.float64, layer_norm=True, bidirectional=True, peephole=True)
    names = [name for name, _ in module.named_parameters()]
    assert names[-1] == "ln_cell_bias_l1_reverse" and module.ln_ih_weight_l0.shape == (20,)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith("ln_"):
                p.add_(torch.randn(p.shape, dtype=torch.float64) * 0.3)
    model = lf.LSTM(3, 5, 2, dtype=np.float64, layer_norm=True, bidirectional=True, peephole=True)
    model.load_state_dict({name: p.detach().numpy() for name, p in module.state_dict().items()})
    x = rng.normal(size=(6, 2, 3))
    xt = torch.tensor(x, requires_grad=True)
    y, _ = module(xt)
    y.sum().backward()
    y_ref, _ = model.forward(x)
    dx_ref, _ = model.backward(np.ones_like(y_ref))
    _assert_module_matches(module, xt, y, y_ref, dx_ref, model.grads)
