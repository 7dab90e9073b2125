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
