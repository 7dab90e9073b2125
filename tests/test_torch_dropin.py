"""lstm_fast.torch.LSTM where code written for torch.nn.LSTM meets it (issue 32; skipped without torch):
copies and checkpoints of the whole module, empty batches, the errors torch code catches, bf16 and
half modules, torch's own nn.LSTM machinery (parametrizations, pruning, _flat_weights); second-order
gradients are in test_torch_second_order.py. Each case is checked against what torch.nn.LSTM does in it."""

import copy
import io
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.nn.utils import prune  # noqa: E402

import lstm_fast.torch as lft  # noqa: E402
from lstm_fast import _core  # noqa: E402

T, B, I, H = 5, 3, 4, 6


def _torch_save_load(module):
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


COPIES = {
    "deepcopy": copy.deepcopy,
    "pickle": lambda m: pickle.loads(pickle.dumps(m)),
    "torch.save": _torch_save_load,
}
VARIANTS = [
    dict(),
    dict(num_layers=2, bidirectional=True, proj_size=3, batch_first=True, dtype=torch.float64),
    dict(num_layers=2, dropout=0.5, peephole=True, layer_norm=True, cell_clip=2.0, checkpoint=2),
    dict(recurrent_dropout=0.25, zoneout=(0.1, 0.2), coupled_gates=True, forget_bias=1.0),
]


@pytest.mark.parametrize("how", sorted(COPIES))
@pytest.mark.parametrize("kwargs", VARIANTS)
def test_the_module_copies_pickles_and_saves_whole(how, kwargs):
    module = lft.LSTM(I, H, **kwargs)
    x = torch.randn(T, B, I, dtype=module.weight_ih_l0.dtype)
    module.eval()
    expected, (h, c) = module(x)
    module.train()
    copied = COPIES[how](module)
    assert type(copied) is lft.LSTM and repr(copied) == repr(module) and copied.checkpoint == module.checkpoint
    for (name, p), (copied_name, q) in zip(module.named_parameters(), copied.named_parameters()):
        assert name == copied_name and q.requires_grad and q.data_ptr() != p.data_ptr()
        assert torch.equal(p, q), name
    copied.eval()
    y, (h2, c2) = copied(x)
    assert torch.equal(y, expected) and torch.equal(h2, h) and torch.equal(c2, c)
    # The copy trains on its own parameters, with the original's gradients.
    copied.train()
    for m in (module, copied):
        torch.manual_seed(5)  # the same dropout, recurrent dropout and zoneout masks
        m(x)[0].square().sum().backward()
    for p, q in zip(module.parameters(), copied.parameters()):
        assert torch.equal(p.grad, q.grad)


def test_a_copy_inside_a_model_and_its_optimizer_state():
    # EMA / best-model copies of a network holding the module, and a whole-model checkpoint with its
    # optimizer: the copy's outputs and next steps are the original's.
    net = torch.nn.Sequential()
    net.add_module("lstm", lft.LSTM(I, H, batch_first=True))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.randn(B, T, I)
    net.lstm(x)[0].sum().backward()
    opt.step()
    saved = _torch_save_load({"net": net, "opt": opt.state_dict()})
    restored_opt = torch.optim.Adam(saved["net"].parameters(), lr=1e-2)
    restored_opt.load_state_dict(saved["opt"])
    for model, optimizer in ((net, opt), (saved["net"], restored_opt)):
        optimizer.zero_grad()
        model.lstm(x)[0].sum().backward()
        optimizer.step()
    for p, q in zip(net.parameters(), saved["net"].parameters()):
        assert torch.equal(p, q)


# -- empty batches -----------------------------------------------------------------------------------


