"""Tests of the NumPy reference LSTM (the oracle of every other test): its gradients against
finite differences, its outputs and gradients against torch.nn.LSTM, and its padding semantics."""

import numpy as np
import pytest
from conftest import finite_difference

from lstm_fast import reference as ref

T, B, I, H = 5, 3, 2, 3


def make_params(
    rng, input_size, hidden_size, num_layers=1, *, bidirectional=False, proj_size=0, bias=True, peephole=False
):
    """Random parameters under torch.nn.LSTM's names and shapes (plus weight_peep)."""
    D = 2 if bidirectional else 1
    R = proj_size if proj_size > 0 else hidden_size
    shapes = {}
    for k in range(num_layers):
        for sfx in ("", "_reverse")[:D]:
            shapes[f"weight_ih_l{k}{sfx}"] = (4 * hidden_size, input_size if k == 0 else D * R)
            shapes[f"weight_hh_l{k}{sfx}"] = (4 * hidden_size, R)
            if bias:
                shapes[f"bias_ih_l{k}{sfx}"] = (4 * hidden_size,)
                shapes[f"bias_hh_l{k}{sfx}"] = (4 * hidden_size,)
            if proj_size > 0:
                shapes[f"weight_hr_l{k}{sfx}"] = (R, hidden_size)
            if peephole:
                shapes[f"weight_peep_l{k}{sfx}"] = (3, hidden_size)
    return {name: rng.uniform(-0.8, 0.8, shape) for name, shape in shapes.items()}


def make_problem(
    seed,
    *,
    num_layers=1,
    bidirectional=False,
    proj_size=0,
    bias=True,
    peephole=False,
    lengths=None,
    dropout=False,
    T=T,
    B=B,
    I=I,
    H=H,
):
    """Everything forward() and backward() take, plus the loss weights (r_y, r_h, r_c) of
    loss = sum(y * r_y) + sum(h_n * r_h) + sum(c_n * r_c)."""
    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    R = proj_size if proj_size > 0 else H
    params = make_params(
        rng, I, H, num_layers, bidirectional=bidirectional, proj_size=proj_size, bias=bias, peephole=peephole
    )
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((num_layers * D, B, R))
    c0 = rng.standard_normal((num_layers * D, B, H))
    masks = None
    if dropout:  # p = 0.4: kept entries are scaled by 1 / (1 - p)
        masks = [(rng.random((T, B, D * R)) > 0.4) / 0.6 for _ in range(num_layers - 1)]
    options = dict(
        num_layers=num_layers,
        bidirectional=bidirectional,
        proj_size=proj_size,
        peephole=peephole,
        lengths=None if lengths is None else np.array(lengths),
        dropout_masks=masks,
    )
    r_y = rng.standard_normal((T, B, D * R))
    r_h, r_c = rng.standard_normal(h0.shape), rng.standard_normal(c0.shape)
    return x, (h0, c0), params, options, (r_y, r_h, r_c)


# --- 1. Every gradient against central finite differences ------------------------------------

FD_CONFIGS = {
    "plain": dict(),
    "no_bias": dict(bias=False),
    "proj": dict(proj_size=2),
    "peephole": dict(peephole=True),
    "bidirectional": dict(bidirectional=True),
    "lengths": dict(lengths=[5, 1, 3]),
    "two_layers_dropout": dict(num_layers=2, dropout=True),
    "three_layers": dict(num_layers=3, H=2),
    "bidirectional_lengths": dict(bidirectional=True, lengths=[2, 5, 1]),
    "peephole_proj_no_bias": dict(peephole=True, proj_size=2, bias=False),
    "peephole_lengths_dropout": dict(num_layers=2, peephole=True, lengths=[1, 4, 5], dropout=True),
    "everything": dict(num_layers=3, bidirectional=True, proj_size=2, peephole=True, lengths=[3, 5, 1], dropout=True),
    "everything_no_bias": dict(
        num_layers=2, bidirectional=True, proj_size=1, peephole=True, lengths=[5, 1], dropout=True, bias=False, B=2
    ),
}


@pytest.mark.parametrize("config", FD_CONFIGS.values(), ids=FD_CONFIGS.keys())
def test_gradients_match_finite_differences(config):
    assert_gradients_match_finite_differences(*make_problem(1, **config))


def assert_gradients_match_finite_differences(x, state, params, options, weights):
    """backward()'s gradients of loss = sum(y r_y) + sum(h_n r_h) + sum(c_n r_c) against central differences,
    for x, the state and every parameter (each of which the loss must depend on)."""
    (h0, c0), (r_y, r_h, r_c) = state, weights

    def loss():
        y, (h_n, c_n), _ = ref.forward(x, params, state=(h0, c0), **options)
        return np.sum(y * r_y) + np.sum(h_n * r_h) + np.sum(c_n * r_c)

    _, _, cache = ref.forward(x, params, state=(h0, c0), **options)
    dx, (dh0, dc0), grads = ref.backward(r_y, cache, (r_h, r_c))
    assert set(grads) == set(params)
    analytic = dict(x=dx, h0=dh0, c0=dc0, **grads)
    for name, array in dict(x=x, h0=h0, c0=c0, **params).items():
        numeric = finite_difference(loss, array)
        assert np.abs(numeric).max() > 1e-3, f"{name}: the loss does not depend on it"
        np.testing.assert_allclose(analytic[name], numeric, rtol=1e-6, atol=1e-8, err_msg=name)


