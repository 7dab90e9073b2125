"""Training helpers for long sequences: truncated BPTT, chrono initialisation, the 1997 stopping rule.

- ``truncated_bptt`` runs a long stream in chunks: the state is carried from one chunk to the next,
  but the gradient is cut between them (each chunk is backpropagated alone, from zero state
  gradient at its end), so memory and time per update do not grow with the stream.
- ``chrono_init`` sets an LSTM's gate biases so that its cells start out remembering over time
  scales up to ``t_max`` steps (Tallec & Ollivier, "Can recurrent neural networks warp time?", 2018).
- ``RecentCriterion`` is the 1997 paper's stopping rule: the most recent N training sequences were
  all processed correctly and their average error is small.

They work with ``lstm_fast.LSTM`` and with ``lstm_fast.rnn.RNN`` (same ``forward``/``backward``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

__all__ = ["truncated_bptt", "TBPTTResult", "chrono_init", "RecentCriterion"]


@dataclass
class TBPTTResult:
    """What ``truncated_bptt`` returns.

    Attributes:
        loss: the sum of the chunks' losses.
        grads: name -> gradient summed over the chunks (None when ``step`` was given: each chunk's
            gradient went to ``step`` instead).
        state: the model's state after the last step, to carry into the next stream segment.
        dx: (T, B, I), each chunk's input gradient (from that chunk's own loss only), concatenated.
        chunks: the number of chunks.
    """

    loss: float
    grads: Optional[dict]
    state: Any
    dx: np.ndarray
    chunks: int


def truncated_bptt(
    model,
    x,
    chunk_len: int,
    loss_and_grad: Callable,
    *,
    state=None,
    grads: Optional[Callable[[], dict]] = None,
    step: Optional[Callable[[dict], None]] = None,
    checkpoint: Optional[int | str] = None,
    precision: str = "fp32",
) -> TBPTTResult:
    """Truncated backpropagation through time over a long sequence x, ``chunk_len`` steps at a time.

    For each chunk ``x[t0:t0 + chunk_len]``::

        y, state = model.forward(chunk, state, train=True)  # state carried from the previous chunk
        loss, dy = loss_and_grad(y, t0)                      # your loss on this chunk's outputs
        dx, _ = model.backward(dy)                           # dstate = 0: the gradient stops here
        step(grads()) if step else accumulate grads()

    The carried state is a plain array, so no gradient flows from a chunk into the ones before it:
    a loss in chunk k changes only what chunk k's own steps contributed. With ``chunk_len >= T``
    this is ordinary (full) BPTT.

    Args:
        model: ``lstm_fast.LSTM`` or ``lstm_fast.rnn.RNN`` (anything with ``forward(x, state,
            train=True) -> (y, state)``, ``backward(dy) -> (dx, dstate)`` and ``grads``), time-major.
        x: (T, B, I).
        chunk_len: steps per chunk, >= 1 (the last chunk may be shorter).
        loss_and_grad: ``(y_chunk, t0) -> (loss, dy_chunk)``; t0 is the chunk's first step in x.
            It may run a readout's forward and backward (its gradients then belong in ``grads``).
        state: the initial state (None: zeros).
        grads: ``() -> dict`` of the gradients to use after each chunk's backward; default
            ``lambda: model.grads``. E.g. ``lambda: optim.combine(lstm=lstm.grads, head=head.grads)``.
        step: ``dict -> None``, called with each chunk's gradients (update after every chunk, the
            usual way to train on a stream). Without it, the gradients are summed over all chunks
            and returned (one update per sequence).
        checkpoint: None, k >= 1 or "auto": each chunk's forward checkpointed (``lstm_fast.LSTM.forward``):
            long chunks in a fraction of the memory, the same gradients.
        precision: "fp32" or "bf16": each chunk's forward and backward in bf16 mixed precision
            (``lstm_fast.LSTM.forward``).
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"x must be time-major (T, B, I), got shape {x.shape}")
    if isinstance(chunk_len, bool) or not isinstance(chunk_len, (int, np.integer)) or chunk_len < 1:
        raise ValueError(f"chunk_len must be an integer >= 1, got {chunk_len!r}")
    if grads is None:

        def grads():
            return model.grads

    total_loss = 0.0
    summed = None
    dx_parts = []
    chunks = 0
    for t0 in range(0, x.shape[0], int(chunk_len)):
        options = {} if checkpoint is None else dict(checkpoint=checkpoint)
        if precision != "fp32":  # (models without the option, such as rnn.RNN, get neither by default)
            options["precision"] = precision
        y, state = model.forward(x[t0 : t0 + chunk_len], state, train=True, **options)
        loss, dy = loss_and_grad(y, t0)
        dx, _ = model.backward(dy)  # no gradient into the carried state: the cut
        dx_parts.append(dx)
        total_loss += float(loss)
        chunks += 1
        g = grads()
        if step is not None:
            step(g)
        elif summed is None:
            summed = {name: np.array(a, copy=True) for name, a in g.items()}
        else:
            for name, a in g.items():
                summed[name] += a
    return TBPTTResult(loss=total_loss, grads=summed, state=state, dx=np.concatenate(dx_parts), chunks=chunks)


