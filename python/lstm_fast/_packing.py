"""Padded batches of unequal sequences in the core's packed layout.

The core runs on torch's packed layout: the rows active at step t are a prefix of the batch sorted by
length (longest first), and the rows of all steps are stored one step after another. Dense input is
already packed; unequal lengths are gathered once here and scattered back after the call.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np

from ._checks import as_int_array, check_shape


class Packing(NamedTuple):
    """How a (T, B, F) batch maps onto the core's N packed rows, N = sum(batch_sizes)."""

    steps: int  # T of the user's input
    batch: int  # B
    batch_sizes: list  # [T'] rows active per step, T' = max length
    order: Optional[np.ndarray]  # [B] batch index of each sorted row; None when dense
    time_index: Optional[np.ndarray]  # [N] step of each packed row
    batch_index: Optional[np.ndarray]  # [N] batch index of each packed row

    def pack(self, a: np.ndarray) -> np.ndarray:
        """(T, B, F) -> (N, F)."""
        if self.order is None:
            return a.reshape(self.steps * self.batch, a.shape[-1])
        return a[self.time_index, self.batch_index]

    def unpack(self, rows: np.ndarray) -> np.ndarray:
        """(N, F) -> (T, B, F), zeros at the padded steps."""
        if self.order is None:
            return rows.reshape(self.steps, self.batch, rows.shape[-1])
        out = np.zeros((self.steps, self.batch, rows.shape[-1]), dtype=rows.dtype)
        out[self.time_index, self.batch_index] = rows
        return out

    def sort_state(self, s: np.ndarray) -> np.ndarray:
        """(L*D, B, F) in the user's batch order -> sorted order."""
        return s if self.order is None else np.ascontiguousarray(s[:, self.order])

    def unsort_state(self, s: np.ndarray) -> np.ndarray:
        """(L*D, B, F) in sorted order -> the user's batch order."""
        if self.order is None:
            return s
        out = np.empty_like(s)
        out[:, self.order] = s
        return out


def packing_of(steps: int, batch: int, lengths: Any) -> Packing:
    """The packing of a (steps, batch) input whose sequences have `lengths` ((batch,) ints in [1, steps],
    or None for all full)."""
    dense = Packing(steps, batch, [batch] * steps, None, None, None)
    if lengths is None or batch == 0:
        return dense
    lengths = as_int_array("lengths", lengths)
    check_shape("lengths", lengths, (batch,))
    lengths = lengths.astype(np.int64)
    if batch == 0:
        return dense
    if lengths.min() < 1 or lengths.max() > steps:
        bad = lengths[(lengths < 1) | (lengths > steps)][0]
        raise ValueError(f"lengths must be in [1, {steps}] (the sequence length), got {bad}")
    if lengths.min() == steps:
        return dense
    order = np.argsort(-lengths, kind="stable")
    batch_sizes = (lengths[None, :] > np.arange(int(lengths.max()))[:, None]).sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)])
    time_index = np.repeat(np.arange(len(batch_sizes)), batch_sizes)
    row_in_step = np.arange(offsets[-1]) - np.repeat(offsets[:-1], batch_sizes)
    return Packing(steps, batch, batch_sizes.tolist(), order, time_index, order[row_in_step])
