"""Synthetic long-time-lag tasks from Hochreiter & Schmidhuber, "Long Short-Term Memory",
Neural Computation 9(8):1735-1780, 1997.

Every generator takes an ``rng`` (a ``np.random.Generator``, or a seed for ``np.random.default_rng``)
and returns time-major float32 inputs, (T, B, features), ready for ``LSTM.forward``. Positions are
0-based time steps.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ADDING_TOLERANCE",
    "adding_problem",
    "adding_problem_paper",
    "adding_correct",
    "TEMPORAL_ORDER_SYMBOLS",
    "TEMPORAL_ORDER_CLASSES",
    "TEMPORAL_ORDER_CLASSES_3",
    "temporal_order",
    "temporal_order_3",
    "TEMPORAL_ORDER_TOLERANCE",
    "temporal_order_correct",
    "REBER_SYMBOLS",
    "reber_strings",
    "reber_next_symbols",
    "reber_batch",
    "reber_correct",
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


def adding_problem_paper(seq_len: int, batch_size: int, rng=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The adding problem exactly as Experiment 4 of the 1997 paper states it, lengths included.

    Differences from ``adding_problem`` (all from the paper's text):

    - each sequence has its own length L, uniform in [T, T + T // 10] (inclusive);
    - the markers of the first and the last step are -1.0 unless the step is marked with 1.0;
    - when the first step is marked, its value is set to zero (in the input and so in the target).
      The paper says this of X1; X2, drawn among the first T/2 - 1 steps, can land there too, and
      is treated the same way.

    t1 is uniform among the first 10 steps, t2 uniform among the first ``T // 2 - 1`` steps other
    than t1 (as in ``adding_problem``), and the target is ``0.5 + (X1 + X2) / 4``.

    Args:
        seq_len: T, the minimal length, at least 10.
        batch_size: B, at least 1.
        rng: a np.random.Generator, or a seed.

    Returns:
        x: (max(lengths), B, 2) float32; steps past a sequence's length are all zero.
        target: (B, 1) float32, to be read at each sequence's last valid step.
        lengths: (B,) int64, for ``LSTM.forward(x, lengths=lengths)``.
    """
    seq_len = _check_count("seq_len", seq_len, 10)
    batch_size = _check_count("batch_size", batch_size, 1)
    rng = _generator(rng)
    lengths = rng.integers(seq_len, seq_len + seq_len // 10 + 1, size=batch_size)
    total = int(lengths.max())
    values = rng.uniform(-1.0, 1.0, size=(total, batch_size)).astype(np.float32)
    second_window = seq_len // 2 - 1
    t1 = rng.integers(0, 10, size=batch_size)
    k = rng.integers(0, second_window - (t1 < second_window))
    t2 = k + (k >= t1)
    batch = np.arange(batch_size)
    markers = np.zeros((total, batch_size), dtype=np.float32)
    markers[0, :] = -1.0
    markers[lengths - 1, batch] = -1.0
    markers[t1, batch] = 1.0
    markers[t2, batch] = 1.0
    values[0, (t1 == 0) | (t2 == 0)] = 0.0  # "in the rare case where the first pair ... gets marked"
    steps = np.arange(total)[:, None]
    values[steps >= lengths[None, :]] = 0.0
    x = np.stack([values, markers], axis=-1)
    x1 = values[t1, batch].astype(np.float64)
    x2 = values[t2, batch].astype(np.float64)
    target = (0.5 + (x1 + x2) / 4.0).astype(np.float32)[:, None]
    return x, target, lengths.astype(np.int64)


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
# Experiment 6b: class index = 4 * (t1 is Y) + 2 * (t2 is Y) + (t3 is Y); the paper's Q, R, S, U, V,
# A, B, C are XXX, XXY, XYX, XYY, YXX, YXY, YYX, YYY in this order.
TEMPORAL_ORDER_CLASSES_3 = ("XXX", "XXY", "XYX", "XYY", "YXX", "YXY", "YYX", "YYY")
# The paper counts a sequence as classified correctly when every output unit's final absolute error
# (against the one-hot target) is below 0.3.
TEMPORAL_ORDER_TOLERANCE = 0.3


def _temporal_order(batch_size, rng, min_len, max_len, ranges):
    batch_size = _check_count("batch_size", batch_size, 1)
    min_len = _check_count("min_len", min_len, 3)
    max_len = _check_count("max_len", max_len, min_len)
    bounds = [b for r in ranges for b in r]
    if not (
        1 <= bounds[0]
        and all(u <= v for u, v in zip(bounds[::2], bounds[1::2]))
        and all(u < v for u, v in zip(bounds[1::2], bounds[2::2]))
        and bounds[-1] < min_len - 1
    ):
        names = ", ".join(f"t{n + 1}_range={tuple(r)}" for n, r in enumerate(ranges))
        raise ValueError(
            f"need 1 <= t1_range <= ... < t2_range <= ... < min_len - 1 (each range "
            f"(first, last), disjoint and in order), got {names}, min_len={min_len}"
        )
    rng = _generator(rng)
    a, b_start, e_end, x_sym = 0, 4, 5, 6  # indices into TEMPORAL_ORDER_SYMBOLS; Y is x_sym + 1
    lengths = rng.integers(min_len, max_len + 1, size=batch_size)
    positions = [rng.integers(lo, hi + 1, size=batch_size) for lo, hi in ranges]
    is_y = [rng.integers(0, 2, size=batch_size) for _ in ranges]
    total_steps = int(lengths.max())
    symbols = a + rng.integers(0, 4, size=(total_steps, batch_size))
    batch = np.arange(batch_size)
    symbols[0, :] = b_start
    symbols[lengths - 1, batch] = e_end
    labels = np.zeros(batch_size, dtype=np.int64)
    for t, y in zip(positions, is_y):
        symbols[t, batch] = x_sym + y
        labels = 2 * labels + y
    x = np.eye(len(TEMPORAL_ORDER_SYMBOLS), dtype=np.float32)[symbols]
    x[np.arange(total_steps)[:, None] >= lengths[None, :]] = 0.0  # padding past each length
    return x, labels.astype(np.int64), lengths.astype(np.int64)


def temporal_order(
    batch_size: int,
    rng=None,
    *,
    min_len: int = 100,
    max_len: int = 110,
    t1_range: tuple[int, int] = (10, 20),
    t2_range: tuple[int, int] = (50, 60),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    return _temporal_order(batch_size, rng, min_len, max_len, [t1_range, t2_range])


def temporal_order_3(
    batch_size: int,
    rng=None,
    *,
    min_len: int = 100,
    max_len: int = 110,
    t1_range: tuple[int, int] = (10, 20),
    t2_range: tuple[int, int] = (33, 43),
    t3_range: tuple[int, int] = (66, 76),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The temporal order problem with three relevant symbols (Experiment 6b), eight classes.

    As ``temporal_order``, with X or Y at three steps: t1 in [10, 20], t2 in [33, 43] and t3 in
    [66, 76] (the paper's ranges, inclusive), lengths in [100, 110]. The class is the triple of
    symbols, index ``4 * (t1 is Y) + 2 * (t2 is Y) + (t3 is Y)`` into ``TEMPORAL_ORDER_CLASSES_3``
    (XXX, XXY, ..., YYY: the paper's Q, R, S, U, V, A, B, C).

    Returns:
        x: (T, B, 8) float32 one-hot over ``TEMPORAL_ORDER_SYMBOLS``, zero past each length.
        labels: (B,) int64 in [0, 8).
        lengths: (B,) int64.
    """
    return _temporal_order(batch_size, rng, min_len, max_len, [t1_range, t2_range, t3_range])


def temporal_order_correct(probs, labels, tolerance: float = TEMPORAL_ORDER_TOLERANCE) -> np.ndarray:
    """The paper's criterion: (B,) bool, True where every output is within ``tolerance`` of the
    one-hot target, i.e. p[label] > 1 - tolerance and every other p < tolerance.

    probs: (B, C) outputs in [0, 1] (e.g. softmax probabilities); labels: (B,) integers in [0, C).
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(f"probs must be (B, C) and labels (B,), got {probs.shape} and {labels.shape}")
    target = np.zeros_like(probs)
    target[np.arange(len(labels)), labels] = 1.0
    return (np.abs(probs - target) < tolerance).all(axis=1)


# --- The embedded Reber grammar (Experiment 1) -----------------------------------------------------

# One-hot order of the seven symbols (the paper's local input and output representation).
REBER_SYMBOLS = ("B", "T", "P", "S", "X", "V", "E")

# The Reber grammar (Reber 1967, as drawn in the paper's Figure 3): state -> {symbol: next state}.
# State 0 emits the leading B, state 6 the final E, state 7 is the end.
_REBER = {
    0: {"B": 1},
    1: {"T": 2, "P": 3},
    2: {"S": 2, "X": 4},
    3: {"T": 3, "V": 5},
    4: {"X": 3, "S": 6},
    5: {"P": 4, "V": 6},
    6: {"E": 7},
}


def _reber_string(rng: np.random.Generator) -> str:
    state, out = 0, []
    while state != 7:
        choices = list(_REBER[state].items())
        symbol, state = choices[rng.integers(len(choices))] if len(choices) > 1 else choices[0]
        out.append(symbol)
    return "".join(out)


def reber_strings(count: int, rng=None, *, embedded: bool = True) -> list[str]:
    """``count`` random strings of the (embedded) Reber grammar, every branch taken with p = 1/2.

    The embedded grammar (Figure 4 of the paper) wraps a Reber string: B, then T or P, then a Reber
    string (B ... E), then the same T or P again, then E, e.g. ``"BTBTXSETE"``. Predicting the
    second-to-last symbol needs the second symbol, remembered across the whole inner string.
    """
    count = _check_count("count", count, 1)
    rng = _generator(rng)
    strings = []
    for _ in range(count):
        inner = _reber_string(rng)
        if embedded:
            branch = "TP"[rng.integers(2)]
            inner = "B" + branch + inner + branch + "E"
        strings.append(inner)
    return strings


def reber_next_symbols(string: str, *, embedded: bool = True) -> list[str]:
    """For each prefix ``string[:t + 1]``, t < len(string) - 1, the symbols that may come next.

    Returns a list of len(string) - 1 strings of possible symbols (in ``REBER_SYMBOLS`` order); the
    actual next symbol ``string[t + 1]`` is always among them. Raises ValueError if the string is
    not in the grammar.
    """

    def inner_sets(s):
        state, sets = 0, []
        for n, symbol in enumerate(s):
            if state == 7 or symbol not in _REBER[state]:
                raise ValueError(
                    f"{string!r} is not a{'n embedded' if embedded else ''} Reber string "
                    f"(unexpected {symbol!r} at position {n})"
                )
            state = _REBER[state][symbol]
            sets.append("".join(sym for sym in REBER_SYMBOLS if sym in _REBER.get(state, {})))
        if state != 7:
            raise ValueError(f"{string!r} is not a complete Reber string")
        return sets[:-1]  # nothing follows the final E

    if not isinstance(string, str):
        raise TypeError(f"string must be a str, got {type(string).__name__}")
    if not embedded:
        return inner_sets(string)
    if len(string) < 7 or string[0] != "B" or string[1] not in "TP" or string[-2] != string[1] or string[-1] != "E":
        raise ValueError(f"{string!r} is not an embedded Reber string (B, T|P, Reber string, the same T|P, E)")
    branch = string[1]
    return ["TP", "B"] + inner_sets(string[2:-2]) + [branch, "E"]


def reber_batch(strings) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Encode embedded Reber strings for next-symbol prediction.

    Step t reads symbol ``s[t]`` and is asked for ``s[t + 1]``, for t < len(s) - 1.

    Returns:
        x: (T, B, 7) float32 one-hot inputs over ``REBER_SYMBOLS``, T = max(len(s)) - 1, zero past
            each length.
        targets: (T, B) int64, the index of the actual next symbol (0 past each length).
        possible: (T, B, 7) bool, the symbols the grammar allows next (False past each length).
        lengths: (B,) int64, len(s) - 1.
    """
    strings = list(strings)
    if not strings:
        raise ValueError("strings is empty")
    index = {s: i for i, s in enumerate(REBER_SYMBOLS)}
    lengths = np.array([len(s) - 1 for s in strings], dtype=np.int64)
    T, B = int(lengths.max()), len(strings)
    x = np.zeros((T, B, len(REBER_SYMBOLS)), dtype=np.float32)
    targets = np.zeros((T, B), dtype=np.int64)
    possible = np.zeros((T, B, len(REBER_SYMBOLS)), dtype=bool)
    for b, s in enumerate(strings):
        for t, nxt in enumerate(reber_next_symbols(s)):
            x[t, b, index[s[t]]] = 1.0
            targets[t, b] = index[s[t + 1]]
            possible[t, b, [index[c] for c in nxt]] = True
    return x, targets, possible, lengths


def reber_correct(outputs, possible, lengths) -> np.ndarray:
    """The paper's criterion for Experiment 1, per string: (B,) bool.

    A string is predicted correctly when at every one of its steps the output units of the possible
    next symbols are the most active ones: the smallest output among the possible symbols is larger
    than the largest output among the others. outputs: (T, B, 7) (logits or probabilities, any
    monotone scale); possible: (T, B, 7) bool; lengths: (B,).
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    possible = np.asarray(possible, dtype=bool)
    if outputs.shape != possible.shape or outputs.ndim != 3:
        raise ValueError(f"outputs and possible must both be (T, B, 7), got {outputs.shape} and {possible.shape}")
    lowest_possible = np.where(possible, outputs, np.inf).min(axis=-1)
    highest_other = np.where(possible, -np.inf, outputs).max(axis=-1)
    step_ok = lowest_possible > highest_other
    valid = np.arange(outputs.shape[0])[:, None] < np.asarray(lengths)[None, :]
    return np.where(valid, step_ok, True).all(axis=0)
