"""``python -m lstm_fast``: train an LSTM on the 1997 paper's adding problem within a minute.

The adding problem (Hochreiter & Schmidhuber 1997, Experiment 4): a sequence of (value, marker)
pairs, two values X1 and X2 marked early on, and at the last step the network must output
0.5 + (X1 + X2) / 4. It has to keep two numbers in its cells across the whole sequence, which is
what the LSTM was invented for. A sequence counts as solved when |output - target| < 0.04.

``python -m lstm_fast --cmakedir`` prints the folder to give CMake as ``lstm_fast_DIR``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from tqdm import tqdm

import lstm_fast
from lstm_fast import nn, optim, tasks


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m lstm_fast",
        description="Train an LSTM with a linear readout on the adding problem of Hochreiter & "
        "Schmidhuber (1997), stop once a validation batch is solved by the paper's "
        "criterion (|error| < 0.04 on every sequence), and report what it learned.",
    )
    parser.add_argument(
        "--cmakedir", action="store_true", help="print the CMake package folder (for -Dlstm_fast_DIR=...) and exit"
    )
    parser.add_argument("--seq-len", type=int, default=50, help="T, steps per sequence (default 50)")
    parser.add_argument("--hidden", type=int, default=32, help="LSTM cells (default 32)")
    parser.add_argument("--batch", type=int, default=64, help="sequences per training step (default 64)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 0.001)")
    parser.add_argument("--clip", type=float, default=1.0, help="largest global gradient norm (default 1.0)")
    parser.add_argument("--seconds", type=float, default=60.0, help="training time budget in seconds (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model and the data (default 0)")
    parser.add_argument(
        "--val-size",
        type=int,
        default=2000,
        help="sequences per validation batch; training stops when all are solved (default 2000)",
    )
    parser.add_argument(
        "--eval-every", type=int, default=50, help="training steps between validation batches (default 50)"
    )
    parser.add_argument(
        "--test-size", type=int, default=2560, help="fresh sequences in the final test, as in the paper (default 2560)"
    )
    args = parser.parse_args(argv)
    positive = ("batch", "hidden", "val_size", "eval_every", "test_size")
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.seq_len < 10:
        parser.error(f"--seq-len must be >= 10 (X1 is drawn from the first 10 steps), got {args.seq_len}")
    for name in ("lr", "clip", "seconds"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name} must be > 0, got {getattr(args, name)}")
    return args


class AddingModel:
    """LSTM -> last output y[T-1] (B, H) -> Linear -> (B, 1), trained on the MSE."""

    def __init__(self, hidden: int, seed: int, forget_bias: float = 1.0):
        self.lstm = lstm_fast.LSTM(2, hidden, forget_bias=forget_bias, seed=seed)
        self.head = nn.Linear(hidden, 1, seed=seed + 1)

    def params(self) -> dict:
        """The live parameters of both parts, as "lstm.<torch name>" and "head.weight"/"head.bias"."""
        return optim.combine(lstm=self.lstm.state_dict(), head=self.head.params)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """x (T, B, 2) -> prediction (B, 1)."""
        y, _ = self.lstm(x)
        return self.head(y[-1])

    def train_step(self, x, target, opt, clip: float) -> float:
        """One step of BPTT and Adam on a batch x (T, B, 2), target (B, 1); returns the batch loss."""
        y, _ = self.lstm.forward(x, train=True)
        pred = self.head(y[-1])
        loss, dpred = nn.mse_loss(pred, target)
        dy = np.zeros_like(y)
        dy[-1] = self.head.backward(dpred)  # only the last step is scored
        self.lstm.backward(dy)
        grads = optim.combine(lstm=self.lstm.grads, head=self.head.grads)
        optim.clip_grad_norm(grads, clip)
        opt.step(grads)
        return loss


def _predict_in_chunks(model: AddingModel, x: np.ndarray, chunk: int = 512) -> np.ndarray:
    return np.concatenate([model.predict(x[:, i : i + chunk]) for i in range(0, x.shape[1], chunk)])


def _describe(args) -> None:
    """Prints what is trained, on what task, and when it counts as solved."""
    print(
        f"lstm_fast {lstm_fast.__version__} ({lstm_fast.isa()}, {lstm_fast.get_num_threads()} threads): "
        f"the adding problem (Hochreiter & Schmidhuber 1997, Experiment 4)"
    )
    print(
        f"  {args.seq_len} steps of (value in [-1, 1], marker); X1 is marked in the first 10 steps, "
        f"X2 in the first {args.seq_len // 2 - 1};"
    )
    print(f"  at the last step output 0.5 + (X1 + X2)/4; solved when |error| < {tasks.ADDING_TOLERANCE}")
    print(
        f"  LSTM(2 -> {args.hidden}, forget_bias=1.0) -> Linear({args.hidden} -> 1), MSE, "
        f"Adam lr={args.lr:g}, batch {args.batch}, clip {args.clip:g}, seed {args.seed}"
    )
    print(f"  training until {args.val_size} fresh validation sequences are all solved, or {args.seconds:g} s")


def _train_until_solved(args, model, opt, data_rng):
    """Trains until a fresh validation batch is all solved or the budget is spent, with a progress bar.
    Returns (solved, steps, last validation accuracy or None)."""
    start = time.perf_counter()
    steps = 0
    solved = False
    val_accuracy = None
    recent_loss = None
    # A terminal redraws the bar in place; a log file gets a line per update, so fewer of them.
    refresh_seconds = 0.5 if sys.stderr.isatty() else 5.0
    bar = tqdm(
        total=args.seconds,
        unit="s",
        mininterval=refresh_seconds,
        dynamic_ncols=True,
        bar_format="{desc}{percentage:3.0f}%|{bar}| {elapsed} of the budget{postfix}",
        desc="training ",
    )
    try:
        while True:
            x, target = tasks.adding_problem(args.seq_len, args.batch, data_rng)
            loss = model.train_step(x, target, opt, args.clip)
            steps += 1
            recent_loss = loss if recent_loss is None else 0.95 * recent_loss + 0.05 * loss
            if steps % args.eval_every == 0:
                x_val, target_val = tasks.adding_problem(args.seq_len, args.val_size, data_rng)
                correct = tasks.adding_correct(_predict_in_chunks(model, x_val), target_val)
                val_accuracy = float(correct.mean())
                solved = bool(correct.all())
            elapsed = time.perf_counter() - start
            bar.update(min(elapsed, args.seconds) - bar.n)
            val_text = "-" if val_accuracy is None else f"{val_accuracy:.1%}"
            bar.set_postfix_str(
                f"loss {recent_loss:.5f}, validation solved {val_text}, {steps * args.batch:,} sequences", refresh=False
            )
            if solved or elapsed >= args.seconds:
                return solved, steps, val_accuracy
    finally:
        bar.close()


def _report_test(args, model, data_rng) -> None:
    """Tests on fresh sequences and prints the score and a few examples."""
    x_test, target_test = tasks.adding_problem(args.seq_len, args.test_size, data_rng)
    pred_test = _predict_in_chunks(model, x_test)
    correct = tasks.adding_correct(pred_test, target_test)
    error = np.abs(pred_test - target_test)[:, 0]
    constant = tasks.adding_correct(np.full_like(target_test, 0.5), target_test)
    print(
        f"Test on {args.test_size} fresh sequences: {int(correct.sum())}/{args.test_size} solved "
        f"({correct.mean():.2%}), mean |error| {error.mean():.4f}, max |error| {error.max():.4f}"
    )
    print(f"  (for comparison, always answering 0.5 solves {constant.mean():.1%})")
    print("Examples (the two marked values, in time order, with their steps t):")
    print("      marked (t)      marked (t)    target   output    |error|")
    for b in range(5):
        t1, t2 = np.flatnonzero(x_test[:, b, 1])
        v1, v2 = x_test[t1, b, 0], x_test[t2, b, 0]
        mark = "ok" if correct[b] else "wrong"
        print(
            f"  {v1:+.3f} (t={t1:<3d})  {v2:+.3f} (t={t2:<3d})  {target_test[b, 0]:.4f}   "
            f"{pred_test[b, 0]:.4f}   {error[b]:.4f}  {mark}"
        )


def train(args) -> int:
    data_rng = np.random.default_rng(args.seed)
    model = AddingModel(args.hidden, args.seed)
    opt = optim.Adam(model.params(), lr=args.lr)
    _describe(args)

    start = time.perf_counter()
    solved, steps, val_accuracy = _train_until_solved(args, model, opt, data_rng)
    train_seconds = time.perf_counter() - start
    sequences = steps * args.batch
    if solved:
        print(
            f"Solved: all {args.val_size} validation sequences within {tasks.ADDING_TOLERANCE} after "
            f"{sequences:,} training sequences ({steps:,} steps) in {train_seconds:.1f} s."
        )
    else:
        last = (
            "no validation batch yet"
            if val_accuracy is None
            else f"{val_accuracy:.1%} of the last validation batch within {tasks.ADDING_TOLERANCE}"
        )
        print(
            f"Not solved within the {args.seconds:g} s budget: {last} after {sequences:,} training "
            f"sequences ({steps:,} steps), {train_seconds:.1f} s. Try a larger --seconds."
        )
    _report_test(args, model, data_rng)
    return 0


def main(argv=None) -> int:
    args = _parse_args(argv)
    if args.cmakedir:
        print(lstm_fast.get_cmake_dir())
        return 0
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
