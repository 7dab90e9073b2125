import math

import numpy as np
import pytest

from lstm_fast import optim


def test_sgd_step_matches_hand_computation():
    w = np.array([1.0, -2.0, 3.0])
    opt = optim.SGD({"w": w}, lr=0.1)
    opt.step({"w": np.array([0.5, 1.0, -2.0])})
    np.testing.assert_allclose(w, [0.95, -2.1, 3.2], rtol=0, atol=1e-15)


def test_sgd_momentum_accumulates_like_torch():
    # buf1 = g1 = 1; p1 = 1 - 0.1*1 = 0.9
    # buf2 = 0.9*1 + 2 = 2.9; p2 = 0.9 - 0.1*2.9 = 0.61
    # buf3 = 0.9*2.9 - 1 = 1.61; p3 = 0.61 - 0.1*1.61 = 0.449
    w = np.array([1.0])
    opt = optim.SGD({"w": w}, lr=0.1, momentum=0.9)
    expected = [0.9, 0.61, 0.449]
    for g, want in zip([1.0, 2.0, -1.0], expected):
        opt.step({"w": np.array([g])})
        np.testing.assert_allclose(w, [want], rtol=0, atol=1e-14)


def test_adam_steps_match_hand_computation():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    w = np.array([1.0, -1.0])
    opt = optim.Adam({"w": w}, lr=lr, betas=(b1, b2), eps=eps)
    # Step 1: m = 0.1 g, v = 0.001 g^2; the bias corrections undo those factors, so the step is
    # lr * g / (|g| + eps) = 0.1 * sign(g) (up to eps).
    opt.step({"w": np.array([2.0, -0.5])})
    np.testing.assert_allclose(w, [1.0 - 0.1 * 2.0 / (2.0 + eps), -1.0 + 0.1 * 0.5 / (0.5 + eps)], rtol=0, atol=1e-15)
    # Step 2 with g = (1, 1), written out from the formulas.
    m = np.array([(1 - b1) * 2.0 * b1 + (1 - b1) * 1.0, (1 - b1) * -0.5 * b1 + (1 - b1) * 1.0])
    v = np.array([(1 - b2) * 4.0 * b2 + (1 - b2) * 1.0, (1 - b2) * 0.25 * b2 + (1 - b2) * 1.0])
    m_hat = m / (1 - b1**2)
    v_hat = v / (1 - b2**2)
    before = w.copy()
    opt.step({"w": np.array([1.0, 1.0])})
    np.testing.assert_allclose(w, before - lr * m_hat / (np.sqrt(v_hat) + eps), rtol=1e-13)
    # The first component had grads 2 then 1: m_hat = (0.18 + 0.1)/0.19, v_hat = (3.996e-3 +
    # 1e-3)/1.999e-3; pinned as literals so a formula error shared with the line above is caught.
    assert before[0] - w[0] == pytest.approx(0.1 * (0.28 / 0.19) / (math.sqrt(4.996e-3 / 1.999e-3) + 1e-8), rel=1e-12)


def test_adam_updates_live_arrays_in_place_and_keeps_dtype():
    w = np.ones((2, 3), dtype=np.float32)
    alias = w
    opt = optim.Adam({"w": w}, lr=0.5)
    opt.step({"w": np.full((2, 3), 3.0, dtype=np.float32)})
    assert alias is w and w.dtype == np.float32
    np.testing.assert_allclose(w, np.full((2, 3), 0.5), rtol=1e-6)
    assert opt.exp_avg["w"].dtype == np.float32


def test_sgd_updates_live_arrays_of_a_dict_in_place():
    params = {"a": np.zeros(3), "b": np.ones((2, 2))}
    a, b = params["a"], params["b"]
    opt = optim.SGD(params, lr=1.0)
    opt.step({"a": np.array([1.0, 2.0, 3.0]), "b": np.full((2, 2), 0.25)})
    np.testing.assert_array_equal(a, [-1.0, -2.0, -3.0])
    np.testing.assert_array_equal(b, np.full((2, 2), 0.75))