def _twins(**kwargs):
    """torch.nn.LSTM and lstm_fast.torch.LSTM with the same parameters."""
    expected = torch.nn.LSTM(I, H, **kwargs)
    actual = lft.LSTM(I, H, **kwargs)
    actual.load_state_dict(expected.state_dict())
    return expected, actual


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(num_layers=2, bidirectional=True, proj_size=2), dict(batch_first=True, dtype=torch.float64)],
)
@pytest.mark.parametrize("with_state", [False, True])
def test_an_empty_batch_gives_torchs_empty_outputs_and_zero_gradients(kwargs, with_state):
    expected_module, actual_module = _twins(**kwargs)
    dtype = actual_module.weight_ih_l0.dtype
    shape = (0, T, I) if actual_module.batch_first else (T, 0, I)
    h_shape, c_shape = (actual_module.num_layers * actual_module.num_directions, 0), None
    h_shape, c_shape = h_shape + (actual_module.output_size,), h_shape + (H,)
    results = []
    for module in (expected_module, actual_module):
        x = torch.zeros(shape, dtype=dtype, requires_grad=True)
        state = (torch.zeros(h_shape, dtype=dtype), torch.zeros(c_shape, dtype=dtype)) if with_state else None
        y, (h, c) = module(x, state)
        (y.sum() + h.sum() + c.sum()).backward()  # no error, as torch's (test_RNN_input_size_zero)
        results.append((y, h, c, x.grad, [p.grad for p in module.parameters()]))
    (y0, h0, c0, dx0, grads0), (y1, h1, c1, dx1, grads1) = results
    assert y1.shape == y0.shape and h1.shape == h0.shape and c1.shape == c0.shape and dx1.shape == dx0.shape
    assert y1.dtype == dtype and all(torch.equal(g1, g0) for g0, g1 in zip(grads0, grads1))
    assert all(g.abs().sum() == 0 for g in grads1)


def test_an_empty_sequence_is_refused_as_torch_refuses_it():
    # torch.nn.LSTM: RuntimeError "Expected sequence length to be larger than 0 in RNN" (also on the CPU)
    with pytest.raises(ValueError, match=">= 1 step"):
        lft.LSTM(I, H)(torch.zeros(0, B, I))


# -- errors torch code catches -------------------------------------------------------------------------


def _raised(call):
    with pytest.raises(Exception) as info:
        call()
    return info.value


def _state(batch=B, h=H, c=H, dims=3, dtype=torch.float64):
    shape = (1, batch)[: dims - 1]
    return torch.zeros(shape + (h,), dtype=dtype), torch.zeros(shape + (c,), dtype=dtype)


X = torch.randn(T, B, I, dtype=torch.float64)
# (case, call, lstm_fast's own exception type, whether torch's message is in ours)
FORWARD_ERRORS = [
    ("input 4-D", lambda m: m(X[None]), ValueError, True),
    ("input 1-D", lambda m: m(X[0, 0]), ValueError, True),
    ("input size", lambda m: m(torch.randn(T, B, I + 1, dtype=torch.float64)), ValueError, True),
    ("no steps", lambda m: m(torch.randn(0, B, I, dtype=torch.float64)), ValueError, True),
    ("input dtype", lambda m: m(X.float()), TypeError, True),
    ("integer input", lambda m: m(X.long()), TypeError, True),
    ("input device", lambda m: m(X.to("meta")), ValueError, True),
    ("three states", lambda m: m(X, _state() + _state()[:1]), TypeError, True),
    ("h_0 2-D", lambda m: m(X, (_state(dims=2)[0], _state()[1])), ValueError, True),
    ("c_0 2-D", lambda m: m(X, (_state()[0], _state(dims=2)[1])), ValueError, True),
    ("h_0 batch", lambda m: m(X, (_state(batch=B + 1)[0], _state()[1])), ValueError, True),
    ("c_0 size", lambda m: m(X, _state(c=H + 1)), ValueError, True),
    ("unbatched, 3-D state", lambda m: m(X[:, 0], _state()), ValueError, True),
    ("h_0 dtype", lambda m: m(X, (_state()[0].float(), _state()[1])), TypeError, False),
    ("input batch", lambda m: m(torch.randn(T, B + 2, I, dtype=torch.float64), _state()), ValueError, True),
]