# --- 2. Against torch.nn.LSTM ---------------------------------------------------------------


@pytest.mark.parametrize("lengths", [None, [3, 5, 1]], ids=["full", "lengths"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("proj_size", [0, 2], ids=["no_proj", "proj"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3], ids=["1layer", "2layers", "3layers"])
def test_matches_torch(num_layers, bidirectional, proj_size, bias, lengths):
    torch = pytest.importorskip("torch")
    x, (h0, c0), params, options, (r_y, r_h, r_c) = make_problem(
        2, num_layers=num_layers, bidirectional=bidirectional, proj_size=proj_size, bias=bias, lengths=lengths, I=4
    )
    module = torch.nn.LSTM(
        4, H, num_layers, bias=bias, bidirectional=bidirectional, proj_size=proj_size, dtype=torch.float64
    )
    assert set(dict(module.named_parameters())) == set(params)
    module.load_state_dict({name: torch.from_numpy(value) for name, value in params.items()})
    x_t, h0_t, c0_t = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    if lengths is None:
        y_t, (h_n_t, c_n_t) = module(x_t, (h0_t, c0_t))
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(x_t, torch.tensor(lengths), enforce_sorted=False)
        y_packed, (h_n_t, c_n_t) = module(packed, (h0_t, c0_t))
        y_t, _ = torch.nn.utils.rnn.pad_packed_sequence(y_packed, total_length=T)
    loss = (
        (y_t * torch.from_numpy(r_y)).sum()
        + (h_n_t * torch.from_numpy(r_h)).sum()
        + (c_n_t * torch.from_numpy(r_c)).sum()
    )
    loss.backward()

    y, (h_n, c_n), cache = ref.forward(x, params, state=(h0, c0), **options)
    dx, (dh0, dc0), grads = ref.backward(r_y, cache, (r_h, r_c))
    ours = dict(y=y, h_n=h_n, c_n=c_n, dx=dx, dh0=dh0, dc0=dc0, **grads)
    theirs = dict(
        y=y_t,
        h_n=h_n_t,
        c_n=c_n_t,
        dx=x_t.grad,
        dh0=h0_t.grad,
        dc0=c0_t.grad,
        **{name: p.grad for name, p in module.named_parameters()},
    )
    assert set(ours) == set(theirs)
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name].detach().numpy(), rtol=1e-10, atol=1e-10, err_msg=name)


# --- 3. Features torch cannot check, and sanity -----------------------------------------------


