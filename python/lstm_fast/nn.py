"""A linear readout and two losses, in NumPy, to put on top of an LSTM.

Each piece returns its own gradient, so a training step reads like the chain rule::

    y, _ = lstm.forward(x, train=True)        # y: (T, B, H)
    pred = head(y[-1])                        # (B, 1)
    loss, dpred = mse_loss(pred, target)
    dy = np.zeros_like(y)
    dy[-1] = head.backward(dpred)             # fills head.grads
    lstm.backward(dy)                         # fills lstm.grads
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Linear", "mse_loss", "softmax_cross_entropy"]


def _check_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


class Linear:
    """y = x @ weight.T + bias over the last axis of x, as torch.nn.Linear.

    Args:
        in_features: size of the last axis of the input.
        out_features: size of the last axis of the output.
        dtype: float32 or float64, of the parameters and of the computation.
        seed: makes the initialisation reproducible (None: fresh randomness).

    Attributes:
        params: {"weight": (out_features, in_features), "bias": (out_features,)}, the live arrays,
            initialised like torch: uniform in +-1/sqrt(in_features).
        grads: same keys and shapes, the gradients of the last ``backward()``.
    """

    def __init__(self, in_features: int, out_features: int, *, dtype=np.float32, seed=None) -> None:
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.dtype = _check_dtype(dtype)
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        self.params = {
            "weight": rng.uniform(-bound, bound, (self.out_features, self.in_features)).astype(self.dtype),
            "bias": rng.uniform(-bound, bound, self.out_features).astype(self.dtype),
        }
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self._x = None  # the last input, kept for backward

    def __repr__(self) -> str:
        return f"Linear(in_features={self.in_features}, out_features={self.out_features}, dtype={self.dtype.name})"

    def __call__(self, x) -> np.ndarray:
        """x: (..., in_features) -> (..., out_features). Keeps x for ``backward()``."""
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have shape (..., {self.in_features}), got {x.shape}")
        self._x = x
        return x @ self.params["weight"].T + self.params["bias"]

    def backward(self, dy) -> np.ndarray:
        """dy: (..., out_features), the loss gradient w.r.t. the last call's output.

        Fills ``grads`` (overwriting) and returns dx: (..., in_features).
        """
        if self._x is None:
            raise ValueError("backward() called before the layer was applied to an input")
        dy = np.asarray(dy, dtype=self.dtype)
        expected = self._x.shape[:-1] + (self.out_features,)
        if dy.shape != expected:
            raise ValueError(f"dy must have shape {expected} (the output's), got {dy.shape}")
        dy_rows = dy.reshape(-1, self.out_features)
        x_rows = self._x.reshape(-1, self.in_features)
        # Written into the existing arrays, so dicts built from ``grads`` earlier stay current.
        np.matmul(dy_rows.T, x_rows, out=self.grads["weight"])
        np.sum(dy_rows, axis=0, out=self.grads["bias"])
        return dy @ self.params["weight"]


def mse_loss(pred, target) -> tuple[float, np.ndarray]:
    """Mean squared error over all elements, as torch.nn.functional.mse_loss.

    Args:
        pred: any shape, e.g. (B, 1).
        target: same shape as pred.

    Returns:
        (loss, dpred): loss = mean((pred - target)**2) as a float, and its gradient w.r.t. pred,
        2 * (pred - target) / pred.size, with pred's shape and dtype.
    """
    pred = np.asarray(pred)
    if not np.issubdtype(pred.dtype, np.floating):
        pred = pred.astype(np.float64)
    target = np.asarray(target)
    if target.shape != pred.shape:
        raise ValueError(f"target must have the shape of pred {pred.shape}, got {target.shape}")
    if pred.size == 0:
        raise ValueError("pred is empty: the mean of no elements is undefined")
    diff = pred - target.astype(pred.dtype, copy=False)
    loss = float(np.mean(np.square(diff, dtype=np.float64)))
    return loss, (2.0 / pred.size) * diff


def softmax_cross_entropy(logits, labels) -> tuple[float, np.ndarray]:
    """Softmax followed by the negative log-likelihood, averaged over the batch.

    As torch.nn.functional.cross_entropy with integer class labels. Computed from log-sum-exp with
    the row maximum subtracted, so large logits do not overflow.

    Args:
        logits: (B, C), or (..., C) in general: unnormalised class scores.
        labels: (B,), or (...) matching logits' leading axes: integers in [0, C).

    Returns:
        (loss, dlogits): the mean of -log softmax(logits)[label] over the N = B (or prod(...))
        examples, and its gradient (softmax(logits) - onehot(labels)) / N with logits' shape.
    """
    logits = np.asarray(logits)
    if not np.issubdtype(logits.dtype, np.floating):
        logits = logits.astype(np.float64)
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have shape (..., C) with C >= 1, got {logits.shape}")
    labels = np.asarray(labels)
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"labels must have shape {logits.shape[:-1]} (logits' leading axes), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers (class indices), got dtype {labels.dtype}")
    num_classes = logits.shape[-1]
    if labels.size == 0:
        raise ValueError("labels is empty: the mean of no examples is undefined")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}), got values in [{labels.min()}, {labels.max()}]")
    rows = logits.reshape(-1, num_classes)
    flat_labels = labels.reshape(-1)
    n = rows.shape[0]
    shifted = rows - rows.max(axis=1, keepdims=True)
    log_sum_exp = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_probs = shifted - log_sum_exp
    picked = log_probs[np.arange(n), flat_labels]
    loss = float(-np.mean(picked, dtype=np.float64))
    dlogits = np.exp(log_probs)
    dlogits[np.arange(n), flat_labels] -= 1.0
    dlogits /= n
    return loss, dlogits.reshape(logits.shape)
