"""Synthetic long-time-lag tasks from Hochreiter & Schmidhuber, "Long Short-Term Memory",
Neural Computation 9(8):1735-1780, 1997.

Every generator takes an ``rng`` (a ``np.random.Generator``, or a seed for ``np.random.default_rng``)
and returns time-major float32 inputs, (T, B, features), ready for ``LSTM.forward``. Positions are
0-based time steps.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ADDING_TOLERANCE", "adding_problem", "adding_correct",
    "TEMPORAL_ORDER_SYMBOLS", "TEMPORAL_ORDER_CLASSES", "temporal_order",
]

# The paper counts an adding-problem sequence as processed correctly when |output - target| < 0.04.
ADDING_TOLERANCE = 0.04


def _generator(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a np.random.Generator or an integer seed, got {type(rng).__name__}")


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def adding_problem(seq_len: int, batch_size: int, rng=None) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (Experiment 4): remember two marked values over a long lag, output their sum.

    Each step carries two inputs, a value uniform in [-1, 1] and a marker. Exactly two steps are
    marked with 1.0: t1 ("X1"), uniform among the first 10 steps, and t2 ("X2"), uniform among the
    first ``seq_len // 2 - 1`` steps other than t1. All other markers are 0.0. The target, given at
    the end of the sequence, is ``0.5 + (X1 + X2) / 4``, which lies in [0, 1].

    Simplifications against the paper, which are kept so the task is easy to state: every sequence
    has exactly ``seq_len`` steps (the paper draws lengths in [T, T + T/10]), the first and last
    steps carry no -1.0 marker, and X1 is not zeroed when t1 is the first step.

    Args:
        seq_len: T, at least 10 (t1 is drawn from the first 10 steps).
        batch_size: B, at least 1.
        rng: a np.random.Generator, or a seed.

    Returns:
        x: (T, B, 2) float32; x[..., 0] are the values, x[..., 1] the markers.
        target: (B, 1) float32.
    """
    seq_len = _check_count("seq_len", seq_len, 10)
    batch_size = _check_count("batch_size", batch_size, 1)
    rng = _generator(rng)
    first_window = 10
    second_window = seq_len // 2 - 1  # >= 4 for seq_len >= 10, so a t2 != t1 always exists
    values = rng.uniform(-1.0, 1.0, size=(seq_len, batch_size)).astype(np.float32)
    t1 = rng.integers(0, first_window, size=batch_size)
    # t2 uniform over the window without t1: draw among the window's free slots, then skip t1.
    free_slots = second_window - (t1 < second_window)
    k = rng.integers(0, free_slots)
    t2 = k + (k >= t1)
    markers = np.zeros((seq_len, batch_size), dtype=np.float32)
    batch = np.arange(batch_size)
    markers[t1, batch] = 1.0
    markers[t2, batch] = 1.0
    x = np.stack([values, markers], axis=-1)
    x1 = values[t1, batch].astype(np.float64)
    x2 = values[t2, batch].astype(np.float64)
    target = (0.5 + (x1 + x2) / 4.0).astype(np.float32)[:, None]
    return x, target


def adding_correct(pred, target, tolerance: float = ADDING_TOLERANCE) -> np.ndarray:
    """The paper's criterion: (B,) bool, True where |pred - target| < tolerance.

    pred and target are (B, 1) or (B,).
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"pred must have the shape of target {target.shape}, got {pred.shape}")
    return (np.abs(pred - target) < tolerance).reshape(pred.shape[0], -1).all(axis=1)


# One-hot order of the temporal order problem's inputs: distractors, start, end, the relevant pair.
TEMPORAL_ORDER_SYMBOLS = ("a", "b", "c", "d", "B", "E", "X", "Y")
# Class index = 2 * (symbol at t1 is Y) + (symbol at t2 is Y); the paper calls them Q, R, S, U.
TEMPORAL_ORDER_CLASSES = ("XX", "XY", "YX", "YY")


def temporal_order(batch_size: int, rng=None, *, min_len: int = 100, max_len: int = 110,
                   t1_range: tuple[int, int] = (10, 20),
                   t2_range: tuple[int, int] = (50, 60)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The temporal order problem (Experiment 6a): classify the order of two symbols far apart.

    A sequence of length L (uniform in [min_len, max_len]) starts with B at step 0 and ends with E
    at step L - 1. Steps t1 (uniform in t1_range) and t2 (uniform in t2_range), both ranges
    inclusive, hold X or Y; every other step holds a distractor from {a, b, c, d}. The class is
    the pair (symbol at t1, symbol at t2): XX, XY, YX or YY. Inputs are one-hot over the eight
    symbols, in the order of ``TEMPORAL_ORDER_SYMBOLS``.

    Args:
        batch_size: B, at least 1.
        rng: a np.random.Generator, or a seed.
        min_len, max_len: the range of sequence lengths, inclusive.
        t1_range, t2_range: (first, last) step of each relevant symbol; need
            1 <= t1 < t2 < min_len - 1 for every choice.

    Returns:
        x: (T, B, 8) float32 with T = max(lengths); steps past a sequence's length are all zero.
        labels: (B,) int64 class indices into ``TEMPORAL_ORDER_CLASSES``.
        lengths: (B,) int64, for ``LSTM.forward(x, lengths=lengths)``; the class is read at the
            last valid step (or from h_n).
    """
    batch_size = _check_count("batch_size", batch_size, 1)
    min_len = _check_count("min_len", min_len, 3)
    max_len = _check_count("max_len", max_len, min_len)
    (t1_lo, t1_hi), (t2_lo, t2_hi) = t1_range, t2_range
    if not (1 <= t1_lo <= t1_hi < t2_lo <= t2_hi < min_len - 1):
        raise ValueError(f"need 1 <= t1_range <= ... < t2_range <= ... < min_len - 1, got "
                         f"t1_range={tuple(t1_range)}, t2_range={tuple(t2_range)}, min_len={min_len}")
    rng = _generator(rng)
    a, b_start, e_end, x_sym = 0, 4, 5, 6  # indices into TEMPORAL_ORDER_SYMBOLS; Y is x_sym + 1
    lengths = rng.integers(min_len, max_len + 1, size=batch_size)
    t1 = rng.integers(t1_lo, t1_hi + 1, size=batch_size)
    t2 = rng.integers(t2_lo, t2_hi + 1, size=batch_size)
    first_is_y = rng.integers(0, 2, size=batch_size)
    second_is_y = rng.integers(0, 2, size=batch_size)
    total_steps = int(lengths.max())
    symbols = a + rng.integers(0, 4, size=(total_steps, batch_size))
    batch = np.arange(batch_size)
    symbols[0, :] = b_start
    symbols[lengths - 1, batch] = e_end
    symbols[t1, batch] = x_sym + first_is_y
    symbols[t2, batch] = x_sym + second_is_y
    x = np.eye(len(TEMPORAL_ORDER_SYMBOLS), dtype=np.float32)[symbols]
    x[np.arange(total_steps)[:, None] >= lengths[None, :]] = 0.0  # padding past each length
    labels = (2 * first_is_y + second_is_y).astype(np.int64)
    return x, labels, lengths.astype(np.int64)