@pytest.mark.parametrize("case, call, ours, same_words", FORWARD_ERRORS, ids=[c[0] for c in FORWARD_ERRORS])
def test_forward_errors_are_torchs_and_ours(case, call, ours, same_words):
    expected = _raised(lambda: call(torch.nn.LSTM(I, H, dtype=torch.float64)))
    actual = _raised(lambda: call(lft.LSTM(I, H, dtype=torch.float64)))
    assert isinstance(actual, type(expected)) and isinstance(actual, ours), (case, type(actual), type(expected))
    if same_words:
        assert str(expected) in str(actual), (str(expected), str(actual))


def test_the_errors_torchs_own_tests_match_are_raised():
    # test_nn's test_cudnn_forward_exception, test_rnn_args_check and test_projections_lstm_args_check.
    for kwargs in (dict(), dict(proj_size=10)):
        module = lft.LSTM(10, 20, batch_first=True, **kwargs)
        with pytest.raises(RuntimeError, match="Expected hidden.*size.*got"):
            module(torch.randn(2, 3, 10), (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19)))
        with pytest.raises(RuntimeError, match=r"input\.size\(-1\) must be equal to input_size"):
            module(torch.randn(2, 3, 3))
    module = lft.LSTM(3, 5, 2, proj_size=2)
    good = (torch.zeros(2, 4, 2), torch.zeros(2, 4, 5))
    for x, state in [
        (torch.randn(6, 7, 3), good),
        (torch.randn(6, 4, 7), good),
        (torch.randn(6, 4, 3), (torch.zeros(2, 7, 2), good[1])),
        (torch.randn(6, 4, 3), (torch.zeros(2, 4, 7), good[1])),
        (torch.randn(6, 4, 3), (torch.zeros(7, 4, 2), good[1])),
        (torch.randn(6, 4, 3), (good[0], torch.zeros(7, 4, 5))),
        (torch.randn(6, 4, 3), (torch.zeros(2, 4, 5), good[1])),  # h_0 of the hidden size, not proj_size
    ]:
        with pytest.raises(RuntimeError):
            module(x, state)


CONSTRUCTOR_ERRORS = [
    dict(hidden_size=0),
    dict(num_layers=0),
    dict(input_size=0),
    dict(bias=0),
    dict(batch_first=1),
    dict(dropout=1.5),
    dict(dropout=True),
    dict(proj_size=-1),
    dict(proj_size=H),
    dict(input_size=3.0),
    dict(hidden_size="5"),
    dict(dtype=torch.int32),
    dict(num_layers=1.5),
]


@pytest.mark.parametrize("kwargs", CONSTRUCTOR_ERRORS, ids=[str(k) for k in CONSTRUCTOR_ERRORS])
def test_constructor_errors_are_torchs_and_ours(kwargs):
    arguments = {**dict(input_size=I, hidden_size=H), **kwargs}
    expected = _raised(lambda: torch.nn.LSTM(**arguments))
    actual = _raised(lambda: lft.LSTM(**arguments))
    assert isinstance(actual, type(expected)) and isinstance(actual, (TypeError, ValueError))
    assert str(expected) in str(actual) and next(iter(kwargs)) in str(actual).split(" (torch.nn.LSTM")[0]


def test_the_error_classes_are_both_exceptions():
    assert issubclass(lft.ValueAndRuntimeError, ValueError) and issubclass(lft.ValueAndRuntimeError, RuntimeError)
    assert issubclass(lft.TypeAndValueError, TypeError) and issubclass(lft.TypeAndValueError, ValueError)
    assert issubclass(lft.TypeAndRuntimeError, TypeError) and issubclass(lft.TypeAndRuntimeError, RuntimeError)
    # Where only lstm_fast refuses (dropout must be < 1: the masks are scaled by 1/(1-p)), its own error.
    assert type(_raised(lambda: lft.LSTM(I, H, dropout=1.0))) is ValueError


# -- bfloat16 and float16 modules ------------------------------------------------------------------------


