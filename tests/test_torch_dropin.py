"""lstm_fast.torch.LSTM where code written for torch.nn.LSTM meets it (issue 32; skipped without torch):
copies and checkpoints of the whole module, empty batches, the errors torch code catches, bf16 and
half modules, torch's own nn.LSTM machinery (parametrizations, pruning, _flat_weights), and
second-order gradients. Each case is checked against what torch.nn.LSTM does in it."""

import copy
import io
import pickle

import pytest

torch = pytest.importorskip("torch")

import lstm_fast.torch as lft  # noqa: E402

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
