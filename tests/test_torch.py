"""lstm_fast against torch.nn.LSTM (skipped where torch is not installed): the same outputs and
every gradient for every configuration torch has, float64 to 1e-9."""

import itertools

import numpy as np
import pytest

import lstm_fast as lf

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

CONFIGS = list(itertools.product([1, 2, 3], [False, True], [0, 3], [True, False], [False, True], [False, True]))


def torch_run(module, x, state, lengths, dy, dstate):
    x = torch.tensor(x, requires_grad=True)
    h0 = torch.tensor(state[0], requires_grad=True)
    c0 = torch.tensor(state[1], requires_grad=True)
    inputs = x
    if lengths is not None:
        inputs = pack_padded_sequence(x, torch.tensor(lengths), batch_first=module.batch_first, enforce_sorted=False)
    y, (h_n, c_n) = module(inputs, (h0, c0))
    if lengths is not None:
        y, _ = pad_packed_sequence(
            y, batch_first=module.batch_first, total_length=x.shape[1 if module.batch_first else 0]
        )
    loss = (y * torch.tensor(dy)).sum() + (h_n * torch.tensor(dstate[0])).sum() + (c_n * torch.tensor(dstate[1])).sum()
    loss.backward()
    outputs = dict(y=y, h_n=h_n, c_n=c_n, dx=x.grad, dh0=h0.grad, dc0=c0.grad)
    grads = {name: p.grad for name, p in module.named_parameters()}
    return {k: v.detach().numpy() for k, v in outputs.items()}, {k: v.numpy() for k, v in grads.items()}


@pytest.mark.parametrize("num_layers,bidirectional,proj_size,bias,batch_first,with_lengths", CONFIGS)
def test_same_numbers_as_torch(rng, num_layers, bidirectional, proj_size, bias, batch_first, with_lengths):
    T, B, I, H = 6, 4, 3, 5
    torch.manual_seed(0)
    module = torch.nn.LSTM(
        I, H, num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional, proj_size=proj_size
    ).double()
    model = lf.LSTM.from_torch(module)
    assert model.dtype == np.float64 and model.batch_first == batch_first
    assert list(model.state_dict()) == list(module.state_dict())  # torch's names in torch's order
    D, R = 2 if bidirectional else 1, proj_size or H
    x = rng.normal(size=(B, T, I) if batch_first else (T, B, I))
    state = (rng.normal(size=(num_layers * D, B, R)), rng.normal(size=(num_layers * D, B, H)))
    lengths = None
    if with_lengths:
        lengths = rng.integers(1, T + 1, size=B)
        lengths[0] = T
    dy = rng.normal(size=x.shape[:2] + (D * R,))
    dstate = (rng.normal(size=state[0].shape), rng.normal(size=state[1].shape))

    expected, expected_grads = torch_run(module, x, state, lengths, dy, dstate)
    y, (h_n, c_n) = model.forward(x, state, lengths)
    dx, (dh0, dc0) = model.backward(dy, dstate)
    actual = dict(y=y, h_n=h_n, c_n=c_n, dx=dx, dh0=dh0, dc0=dc0)
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-9, atol=1e-9, err_msg=name)
    assert set(model.grads) == set(expected_grads)
    for name, g in expected_grads.items():
        np.testing.assert_allclose(model.grads[name], g, rtol=1e-9, atol=1e-9, err_msg=name)


def test_float32_and_unbatched_like_torch(rng):
    torch.manual_seed(1)
    module = torch.nn.LSTM(4, 6, 2)
    model = lf.LSTM.from_torch(module)
    assert model.dtype == np.float32
    x = rng.normal(size=(9, 4)).astype(np.float32)
    with torch.no_grad():
        y_t, (h_t, c_t) = module(torch.tensor(x))
    y, (h, c) = model(x)
    assert y.shape == tuple(y_t.shape) and h.shape == tuple(h_t.shape)
    np.testing.assert_allclose(y, y_t.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c, c_t.numpy(), rtol=1e-5, atol=1e-6)


def test_load_state_dict_takes_torch_tensors(rng):
    module = torch.nn.LSTM(3, 4, proj_size=2)
    model = lf.LSTM(3, 4, proj_size=2)
    model.load_state_dict(module.state_dict())
    for name, value in module.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[name], value.numpy())
    model.load_state_dict(dict(module.named_parameters()))  # parameters that require grad too


def test_default_initialisation_follows_torch():
    model = lf.LSTM(10, 64, 2, bidirectional=True, seed=0)
    bound = 1 / np.sqrt(64)
    for value in model.state_dict().values():
        assert value.min() >= -bound and value.max() <= bound
        assert value.max() - value.min() > 1.5 * bound  # spread over the interval, not constant
    biased = lf.LSTM(10, 64, forget_bias=1.0, seed=0).state_dict()["bias_ih_l0"]
    plain = lf.LSTM(10, 64, seed=0).state_dict()["bias_ih_l0"]
    np.testing.assert_allclose(biased[64:128] - plain[64:128], 1.0, rtol=1e-6)
    np.testing.assert_array_equal(biased[:64], plain[:64])


def test_from_torch_rejects_other_modules():
    with pytest.raises(TypeError, match=r"module must be a torch.nn.LSTM, got GRU"):
        lf.LSTM.from_torch(torch.nn.GRU(3, 4))
    with pytest.raises(TypeError, match=r"float32 or float64, got torch.float16"):
        lf.LSTM.from_torch(torch.nn.LSTM(3, 4).half())


@pytest.mark.parametrize(
    "kwargs", [dict(num_layers=3, bidirectional=True, proj_size=2), dict(num_layers=2, bias=False, batch_first=True)]
)
def test_from_torch_then_save_and_load_keeps_torch_numbers(rng, tmp_path, kwargs):
    torch.manual_seed(3)
    module = torch.nn.LSTM(3, 5, **kwargs).double()
    path = tmp_path / "from_torch.safetensors"
    lf.LSTM.from_torch(module).save(path)
    model = lf.load(path)
    x = rng.normal(size=(4, 6, 3))
    with torch.no_grad():
        expected, (h_t, c_t) = module(torch.tensor(x))
    y, (h, c) = model(x)
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h, h_t.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c, c_t.numpy(), rtol=1e-12, atol=1e-12)