def _run(module, x):
    """Output, final state, dx and the parameters' gradients of a fixed linear loss, in the module's
    dtype (its weights are bfloat16 numbers: every dtype's backward starts from the same gradients)."""
    module.zero_grad()
    x = x.clone().requires_grad_(True)
    y, (h, c) = module(x)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(3)).bfloat16().float()
    ((y.float() * w).sum() + h.float().sum() + c.float().sum()).backward()
    return [y, h, c, x.grad] + [p.grad for p in module.parameters()]


@pytest.mark.parametrize("make", ["constructor", "bfloat16()"])
def test_a_bfloat16_module_trains_on_the_bf16_kernels(monkeypatch, make):
    torch.manual_seed(0)
    reference = torch.nn.LSTM(I, H, 2, bidirectional=True).bfloat16()
    module = lft.LSTM(I, H, 2, bidirectional=True, dtype=torch.bfloat16 if make == "constructor" else None)
    module = module if make == "constructor" else module.bfloat16()
    module.load_state_dict(reference.state_dict())
    assert all(p.dtype == torch.bfloat16 for p in module.parameters())
    x = torch.randn(T, B, I).bfloat16()
    flags = []
    real_forward = _core.forward
    monkeypatch.setattr(_core, "forward", lambda *a, **kw: flags.append(kw["precision"]) or real_forward(*a, **kw))
    actual = _run(module, x)
    assert flags == ["bf16"]  # the training forward ran the bf16 products (lf.LSTM's precision="bf16")
    assert all(t.dtype == torch.bfloat16 for t in actual)
    # The same as a float32 module of these (bf16) weights under bf16 autocast: the same kernels.
    twin = lft.LSTM(I, H, 2, bidirectional=True)
    twin.load_state_dict({k: v.float() for k, v in module.state_dict().items()})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = _run(twin, x.float())
    for a, e in zip(actual, expected):
        assert torch.equal(a, e.bfloat16())
    # And close to torch's own bf16 LSTM (which rounds more: every product's output too).
    for a, e in zip(actual, _run(reference, x)):
        assert (a.float() - e.float()).norm() <= 3e-2 * e.float().norm()
    with torch.no_grad():  # inference: float32 products of the bf16 weights (no bf16 inference kernels here)
        y = module(x)[0]
        assert y.dtype == torch.bfloat16 and torch.equal(y, twin(x.float())[0].bfloat16())
    assert flags[-1] == "fp32"


def test_a_float16_module_computes_in_float32():
    module = lft.LSTM(I, H, proj_size=2).half()
    twin = lft.LSTM(I, H, proj_size=2)
    twin.load_state_dict({k: v.float() for k, v in module.state_dict().items()})
    x = torch.randn(T, B, I).half()
    actual, expected = _run(module, x), _run(twin, x.float())
    assert all(a.dtype == torch.float16 and torch.equal(a, e.half()) for a, e in zip(actual, expected))
    assert module.to_numpy().dtype == np.float32 and module.double().weight_ih_l0.dtype == torch.float64


# -- a real nn.LSTM ------------------------------------------------------------------------------------

KW = dict(num_layers=2, bidirectional=True, proj_size=3, dtype=torch.float64)


