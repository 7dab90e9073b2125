"""lstm_fast.torch.LSTM against torch.nn.LSTM through torch's autograd (skipped without torch).

Every configuration torch has (layers, directions, projection, bias, batch_first; dense, packed and
unbatched input; with and without an initial state) must give torch's outputs and gradients in float64
to 1e-9. What torch lacks (peepholes, dropout with known masks) is checked against lstm_fast.reference,
and the autograd wiring against finite differences (torch.autograd.gradcheck).
"""

import itertools

import numpy as np
import pytest
from conftest import reference_run

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

import lstm_fast.torch as lft  # noqa: E402
from lstm_fast import _core  # noqa: E402

T, B, I, H = 6, 4, 3, 5
CONFIGS = [
    c
    for c in itertools.product(
        [1, 2], [False, True], [0, 3], [True, False], [False, True], ["dense", "packed", "unbatched"], [True, False]
    )
    if not (c[5] == "unbatched" and c[4])
]  # batch_first has no effect on unbatched input


def twin_modules(num_layers=1, bidirectional=False, proj_size=0, bias=True, batch_first=False, **kwargs):
    """A torch.nn.LSTM and an lstm_fast.torch.LSTM with the same float64 parameters."""
    torch.manual_seed(0)
    expected = torch.nn.LSTM(
        I,
        H,
        num_layers,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidirectional,
        proj_size=proj_size,
        dtype=torch.float64,
        **kwargs,
    )
    actual = lft.LSTM(
        I,
        H,
        num_layers,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidirectional,
        proj_size=proj_size,
        dtype=torch.float64,
        **kwargs,
    )
    actual.load_state_dict(expected.state_dict())  # same names, same shapes: torch's own loader
    return expected, actual


def run(module, kind, x, state, lengths):
    """Output, final state and every gradient of a fixed random linear loss."""
    x = x.clone().requires_grad_(True)
    state = None if state is None else tuple(s.clone().requires_grad_(True) for s in state)
    if kind == "packed":
        inputs = pack_padded_sequence(x, lengths, batch_first=module.batch_first, enforce_sorted=False)
    else:
        inputs = x
    y, (h_n, c_n) = module(inputs, state)
    y_data = y.data if kind == "packed" else y
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in (y_data, h_n, c_n)]
    loss = sum((t * w).sum() for t, w in zip((y_data, h_n, c_n), weights))
    loss.backward()
    out = dict(y=y_data, h_n=h_n, c_n=c_n, dx=x.grad)
    if state is not None:
        out.update(dh0=state[0].grad, dc0=state[1].grad)
    out.update({name: p.grad for name, p in module.named_parameters()})
    return out


@pytest.mark.parametrize("num_layers,bidirectional,proj_size,bias,batch_first,kind,with_state", CONFIGS)
def test_same_outputs_and_gradients_as_torch(num_layers, bidirectional, proj_size, bias, batch_first, kind, with_state):
    expected_module, actual_module = twin_modules(num_layers, bidirectional, proj_size, bias, batch_first)
    g = torch.Generator().manual_seed(2)
    D, R = 2 if bidirectional else 1, proj_size or H
    if kind == "unbatched":
        x = torch.randn(T, I, generator=g, dtype=torch.float64)
        state_shapes = [(num_layers * D, R), (num_layers * D, H)]
    else:
        x = torch.randn((B, T, I) if batch_first else (T, B, I), generator=g, dtype=torch.float64)
        state_shapes = [(num_layers * D, B, R), (num_layers * D, B, H)]
    state = tuple(torch.randn(s, generator=g, dtype=torch.float64) for s in state_shapes) if with_state else None
    lengths = torch.tensor([3, T, 1, 5])

    expected = run(expected_module, kind, x, state, lengths)
    actual = run(actual_module, kind, x, state, lengths)
    assert list(actual) == list(expected)
    for name in expected:
        assert actual[name].shape == expected[name].shape, name
        np.testing.assert_allclose(
            actual[name].detach().numpy(), expected[name].detach().numpy(), rtol=1e-9, atol=1e-9, err_msg=name
        )


def test_packed_output_keeps_the_packing():
    expected_module, actual_module = twin_modules(2, True)
    x = torch.randn(T, B, I, dtype=torch.float64)
    packed = pack_padded_sequence(x, torch.tensor([2, T, 4, 1]), enforce_sorted=False)
    y_expected, _ = expected_module(packed)
    y_actual, _ = actual_module(packed)
    assert isinstance(y_actual, type(packed))
    assert torch.equal(y_actual.batch_sizes, y_expected.batch_sizes)
    assert torch.equal(y_actual.sorted_indices, y_expected.sorted_indices)
    assert torch.equal(y_actual.unsorted_indices, y_expected.unsorted_indices)


