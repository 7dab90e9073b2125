"""The embedded Reber grammar (Hochreiter & Schmidhuber 1997, Experiment 1).

    python examples/reber.py --trials 10
    python examples/reber.py --model rnn --trials 3

Next-symbol prediction: the network reads an embedded Reber string one symbol at a time (7 symbols,
one-hot) and after each symbol outputs scores for the 7 possible next symbols (softmax, trained with
the cross-entropy against the symbol that actually comes next). The long-lag part: the second-to-
last symbol (T or P) must repeat the second symbol, remembered across the whole inner string.

Set-up and criterion, the paper's: 256 training strings and 256 test strings (none of which is in the
training set); training strings are picked at random from the training set. A trial is successful
when every symbol of every string of both sets is predicted correctly, i.e. at every step the output
units of the symbols the grammar allows next are the most active ones
(``lstm_fast.tasks.reber_correct``). The criterion is checked after every update; the count is the
training strings seen until then. As an extra, the trained network is also tested on 2560 fresh
strings.
"""

from __future__ import annotations

import sys

import _common
import numpy as np

from lstm_fast import nn, optim, tasks


def one_trial(args, seed, trial_label):
    rng = np.random.default_rng(seed)
    train_strings = tasks.reber_strings(256, rng)
    train_set = set(train_strings)
    test_strings = []
    while len(test_strings) < 256:
        s = tasks.reber_strings(1, rng)[0]
        if s not in train_set:
            test_strings.append(s)
    check = tasks.reber_batch(train_strings + test_strings)
    model = _common.Model(
        args.model, len(tasks.REBER_SYMBOLS), args.hidden, len(tasks.REBER_SYMBOLS), seed, forget_bias=1.0
    )
    model.set_training_options(args)
    opt = optim.Adam(model.params(), lr=args.lr)
    run = _common.Run(
        task="embedded Reber",
        model=args.model,
        command=_common.command_line(),
        test_size=args.test_size,
        threads=args.threads,
    )
    state = {"ok": False, "accuracy": 0.0}

    def loss_fn(targets, lengths):
        valid = np.arange(targets.shape[0])[:, None] < lengths[None, :]

        def f(out):  # out (T, B, 7)
            loss, dvalid = nn.softmax_cross_entropy(out[valid], targets[valid])
            dout = np.zeros_like(out)
            dout[valid] = dvalid
            return loss, dout, None

        return f

    def step():
        picked = [train_strings[i] for i in rng.integers(0, len(train_strings), args.batch)]
        x, targets, _, lengths = tasks.reber_batch(picked)
        loss, _ = model.train_all(x, lengths, loss_fn(targets, lengths), opt, args.clip)
        xc, _, possible, lc = check
        correct = tasks.reber_correct(model.predict_all(xc, lc), possible, lc)
        state["ok"] = bool(correct.all())
        state["accuracy"] = float(correct.mean())
        return loss, args.batch, state["accuracy"]

    run.task = f"embedded Reber{trial_label}"
    _common.train_loop(run, args, step, lambda: state["ok"])
    x, _, possible, lengths = tasks.reber_batch(tasks.reber_strings(args.test_size, rng))
    run.test_wrong = int((~tasks.reber_correct(model.predict_all(x, lengths), possible, lengths)).sum())
    return run


def main(argv=None) -> int:
    p = _common.parser(
        __doc__.split("\n")[0], hidden=16, batch=16, lr=1e-2, max_sequences=100_000, rnn_max_sequences=100_000
    )
    p.add_argument("--trials", type=int, default=1, help="independent trials (seeds seed, seed+1, ...)")
    args = _common.finish_args(p, p.parse_args(argv))
    print(
        f"Embedded Reber grammar: 256 training + 256 test strings; {args.model}, {args.hidden} "
        f"units; Adam lr {args.lr:g}, batch {args.batch}, clip {args.clip:g}; budget "
        f"{args.max_sequences:,} strings per trial; {args.trials} trial(s); {args.threads} thread(s)"
    )
    runs = []
    for k in range(args.trials):
        run = one_trial(args, args.seed + k, f" trial {k + 1}" if args.trials > 1 else "")
        print(
            f"  trial {k + 1}: {'solved' if run.solved else 'NOT solved'} after {run.sequences:,} "
            f"strings, {run.seconds:.1f} s; {run.test_wrong} wrong of {run.test_size} fresh strings"
        )
        runs.append(run)
    solved = [r for r in runs if r.solved]
    summary = _common.Run(
        task="embedded Reber",
        model=args.model,
        command=_common.command_line(),
        solved=len(solved) == len(runs),
        sequences=max(r.sequences for r in runs),
        seconds=sum(r.seconds for r in runs),
        test_size=args.test_size,
        test_wrong=max(r.test_wrong for r in runs),
        threads=args.threads,
        curve=runs[0].curve,
        plot_title=f"embedded Reber, {args.model}, trial 1 of {len(runs)}: "
        + (f"criterion at {runs[0].sequences:,}" if runs[0].solved else f"not solved in {runs[0].sequences:,}"),
    )
    counts = sorted(r.sequences for r in solved)
    summary.notes = (
        f"{len(solved)} of {len(runs)} trials solved"
        + (
            f", strings to criterion min {counts[0]:,} / median {int(np.median(counts)):,} / max {counts[-1]:,}"
            if counts
            else ""
        )
        + f"; wrong of {args.test_size} fresh strings per trial: "
        + ", ".join(str(r.test_wrong) for r in runs)
        + "; trial seconds: "
        + ", ".join(f"{r.seconds:.0f}" for r in runs)
        + ". "
        + "Row: largest count and largest wrong over the trials; plot: trial 1."
    )
    _common.report(summary, args, ylabel="training cross-entropy (moving avg)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