def test_the_module_is_a_torch_nn_lstm_with_its_attributes():
    torch.manual_seed(0)
    expected = torch.nn.LSTM(I, H, **KW)
    torch.manual_seed(0)
    actual = lft.LSTM(I, H, **KW)
    assert isinstance(actual, torch.nn.LSTM) and isinstance(actual, torch.nn.RNNBase) and actual.mode == "LSTM"
    # torch's initialisation, draw for draw; its names, shapes and order
    assert list(actual.state_dict()) == list(expected.state_dict())
    assert all(torch.equal(a, e) for a, e in zip(actual.state_dict().values(), expected.state_dict().values()))
    assert actual._flat_weights_names == expected._flat_weights_names
    assert actual._all_weights == expected._all_weights
    assert [w.shape for w in actual._flat_weights] == [w.shape for w in expected._flat_weights]
    assert all(a is getattr(actual, n) for a, n in zip(actual._flat_weights, actual._flat_weights_names))
    assert [[w.shape for w in cell] for cell in actual.all_weights] == [
        [w.shape for w in c] for c in expected.all_weights
    ]
    actual.flatten_parameters()  # torch's: a no-op on the CPU
    x, state = torch.randn(T, B, I, dtype=torch.float64), (torch.zeros(4, B, 3), torch.zeros(4, B, H))
    actual.check_forward_args(x, tuple(s.double() for s in state), None)  # torch's own checks
    assert actual.permute_hidden(state, None) is state
    # The extras are parameters beside torch's, not in _flat_weights.
    peephole = lft.LSTM(I, H, peephole=True)
    assert "weight_peep_l0" in dict(peephole.named_parameters())
    assert "weight_peep_l0" not in peephole._flat_weights_names


def test_state_dicts_go_both_ways_with_torch():
    expected, actual = torch.nn.LSTM(I, H, **KW), lft.LSTM(I, H, **KW)
    expected.load_state_dict(actual.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64)
    assert torch.allclose(actual(x)[0], expected(x)[0], rtol=1e-12, atol=1e-12)
    assert actual.double() is actual and actual.to(torch.float32).weight_ih_l0.dtype == torch.float32
    assert actual._flat_weights[0] is actual.weight_ih_l0  # torch's _apply renews _flat_weights


def _compare(expected, actual, x, names=None):
    """Outputs and the gradients of every parameter of two modules to 1e-10."""
    results = []
    for module in (expected, actual):
        module.zero_grad()
        y, (h, c) = module(x)
        (y.square().sum() + h.sum() + c.sum()).backward()
        results.append((y, {n: p.grad for n, p in module.named_parameters()}))
    (y0, g0), (y1, g1) = results
    assert torch.allclose(y1, y0, rtol=1e-10, atol=1e-10)
    assert list(g1) == list(g0)
    for name in g0:
        assert torch.allclose(g1[name], g0[name], rtol=1e-10, atol=1e-10), name


PARAMETRIZATIONS = {
    "weight_norm (parametrizations)": lambda m: torch.nn.utils.parametrizations.weight_norm(m, "weight_hh_l0"),
    "spectral_norm (parametrizations)": lambda m: torch.nn.utils.parametrizations.spectral_norm(m, "weight_ih_l1"),
    "weight_norm (hooks)": lambda m: torch.nn.utils.weight_norm(m, "weight_hr_l0"),
    "l1_unstructured pruning": lambda m: prune.l1_unstructured(m, "weight_ih_l0", amount=0.5),
    "orthogonal": lambda m: torch.nn.utils.parametrizations.orthogonal(m, "weight_hr_l1_reverse"),
}


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning")
@pytest.mark.parametrize("name", sorted(PARAMETRIZATIONS))
def test_parametrizations_and_pruning_run_as_on_torch(name):
    torch.manual_seed(0)
    expected, actual = torch.nn.LSTM(I, H, **KW), lft.LSTM(I, H, **KW)
    actual.load_state_dict(expected.state_dict())
    for module in (expected, actual):
        torch.manual_seed(1)  # spectral_norm's power iteration starts from a random vector
        PARAMETRIZATIONS[name](module)
        # (In training, spectral_norm iterates at each read of the weight, and torch.nn.LSTM reads it
        # three times a forward, lstm_fast once: in eval both use the vectors made at registration.)
        module.eval()
    _compare(expected, actual, torch.randn(T, B, I, dtype=torch.float64))


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning")
def test_weight_norm_and_pruning_keep_flat_weights_as_torch_does():
    # test_nn's test_rnn_weight_norm and test_pruning's test_rnn_pruning
    for name, count in (("weight_ih_l0", 4), ("weight_hr_l0", 5)):
        module = lft.LSTM(I, H, proj_size=3 if name == "weight_hr_l0" else 0)
        module = torch.nn.utils.weight_norm(module, name=name)
        assert sum(isinstance(p, torch.nn.Parameter) for p in module._flat_weights) == count - 1
        module = torch.nn.utils.remove_weight_norm(module, name=name)
        assert sum(isinstance(p, torch.nn.Parameter) for p in module._flat_weights) == count
        assert name in module._parameters and name + "_v" not in module._parameters
    module = lft.LSTM(32, 32)
    prune.l1_unstructured(module, "weight_ih_l0", 0.5)
    assert sum(isinstance(p, torch.nn.Parameter) for p in module._flat_weights) == 3
    module(torch.randn(3, 2, 32))
    prune.remove(module, "weight_ih_l0")
    assert sum(isinstance(p, torch.nn.Parameter) for p in module._flat_weights) == 4
    assert "weight_ih_l0" in dict(module.named_parameters()) and "weight_ih_l0_orig" not in module._parameters


