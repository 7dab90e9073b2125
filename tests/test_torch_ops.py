"""The kernels as torch custom operators (issue 32; skipped without torch): torch.library.opcheck of
torch.ops.lstm_fast.lstm and lstm_backward, and lstm_fast.torch.LSTM under torch.compile(fullgraph=True)
(backend aot_eager), torch.export, torch.jit.trace and torch.func (vmap, per-sample gradients with grad +
vmap + functional_call, grad of grad), each against torch.nn.LSTM with the same weights or against the
eager module."""

import pytest

torch = pytest.importorskip("torch")

from torch.func import functional_call, grad, vmap  # noqa: E402
from torch.nn.utils.rnn import PackedSequence  # noqa: E402

import lstm_fast.torch as lft  # noqa: E402
from lstm_fast import _torch_ops  # noqa: E402

T, B, I, H = 5, 3, 4, 6
F64 = dict(dtype=torch.float64)
# torch's arguments (so torch.nn.LSTM is the twin); the extras are checked against the eager module.
TORCH_VARIANTS = [dict(), dict(num_layers=2, bidirectional=True, proj_size=3, batch_first=True)]
EXTRAS = dict(num_layers=2, dropout=0.5, recurrent_dropout=0.25, zoneout=(0.1, 0.2), peephole=True, layer_norm=True)


def twins(**kwargs):
    """A torch.nn.LSTM and an lstm_fast.torch.LSTM with the same float64 parameters."""
    torch.manual_seed(0)
    expected = torch.nn.LSTM(I, H, **kwargs, **F64)
    actual = lft.LSTM(I, H, **kwargs, **F64)
    actual.load_state_dict(expected.state_dict())
    return expected, actual


def outputs_and_grads(module, x, state=None):
    """y, h_n, c_n and the gradients of x and every parameter for a fixed loss, in a list."""
    module.zero_grad()
    x = x.clone().requires_grad_(True)
    y, (h_n, c_n) = module(x, state)
    (y.square().sum() + h_n.sum() + 2 * c_n.sum()).backward()
    return [y, h_n, c_n, x.grad] + [p.grad for p in module.parameters()]


def inputs(module, steps=T):
    """A random input (T, B, I) ((B, T, I) when batch_first) and state for module, float64."""
    x = torch.randn((B, steps, I) if module.batch_first else (steps, B, I), **F64)
    h_shape, c_shape = module._lstm_config.state_shapes(B)
    return x, (torch.randn(h_shape, **F64), torch.randn(c_shape, **F64))


def assert_close(actual, expected, tol=1e-10):
    assert len(actual) == len(expected)
    for k, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape and torch.allclose(a, e, rtol=tol, atol=tol), k


# -- opcheck -------------------------------------------------------------------------------------------


def op_arguments(module, x, batch_sizes, state=None, seed=None, grad=True):
    """torch.ops.lstm_fast.lstm's arguments for module on packed x [N, I]: a training call with the
    module's masks (drawn now) and a zoneout seed tensor when given."""
    params = module._cell_params()
    present = [int(p is not None) for p in params]
    params = [p.detach().clone().requires_grad_(grad) for p in params if p is not None]
    batch = batch_sizes[0]
    masks = module._dropout_masks(len(x), x.dtype)
    recurrent = module._recurrent_masks(batch, x.dtype)
    h0, c0 = (None, None) if state is None else (s.clone().requires_grad_(grad) for s in state)
    layer = (x.clone().requires_grad_(grad), h0, c0, params, present, masks, recurrent, batch_sizes, batch, seed)
    return layer + (True, module._checkpoint_steps, False, module._config_key)


OP_CASES = [
    (dict(), [B] * T, False, None),
    # packed (sequences of 5, 3 and 1 steps), bidirectional, projected, from a state
    (dict(num_layers=2, bidirectional=True, proj_size=3), [3, 2, 2, 1, 1], True, None),
    (dict(EXTRAS, coupled_gates=True, cell_clip=2.0, checkpoint=2), [B] * T, True, 12345),
]


@pytest.mark.parametrize("kwargs, batch_sizes, with_state, seed", OP_CASES)
def test_opcheck_of_both_ops(kwargs, batch_sizes, with_state, seed):
    torch.manual_seed(1)
    module = lft.LSTM(I, H, **kwargs, **F64)
    x = torch.randn(sum(batch_sizes), I, **F64)
    h_shape, c_shape = module._lstm_config.state_shapes(batch_sizes[0])
    state = (torch.randn(h_shape, **F64), torch.randn(c_shape, **F64)) if with_state else None
    seed = None if seed is None else torch.tensor([seed])
    torch.library.opcheck(torch.ops.lstm_fast.lstm.default, op_arguments(module, x, batch_sizes, state, seed))
    # The backward op (not differentiable itself: create_graph=True takes the recompute instead)
    layer = op_arguments(module, x, batch_sizes, state, seed, grad=False)
    y, h_n, c_n = torch.ops.lstm_fast.lstm(*layer)
    grads = [torch.randn_like(t) for t in (y, h_n, c_n)]
    torch.library.opcheck(torch.ops.lstm_fast.lstm_backward.default, (*grads, *layer))


