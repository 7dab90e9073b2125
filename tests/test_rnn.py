"""The NumPy tanh RNN baseline: finite differences, torch.nn.RNN, lengths, and its vanishing gradient."""

import numpy as np
import pytest
from conftest import finite_difference

import lstm_fast as lf
from lstm_fast.rnn import RNN


def loss_of(rnn, x, h0, lengths, dy, dh):
    y, h_n = rnn(x, h0, lengths)
    return float(np.sum(y * dy) + np.sum(h_n * dh))


@pytest.mark.parametrize("with_lengths", [False, True])
def test_rnn_gradients_match_finite_differences(rng, with_lengths):
    T, B, I, H = 6, 3, 2, 4
    rnn = RNN(I, H, dtype=np.float64, seed=1)
    x = rng.normal(size=(T, B, I))
    h0 = rng.normal(size=(1, B, H)) * 0.5
    lengths = np.array([6, 2, 4]) if with_lengths else None
    dy, dh = rng.normal(size=(T, B, H)), rng.normal(size=(1, B, H))
    rnn.forward(x, h0, lengths, train=True)
    dx, dh0 = rnn.backward(dy, dh)
    grads = rnn.grads

    def loss():
        return loss_of(rnn, x, h0, lengths, dy, dh)

    for name, p in rnn.state_dict().items():
        np.testing.assert_allclose(grads[name], finite_difference(loss, p), rtol=1e-6, atol=1e-8, err_msg=name)
    np.testing.assert_allclose(dx, finite_difference(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dh0, finite_difference(loss, h0), rtol=1e-6, atol=1e-8)


def test_rnn_lengths_equal_running_each_sequence_alone(rng):
    T, B, I, H = 7, 3, 2, 5
    rnn = RNN(I, H, dtype=np.float64, seed=2)
    x = rng.normal(size=(T, B, I))
    lengths = np.array([7, 3, 5])
    y, h_n = rnn(x, lengths=lengths)
    for b, n in enumerate(lengths):
        y_b, h_b = rnn(x[:n, b : b + 1])
        np.testing.assert_allclose(y[:n, b], y_b[:, 0], rtol=1e-14)
        assert np.all(y[n:, b] == 0.0)
        np.testing.assert_allclose(h_n[0, b], h_b[0, 0], rtol=1e-14)


def test_rnn_matches_torch(rng):
    torch = pytest.importorskip("torch")
    T, B, I, H = 9, 4, 3, 6
    rnn = RNN(I, H, dtype=np.float64, seed=3)
    module = torch.nn.RNN(I, H, nonlinearity="tanh").double()
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.from_numpy(rnn.state_dict()[name]))
    x, h0 = rng.normal(size=(T, B, I)), rng.normal(size=(1, B, H))
    dy, dh = rng.normal(size=(T, B, H)), rng.normal(size=(1, B, H))
    y, h_n = rnn.forward(x, h0, train=True)
    dx, dh0 = rnn.backward(dy, dh)
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    yt, hnt = module(xt, h0t)
    ((yt * torch.from_numpy(dy)).sum() + (hnt * torch.from_numpy(dh)).sum()).backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_n, hnt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dh0, h0t.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(rnn.grads[name], p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_rnn_gradient_vanishes_over_a_long_lag_where_the_lstm_keeps_it(rng):
    """The paper's point, measured: d y[T-1] / d x[t] for a lag of 100 steps."""
    T, B, I, H = 101, 8, 2, 32
    x = rng.uniform(-1, 1, size=(T, B, I))
    dy = np.zeros((T, B, H))
    dy[-1] = 1.0

    def input_gradient(model):
        model.forward(x, train=True)
        dx, _ = model.backward(dy)
        return np.abs(dx).mean(axis=(1, 2))

    rnn_dx = input_gradient(RNN(I, H, dtype=np.float64, seed=0))
    lstm_dx = input_gradient(lf.LSTM(I, H, forget_bias=3.0, dtype=np.float64, seed=0))
    # Relative to the gradient of the last input, the RNN's first-input gradient is vanishingly
    # small; the LSTM with a forget bias keeps it within a couple of orders of magnitude.
    assert rnn_dx[0] / rnn_dx[-1] < 1e-8
    assert lstm_dx[0] / lstm_dx[-1] > 1e-3


def test_rnn_rejects_bad_input():
    rnn = RNN(2, 3)
    with pytest.raises(ValueError, match="x must have shape"):
        rnn(np.zeros((4, 1, 3)))
    with pytest.raises(ValueError, match="lengths"):
        rnn(np.zeros((4, 2, 2)), lengths=[5, 1])
    with pytest.raises(ValueError, match="backward"):
        RNN(2, 3).backward(np.zeros((4, 1, 3)))