class WeightDrop(torch.nn.Module):
    """AWD-LSTM's weight-drop (Merity et al. 2017): weight_hh_l0 replaced before each forward by a
    dropped copy of a raw parameter, set as a plain tensor attribute."""

    def __init__(self, module, mask):
        super().__init__()
        self.module, self.mask = module, mask
        raw = module.weight_hh_l0
        del module._parameters["weight_hh_l0"]
        module.register_parameter("weight_hh_l0_raw", torch.nn.Parameter(raw.detach().clone()))

    def forward(self, x):
        self.module.weight_hh_l0 = self.module.weight_hh_l0_raw * self.mask
        return self.module(x)


def test_weight_drop_runs_as_on_torch():
    torch.manual_seed(0)
    expected, actual = torch.nn.LSTM(I, H, **KW), lft.LSTM(I, H, **KW)
    actual.load_state_dict(expected.state_dict())
    mask = torch.rand(4 * H, 3, dtype=torch.float64) < 0.7
    _compare(WeightDrop(expected, mask), WeightDrop(actual, mask), torch.randn(T, B, I, dtype=torch.float64))


def test_functional_call_runs_the_given_parameters():
    module = lft.LSTM(I, H, **KW)
    params = {n: p.detach() * 0.5 for n, p in module.named_parameters()}
    x = torch.randn(T, B, I, dtype=torch.float64)
    y = torch.func.functional_call(module, params, (x,))[0]
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(0.5)
    assert torch.equal(y, module(x)[0])


TORCH_KWARGS = ("num_layers", "bias", "batch_first", "dropout", "bidirectional", "proj_size", "dtype")


def _flat(outputs):
    y, (h, c) = outputs
    return y, h, c


META_VARIANTS = [
    dict(),
    dict(num_layers=2, bidirectional=True, proj_size=3, batch_first=True, dropout=0.5),
    dict(peephole=True, layer_norm=True, zoneout=0.1, recurrent_dropout=0.2),
]


@pytest.mark.parametrize("kwargs", META_VARIANTS)
@pytest.mark.parametrize("train", [False, True])
def test_a_module_on_the_meta_device_gives_torchs_shapes(kwargs, train):
    # Shapes without data (accelerate's init_empty_weights, FSDP's meta initialisation, shape inference):
    # the outputs, state and gradients are meta tensors of torch.nn.LSTM's shapes.
    ours = lft.LSTM(I, H, device="meta", **kwargs).train(train)
    theirs = torch.nn.LSTM(I, H, device="meta", **{k: v for k, v in kwargs.items() if k in TORCH_KWARGS}).train(train)
    x = torch.randn((B, T, I) if kwargs.get("batch_first") else (T, B, I), device="meta", requires_grad=train)
    y, (h, c) = ours(x)
    y_t, (h_t, c_t) = theirs(x)
    assert all(t.is_meta for t in (y, h, c))
    assert (y.shape, h.shape, c.shape) == (y_t.shape, h_t.shape, c_t.shape)
    if train:
        (y.sum() + c.sum()).backward()
        for name, p in ours.named_parameters():
            assert p.grad is not None and p.grad.is_meta and p.grad.shape == p.shape, name
        assert x.grad.is_meta and x.grad.shape == x.shape