def test_an_eager_call_keeps_the_autograd_function_and_a_traced_one_takes_the_op():
    module = lft.LSTM(I, H)
    _, (h_n, _) = module(torch.randn(T, B, I))
    assert type(h_n.grad_fn).__name__ == "_LSTMFunctionBackward"
    assert not _torch_ops.tracing([torch.randn(2)])
    graph = torch.export.export(module, (torch.randn(T, B, I),)).graph
    assert any(node.target == torch.ops.lstm_fast.lstm.default for node in graph.nodes)


# -- torch.compile ---------------------------------------------------------------------------------------
# dynamo refuses every torch.nn.LSTM instance unless allow_rnn is set (torch 2.13 reads the flag there only):
# this module is one (a subclass), so compiling it takes the flag.


@pytest.fixture
def dynamo():
    """allow_rnn, and dynamo's caches emptied before and after (each test compiles new modules)."""
    torch._dynamo.reset()
    with torch._dynamo.config.patch(allow_rnn=True):
        yield
    torch._dynamo.reset()


@pytest.mark.parametrize("kwargs", TORCH_VARIANTS)
def test_compile_fullgraph_gives_torch_nn_lstms_outputs_and_gradients(kwargs, dynamo):
    expected, actual = twins(**kwargs)
    x, state = inputs(actual)
    compiled = torch.compile(actual, fullgraph=True, backend="aot_eager")
    for s in (None, state):
        assert_close(outputs_and_grads(compiled, x, s), outputs_and_grads(expected, x, s))
    x = inputs(actual, steps=T + 2)[0]  # another length: compiled again, or dynamic
    assert_close(outputs_and_grads(compiled, x), outputs_and_grads(expected, x))


def test_compile_fullgraph_with_the_training_masks_equals_eager(dynamo):
    # dropout, recurrent dropout and zoneout drawn from torch's generator inside the graph: the same
    # masks as the eager module's draws from the same seed, so the same outputs and gradients.
    torch.manual_seed(0)
    module = lft.LSTM(I, H, **EXTRAS, **F64)
    x = torch.randn(T, B, I, **F64)
    torch.manual_seed(3)
    eager = outputs_and_grads(module, x)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    torch.manual_seed(3)
    assert_close(outputs_and_grads(compiled, x), eager, tol=1e-12)


def test_compile_fullgraph_of_a_fresh_bfloat16_module_equals_eager(dynamo):
    # No eager call first (the config's cached sizes are computed at construction, not under dynamo); a
    # bfloat16 module runs the bf16 kernels in training, compiled as eager.
    torch.manual_seed(0)
    module = lft.LSTM(I, H, num_layers=2).bfloat16()
    twin = lft.LSTM(I, H, num_layers=2).bfloat16()
    twin.load_state_dict(module.state_dict())
    x = torch.randn(T, B, I).bfloat16()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    assert_close(outputs_and_grads(compiled, x), outputs_and_grads(twin, x), tol=0)


# -- torch.export --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, strict", [(TORCH_VARIANTS[0], True), (TORCH_VARIANTS[1], False)])
def test_export_gives_torch_nn_lstms_outputs(kwargs, strict):
    expected, actual = twins(**kwargs)
    actual.eval()
    x, state = inputs(actual)
    exported = torch.export.export(actual, (x, state), strict=strict).module()  # (no allow_rnn needed)
    y, (h_n, c_n) = exported(x, state)
    assert_close([y, h_n, c_n], [expected(x, state)[0], *expected(x, state)[1]])
    x2 = torch.randn(x.shape, **F64)  # another input of the same shape: the graph, not a constant
    assert_close(list(exported(x2, state)[1]), list(expected(x2, state)[1]))


# -- torch.jit.trace: the op recorded ------------------------------------------------------------------


# The input checks read the shapes, which the trace keeps as constants: its TracerWarnings say so.
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_jit_trace_records_the_op_and_trains():
    expected, actual = twins(num_layers=2, bidirectional=True)
    x, state = inputs(actual)
    # (traced in grad mode, the graph holds train=True, and check_trace's no-grad rerun differs)
    with torch.no_grad(), pytest.warns(DeprecationWarning, match="torch.jit.trace.* is deprecated"):
        traced = torch.jit.trace(actual, (x, state))
    assert "lstm_fast::lstm" in str(traced.graph)
    x2 = torch.randn(x.shape, **F64)
    assert_close(outputs_and_grads(traced, x2, state)[:4], outputs_and_grads(expected, x2, state)[:4])
    assert_close([p.grad for p in actual.parameters()], [p.grad for p in expected.parameters()])


