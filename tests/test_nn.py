import math

import numpy as np
import pytest
from conftest import finite_difference

from lstm_fast import nn


def test_linear_forward_is_x_times_weight_transposed_plus_bias():
    layer = nn.Linear(2, 3, dtype=np.float64, seed=0)
    layer.params["weight"][...] = [[1.0, 2.0], [0.0, -1.0], [0.5, 0.5]]
    layer.params["bias"][...] = [0.1, 0.2, 0.3]
    y = layer(np.array([[1.0, 1.0], [2.0, -1.0]]))
    np.testing.assert_allclose(y, [[3.1, -0.8, 1.3], [0.1, 1.2, 0.8]], rtol=1e-15)


def test_linear_init_is_torch_like_and_seeded():
    layer = nn.Linear(16, 8, seed=3)
    assert layer.params["weight"].shape == (8, 16) and layer.params["bias"].shape == (8,)
    assert layer.params["weight"].dtype == np.float32
    bound = 1.0 / math.sqrt(16)
    for p in layer.params.values():
        assert np.all(np.abs(p) <= bound)
    # Uniform on +-bound spreads out: not all tiny, not constant.
    assert np.abs(layer.params["weight"]).max() > 0.5 * bound
    assert np.std(layer.params["weight"]) > 0.3 * bound
    again = nn.Linear(16, 8, seed=3)
    other = nn.Linear(16, 8, seed=4)
    np.testing.assert_array_equal(layer.params["weight"], again.params["weight"])
    assert not np.array_equal(layer.params["weight"], other.params["weight"])


@pytest.mark.parametrize("leading", [(5,), (3, 4), ()])
def test_linear_gradients_match_finite_differences(leading):
    rng = np.random.default_rng(0)
    layer = nn.Linear(4, 3, dtype=np.float64, seed=1)
    x = rng.standard_normal(leading + (4,))
    weights = rng.standard_normal(leading + (3,))  # loss = sum(weights * y), so dy = weights

    def loss():
        return float(np.sum(weights * layer(x)))

    loss()
    dx = layer.backward(weights)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, finite_difference(loss, x), rtol=1e-7, atol=1e-9)
    for name in ("weight", "bias"):
        analytic = layer.grads[name].copy()
        np.testing.assert_allclose(analytic, finite_difference(loss, layer.params[name]), rtol=1e-7, atol=1e-9)


def test_linear_backward_overwrites_grads_in_the_same_arrays():
    layer = nn.Linear(2, 1, dtype=np.float64, seed=0)
    weight_grad = layer.grads["weight"]
    layer(np.array([[1.0, 2.0]]))
    layer.backward(np.array([[1.0]]))
    layer(np.array([[3.0, -1.0]]))
    layer.backward(np.array([[2.0]]))
    assert layer.grads["weight"] is weight_grad
    np.testing.assert_array_equal(layer.grads["weight"], [[6.0, -2.0]])
    np.testing.assert_array_equal(layer.grads["bias"], [2.0])


def test_linear_rejects_bad_shapes_and_order():
    layer = nn.Linear(4, 2)
    with pytest.raises(ValueError, match="backward"):
        layer.backward(np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 4\), got \(3, 5\)"):
        layer(np.zeros((3, 5)))
    layer(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"dy must have shape \(3, 2\)"):
        layer.backward(np.zeros((3, 1)))
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(0, 2)
    with pytest.raises(TypeError, match="dtype"):
        nn.Linear(2, 2, dtype=np.int32)


def test_mse_loss_value_and_gradient():
    pred = np.array([[0.5], [1.0], [-1.0]])
    target = np.array([[0.0], [1.0], [1.0]])
    loss, dpred = nn.mse_loss(pred, target)
    assert loss == pytest.approx((0.25 + 0.0 + 4.0) / 3, rel=1e-15)
    np.testing.assert_allclose(dpred, [[1.0 / 3], [0.0], [-4.0 / 3]], rtol=1e-15)
    rng = np.random.default_rng(0)
    pred = rng.standard_normal((4, 2))
    target = rng.standard_normal((4, 2))
    _, dpred = nn.mse_loss(pred, target)
    numeric = finite_difference(lambda: nn.mse_loss(pred, target)[0], pred)
    np.testing.assert_allclose(dpred, numeric, rtol=1e-7, atol=1e-10)
    with pytest.raises(ValueError, match="target must have the shape"):
        nn.mse_loss(np.zeros((4, 1)), np.zeros(4))


