"""A plain tanh RNN in NumPy: the baseline the 1997 paper measured the LSTM against.

    h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)

It has the same parameter names, shapes and initialisation as a one-layer ``torch.nn.RNN`` (uniform
in +-1/sqrt(hidden_size)), and the same calling convention as ``lstm_fast.LSTM`` (time-major
(T, B, I) input, ``lengths`` with packed-sequence semantics, ``forward(..., train=True)`` then
``backward(dy, dstate)`` filling ``grads``), so a training loop can swap one for the other. The
state is ``h`` alone, shaped (1, B, H) as in torch.

It is written for clarity, not speed: one NumPy matrix product per step. Backpropagated through
time, the error at step t is multiplied at every earlier step by ``W_hh^T diag(1 - h^2)``, whose
norm is usually below 1, so it vanishes over long lags: that is what the LSTM's additive cell avoids.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["RNN"]


class RNN:
    """One-layer Elman RNN with tanh, in NumPy.

    Args:
        input_size: I, features per step.
        hidden_size: H, units.
        dtype: float32 or float64.
        seed: makes the initialisation reproducible.

    Attributes:
        params: ``weight_ih_l0`` (H, I), ``weight_hh_l0`` (H, H), ``bias_ih_l0`` (H,), ``bias_hh_l0``
            (H,): the live arrays (``state_dict()`` returns them).
        grads: the same keys, filled by ``backward()``.
    """

    num_layers = 1
    num_directions = 1

    def __init__(self, input_size: int, hidden_size: int, *, dtype=np.float32, seed=None) -> None:
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.input_size = int(input_size)
        self.hidden_size = self.output_size = int(hidden_size)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.hidden_size)
        H, I = self.hidden_size, self.input_size
        shapes = {"weight_ih_l0": (H, I), "weight_hh_l0": (H, H), "bias_ih_l0": (H,), "bias_hh_l0": (H,)}
        self.params = {name: rng.uniform(-bound, bound, shape).astype(self.dtype) for name, shape in shapes.items()}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self._run = None

    def __repr__(self) -> str:
        return f"RNN({self.input_size}, {self.hidden_size}, dtype={self.dtype.name})"

    def state_dict(self) -> dict:
        """The live parameter arrays under torch.nn.RNN's names (update them in place to train)."""
        return dict(self.params)

    def load_state_dict(self, state_dict) -> None:
        """Copies parameters in (NumPy arrays or torch tensors); every key must be present."""
        for name, p in self.params.items():
            if name not in state_dict:
                raise ValueError(f"state_dict is missing key {name!r}")
            value = np.asarray(state_dict[name], dtype=self.dtype)
            if value.shape != p.shape:
                raise ValueError(f"state_dict[{name!r}] must have shape {p.shape}, got {value.shape}")
        for name, p in self.params.items():
            np.copyto(p, np.asarray(state_dict[name], dtype=self.dtype))

    def initial_state(self, batch_size: int) -> np.ndarray:
        """Zero h, (1, B, H)."""
        return np.zeros((1, batch_size, self.hidden_size), self.dtype)

    def __call__(self, x, state=None, lengths=None) -> tuple[np.ndarray, np.ndarray]:
        """Inference: ``y, h_n = rnn(x, state=None, lengths=None)``; see forward()."""
        return self.forward(x, state, lengths, train=False)

    def forward(self, x, state=None, lengths=None, train: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Runs the sequence.

        Args:
            x: (T, B, I).
            state: h0 (1, B, H), or None for zeros.
            lengths: (B,) integers in [1, T], or None: outputs past a sequence's length are 0 and
                its h_n is the state after its last valid step (torch's packed sequences).
            train: keep what ``backward()`` needs.

        Returns:
            y (T, B, H) and h_n (1, B, H).
        """
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"x must have shape (T, B, {self.input_size}), got {x.shape}")
        T, B, _ = x.shape
        H = self.hidden_size
        h = np.zeros((B, H), self.dtype) if state is None else np.array(state, dtype=self.dtype)
        if h.shape not in ((1, B, H), (B, H)):
            raise ValueError(f"state must have shape (1, {B}, {H}), got {h.shape}")
        h = h.reshape(B, H)
        mask = None
        if lengths is not None:
            lengths = np.asarray(lengths)
            if lengths.shape != (B,) or lengths.min() < 1 or lengths.max() > T:
                raise ValueError(f"lengths must be (B,) = ({B},) integers in [1, {T}], got {lengths}")
            mask = (np.arange(T)[:, None] < lengths[None, :]).astype(self.dtype)[:, :, None]
        p = self.params
        w_hh_t = p["weight_hh_l0"].T
        pre = x @ p["weight_ih_l0"].T + (p["bias_ih_l0"] + p["bias_hh_l0"])  # one GEMM over all steps
        hs = np.empty((T + 1, B, H), self.dtype)  # hs[0] = h0, hs[t + 1] = h after step t
        hs[0] = h
        for t in range(T):
            new = np.tanh(pre[t] + hs[t] @ w_hh_t)
            if mask is not None:  # a finished sequence keeps its state
                new = mask[t] * new + (1 - mask[t]) * hs[t]
            hs[t + 1] = new
        y = hs[1:].copy() if mask is None else hs[1:] * mask
        if train:
            self._run = (x, hs, mask)
        return y, hs[T][None].copy()

    def backward(self, dy, dstate=None) -> tuple[np.ndarray, np.ndarray]:
        """Backpropagation through time for the last ``forward(..., train=True)``.

        Args:
            dy: (T, B, H), the loss gradient w.r.t. y.
            dstate: dh_n (1, B, H), or None for zeros.

        Returns:
            dx (T, B, I) and dh0 (1, B, H). Fills ``grads`` (overwritten).
        """
        if self._run is None:
            raise ValueError("backward() needs a training forward first: call forward(x, train=True)")
        x, hs, mask = self._run
        self._run = None
        T, B, _ = x.shape
        H = self.hidden_size
        dy = np.asarray(dy, dtype=self.dtype)
        if dy.shape != (T, B, H):
            raise ValueError(f"dy must have shape {(T, B, H)}, got {dy.shape}")
        dh = np.zeros((B, H), self.dtype) if dstate is None else np.array(dstate, dtype=self.dtype).reshape(B, H)
        w_hh = self.params["weight_hh_l0"]
        da = np.empty((T, B, H), self.dtype)  # gradient w.r.t. the pre-activation of each step
        for t in range(T - 1, -1, -1):
            if mask is None:
                dh = dh + dy[t]
                da[t] = dh * (1 - hs[t + 1] ** 2)
                dh = da[t] @ w_hh
            else:
                m = mask[t]
                dh = dh + m * dy[t]
                da[t] = m * dh * (1 - hs[t + 1] ** 2)
                dh = da[t] @ w_hh + (1 - m) * dh  # past its length, a sequence's state passes through
        rows = da.reshape(T * B, H)
        self.grads = {
            "weight_ih_l0": rows.T @ x.reshape(T * B, -1),
            "weight_hh_l0": rows.T @ hs[:-1].reshape(T * B, H),
            "bias_ih_l0": rows.sum(axis=0),
            "bias_hh_l0": rows.sum(axis=0),
        }
        dx = da @ self.params["weight_ih_l0"]
        return dx, dh[None]
