"""What the example scripts share: the model (LSTM or plain RNN + linear readout), the training loop
with the 1997 paper's stopping rule, the learning-curve plot and the result row.

Not part of the package: the scripts in this folder import it as a sibling module.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

import lstm_fast as lf
from lstm_fast import nn, optim, training
from lstm_fast.rnn import RNN


def parser(
    description: str, *, hidden: int, batch: int, lr: float, max_sequences: int, rnn_max_sequences: int
) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument(
        "--model",
        choices=["lstm", "rnn"],
        default="lstm",
        help="lstm_fast.LSTM, or the plain tanh RNN baseline (lstm_fast.rnn.RNN)",
    )
    p.add_argument("--hidden", type=int, default=hidden, help="units of the recurrent layer")
    p.add_argument("--batch", type=int, default=batch, help="sequences per update")
    p.add_argument("--lr", type=float, default=lr, help="Adam learning rate")
    p.add_argument("--clip", type=float, default=1.0, help="largest global gradient norm")
    p.add_argument(
        "--max-sequences",
        type=int,
        default=None,
        help=f"training budget in sequences (default {max_sequences:,} for the LSTM, "
        f"{rnn_max_sequences:,} for the RNN)",
    )
    p.add_argument("--max-minutes", type=float, default=None, help="training budget in minutes")
    p.add_argument("--test-size", type=int, default=2560, help="fresh test sequences (the paper: 2560)")
    p.add_argument("--threads", type=int, default=1, help="lf.set_num_threads for the LSTM core")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="LSTM training precision: bf16 rounds the matrix products' operands (lstm_fast.LSTM.forward)",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help='LSTM checkpointed BPTT: "auto" or steps k (memory for a second forward; the same gradients)',
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the model and the data")
    p.add_argument("--out", default="results", help="folder for the plot (PNG) and the result (JSON)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a tiny smoke run (a few hundred sequences, small test) to check the script",
    )
    p.set_defaults(default_max_sequences=max_sequences, default_rnn_max_sequences=rnn_max_sequences)
    return p


def finish_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    for name in ("hidden", "batch", "test_size", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.model == "rnn" and (args.precision != "fp32" or args.checkpoint is not None):
        p.error("--precision and --checkpoint are lstm_fast.LSTM's training options (--model lstm)")
    if args.checkpoint not in (None, "auto"):
        given = args.checkpoint
        args.checkpoint = int(given) if given.isdigit() else 0
        if args.checkpoint < 1:
            p.error(f'--checkpoint must be "auto" or an integer >= 1, got {given!r}')
    if args.max_sequences is None:
        args.max_sequences = args.default_rnn_max_sequences if args.model == "rnn" else args.default_max_sequences
    if args.quick:
        args.max_sequences = min(args.max_sequences, 8 * args.batch)
        args.test_size = min(args.test_size, 64)
    lf.set_num_threads(args.threads)
    return args


class Model:
    """A recurrent layer (LSTM or RNN) and a linear readout, trained with Adam and clipping."""

    def __init__(
        self,
        kind: str,
        input_size: int,
        hidden: int,
        output_size: int,
        seed: int,
        *,
        forget_bias: float = 1.0,
        chrono: float | None = None,
    ):
        self.kind = kind
        if kind == "lstm":
            self.core = lf.LSTM(input_size, hidden, forget_bias=forget_bias, seed=seed)
            if chrono is not None:
                training.chrono_init(self.core, chrono, rng=seed)
        else:
            self.core = RNN(input_size, hidden, seed=seed)
        self.head = nn.Linear(hidden, output_size, seed=seed + 1)
        self.train_options: dict = {}  # the LSTM's forward(train=True) options: precision, checkpoint

    def set_training_options(self, args: argparse.Namespace) -> None:
        """--precision and --checkpoint, for the LSTM's training forwards."""
        if self.kind == "lstm":
            self.train_options = dict(precision=args.precision, checkpoint=args.checkpoint)

    def describe(self) -> str:
        return f"{self.core!r} -> {self.head!r}"

    def params(self) -> dict:
        return optim.combine(core=self.core.state_dict(), head=self.head.params)

    def grads(self) -> dict:
        return optim.combine(core=self.core.grads, head=self.head.grads)

    @staticmethod
    def _last(y, lengths):
        return y[-1] if lengths is None else y[np.asarray(lengths) - 1, np.arange(y.shape[1])]

    def predict_last(self, x, lengths=None, chunk: int = 512) -> np.ndarray:
        """Readout at each sequence's last valid step, (B, output_size), in batches of ``chunk``."""
        outs = []
        for i in range(0, x.shape[1], chunk):
            ln = None if lengths is None else lengths[i : i + chunk]
            y, _ = self.core(x[:, i : i + chunk], lengths=ln)
            outs.append(self.head(self._last(y, ln)))
        return np.concatenate(outs)

    def predict_all(self, x, lengths=None) -> np.ndarray:
        y, _ = self.core(x, lengths=lengths)
        return self.head(y)

    def train_last(self, x, lengths, loss_fn, opt, clip):
        """One update with the loss on the last valid step. loss_fn(out) -> (loss, dout, aux)."""
        y, _ = self.core.forward(x, None, lengths, train=True, **self.train_options)
        out = self.head(self._last(y, lengths))
        loss, dout, aux = loss_fn(out)
        dlast = self.head.backward(dout)
        dy = np.zeros_like(y)
        if lengths is None:
            dy[-1] = dlast
        else:
            dy[np.asarray(lengths) - 1, np.arange(y.shape[1])] = dlast
        self.core.backward(dy)
        self._update(opt, clip)
        return loss, aux

    def train_all(self, x, lengths, loss_fn, opt, clip):
        """One update with a loss on every step. loss_fn(out (T, B, C)) -> (loss, dout, aux)."""
        y, _ = self.core.forward(x, None, lengths, train=True, **self.train_options)
        out = self.head(y)
        loss, dout, aux = loss_fn(out)
        self.core.backward(self.head.backward(dout))
        self._update(opt, clip)
        return loss, aux

    def _update(self, opt, clip):
        grads = self.grads()
        norm = optim.clip_grad_norm(grads, clip)
        if np.isfinite(norm):
            opt.step(grads)


