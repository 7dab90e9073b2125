"""bf16 mixed-precision training: forward(train=True, precision="bf16") and its backward().

The contract (docs/api.md, "Training"): every matrix product's operands rounded to bfloat16 (x, h_{t-1} (times the
recurrent dropout mask), m_t, the weights; in backward the gradients w.r.t. the gates (or, with layer
norm, w.r.t. its inputs) and h_t), the products summed in float32; everything else float32. Checked:
- against the float64 reference with the same operands rounded (reference.forward(precision="bf16")
  and its backward): every output and gradient within 1e-3 (relative norm), and at most 0.3 of its
  distance to the reference without rounding (so that a product left unrounded shows), on every
  ISA, one and two threads, and with AVX512_BF16's vdpbf16ps turned off (the float kernels on the
  rounded operands). What remains is float32 summation and the occasional operand that rounds to the
  neighbouring bfloat16 because float32 and float64 differ in its last bits (measured: at most 4.2e-4
  and 0.14 of the distance; layer norm at T 4, as its gradients amplify those flips with T);
- against float32 training: within 3% (relative norm) for every output and gradient;
- checkpointed bf16 training is bitwise bf16 training (test_checkpoint.py's property, here for bf16).
"""

import numpy as np
import pytest
from conftest import no_dot_instructions, num_threads, reference_run

import lstm_fast as lf
from lstm_fast._lstm import zoneout_masks_of

BOUND = 1e-3
SHARE = 0.3  # of the distance to the unrounded reference

CONFIGS = {
    "plain": dict(),
    "projection_peephole": dict(proj_size=12, peephole=True),
    "two_layers_bidirectional": dict(num_layers=2, bidirectional=True),
    "variants": dict(cell_clip=1.5, coupled_gates=True, zoneout=(0.1, 0.2), recurrent_dropout=0.2),
    "layer_norm": dict(layer_norm=True),
}


def _relative(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-30))


def _case(rng, config, T, B, I, H, with_lengths):
    model = lf.LSTM(I, H, seed=5, **config)
    D, R, L = model.num_directions, model.output_size, model.num_layers
    x = rng.normal(size=(T, B, I)).astype(np.float32)
    state = (rng.normal(size=(L * D, B, R)).astype(np.float32), rng.normal(size=(L * D, B, H)).astype(np.float32))
    lengths = None
    if with_lengths:
        lengths = rng.integers(1, T + 1, size=B)
        lengths[0] = T
    dy = rng.normal(size=(T, B, D * R)).astype(np.float32)
    dstate = tuple(rng.normal(size=s.shape).astype(np.float32) for s in state)
    return model, x, state, lengths, dy, dstate


def _run(model, x, state, lengths, dy, dstate, precision):
    """One training step: [y, h_n, c_n, dx, dh0, dc0] and the gradients, with the masks the model drew."""
    model._rng = np.random.default_rng(11)  # the same dropout and zoneout draws in every run
    y, (h_n, c_n) = model.forward(x, state, lengths, precision=precision)
    run = model._training_run
    dx, (dh0, dc0) = model.backward(dy, dstate)
    return [y, h_n, c_n, dx, dh0, dc0], dict(model.grads), run


def _reference_step(model, x, state, lengths, dy, dstate, run, precision="bf16"):
    zoneout = None
    if run.zoneout_seed is not None:  # packed rows -> (L*D, T, B, *)
        masks = zoneout_masks_of(model._lstm_config, run.zoneout_seed, sum(run.packing.batch_sizes))
        zoneout = tuple(np.stack([run.packing.unpack(d) for d in cells]) for cells in masks)
    expected, grads = reference_run(
        model,
        x,
        state,
        lengths,
        dy,
        dstate,
        recurrent_masks=run.recurrent_masks,
        zoneout_masks=zoneout,
        precision=precision,
    )
    return [expected[name] for name in NAMES], grads


def _errors(outputs, grads, expected, expected_grads):
    errors = {name: _relative(a, b) for name, a, b in zip(NAMES, outputs, expected)}
    errors.update({name: _relative(g, expected_grads[name]) for name, g in grads.items()})
    return errors


NAMES = ["y", "h_n", "c_n", "dx", "dh0", "dc0"]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("config", CONFIGS)
def test_bf16_training_matches_the_reference_with_rounded_operands(rng, isa, config, with_lengths, threads):
    # B 24 x T 9 = 216 rows: packed weights (vdpbf16ps where the CPU has it); H 40: two members.
    T = 4 if config == "layer_norm" else 9
    case = _case(rng, CONFIGS[config], T=T, B=24, I=11, H=40, with_lengths=with_lengths)
    with num_threads(threads):
        outputs, grads, run = _run(*case, "bf16")
    errors = _errors(outputs, grads, *_reference_step(*case, run))
    unrounded = _errors(outputs, grads, *_reference_step(*case, run, precision="fp64"))
    for name, error in errors.items():
        assert error <= BOUND and error <= SHARE * unrounded[name], (name, error, unrounded[name])