def chrono_init(lstm, t_max: float, rng=None) -> None:
    """Chrono initialisation of an LSTM's gate biases (Tallec & Ollivier 2018), in place.

    For every layer and direction: forget-gate bias ``b_f = log(u)`` with u uniform in
    [1, t_max - 1] per unit, input-gate bias ``b_i = -b_f``. A cell then keeps its content for a
    characteristic time of about u steps, so the units start out spread over time scales up to
    t_max. The biases are written into ``bias_ih``; the matching ``bias_hh`` entries are set to 0
    (only their sum matters).

    Args:
        lstm: an ``lstm_fast.LSTM`` with ``bias=True``.
        t_max: the longest time lag expected, > 2 (e.g. the sequence length).
        rng: a np.random.Generator or a seed.
    """
    t_max = float(t_max)
    if not (math.isfinite(t_max) and t_max > 2.0):
        raise ValueError(f"t_max must be a finite number > 2, got {t_max}")
    params = lstm.state_dict()
    names = [name for name in params if name.startswith("bias_ih_l")]
    if not names:
        raise ValueError("chrono_init needs an LSTM with bias=True")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    H = lstm.hidden_size
    for name in names:
        b_f = np.log(rng.uniform(1.0, t_max - 1.0, size=H))
        b_ih, b_hh = params[name], params[name.replace("bias_ih", "bias_hh")]
        b_ih[0:H] = -b_f  # input gate (gate order i, f, g, o)
        b_ih[H : 2 * H] = b_f  # forget gate
        b_hh[0 : 2 * H] = 0.0


class RecentCriterion:
    """The 1997 paper's stopping rule over a stream of training sequences.

    "Training is stopped once the average training error is below ``max_error`` and the ``window``
    most recent sequences were processed correctly" (the paper uses 2000 sequences, and 0.01 for
    the adding problem, 0.1 for temporal order). Feed it each training batch's per-sequence
    correctness and error, judged on the outputs of that batch's own training forward pass (before
    the update it leads to), as the paper's online learner did.

    Args:
        window: how many most recent sequences must all be correct, >= 1.
        max_error: the bound on their average error.
    """

    def __init__(self, window: int = 2000, max_error: float = 0.01) -> None:
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        self.window = int(window)
        self.max_error = float(max_error)
        self._correct = np.zeros(self.window, dtype=bool)
        self._error = np.zeros(self.window, dtype=np.float64)
        self.seen = 0  # sequences fed so far

    def update(self, correct, errors) -> bool:
        """Add a batch: ``correct`` (B,) bool and ``errors`` (B,) per-sequence errors. Returns met()."""
        correct = np.asarray(correct, dtype=bool).reshape(-1)
        errors = np.asarray(errors, dtype=np.float64).reshape(-1)
        if correct.shape != errors.shape:
            raise ValueError(f"correct and errors must have the same length, got {correct.shape} and {errors.shape}")
        skipped = max(0, len(correct) - self.window)  # older than the window: only counted
        correct, errors = correct[skipped:], errors[skipped:]
        slots = (self.seen + skipped + np.arange(len(correct))) % self.window
        self._correct[slots] = correct
        self._error[slots] = errors
        self.seen += len(correct) + skipped
        return self.met()

    @property
    def filled(self) -> int:
        return min(self.seen, self.window)

    def accuracy(self) -> float:
        """Fraction of the recent sequences processed correctly."""
        return float(self._correct[: self.filled].mean()) if self.seen else 0.0

    def mean_error(self) -> float:
        """Average error of the recent sequences."""
        return float(self._error[: self.filled].mean()) if self.seen else math.inf

    def met(self) -> bool:
        """True once ``window`` sequences were seen, all correct, with average error < max_error."""
        return self.seen >= self.window and bool(self._correct.all()) and self.mean_error() < self.max_error
