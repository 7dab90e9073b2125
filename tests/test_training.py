"""Truncated BPTT, chrono initialisation and the paper's stopping rule."""

import numpy as np
import pytest

import lstm_fast as lf
from lstm_fast import nn, optim, tasks, training
from lstm_fast.rnn import RNN


def make_loss(head, T, targets):
    """A readout on every step with an MSE against targets (T, B, 1); fills head.grads."""

    def loss_and_grad(y, t0):
        pred = head(y)
        loss, dpred = nn.mse_loss(pred, targets[t0 : t0 + y.shape[0]])
        return loss * y.shape[0] / T, head.backward(dpred) * (y.shape[0] / T)

    return loss_and_grad


@pytest.mark.parametrize("kind", ["lstm", "rnn"])
def test_truncated_bptt_with_one_chunk_is_full_bptt(rng, kind):
    T, B, I, H = 12, 3, 2, 5
    model = lf.LSTM(I, H, dtype=np.float64, seed=0) if kind == "lstm" else RNN(I, H, dtype=np.float64, seed=0)
    head = nn.Linear(H, 1, dtype=np.float64, seed=1)
    x, targets = rng.normal(size=(T, B, I)), rng.normal(size=(T, B, 1))
    # Full BPTT by hand.
    y, _ = model.forward(x, train=True)
    loss, dpred = nn.mse_loss(head(y), targets)
    dx_full, _ = model.backward(head.backward(dpred))
    full = optim.combine(m=model.grads, head=head.grads)
    full = {k: v.copy() for k, v in full.items()}
    for chunk_len in (T, T + 5):
        result = training.truncated_bptt(
            model,
            x,
            chunk_len,
            make_loss(head, T, targets),
            grads=lambda: optim.combine(m=model.grads, head=head.grads),
        )
        assert result.chunks == 1
        assert result.loss == pytest.approx(loss, rel=1e-12)
        np.testing.assert_allclose(result.dx, dx_full, rtol=1e-12, atol=1e-14)
        for name, g in full.items():
            np.testing.assert_allclose(result.grads[name], g, rtol=1e-10, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("kind", ["lstm", "rnn"])
def test_truncated_bptt_carries_the_state_and_cuts_the_gradient(rng, kind):
    T, B, I, H, chunk = 12, 3, 2, 5, 4
    model = lf.LSTM(I, H, dtype=np.float64, seed=0) if kind == "lstm" else RNN(I, H, dtype=np.float64, seed=0)
    x = rng.normal(size=(T, B, I))
    y_full, state_full = model(x)
    seen = []

    def last_chunk_loss(y, t0):  # a loss on the last step only
        seen.append(y)
        dy = np.zeros_like(y)
        if t0 + y.shape[0] == T:
            dy[-1] = 1.0
        return float(y[-1].sum()) if t0 + y.shape[0] == T else 0.0, dy

    result = training.truncated_bptt(model, x, chunk, last_chunk_loss)
    assert result.chunks == 3
    # Forward: the state is carried, so the chunks' outputs are the full sequence's.
    np.testing.assert_allclose(np.concatenate(seen), y_full, rtol=1e-12, atol=1e-14)
    for a, b in zip(
        np.atleast_1d(result.state) if kind == "rnn" else result.state,
        np.atleast_1d(state_full) if kind == "rnn" else state_full,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # Backward: the last step's output depends on the first chunk's input, but truncated BPTT
    # passes it no gradient; full BPTT does.
    assert np.all(result.dx[: T - chunk] == 0.0)
    assert np.abs(result.dx[T - chunk :]).max() > 0
    model.forward(x, train=True)
    dy = np.zeros_like(y_full)
    dy[-1] = 1.0
    dx_full, _ = model.backward(dy)
    assert np.abs(dx_full[: T - chunk]).max() > 1e-6
    np.testing.assert_allclose(result.dx[T - chunk :], dx_full[T - chunk :], rtol=1e-10, atol=1e-14)


def test_truncated_bptt_steps_after_every_chunk(rng):
    model = lf.LSTM(2, 4, dtype=np.float64, seed=0)
    opt = optim.SGD(model.state_dict(), lr=0.1)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    calls = []

    def step(g):
        calls.append(1)
        opt.step(g)

    x = rng.normal(size=(10, 2, 2))
    result = training.truncated_bptt(model, x, 3, lambda y, t0: (float(y.sum()), np.ones_like(y)), step=step)
    assert len(calls) == 4 and result.grads is None
    assert any(not np.array_equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="chunk_len"):
        training.truncated_bptt(model, x, 0, lambda y, t0: (0.0, np.zeros_like(y)))


def test_chrono_init_sets_forget_and_input_biases():
    T_max, H = 1000, 64
    lstm = lf.LSTM(2, H, num_layers=2, seed=0)
    training.chrono_init(lstm, T_max, rng=0)
    for k in (0, 1):
        b = lstm.state_dict()[f"bias_ih_l{k}"] + lstm.state_dict()[f"bias_hh_l{k}"]
        b_i, b_f = b[:H], b[H : 2 * H]
        np.testing.assert_allclose(b_i, -b_f, rtol=1e-6)
        assert b_f.min() >= 0.0 and b_f.max() <= np.log(T_max - 1) + 1e-5
        assert b_f.max() > np.log(T_max / 4)  # spread up to long time scales
        assert np.all(lstm.state_dict()[f"bias_hh_l{k}"][: 2 * H] == 0.0)
    with pytest.raises(ValueError, match="t_max"):
        training.chrono_init(lstm, 1.5)
    with pytest.raises(ValueError, match="bias=True"):
        training.chrono_init(lf.LSTM(2, 4, bias=False), 10)


def test_recent_criterion_needs_a_full_window_all_correct_and_a_low_error():
    crit = training.RecentCriterion(window=5, max_error=0.01)
    assert not crit.update([True] * 4, [0.0] * 4)  # window not full yet
    assert crit.update([True], [0.0])
    assert not crit.update([False], [0.0])  # one wrong among the last 5
    assert not crit.update([True] * 4, [0.0] * 4)
    assert crit.update([True], [0.0]) and crit.seen == 11  # the wrong one left the window
    assert not crit.update([True] * 5, [0.02] * 5)  # average error too high
    assert crit.update([False] * 3 + [True] * 5, [1.0] * 3 + [0.0] * 5)  # a batch larger than the window
    assert crit.seen == 24 and crit.accuracy() == 1.0


def test_short_training_runs_reach_a_loss_threshold_within_a_step_budget():
    """End to end with the package's pieces: an LSTM learns a short temporal order task, and
    truncated BPTT trains on a stream (echo the input 3 steps later) chunk by chunk."""
    rng = np.random.default_rng(0)
    lstm = lf.LSTM(8, 16, seed=0)
    training.chrono_init(lstm, 20, rng=0)
    head = nn.Linear(16, 4, seed=1)
    opt = optim.Adam(optim.combine(lstm=lstm.state_dict(), head=head.params), lr=1e-2)
    losses = []
    for _ in range(200):  # step budget, not wall clock
        x, labels, lengths = tasks.temporal_order(32, rng, min_len=20, max_len=22, t1_range=(2, 4), t2_range=(10, 12))
        y, (h_n, _) = lstm.forward(x, lengths=lengths, train=True)
        loss, dlogits = nn.softmax_cross_entropy(head(h_n[0]), labels)
        dy = np.zeros_like(y)
        dy[lengths - 1, np.arange(32)] = head.backward(dlogits)
        lstm.backward(dy)
        grads = optim.combine(lstm=lstm.grads, head=head.grads)
        optim.clip_grad_norm(grads, 1.0)
        opt.step(grads)
        losses.append(loss)
    assert np.mean(losses[:20]) > 1.2 and np.mean(losses[-20:]) < 0.1

    lstm = lf.LSTM(1, 16, seed=0)
    head = nn.Linear(16, 1, seed=1)
    opt = optim.Adam(optim.combine(lstm=lstm.state_dict(), head=head.params), lr=1e-2)
    state, losses = None, []
    for _ in range(60):  # 60 stream segments of 100 steps, 10 chunks of 10 each
        x = rng.choice([-1.0, 1.0], size=(100, 16, 1)).astype(np.float32)
        target = np.concatenate([np.zeros((3, 16, 1), np.float32), x[:-3]])

        def loss_and_grad(y, t0):
            pred = head(y)
            loss, dpred = nn.mse_loss(pred, target[t0 : t0 + y.shape[0]])
            return loss, head.backward(dpred)

        def step(g):
            optim.clip_grad_norm(g, 1.0)
            opt.step(g)

        result = training.truncated_bptt(
            lstm,
            x,
            10,
            loss_and_grad,
            state=state,
            step=step,
            grads=lambda: optim.combine(lstm=lstm.grads, head=head.grads),
        )
        state = result.state
        losses.append(result.loss / result.chunks)
    assert losses[0] > 0.5 and np.mean(losses[-5:]) < 0.1  # guessing gives 1.0