@dataclass
class Run:
    """What a training run measured."""

    task: str
    model: str
    command: str
    solved: bool = False
    sequences: int = 0
    seconds: float = 0.0
    test_wrong: int | None = None
    test_size: int = 0
    threads: int = 1
    precision: str = "fp32"
    checkpoint: int | str | None = None
    peak_rss_mib: float = 0.0  # the process's peak resident memory (VmHWM) at the report
    notes: str = ""
    curve: list = field(default_factory=list)  # (sequences, loss, recent accuracy)
    plot_title: str = ""  # default: task, model and the outcome

    def row(self) -> str:
        reached = f"{self.sequences:,}" if self.solved else f"not reached in {self.sequences:,}"
        wrong = "-" if self.test_wrong is None else f"{self.test_wrong} of {self.test_size}"
        return f"| {self.task} | {self.model} | {reached} | {wrong} | {self.seconds:.0f} s | {self.threads} |"


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (Linux's VmHWM; 0 where /proc is not there)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return 0.0


def command_line() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])


def train_loop(run: Run, args, step_fn, criterion_fn, *, log_every: int | None = None) -> Run:
    """Calls ``step_fn() -> (loss, sequences, recent_accuracy)`` until ``criterion_fn()`` is True
    or the budget is spent. Fills run.solved, run.sequences, run.seconds and run.curve."""
    log_every = log_every or max(args.batch, args.max_sequences // 400)
    run.precision, run.checkpoint = args.precision, args.checkpoint
    if args.precision != "fp32":
        run.model += f" {args.precision}"
    refresh = 0.5 if sys.stderr.isatty() else 10.0
    bar = tqdm(
        total=args.max_sequences,
        unit="seq",
        unit_scale=True,
        mininterval=refresh,
        dynamic_ncols=True,
        desc=f"{run.task} {run.model}",
    )
    budget_seconds = None if args.max_minutes is None else 60.0 * args.max_minutes
    start = time.perf_counter()
    seen, ema, next_log = 0, None, 0
    try:
        while seen < args.max_sequences:
            loss, count, accuracy = step_fn()
            seen += count
            ema = loss if ema is None else 0.98 * ema + 0.02 * loss
            bar.update(count)
            if seen >= next_log:
                run.curve.append((seen, ema, accuracy))
                bar.set_postfix_str(f"loss {ema:.4g}, recent correct {accuracy:.1%}", refresh=False)
                next_log = seen + log_every
            if criterion_fn():
                run.solved = True
                break
            if budget_seconds is not None and time.perf_counter() - start > budget_seconds:
                run.notes += f"stopped by the {args.max_minutes:g}-minute budget. "
                break
    finally:
        bar.close()
    run.curve.append((seen, ema, accuracy))
    run.sequences = seen
    run.seconds = time.perf_counter() - start
    return run


def report(run: Run, args, *, ylabel: str = "training loss (moving average)") -> None:
    """Prints the result row, writes <out>/<task>_<model>.json and the learning-curve PNG."""
    os.makedirs(args.out, exist_ok=True)
    run.peak_rss_mib = peak_rss_mib()
    stem = os.path.join(args.out, f"{run.task}_{run.model}".replace(" ", "_").replace("=", ""))
    with open(stem + ".json", "w") as f:
        json.dump({k: v for k, v in run.__dict__.items()}, f, indent=1, default=float)
    status = "reached the criterion" if run.solved else "did NOT reach the criterion"
    print(
        f"{run.task}, {run.model}: {status} after {run.sequences:,} training sequences, "
        f"{run.seconds:.1f} s on {run.threads} thread(s). {run.notes}".rstrip()
    )
    if run.test_wrong is not None:
        print(f"Test: {run.test_wrong} wrong of {run.test_size} fresh sequences.")
    checkpoint = "" if run.checkpoint is None else f", checkpoint={run.checkpoint}"
    print(f"Training precision {run.precision}{checkpoint}; peak resident memory {run.peak_rss_mib:,.0f} MiB.")
    print("| task | model | sequences to criterion | wrong of test | wall time | threads |")
    print(run.row())
    if plot_curve(run.__dict__, stem + ".png", ylabel=ylabel):
        print(f"Wrote {stem}.png and {stem}.json")
    else:
        print(f'Wrote {stem}.json (matplotlib is not installed: no plot; pip install "lstm_fast[examples]")')


def plot_curve(run: dict, path: str, *, ylabel: str = "training loss (moving average)") -> bool:
    """The learning curve of a run (a Run's __dict__, or its JSON) as a small PNG; False without
    matplotlib."""
    try:
        import matplotlib  # optional: pip install "lstm_fast[examples]"

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return False
    curve = run["curve"]
    seqs = np.array([c[0] for c in curve], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.semilogy(seqs, [max(c[1], 1e-12) for c in curve], color="tab:blue")
    ax.set_xlabel("training sequences")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v else "0"))
    ax.set_ylabel(ylabel, color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(seqs, [c[2] for c in curve], color="tab:orange")
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_ylabel("recent sequences correct", color="tab:orange")
    title = run.get("plot_title") or (
        f"{run['task']}, {run['model']}: "
        + (f"criterion at {run['sequences']:,}" if run["solved"] else f"not solved in {run['sequences']:,}")
    )
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True
