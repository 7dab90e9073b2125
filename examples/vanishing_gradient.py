"""The vanishing gradient, measured: how much of the loss gradient at the last step reaches each
earlier input, for the plain tanh RNN and for the LSTM, on adding-problem sequences.

    python examples/vanishing_gradient.py --seq-len 1000

For freshly initialised networks (torch's initialisation; the LSTM also with chrono initialisation,
as the adding example trains it), it backpropagates a unit gradient from the last output and prints
and plots the mean |d y[T-1] / d x[t]| over the batch and the input features, relative to t = T-1.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import lstm_fast as lf
from lstm_fast import tasks, training
from lstm_fast.rnn import RNN


def input_gradient(model, x):
    y, _ = model.forward(x, train=True)
    dy = np.zeros_like(y)
    dy[-1] = 1.0
    dx, _ = model.backward(dy)
    g = np.abs(dx).mean(axis=(1, 2))
    return g / g[-1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seq-len", type=int, default=1000, help="T")
    p.add_argument("--hidden", type=int, default=32, help="units")
    p.add_argument("--batch", type=int, default=32, help="sequences averaged over")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results", help="folder for vanishing_gradient.png")
    p.add_argument("--quick", action="store_true", help="T = 50, to check the script")
    args = p.parse_args(argv)
    T = 50 if args.quick else args.seq_len
    if T < 10:
        p.error("--seq-len must be >= 10")
    lf.set_num_threads(1)
    x, _ = tasks.adding_problem(T, args.batch, args.seed)
    x = x.astype(np.float64)
    lstm_chrono = lf.LSTM(2, args.hidden, dtype=np.float64, seed=args.seed)
    training.chrono_init(lstm_chrono, max(T, 1000), rng=args.seed)
    curves = {
        "tanh RNN": input_gradient(RNN(2, args.hidden, dtype=np.float64, seed=args.seed), x),
        "LSTM, torch init": input_gradient(lf.LSTM(2, args.hidden, dtype=np.float64, seed=args.seed), x),
        "LSTM, forget bias 1": input_gradient(
            lf.LSTM(2, args.hidden, forget_bias=1.0, dtype=np.float64, seed=args.seed), x
        ),
        f"LSTM, chrono t_max {max(T, 1000)}": input_gradient(lstm_chrono, x),
    }
    lags = [lag for lag in (1, 10, 50, 100, 500, T - 1) if lag < T]
    lags = sorted(set(lags))
    print(f"mean |d y[T-1] / d x[T-1-lag]| relative to lag 0, T = {T}, {args.hidden} units")
    print("| model | " + " | ".join(f"lag {lag}" for lag in lags) + " |")
    print("|---|" + "---|" * len(lags))
    for name, g in curves.items():
        print(f"| {name} | " + " | ".join(f"{g[T - 1 - lag]:.1e}" for lag in lags) + " |")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return 0
    os.makedirs(args.out, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, g in curves.items():
        ax.semilogy(np.arange(T)[::-1], np.maximum(g, 1e-300), label=name)
    ax.set_xlabel("lag (steps before the last)")
    ax.set_ylabel("relative input gradient")
    ax.set_ylim(1e-30, 10)
    ax.legend(fontsize=8)
    ax.set_title(f"Gradient reaching each input, T = {T}, {args.hidden} units (untrained)", fontsize=10)
    fig.tight_layout()
    path = os.path.join(args.out, "vanishing_gradient.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