def test_softmax_cross_entropy_value_and_gradient():
    logits = np.array([[0.0, 0.0], [math.log(3.0), 0.0]])
    loss, dlogits = nn.softmax_cross_entropy(logits, np.array([0, 1]))
    # Row 0: p = (1/2, 1/2), label 0; row 1: p = (3/4, 1/4), label 1.
    assert loss == pytest.approx((math.log(2.0) + math.log(4.0)) / 2, rel=1e-14)
    np.testing.assert_allclose(dlogits, [[-0.25, 0.25], [0.375, -0.375]], rtol=1e-14)
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 4)) * 3
    labels = rng.integers(0, 4, size=5)
    _, dlogits = nn.softmax_cross_entropy(logits, labels)
    numeric = finite_difference(lambda: nn.softmax_cross_entropy(logits, labels)[0], logits)
    np.testing.assert_allclose(dlogits, numeric, rtol=1e-6, atol=1e-10)


def test_softmax_cross_entropy_over_leading_axes_is_the_mean_over_all_examples():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((3, 2, 5))
    labels = rng.integers(0, 5, size=(3, 2))
    loss, dlogits = nn.softmax_cross_entropy(logits, labels)
    flat_loss, flat_d = nn.softmax_cross_entropy(logits.reshape(6, 5), labels.reshape(6))
    assert loss == pytest.approx(flat_loss, rel=1e-15)
    np.testing.assert_allclose(dlogits, flat_d.reshape(3, 2, 5), rtol=1e-15)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [-1e4, 1e4, 0.0]], dtype=np.float32)
    loss, dlogits = nn.softmax_cross_entropy(logits, np.array([1, 1]))
    # Row 0 puts all mass on class 0 and pays 1000 for class 1; row 1 is certain and right.
    assert loss == pytest.approx(500.0, rel=1e-6)
    assert np.all(np.isfinite(dlogits))
    np.testing.assert_allclose(dlogits, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-6)


def test_softmax_cross_entropy_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        nn.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(TypeError, match="integers"):
        nn.softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        nn.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2]))


def test_losses_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((6, 4))
    labels = rng.integers(0, 4, size=6)
    t_logits = torch.tensor(logits, requires_grad=True)
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.tensor(labels))
    t_loss.backward()
    loss, dlogits = nn.softmax_cross_entropy(logits, labels)
    assert loss == pytest.approx(t_loss.item(), rel=1e-12)
    np.testing.assert_allclose(dlogits, t_logits.grad.numpy(), rtol=1e-12, atol=1e-15)

    pred, target = rng.standard_normal((6, 1)), rng.standard_normal((6, 1))
    t_pred = torch.tensor(pred, requires_grad=True)
    t_mse = torch.nn.functional.mse_loss(t_pred, torch.tensor(target))
    t_mse.backward()
    loss, dpred = nn.mse_loss(pred, target)
    assert loss == pytest.approx(t_mse.item(), rel=1e-12)
    np.testing.assert_allclose(dpred, t_pred.grad.numpy(), rtol=1e-12)


def test_linear_matches_torch_linear():
    torch = pytest.importorskip("torch")
    layer = nn.Linear(5, 3, dtype=np.float64, seed=0)
    t_layer = torch.nn.Linear(5, 3, dtype=torch.float64)
    with torch.no_grad():
        t_layer.weight.copy_(torch.tensor(layer.params["weight"]))
        t_layer.bias.copy_(torch.tensor(layer.params["bias"]))
    x = np.random.default_rng(0).standard_normal((2, 4, 5))
    t_x = torch.tensor(x, requires_grad=True)
    t_y = t_layer(t_x)
    dy = np.random.default_rng(1).standard_normal(t_y.shape)
    t_y.backward(torch.tensor(dy))
    np.testing.assert_allclose(layer(x), t_y.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(layer.backward(dy), t_x.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.grads["weight"], t_layer.weight.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.grads["bias"], t_layer.bias.grad.numpy(), rtol=1e-12)