@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=0.1), lambda p: optim.Adam(p)])
def test_step_names_the_missing_key_and_the_wrong_shape(make):
    opt = make({"weight": np.zeros((2, 3)), "bias": np.zeros(2)})
    with pytest.raises(ValueError, match="'bias'"):
        opt.step({"weight": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"grads\['weight'\] must have shape \(2, 3\), got \(3, 2\)"):
        opt.step({"weight": np.zeros((3, 2)), "bias": np.zeros(2)})
    with pytest.raises(ValueError, match="'typo'"):
        opt.step({"weight": np.zeros((2, 3)), "bias": np.zeros(2), "typo": np.zeros(1)})


def test_bad_params_and_hyperparameters_are_rejected():
    with pytest.raises(TypeError, match=r"params\['w'\] must be a np.ndarray"):
        optim.SGD({"w": [1.0, 2.0]}, lr=0.1)
    with pytest.raises(TypeError, match="floating"):
        optim.SGD({"w": np.zeros(2, dtype=np.int64)}, lr=0.1)
    read_only = np.zeros(2)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        optim.Adam({"w": read_only})
    with pytest.raises(ValueError, match="lr"):
        optim.SGD({"w": np.zeros(2)}, lr=0.0)
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD({"w": np.zeros(2)}, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam({"w": np.zeros(2)}, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="empty"):
        optim.Adam({})


def test_clip_grad_norm_scales_to_max_norm_and_returns_the_old_norm():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0], [4.0]])}  # global norm 5
    total = optim.clip_grad_norm(grads, max_norm=1.0)
    assert total == 5.0
    scale = 1.0 / (5.0 + 1e-6)
    np.testing.assert_allclose(grads["a"], [3.0 * scale, 0.0], rtol=1e-15)
    np.testing.assert_allclose(grads["b"], [[0.0], [4.0 * scale]], rtol=1e-15)
    new_norm = math.sqrt(sum(float(np.sum(g**2)) for g in grads.values()))
    assert new_norm == pytest.approx(1.0, abs=1e-6)
    # Just above the limit is clipped too: norm 2 to 1.5.
    grads = [np.array([2.0])]
    assert optim.clip_grad_norm(grads, max_norm=1.5) == 2.0
    np.testing.assert_allclose(grads[0], [1.5], rtol=1e-6)


def test_clip_grad_norm_leaves_small_gradients_alone():
    grads = [np.array([0.3, 0.4], dtype=np.float32)]  # norm 0.5
    total = optim.clip_grad_norm(grads, max_norm=1.0)
    assert total == pytest.approx(0.5, rel=1e-7)
    np.testing.assert_array_equal(grads[0], np.array([0.3, 0.4], dtype=np.float32))


def test_clip_grad_norm_leaves_non_finite_gradients_alone():
    grads = {"a": np.array([np.inf, 1.0])}
    assert optim.clip_grad_norm(grads, max_norm=1.0) == math.inf
    np.testing.assert_array_equal(grads["a"], [np.inf, 1.0])


def test_combine_prefixes_names_and_keeps_the_live_arrays():
    w, b = np.zeros(2), np.zeros(1)
    merged = optim.combine(lstm={"weight_ih_l0": w}, head={"bias": b})
    assert list(merged) == ["lstm.weight_ih_l0", "head.bias"]
    assert merged["lstm.weight_ih_l0"] is w and merged["head.bias"] is b


def test_sgd_and_adam_match_torch_optim_over_several_steps():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    shapes = {"weight": (4, 3), "bias": (4,)}
    init = {k: rng.standard_normal(s) for k, s in shapes.items()}
    grad_seq = [{k: rng.standard_normal(s) for k, s in shapes.items()} for _ in range(5)]
    cases = [
        (lambda p: optim.SGD(p, lr=0.05, momentum=0.9), lambda t: torch.optim.SGD(t, lr=0.05, momentum=0.9)),
        (
            lambda p: optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
            lambda t: torch.optim.Adam(t, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
        ),
    ]
    for ours_factory, torch_factory in cases:
        params = {k: v.copy() for k, v in init.items()}
        tensors = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in init.items()}
        ours = ours_factory(params)
        theirs = torch_factory(list(tensors.values()))
        for grads in grad_seq:
            ours.step(grads)
            for k, t in tensors.items():
                t.grad = torch.tensor(grads[k])
            theirs.step()
            for k in shapes:
                np.testing.assert_allclose(params[k], tensors[k].detach().numpy(), rtol=1e-12, atol=1e-14)


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    grads = {"a": rng.standard_normal((5, 3)), "b": rng.standard_normal(7)}
    tensors = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads.values()]
    for t, g in zip(tensors, grads.values()):
        t.grad = torch.tensor(g)
    theirs = torch.nn.utils.clip_grad_norm_(tensors, max_norm=0.7)
    ours = optim.clip_grad_norm(grads, max_norm=0.7)
    assert ours == pytest.approx(float(theirs), rel=1e-12)
    for t, g in zip(tensors, grads.values()):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12)
