"""The adding problem (Hochreiter & Schmidhuber 1997, Experiment 4) at T = 100, 500 or 1000.

    python examples/adding.py --seq-len 1000
    python examples/adding.py --seq-len 100 --model rnn      # the plain RNN baseline

Data: ``lstm_fast.tasks.adding_problem_paper``, the paper's definition (lengths in [T, T + T/10],
-1 markers on the first and last step, X1 in the first 10 steps, X2 in the first T/2 - 1).

Stopping rule, the paper's: training stops once the 2000 most recent training sequences were all
processed correctly (|error| < 0.04 at the sequence end) and their average squared error is below
0.01; each training sequence is judged by the output of its own training forward pass (before the
update its batch leads to). Then 2560 fresh sequences are tested; |error| >= 0.04 counts as wrong.

Modern practice the paper did not have: small minibatches (8: in sequences seen, smaller batches
learned faster than 16 or 32 in trials at T = 100) with Adam, the learning rate lowered as the
recent accuracy rises, gradient clipping, chrono initialisation of the gate biases (forget-gate
biases log U(1, t_max - 1), input gate the negative), and a well-scaled loss (the readout predicts
X1 + X2, in [-2, 2]; the prediction is 0.5 + readout / 4).
"""

from __future__ import annotations

import sys

import _common
import numpy as np

from lstm_fast import nn, optim, tasks, training


def main(argv=None) -> int:
    p = _common.parser(
        __doc__.split("\n")[0], hidden=32, batch=8, lr=3e-3, max_sequences=900_000, rnn_max_sequences=100_000
    )
    p.add_argument("--seq-len", type=int, default=100, help="T, the minimal sequence length")
    p.add_argument(
        "--no-chrono", action="store_true", help="plain forget_bias=1 initialisation instead of chrono initialisation"
    )
    p.add_argument(
        "--chrono-tmax",
        type=float,
        default=None,
        help="t_max of the chrono initialisation (default max(T, 1000): forget gates "
        "close to 1 keep the stored values precise over the whole sequence)",
    )
    p.add_argument(
        "--lr-drops",
        default="0.9,0.99,0.997",
        help="the learning rate is multiplied by 0.3 each time the fraction of the 2000 "
        "most recent training sequences processed correctly passes one of these "
        "(the remaining work is precision: |error| < 0.04 on 2000 in a row); '' "
        "keeps it constant",
    )
    args = _common.finish_args(p, p.parse_args(argv))
    if args.seq_len < 10:
        p.error("--seq-len must be >= 10")
    T = args.seq_len
    if args.chrono_tmax is None:
        args.chrono_tmax = max(T, 1000)
    rng = np.random.default_rng(args.seed)
    drops = sorted(float(v) for v in args.lr_drops.split(",") if v.strip())
    model = _common.Model(
        args.model, 2, args.hidden, 1, args.seed, forget_bias=1.0, chrono=None if args.no_chrono else args.chrono_tmax
    )
    model.set_training_options(args)
    opt = optim.Adam(model.params(), lr=args.lr)
    criterion = training.RecentCriterion(window=2000 if not args.quick else 64, max_error=0.01)
    run = _common.Run(
        task=f"adding T={T}",
        model=args.model,
        command=_common.command_line(),
        test_size=args.test_size,
        threads=args.threads,
    )
    init = "no chrono init" if args.model == "rnn" or args.no_chrono else f"chrono init t_max {args.chrono_tmax:g}"
    print(
        f"Adding problem, T = {T} (lengths {T}..{T + T // 10}); {model.describe()}; Adam lr "
        f"{args.lr:g}, batch {args.batch}, clip {args.clip:g}, "
        f"{init}; "
        f"lr x0.3 at recent accuracy {drops}; "
        f"budget {args.max_sequences:,} sequences; {args.threads} thread(s)"
    )

    def loss_fn(target):
        def f(out):  # out (B, 1): the readout, trained towards X1 + X2 = 4 * (target - 0.5)
            loss, dout = nn.mse_loss(out, 4.0 * (target - 0.5))
            pred = 0.5 + out / 4.0
            return loss, dout, pred

        return f

    def step():
        x, target, lengths = tasks.adding_problem_paper(T, args.batch, rng)
        loss, pred = model.train_last(x, lengths, loss_fn(target), opt, args.clip)
        correct = tasks.adding_correct(pred, target)
        criterion.update(correct, np.square(pred - target)[:, 0])
        # Lower the learning rate once most recent sequences are already right: the remaining
        # work is precision (|error| < 0.04 on 2000 in a row).
        acc = criterion.accuracy()
        if drops and criterion.filled == criterion.window and acc > drops[0]:
            drops.pop(0)
            opt.lr *= 0.3
            run.notes += f"lr {opt.lr:.2g} from {criterion.seen:,}. "
            print(f"\n  lr -> {opt.lr:g} at {criterion.seen:,} sequences (recent correct {acc:.1%})", file=sys.stderr)
        return loss, args.batch, acc

    _common.train_loop(run, args, step, criterion.met)
    x, target, lengths = tasks.adding_problem_paper(T, args.test_size, rng)
    pred = 0.5 + model.predict_last(x, lengths) / 4.0
    run.test_wrong = int((~tasks.adding_correct(pred, target)).sum())
    err = np.abs(pred - target)
    run.notes += f"test mean |error| {err.mean():.4f}, max {err.max():.4f}. "
    _common.report(run, args, ylabel="training MSE of X1+X2 (moving avg)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
