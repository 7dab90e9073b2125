"""First-order optimisers over dicts of live NumPy arrays.

The update rules are those of torch.optim.SGD and torch.optim.Adam (without weight decay), so a
model trained here behaves like the same model trained in PyTorch. Parameters are updated in place
(``p -= lr * g``) and never rebound, so the arrays returned by ``LSTM.state_dict()`` (which are the
model's own) are what gets trained::

    lstm = lstm_fast.LSTM(2, 64, forget_bias=1.0, seed=0)
    head = lstm_fast.nn.Linear(64, 1, seed=0)
    opt = Adam(combine(lstm=lstm.state_dict(), head=head.params), lr=1e-3)
    ...
    lstm.backward(dy)                  # fills lstm.grads
    grads = combine(lstm=lstm.grads, head=head.grads)
    clip_grad_norm(grads, 1.0)
    opt.step(grads)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["SGD", "Adam", "clip_grad_norm", "combine"]


def combine(**groups: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Merge named dicts of arrays into one dict with ``"<group>.<name>"`` keys (torch's naming).

    ``combine(lstm=lstm.state_dict(), head=head.params)`` gives ``{"lstm.weight_ih_l0": ...,
    "head.weight": ...}``. The arrays are not copied, so the result still refers to the live
    parameters; build the gradients with the same group names so the keys match.
    """
    merged: dict[str, np.ndarray] = {}
    for group, arrays in groups.items():
        for name, array in arrays.items():
            merged[f"{group}.{name}"] = array
    return merged


def _check_params(params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict of name -> np.ndarray, got {type(params).__name__}")
    if not params:
        raise ValueError("params is empty: there is nothing to optimise")
    checked = {}
    for name, p in params.items():
        # In-place updates are the point: a copy (np.asarray of a list, a cast) would train nothing.
        if not isinstance(p, np.ndarray):
            raise TypeError(f"params[{name!r}] must be a np.ndarray (updated in place), got {type(p).__name__}")
        if not np.issubdtype(p.dtype, np.floating):
            raise TypeError(f"params[{name!r}] must have a floating dtype, got {p.dtype}")
        if not p.flags.writeable:
            raise ValueError(f"params[{name!r}] is read-only; the optimiser updates it in place")
        checked[name] = p
    return checked


def _check_grads(params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> dict:
    if not isinstance(grads, Mapping):
        raise TypeError(f"grads must be a dict of name -> np.ndarray, got {type(grads).__name__}")
    checked = {}
    for name, p in params.items():
        if name not in grads:
            raise ValueError(f"grads is missing the key {name!r} (a parameter being optimised)")
        g = np.asarray(grads[name])
        if g.shape != p.shape:
            raise ValueError(f"grads[{name!r}] must have shape {p.shape}, got {g.shape}")
        checked[name] = g
    extra = [name for name in grads if name not in params]
    if extra:
        raise ValueError(f"grads has key {extra[0]!r} that is not among the optimiser's params")
    return checked


def _check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    value = float(value)
    ok = value >= 0.0 if allow_zero else value > 0.0
    if not (math.isfinite(value) and ok):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


class SGD:
    """Stochastic gradient descent with optional (heavy-ball) momentum, as torch.optim.SGD.

    With momentum mu, each step does ``buf = mu * buf + g`` (buf starts at g) and ``p -= lr * buf``;
    without momentum, ``p -= lr * g``.

    Args:
        params: name -> np.ndarray, the live parameter arrays (updated in place).
        lr: learning rate, > 0.
        momentum: mu in [0, 1).
    """

    def __init__(self, params: Mapping[str, np.ndarray], lr: float, momentum: float = 0.0) -> None:
        self.params = _check_params(params)
        self.lr = _check_positive("lr", lr)
        self.momentum = _check_positive("momentum", momentum, allow_zero=True)
        if self.momentum >= 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        self.momentum_buffer: dict[str, np.ndarray] = {}

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        """Apply one update. ``grads`` has the same keys and shapes as ``params``."""
        grads = _check_grads(self.params, grads)
        for name, p in self.params.items():
            g = grads[name]
            if self.momentum:
                buf = self.momentum_buffer.get(name)
                if buf is None:
                    buf = self.momentum_buffer[name] = np.array(g, dtype=p.dtype)
                else:
                    buf *= self.momentum
                    buf += g
                g = buf
            p -= self.lr * g


class Adam:
    """Adam (Kingma & Ba, 2015) with torch.optim.Adam's bias correction, no weight decay.

    At step t, with gradient g::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Args:
        params: name -> np.ndarray, the live parameter arrays (updated in place).
        lr: learning rate, > 0.
        betas: (beta1, beta2), each in [0, 1).
        eps: added to the denominator, > 0.
    """

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = _check_params(params)
        self.lr = _check_positive("lr", lr)
        if len(betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {tuple(betas)}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = _check_positive("eps", eps)
        self.t = 0
        # First and second moment estimates, kept in each parameter's dtype like torch.
        self.exp_avg = {name: np.zeros_like(p) for name, p in self.params.items()}
        self.exp_avg_sq = {name: np.zeros_like(p) for name, p in self.params.items()}

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        """Apply one update. ``grads`` has the same keys and shapes as ``params``."""
        grads = _check_grads(self.params, grads)
        beta1, beta2 = self.betas
        self.t += 1
        step_size = self.lr / (1.0 - beta1**self.t)
        sqrt_bias_correction2 = math.sqrt(1.0 - beta2**self.t)
        for name, p in self.params.items():
            g = grads[name]
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            m *= beta1
            m += (1.0 - beta1) * g
            v *= beta2
            v += (1.0 - beta2) * np.square(g)
            denom = np.sqrt(v)
            denom /= sqrt_bias_correction2
            denom += self.eps
            p -= step_size * m / denom


def clip_grad_norm(grads: Mapping[str, np.ndarray] | Iterable[np.ndarray], max_norm: float) -> float:
    """Scale gradients in place so that their global L2 norm is at most ``max_norm``.

    As torch.nn.utils.clip_grad_norm_: the norm is taken over all arrays together,
    ``total = sqrt(sum_k ||g_k||^2)``, and when ``total > max_norm`` every array is multiplied by
    ``max_norm / (total + 1e-6)``. If the norm is not finite the gradients are left as they are
    (the caller can skip the step).

    Args:
        grads: name -> np.ndarray (or an iterable of arrays), modified in place.
        max_norm: the largest allowed norm, > 0.

    Returns:
        The total norm before clipping, as a Python float.
    """
    max_norm = _check_positive("max_norm", max_norm)
    arrays = list(grads.values()) if isinstance(grads, Mapping) else list(grads)
    for g in arrays:
        if not isinstance(g, np.ndarray):
            raise TypeError(f"grads must be np.ndarray (scaled in place), got {type(g).__name__}")
    # Accumulate in float64 so a float32 model's norm does not lose digits over many arrays.
    total = math.sqrt(
        sum(
            float(np.dot(g.ravel().astype(np.float64, copy=False), g.ravel().astype(np.float64, copy=False)))
            for g in arrays
        )
    )
    if math.isfinite(total):
        clip_coef = max_norm / (total + 1e-6)
        if clip_coef < 1.0:
            for g in arrays:
                g *= clip_coef
    return total
