"""Second-order gradients of lstm_fast.torch.LSTM (issue 32; skipped without torch): a backward with
create_graph=True is differentiable (gradient penalties, MAML, Hessian-vector products), checked by
gradgradcheck in float64 and against torch.nn.LSTM; a bf16 forward refuses it instead of returning a
gradient without a graph."""

import pytest

torch = pytest.importorskip("torch")

from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

import lstm_fast.torch as lft  # noqa: E402

T, B, I, H = 4, 3, 3, 2

# Every variant the graph writes: projection, two directions and layers, peepholes, layer norm, clip,
# coupled gates; in training, dropout between layers, recurrent dropout and zoneout masks.
VARIANTS = [
    dict(),
    dict(num_layers=2, bidirectional=True, proj_size=1),
    dict(peephole=True, layer_norm=True, cell_clip=0.5, coupled_gates=True, bias=False),
    dict(num_layers=2, dropout=0.5, recurrent_dropout=0.3, zoneout=(0.2, 0.4), peephole=True),
]


def _module(seed=0, **kwargs):
    torch.manual_seed(seed)
    return lft.LSTM(I, H, dtype=torch.float64, **kwargs)


@pytest.mark.parametrize("kwargs", VARIANTS, ids=["plain", "2x2-proj", "peep-ln-clip", "training-masks"])
def test_gradgradcheck_through_the_input_the_state_and_the_weights(kwargs):
    module = _module(**kwargs)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    L, D, R = module.num_layers, module.num_directions, module.output_size
    h0 = torch.randn(L * D, B, R, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(L * D, B, H, dtype=torch.float64, requires_grad=True)
    names = ("weight_ih_l0", "weight_hh_l0") + (("weight_hr_l0",) if module.proj_size else ())

    def f(x, h0, c0, *weights):
        torch.manual_seed(1)  # the same dropout and zoneout masks at every call: one function
        y, (h_n, c_n) = torch.func.functional_call(module, dict(zip(names, weights)), (x, (h0, c0)))
        return y.sum(dim=-1), h_n, c_n

    inputs = (x, h0, c0, *(getattr(module, n).detach().clone().requires_grad_() for n in names))
    assert torch.autograd.gradgradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_a_gradient_penalty_trains_as_on_torch():
    # loss = sum(y^2) + 10 ||dy/dx||^2: the penalty's part of the weight gradient is second-order.
    torch.manual_seed(0)
    ours = lft.LSTM(I, H, num_layers=2, proj_size=1, dtype=torch.float64)
    theirs = torch.nn.LSTM(I, H, num_layers=2, proj_size=1, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64)
    grads = []
    for module in (ours, theirs):
        x_ = x.clone().requires_grad_()
        y, _ = module(x_)
        (dx,) = torch.autograd.grad(y.sum(), x_, create_graph=True)
        loss = (y**2).sum() + 10 * (dx**2).sum()
        grads.append(torch.autograd.grad(loss, list(module.parameters())))
    for g_ours, g_theirs in zip(*grads):
        torch.testing.assert_close(g_ours, g_theirs, rtol=1e-10, atol=1e-12)
    assert sum(g.norm() for g in grads[0]) > 0


def test_packed_sequences_differentiate_twice_as_on_torch():
    torch.manual_seed(0)
    ours = lft.LSTM(I, H, bidirectional=True, dtype=torch.float64)
    theirs = torch.nn.LSTM(I, H, bidirectional=True, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64)
    lengths = torch.tensor([2, 4, 1])  # unsorted: the packed batch's order differs from the input's
    results = []
    for module in (ours, theirs):
        x_ = x.clone().requires_grad_()
        packed = pack_padded_sequence(x_, lengths, enforce_sorted=False)
        y, (h_n, c_n) = module(packed)
        (dx,) = torch.autograd.grad(y.data.sum() + h_n.sum() + c_n.sum(), x_, create_graph=True)
        (ddx,) = torch.autograd.grad((dx**2).sum(), x_)
        results.append((dx, ddx))
    for ours_t, theirs_t in zip(*results):
        torch.testing.assert_close(ours_t, theirs_t, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kwargs", VARIANTS, ids=["plain", "2x2-proj", "peep-ln-clip", "training-masks"])
def test_the_first_order_gradient_with_a_graph_is_the_kernels(kwargs):
    # The graph recomputes the layer with the masks the kernels drew (dropout, recurrent, zoneout).
    module = _module(**kwargs)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)

    def gradients(create_graph):
        torch.manual_seed(1)
        y, (h_n, c_n) = module(x)
        loss = (y * torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype)).sum() + h_n.sum() - c_n.sum()
        return torch.autograd.grad(loss, [x, *module.parameters()], create_graph=create_graph)

    with_graph, without = gradients(True), gradients(False)
    assert all(g.requires_grad for g in with_graph) and not any(g.requires_grad for g in without)
    for a, b in zip(with_graph, without):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


def test_a_bf16_forward_refuses_a_graph_of_its_gradient():
    torch.manual_seed(0)
    module = lft.LSTM(I, H)
    x = torch.randn(T, B, I, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, _ = module(x)
    with pytest.raises(RuntimeError, match="second-order gradients"):
        torch.autograd.grad(y.float().sum(), x, create_graph=True)
    (dx,) = torch.autograd.grad(module(x)[0].sum(), x)  # first order stays as it was
    assert dx.shape == x.shape