@pytest.mark.parametrize(
    "peephole,proj_size,bidirectional,num_layers",
    [(True, 0, False, 1), (True, 2, True, 2), (False, 2, True, 2), (True, 0, True, 1)],
)
def test_autograd_matches_finite_differences(peephole, proj_size, bidirectional, num_layers):
    torch.manual_seed(3)
    module = lft.LSTM(
        2,
        3,
        num_layers,
        bidirectional=bidirectional,
        proj_size=proj_size,
        peephole=peephole,
        forget_bias=1.0,
        dtype=torch.float64,
    )
    D, R = 2 if bidirectional else 1, proj_size or 3
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(num_layers * D, 2, R, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(num_layers * D, 2, 3, dtype=torch.float64, requires_grad=True)
    names = [name for name, _ in module.named_parameters()]

    def f(x, h0, c0, *params):
        out = torch.func.functional_call(module, dict(zip(names, params)), (x, (h0, c0)))
        y, (h_n, c_n) = out
        return y, h_n, c_n

    assert torch.autograd.gradcheck(f, (x, h0, c0, *module.parameters()), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("peephole,bidirectional", [(True, False), (True, True), (False, True)])
def test_peephole_and_dropout_match_the_reference(peephole, bidirectional):
    # torch.nn.LSTM has neither peepholes nor reproducible dropout masks: the oracle is the reference,
    # given the masks the module draws (the same torch seed draws them again here).
    torch.manual_seed(4)
    module = lft.LSTM(
        I, H, 3, dropout=0.4, bidirectional=bidirectional, peephole=peephole, forget_bias=1.0, dtype=torch.float64
    )
    model = module.to_numpy()
    rng = np.random.default_rng(5)
    D = 2 if bidirectional else 1
    x = rng.normal(size=(T, B, I))
    state = (rng.normal(size=(3 * D, B, H)), rng.normal(size=(3 * D, B, H)))
    dy = rng.normal(size=(T, B, D * H))
    dstate = (rng.normal(size=state[0].shape), rng.normal(size=state[1].shape))

    torch.manual_seed(6)
    masks = module._dropout_masks(T * B, torch.float64)
    masks = [m.numpy().reshape(T, B, D * H) for m in masks]
    assert 0 < sum((m == 0).sum() for m in masks) < sum(m.size for m in masks)
    expected, expected_grads = reference_run(model, x, state, None, dy, dstate, dropout_masks=masks)

    torch.manual_seed(6)
    xt = torch.tensor(x, requires_grad=True)
    st = tuple(torch.tensor(s, requires_grad=True) for s in state)
    y, (h_n, c_n) = module(xt, st)
    (
        (y * torch.tensor(dy)).sum() + (h_n * torch.tensor(dstate[0])).sum() + (c_n * torch.tensor(dstate[1])).sum()
    ).backward()
    actual = dict(y=y, h_n=h_n, c_n=c_n, dx=xt.grad, dh0=st[0].grad, dc0=st[1].grad)
    for name in expected:
        np.testing.assert_allclose(actual[name].detach().numpy(), expected[name], rtol=1e-10, atol=1e-10, err_msg=name)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), expected_grads[name], rtol=1e-10, atol=1e-10, err_msg=name)

    module.eval()  # no dropout at inference: equal to the NumPy model
    y_eval, _ = module(torch.tensor(x))
    np.testing.assert_allclose(y_eval.detach().numpy(), model(x)[0], rtol=1e-12, atol=1e-12)