def test_a_module_built_on_meta_then_materialised_runs_as_torchs():
    with torch.device("meta"):
        ours, theirs = lft.LSTM(I, H, num_layers=2), torch.nn.LSTM(I, H, num_layers=2)
    for module in (ours, theirs):
        module.to_empty(device="cpu")
        torch.manual_seed(0)
        module.reset_parameters()  # the same draws as torch's
    x = torch.randn(T, B, I)
    for a, b in zip(_flat(ours(x)), _flat(theirs(x))):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_meta_and_cpu_tensors_do_not_mix():
    meta, cpu = lft.LSTM(I, H, device="meta"), lft.LSTM(I, H)
    with pytest.raises(ValueError, match="input must be on the parameters' device meta, got device cpu") as raised:
        meta(torch.randn(T, B, I))
    assert isinstance(raised.value, RuntimeError)
    with pytest.raises(RuntimeError, match=r"hx\[0\] \(h_0\) must be on the CPU"):
        cpu(torch.randn(T, B, I), (torch.zeros(1, B, H, device="meta"), torch.zeros(1, B, H)))
    # torch's words in each case, a meta module's CPU state included
    state = (torch.zeros(1, B, H), torch.zeros(1, B, H, device="meta"))
    x = torch.randn(T, B, I, device="meta")
    expected = _raised(lambda: torch.nn.LSTM(I, H, device="meta")(x, state))
    actual = _raised(lambda: meta(x, state))
    assert isinstance(actual, RuntimeError) and isinstance(actual, ValueError)
    assert str(expected) in str(actual), (str(expected), str(actual))


def test_constructor_errors_are_torchs_while_torch_nn_lstm_is_ours(monkeypatch):
    # A program (or torch's own test suite) that puts lstm_fast's class in torch.nn.LSTM's place: the
    # constructor's error still carries torch's words (asked of torch's own class), it does not recurse.
    monkeypatch.setattr(torch.nn, "LSTM", lft.LSTM)
    with pytest.raises(ValueError, match="hidden_size must be >= 1, got 0") as raised:
        lft.LSTM(10, 0, 1)
    assert "hidden_size must be greater than zero" in str(raised.value)
    with pytest.raises(ValueError, match="num_layers must be greater than zero"):
        lft.LSTM(10, 10, 0)


def test_a_state_without_proj_size_loads_as_on_torch():
    # torch.nn.LSTM's __setstate__ takes a module state of PyTorch < 1.8 (no proj_size) and sets it to 0;
    # proj_size is read-only here, and comes from the state's own arguments.
    x = torch.randn(T, B, I)
    for torch_class, ours in ((torch.nn.LSTM, False), (lft.LSTM, True)):
        model = torch_class(I, H)
        expected = model(x)
        state = dict(model.__dict__)
        del state["proj_size"]
        loaded = torch_class(I, H)
        loaded.__setstate__(state)
        assert loaded.proj_size == 0
        torch.testing.assert_close(loaded(x), expected)
        assert isinstance(loaded, lft.LSTM) == ours


def test_batched_gradients_of_the_eager_module_as_torch():
    # gradcheck's batched-gradient check and jacobian(vectorize=True) vmap over the backward (legacy
    # vmap BatchedTensors, outside any torch.func transform): the backward runs in torch operations then.
    torch.manual_seed(0)
    ours = lft.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, dtype=torch.float64)
    theirs = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    params = tuple(ours.parameters())
    assert torch.autograd.gradcheck(lambda x, *p: ours(x)[0], (x, *params), check_batched_grad=True)
    jac_ours = torch.autograd.functional.jacobian(lambda x: ours(x)[1][1], x, vectorize=True)
    jac_theirs = torch.autograd.functional.jacobian(lambda x: theirs(x)[1][1], x, vectorize=True)
    torch.testing.assert_close(jac_ours, jac_theirs)