def test_peephole_forward_follows_the_equations():
    """Two steps of one peephole cell with projection, written out gate by gate."""
    x, (h0, c0), params, options, _ = make_problem(3, peephole=True, proj_size=2, B=1, T=2)
    W_ih, W_hh, W_hr = params["weight_ih_l0"], params["weight_hh_l0"], params["weight_hr_l0"]
    b, p = params["bias_ih_l0"] + params["bias_hh_l0"], params["weight_peep_l0"]

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    h, c, expected = h0[0, 0], c0[0, 0], []
    for t in range(2):
        z = W_ih @ x[t, 0] + W_hh @ h + b
        input_gate = sigmoid(z[0:H] + p[0] * c)
        forget_gate = sigmoid(z[H : 2 * H] + p[1] * c)
        c = forget_gate * c + input_gate * np.tanh(z[2 * H : 3 * H])
        output_gate = sigmoid(z[3 * H : 4 * H] + p[2] * c)
        h = W_hr @ (output_gate * np.tanh(c))
        expected.append(h)
    y, (h_n, c_n), _ = ref.forward(x, params, state=(h0, c0), **options)
    np.testing.assert_allclose(y[:, 0], expected, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(h_n[0, 0], h, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(c_n[0, 0], c, rtol=1e-14, atol=1e-14)


def test_dropout_masks_of_ones_change_nothing():
    x, state, params, options, (r_y, r_h, r_c) = make_problem(
        4, num_layers=3, bidirectional=True, proj_size=2, lengths=[2, 5, 4]
    )
    ones = [np.ones((T, B, 4)) for _ in range(2)]
    results = []
    for masks in (None, ones):
        y, (h_n, c_n), cache = ref.forward(x, params, state=state, **dict(options, dropout_masks=masks))
        dx, (dh0, dc0), grads = ref.backward(r_y, cache, (r_h, r_c))
        results.append([y, h_n, c_n, dx, dh0, dc0, *grads.values()])
    for without, with_ones in zip(*results):
        np.testing.assert_array_equal(without, with_ones)


def test_dropout_mask_multiplies_the_input_of_the_next_layer():
    """A two-layer LSTM with a mask equals layer 0, times the mask, then layer 1 run on its own."""
    x, (h0, c0), params, options, _ = make_problem(5, num_layers=2, bidirectional=True, lengths=[5, 2, 3], dropout=True)
    y, (h_n, c_n), _ = ref.forward(x, params, state=(h0, c0), **options)
    single = dict(options, num_layers=1, dropout_masks=None)
    layer0 = {name: v for name, v in params.items() if "_l0" in name}
    layer1 = {name.replace("_l1", "_l0"): v for name, v in params.items() if "_l1" in name}
    y0, (h_n0, c_n0), _ = ref.forward(x, layer0, state=(h0[:2], c0[:2]), **single)
    y1, (h_n1, c_n1), _ = ref.forward(y0 * options["dropout_masks"][0], layer1, state=(h0[2:], c0[2:]), **single)
    np.testing.assert_allclose(y, y1, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(h_n, np.concatenate([h_n0, h_n1]), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(c_n, np.concatenate([c_n0, c_n1]), rtol=1e-14, atol=1e-14)


SHAPE_CONFIGS = [
    dict(),
    dict(num_layers=2, bidirectional=True, proj_size=2, peephole=True),
    dict(num_layers=3, bias=False, proj_size=1),
]


@pytest.mark.parametrize("config", SHAPE_CONFIGS)
def test_shapes(config):
    x, (h0, c0), params, options, _ = make_problem(6, **config)
    D = 2 if config.get("bidirectional") else 1
    R = config.get("proj_size") or H
    y, (h_n, c_n), cache = ref.forward(x, params, **options)  # state=None: zeros
    assert y.shape == (T, B, D * R)
    assert h_n.shape == h0.shape == (config.get("num_layers", 1) * D, B, R)
    assert c_n.shape == c0.shape
    dx, (dh0, dc0), grads = ref.backward(np.ones_like(y), cache)  # dstate=None: zeros
    assert (dx.shape, dh0.shape, dc0.shape) == (x.shape, h0.shape, c0.shape)
    assert list(grads) == list(params)
    assert all(grads[name].shape == params[name].shape for name in params)


def test_outputs_past_each_length_are_zero():
    lengths = [3, 5, 1]
    x, state, params, options, (r_y, _, _) = make_problem(
        7, num_layers=2, bidirectional=True, proj_size=2, peephole=True, lengths=lengths
    )
    y, _, cache = ref.forward(x, params, state=state, **options)
    dx, _, _ = ref.backward(r_y, cache)
    for b, length in enumerate(lengths):
        assert np.all(y[length:, b] == 0) and np.all(dx[length:, b] == 0)
        assert np.all(y[:length, b] != 0) and np.all(dx[:length, b] != 0)


def test_each_padded_sequence_equals_running_it_alone():
    """Sequence b of a padded batch gives what the same sequence cut to its length gives alone."""
    lengths = [3, 5, 1]
    x, (h0, c0), params, options, _ = make_problem(
        8, num_layers=2, bidirectional=True, proj_size=2, peephole=True, lengths=lengths
    )
    y, (h_n, c_n), _ = ref.forward(x, params, state=(h0, c0), **options)
    alone = dict(options, lengths=None)
    for b, length in enumerate(lengths):
        y_b, (h_n_b, c_n_b), _ = ref.forward(
            x[:length, b : b + 1], params, state=(h0[:, b : b + 1], c0[:, b : b + 1]), **alone
        )
        np.testing.assert_allclose(y[:length, b : b + 1], y_b, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(h_n[:, b : b + 1], h_n_b, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(c_n[:, b : b + 1], c_n_b, rtol=1e-14, atol=1e-14)


def test_lengths_all_full_equal_no_lengths_exactly():
    x, state, params, options, (r_y, r_h, r_c) = make_problem(
        9, num_layers=2, bidirectional=True, proj_size=2, peephole=True, dropout=True
    )
    results = []
    for lengths in (None, np.full(B, T)):
        y, (h_n, c_n), cache = ref.forward(x, params, state=state, **dict(options, lengths=lengths))
        dx, (dh0, dc0), grads = ref.backward(r_y, cache, (r_h, r_c))
        results.append([y, h_n, c_n, dx, dh0, dc0, *grads.values()])
    for without, full in zip(*results):
        np.testing.assert_array_equal(without, full)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p, o: p.pop("weight_hr_l0"), "missing weight_hr_l0"),
        (lambda p, o: p.update(weight_hr_l1=p["weight_hr_l0"]), "weight_hr_l1"),
        (lambda p, o: o.update(peephole=False), "weight_peep_l0"),
        (lambda p, o: o.update(lengths=np.array([0, 5, 5])), "lengths"),
        (lambda p, o: o.update(lengths=np.array([6, 5, 5])), "lengths"),
        (lambda p, o: o.update(state=(np.zeros((1, B, 2)), np.zeros((1, B, 2)))), "state"),
    ],
)
def test_rejects_inconsistent_input(change, message):
    x, _, params, options, _ = make_problem(10, proj_size=2, peephole=True)
    change(params, options)
    with pytest.raises(ValueError, match=message):
        ref.forward(x, params, **options)