def test_optimizer_steps_follow_torch():
    expected_module, actual_module = twin_modules(2, True, 0, True, True)
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in (expected_module, actual_module)]
    g = torch.Generator().manual_seed(7)
    for _ in range(5):
        x = torch.randn(B, T, I, generator=g, dtype=torch.float64)
        target = torch.randn(B, T, 2 * H, generator=g, dtype=torch.float64)
        for module, opt in zip((expected_module, actual_module), opts):
            opt.zero_grad()
            y, _ = module(x)
            torch.nn.functional.mse_loss(y, target).backward()
            opt.step()
    for (name, p), q in zip(actual_module.named_parameters(), expected_module.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-9, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_core_reads_and_writes_the_tensors_memory(monkeypatch, dtype):
    # No copies for contiguous CPU tensors: the arrays the core receives are the tensors' own memory,
    # and the output tensors are the core's arrays.
    module = lft.LSTM(I, H, dtype=dtype)
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    h0, c0 = torch.zeros(1, B, H, dtype=dtype), torch.zeros(1, B, H, dtype=dtype)
    seen = {}
    real_forward = _core.forward

    def spy(config, cells, x_arr, **kwargs):
        h0_arr, c0_arr = kwargs["h0"], kwargs["c0"]
        seen.update(
            x=x_arr.ctypes.data,
            h0=h0_arr is not None and h0_arr.ctypes.data,
            c0=c0_arr is not None and c0_arr.ctypes.data,
            w_ih=cells[0].weight_ih.ctypes.data,
            w_hh=cells[0].weight_hh.ctypes.data,
            train=kwargs["train"],
        )
        out = real_forward(config, cells, x_arr, **kwargs)
        seen["y"] = out[0].ctypes.data
        return out

    monkeypatch.setattr(_core, "forward", spy)
    y, _ = module(x, (h0, c0))
    assert seen["x"] == x.data_ptr() and seen["h0"] == h0.data_ptr() and seen["c0"] == c0.data_ptr()
    assert seen["w_ih"] == module.weight_ih_l0.data_ptr() and seen["w_hh"] == module.weight_hh_l0.data_ptr()
    assert seen["y"] == y.data_ptr() and seen["train"] is True
    with torch.no_grad():
        module(x)
    assert seen["train"] is False  # no trace kept when no gradient is wanted


def test_only_the_final_state_or_only_the_output_may_carry_gradient():
    expected_module, actual_module = twin_modules(2)
    x = torch.randn(T, B, I, dtype=torch.float64)
    for pick in (lambda y, h, c: h.sum(), lambda y, h, c: c.sum(), lambda y, h, c: y.sum()):
        grads = []
        for module in (expected_module, actual_module):
            module.zero_grad()
            y, (h, c) = module(x)
            pick(y, h, c).backward()
            grads.append(module.weight_hh_l1.grad.clone())
        np.testing.assert_allclose(grads[1].numpy(), grads[0].numpy(), rtol=1e-9, atol=1e-9)


def test_an_in_place_update_between_forward_and_backward_is_caught():
    module = lft.LSTM(I, H, dtype=torch.float64)
    y, _ = module(torch.randn(T, B, I, dtype=torch.float64))
    with torch.no_grad():
        module.weight_hh_l0.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_numpy_conversions_keep_the_model():
    module = lft.LSTM(I, H, 2, bidirectional=True, peephole=True, forget_bias=1.0, dtype=torch.float64)
    model = module.to_numpy()
    back = lft.LSTM.from_numpy(model)
    x = torch.randn(T, B, I, dtype=torch.float64)
    np.testing.assert_array_equal(back(x)[0].detach().numpy(), module(x)[0].detach().numpy())
    np.testing.assert_allclose(model(x.numpy())[0], module(x)[0].detach().numpy(), rtol=1e-12, atol=1e-12)
    assert back.forget_bias == 1.0 and back.peephole


def test_defaults_follow_torch():
    torch.set_default_dtype(torch.float64)
    try:
        assert lft.LSTM(I, H).weight_ih_l0.dtype == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)
    module = lft.LSTM(I, H, forget_bias=1.0)
    assert module.weight_ih_l0.dtype == torch.float32
    bound = 1 / np.sqrt(H)
    assert all(p.abs().max() <= bound for n, p in module.named_parameters() if n != "bias_ih_l0")
    forget = module.bias_ih_l0[H : 2 * H]
    assert (forget >= 1 - bound).all() and (forget <= 1 + bound).all()
    assert repr(module) == "LSTM(3, 5, forget_bias=1.0)"


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda m: m(torch.randn(T, B, I)), TypeError, "input must have the parameters' dtype torch.float64"),
        (lambda m: m(np.zeros((T, B, I))), TypeError, "input must be a torch.Tensor"),
        (lambda m: m(torch.randn(T, B, I + 1, dtype=torch.float64)), ValueError, r"input must have shape \(T, B, 3\)"),
        (lambda m: m(torch.randn(0, B, I, dtype=torch.float64)), ValueError, ">= 1 step"),
        (lambda m: m(torch.randn(T, B, I, dtype=torch.float64), torch.zeros(1, B, H)), TypeError, "hx must be a pair"),
        (
            lambda m: m(
                torch.randn(T, B, I, dtype=torch.float64),
                (torch.zeros(1, B + 1, H, dtype=torch.float64), torch.zeros(1, B, H, dtype=torch.float64)),
            ),
            ValueError,
            r"hx\[0\] \(h_0\) must have shape \(1, 4, 5\)",
        ),
    ],
)
def test_bad_input_is_named(call, error, match):
    module = lft.LSTM(I, H, dtype=torch.float64)
    with pytest.raises(error, match=match):
        call(module)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(dtype=torch.int32), TypeError, "dtype must be torch.float32, torch.float64, torch.bfloat16 or"),
        (dict(device="cuda"), ValueError, "device must be the CPU or meta"),
        (dict(proj_size=H), ValueError, "proj_size must be < hidden_size"),
        (dict(dropout=1.0), ValueError, "dropout must be in"),
        (dict(bias=False, forget_bias=1.0), ValueError, "forget_bias needs bias=True"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        lft.LSTM(I, H, **kwargs)