def test_small_calls_round_the_same_operands(rng):
    # 3 x 4 rows: below packing, Eigen's products on the rounded operands.
    case = _case(rng, dict(proj_size=5), T=3, B=4, I=6, H=9, with_lengths=False)
    outputs, grads, run = _run(*case, "bf16")
    errors = _errors(outputs, grads, *_reference_step(*case, run))
    unrounded = _errors(outputs, grads, *_reference_step(*case, run, precision="fp64"))
    for name, error in errors.items():
        assert error <= 1e-5 and unrounded[name] > 1e-4, (name, error, unrounded[name])


@pytest.mark.parametrize("config", ["plain", "projection_peephole", "two_layers_bidirectional", "variants"])
def test_bf16_gradients_are_within_three_percent_of_fp32(rng, config):
    model, x, state, lengths, dy, dstate = _case(rng, CONFIGS[config], T=60, B=32, I=24, H=64, with_lengths=True)
    fp32, fp32_grads, _ = _run(model, x, state, lengths, dy, dstate, "fp32")
    bf16, bf16_grads, _ = _run(model, x, state, lengths, dy, dstate, "bf16")
    errors = {name: _relative(a, b) for name, a, b in zip(NAMES, bf16, fp32)}
    errors.update({name: _relative(bf16_grads[name], g) for name, g in fp32_grads.items()})
    assert max(errors.values()) <= 0.03, errors
    assert min(errors.values()) > 0  # (it did round)


def test_the_float_kernels_keep_the_contract_without_vdpbf16ps():
    # The AVX-512 build planned without vdpbf16ps (on a CPU without it, the same paths as always).
    errors = {}
    with no_dot_instructions():
        for name in ["plain", "projection_peephole", "two_layers_bidirectional"]:
            case = _case(np.random.default_rng(3), CONFIGS[name], T=9, B=24, I=11, H=40, with_lengths=True)
            outputs, grads, run = _run(*case, "bf16")
            expected, expected_grads = _reference_step(*case, run)
            errors[name] = max(
                [_relative(a, b) for a, b in zip(outputs, expected)]
                + [_relative(g, expected_grads[k]) for k, g in grads.items()]
            )
    assert max(errors.values()) <= BOUND, errors


def test_checkpointed_bf16_training_is_bitwise_bf16_training(rng):
    model, x, state, lengths, dy, dstate = _case(rng, dict(num_layers=2), T=40, B=64, I=9, H=32, with_lengths=True)
    whole, whole_grads, _ = _run(model, x, state, lengths, dy, dstate, "bf16")
    model._rng = np.random.default_rng(11)
    y, _ = model.forward(x, state, lengths, precision="bf16", checkpoint=1)
    dx, _ = model.backward(dy, dstate)
    np.testing.assert_array_equal(y, whole[0])
    np.testing.assert_array_equal(dx, whole[3])
    for name, g in whole_grads.items():
        np.testing.assert_array_equal(model.grads[name], g)


def test_precision_is_checked():
    model = lf.LSTM(3, 4)
    x = np.zeros((5, 2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match='precision must be "fp32" or "bf16", got \'fp16\''):
        model.forward(x, precision="fp16")
    with pytest.raises(ValueError, match='precision must be "fp32" or "bf16", got 16'):
        model.forward(x, precision=16)
    with pytest.raises(ValueError, match=r'precision="bf16" is a training option.*freeze\("bf16"\)'):
        model.forward(x, train=False, precision="bf16")
    with pytest.raises(ValueError, match='precision="bf16" trains float32 models, got dtype float64'):
        lf.LSTM(3, 4, dtype="float64").forward(x, precision="bf16")
    with pytest.raises(ValueError, match="backward"):  # the refused calls left no training run
        model.backward(np.zeros((5, 2, 4), dtype=np.float32))


def test_torch_module_trains_in_bf16_under_cpu_autocast(rng):
    torch = pytest.importorskip("torch")
    from lstm_fast.torch import LSTM as TorchLSTM

    module = TorchLSTM(11, 40, 2, bidirectional=True)
    model = module.to_numpy()
    x, dy = rng.normal(size=(9, 24, 11)).astype(np.float32), rng.normal(size=(9, 24, 80)).astype(np.float32)
    y_ref, _ = model.forward(x, precision="bf16")
    dx_ref, _ = model.backward(dy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_t = torch.tensor(x, requires_grad=True)
        y, (h_n, c_n) = module(x_t)
        (y * torch.tensor(dy)).sum().backward()
        assert y.dtype == torch.float32 and h_n.dtype == torch.float32
        np.testing.assert_array_equal(y.detach().numpy(), y_ref)  # the same core call
        np.testing.assert_array_equal(x_t.grad.numpy(), dx_ref)
        for name, p in module.named_parameters():
            np.testing.assert_array_equal(p.grad.numpy(), model.grads[name])
        y_half, _ = module(torch.tensor(x).bfloat16())  # other layers' bf16 outputs are taken
        assert y_half.dtype == torch.float32
        with torch.no_grad():  # inference stays float32
            np.testing.assert_array_equal(module(torch.tensor(x))[0].numpy(), model(x)[0])
    y_fp32, _ = module(torch.tensor(x))  # outside autocast: float32 again
    np.testing.assert_array_equal(y_fp32.detach().numpy(), model.forward(x)[0])