# -- torch.func ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", TORCH_VARIANTS)
def test_vmap_over_a_batch_of_inputs_equals_a_loop(kwargs):
    expected, actual = twins(**kwargs)
    xs = torch.stack([inputs(actual)[0] for _ in range(4)])
    y, (h_n, c_n) = vmap(actual)(xs)
    for k, x in enumerate(xs):
        ey, (eh, ec) = expected(x)
        assert_close([y[k], h_n[k], c_n[k]], [ey, eh, ec])


def per_sample_loss(module):
    """loss(params, x, target) of one sample x (T, I) (unbatched input), for functional_call."""

    def loss(params, x, target):
        y, (h_n, c_n) = functional_call(module, params, (x,))
        return ((y - target) ** 2).sum() + h_n.sum() + c_n.square().sum()

    return loss


@pytest.mark.parametrize("kwargs", TORCH_VARIANTS)
def test_per_sample_gradients_with_grad_vmap_and_functional_call(kwargs, monkeypatch):
    expected, actual = twins(**kwargs)
    params = {k: v.detach() for k, v in actual.named_parameters()}
    xs = torch.randn(4, T, I, **F64)
    targets = torch.randn(4, T, actual.num_directions * actual.output_size, **F64)
    calls = []  # the kernels' backward (the backward op), not the recompute in torch operations
    backward_op = _torch_ops.lstm_backward
    monkeypatch.setattr(_torch_ops, "lstm_backward", lambda *args: calls.append(1) or backward_op(*args))
    found = vmap(grad(per_sample_loss(actual)), in_dims=(None, 0, 0))(params, xs, targets)
    assert calls
    for k, (x, target) in enumerate(zip(xs, targets)):
        for name, g in grad(per_sample_loss(expected))(params, x, target).items():
            assert torch.allclose(found[name][k], g, rtol=1e-10, atol=1e-10), (k, name)


def test_per_sample_gradients_of_the_extras_equal_the_eager_modules():
    torch.manual_seed(0)
    module = lft.LSTM(I, H, **dict(EXTRAS, dropout=0.0, recurrent_dropout=0.0), **F64).eval()
    params = {k: v.detach() for k, v in module.named_parameters()}
    xs, targets = torch.randn(3, T, I, **F64), torch.randn(3, T, H, **F64)
    found = vmap(grad(per_sample_loss(module)), in_dims=(None, 0, 0))(params, xs, targets)
    for k, (x, target) in enumerate(zip(xs, targets)):
        module.zero_grad()
        y, (h_n, c_n) = module(x)
        (((y - target) ** 2).sum() + h_n.sum() + c_n.square().sum()).backward()
        for name, p in module.named_parameters():
            assert torch.allclose(found[name][k], p.grad, rtol=1e-10, atol=1e-10), (k, name)


def test_jacrev_is_torch_nn_lstms():
    # jacrev: vjp under vmap over the cotangents; its backward runs in grad mode, with the module's
    # parameters requiring grad beneath: the recompute.
    expected, actual = twins(bidirectional=True, proj_size=3)
    x = torch.randn(T, 2, I, **F64)

    def last_output(module):
        return lambda x: module(x)[0][-1].flatten()

    assert_close([torch.func.jacrev(last_output(actual))(x)], [torch.func.jacrev(last_output(expected))(x)])


def test_second_order_through_torch_func_is_torch_nn_lstms():
    # grad of a gradient norm: the op's backward with a graph, the recompute of _torch_graph.
    expected, actual = twins(num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, **F64)

    def penalty(module):
        def f(x):
            return (grad(lambda x: module(x)[0].square().sum())(x) ** 2).sum()

        return f

    assert_close([grad(penalty(actual))(x)], [grad(penalty(expected))(x)], tol=1e-9)

    def through_vjp(module):  # grad of a vjp's pullback: the pullback's gradients need a graph too
        def f(x):
            y, pull = torch.func.vjp(lambda x: module(x)[0], x)
            return (pull(y)[0] ** 2).sum()

        return f

    assert_close([grad(through_vjp(actual))(x)], [grad(through_vjp(expected))(x)], tol=1e-9)


def test_packed_sequences_through_the_op_equal_torch_nn_lstm():
    # torch.func.grad of a packed (bidirectional, projected) call runs the op. The PackedSequence is made
    # from its data: pack_padded_sequence's backward has no torch.func support ("Cannot access data
    # pointer of Tensor that doesn't have storage"), and torch.nn.LSTM's gradient is autograd's.
    expected, actual = twins(num_layers=2, bidirectional=True, proj_size=3)
    batch_sizes = torch.tensor([3, 3, 2, 1, 1])  # sequences of 5, 3 and 2 steps
    data = torch.randn(int(batch_sizes.sum()), I, **F64)

    def loss(module):
        def f(data):
            y, (h_n, c_n) = module(PackedSequence(data, batch_sizes))
            return y.data.square().sum() + h_n.sum() + c_n.square().sum()

        return f

    data_grad = data.clone().requires_grad_(True)
    loss(expected)(data_grad).backward()
    assert_close([grad(loss(actual))(data)], [data_grad.grad])
