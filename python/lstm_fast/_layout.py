"""The user's layouts of sequences and states ((T, B, F), batch_first, unbatched), shared by the
trainable LSTM and the frozen Model: both check and convert their arguments here."""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import numpy as np

from ._checks import as_float_array, check_fits, check_pair, check_sequence_shape, int_arg, shape_str
from ._packing import Packing, packing_of

State = Tuple[np.ndarray, np.ndarray]
"""The recurrent state (h, c): h (L*D, B, R) and c (L*D, B, H), without B for unbatched input."""


class SequenceLayout:
    """Mixin: needs the config attributes (input_size, num_layers, ...), _lstm_config and _io_dtype (the
    arrays' dtype)."""

    def initial_state(self, batch_size: Optional[int] = None) -> State:
        """Zero (h, c): h (L*D, B, R), c (L*D, B, H); without the B axis when batch_size is None."""
        LD = self.num_layers * self.num_directions
        batch = () if batch_size is None else (int_arg("batch_size", batch_size, 1),)
        check_fits(
            f"the state of initial_state(batch_size={batch_size})",
            LD * math.prod(batch) * (self.output_size + self.hidden_size),
            self._io_dtype,
        )
        return (
            np.zeros((LD,) + batch + (self.output_size,), self._io_dtype),
            np.zeros((LD,) + batch + (self.hidden_size,), self._io_dtype),
        )

    def _check_input(self, x: Any) -> Tuple[np.ndarray, bool]:
        """x as a C-contiguous (T, B, I) array of self._io_dtype, and whether it came unbatched."""
        x = as_float_array("x", x, self._io_dtype)
        unbatched = check_sequence_shape("x", x.shape, self.input_size, self.batch_first)
        return np.ascontiguousarray(self._from_user_layout(x, unbatched)), unbatched

    def _from_user_layout(self, a: np.ndarray, unbatched: bool) -> np.ndarray:
        """User layout -> (T, B, F) view."""
        if unbatched:
            return a[:, None, :]
        return a.transpose(1, 0, 2) if self.batch_first else a

    def _to_user_layout(self, a: np.ndarray, unbatched: bool) -> np.ndarray:
        if unbatched:
            return a[:, 0, :]
        return np.ascontiguousarray(a.transpose(1, 0, 2)) if self.batch_first else a

    @staticmethod
    def _drop_batch(s: np.ndarray, unbatched: bool) -> np.ndarray:
        return s[:, 0, :] if unbatched else s

    @staticmethod
    def _add_batch(s: np.ndarray, unbatched: bool) -> np.ndarray:
        return np.ascontiguousarray(s[:, None, :]) if unbatched else s

    def _check_state(self, name: str, state: Any, batch: int, unbatched: bool):
        """(h0, c0) as (L*D, B, R) and (L*D, B, H) arrays of self._io_dtype, or (None, None)."""
        if state is None:  # the common case, first: every inference call asks
            return None, None
        h0, c0 = check_pair(
            name,
            state,
            ("h0", "c0"),
            self._lstm_config.state_shapes(None if unbatched else batch),
            lambda part, value: as_float_array(part, value, self._io_dtype),
        )
        return self._add_batch(h0, unbatched), self._add_batch(c0, unbatched)

    def _sequence_inputs(self, x: Any, state: Any, lengths: Any):
        """A call's arguments checked and laid out for the core: (x (T, B, I), unbatched, packing, h0,
        c0), h0 and c0 in the packing's order or None."""
        x, unbatched = self._check_input(x)
        T, B = x.shape[0], x.shape[1]
        if unbatched and lengths is not None:
            raise ValueError("lengths needs batched input (T, B, I); got unbatched input (T, I)")
        packing = packing_of(T, B, lengths)
        h0, c0 = self._check_state("state", state, B, unbatched)
        h0 = None if h0 is None else packing.sort_state(h0)
        c0 = None if c0 is None else packing.sort_state(c0)
        return x, unbatched, packing, h0, c0

    def _sequence_outputs(self, y: np.ndarray, h_n: np.ndarray, c_n: np.ndarray, packing: Packing, unbatched: bool):
        """The core's packed (y, h_n, c_n) in the caller's layout: (y, (h_n, c_n))."""
        y = self._to_user_layout(packing.unpack(y), unbatched)
        h_n, c_n = packing.unsort_state(h_n), packing.unsort_state(c_n)
        return y, (self._drop_batch(h_n, unbatched), self._drop_batch(c_n, unbatched))

    def _empty_batch(self, steps: int) -> Tuple[np.ndarray, State]:
        """The outputs of a batch of no sequences (B = 0), as torch.nn.LSTM gives them: y (T, 0, D*R)
        ((0, T, D*R) when batch_first) and (h_n, c_n) of shapes (L*D, 0, R) and (L*D, 0, H)."""
        DR = self.num_directions * self.output_size
        y = np.zeros((0, steps, DR) if self.batch_first else (steps, 0, DR), self._io_dtype)
        h_shape, c_shape = self._lstm_config.state_shapes(0)
        return y, (np.zeros(h_shape, self._io_dtype), np.zeros(c_shape, self._io_dtype))

    def _check_step_input(self, x_t: Any) -> Tuple[np.ndarray, bool]:
        """x_t of a streaming step as a C-contiguous (B, I) array, and whether it came as (I,)."""
        if self.bidirectional:
            raise ValueError("step() runs unidirectional models only; this one is bidirectional")
        x_t = as_float_array("x_t", x_t, self._io_dtype)
        if x_t.ndim not in (1, 2) or x_t.shape[-1] != self.input_size:
            raise ValueError(
                f"x_t must have shape (B, {self.input_size}) or ({self.input_size},), got {shape_str(x_t.shape)}"
            )
        if x_t.ndim == 2 and x_t.shape[0] == 0:
            raise ValueError("x_t must have a batch of >= 1, got 0")
        return np.ascontiguousarray(x_t.reshape(-1, self.input_size)), x_t.ndim == 1
