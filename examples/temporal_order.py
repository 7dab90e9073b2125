"""The temporal order problem (Hochreiter & Schmidhuber 1997, Experiment 6a and 6b).

    python examples/temporal_order.py --variant a      # X/Y at t1, t2: 4 classes
    python examples/temporal_order.py --variant b      # X/Y at t1, t2, t3: 8 classes
    python examples/temporal_order.py --variant a --model rnn

Data: ``lstm_fast.tasks.temporal_order`` (6a: t1 in [10, 20], t2 in [50, 60]) and
``temporal_order_3`` (6b: t1 in [10, 20], t2 in [33, 43], t3 in [66, 76]), lengths 100 to 110,
B first, E last, distractors a..d, one-hot inputs over 8 symbols.

The class is read at each sequence's last step through a softmax. The paper's rule: a sequence is
classified correctly when every output's absolute error against the one-hot target is below 0.3;
training stops when the 2000 most recent training sequences were classified correctly and their
average error (here: the mean squared error of the softmax outputs) is below 0.1. Each training
sequence is judged on its own training forward pass. Then 2560 fresh sequences are tested.
"""

from __future__ import annotations

import sys

import _common
import numpy as np

from lstm_fast import nn, optim, tasks, training


def main(argv=None) -> int:
    p = _common.parser(
        __doc__.split("\n")[0], hidden=32, batch=32, lr=3e-3, max_sequences=1_000_000, rnn_max_sequences=100_000
    )
    p.add_argument("--variant", choices=["a", "b"], default="a", help="6a (two symbols) or 6b (three)")
    p.add_argument(
        "--chrono-tmax",
        type=float,
        default=110.0,
        help="t_max of the chrono initialisation of the gate biases (0: forget_bias=1 "
        "instead; the gradient then vanishes over the 40 to 90 step lags)",
    )
    args = _common.finish_args(p, p.parse_args(argv))
    generate = tasks.temporal_order if args.variant == "a" else tasks.temporal_order_3
    classes = tasks.TEMPORAL_ORDER_CLASSES if args.variant == "a" else tasks.TEMPORAL_ORDER_CLASSES_3
    rng = np.random.default_rng(args.seed)
    model = _common.Model(
        args.model,
        len(tasks.TEMPORAL_ORDER_SYMBOLS),
        args.hidden,
        len(classes),
        args.seed,
        forget_bias=1.0,
        chrono=args.chrono_tmax or None,
    )
    model.set_training_options(args)
    opt = optim.Adam(model.params(), lr=args.lr)
    criterion = training.RecentCriterion(window=2000 if not args.quick else 64, max_error=0.1)
    run = _common.Run(
        task=f"temporal order 6{args.variant}",
        model=args.model,
        command=_common.command_line(),
        test_size=args.test_size,
        threads=args.threads,
    )
    print(
        f"Temporal order 6{args.variant}, {len(classes)} classes; {model.describe()}; chrono "
        f"t_max {args.chrono_tmax:g}; Adam lr "
        f"{args.lr:g}, batch {args.batch}, clip {args.clip:g}; budget {args.max_sequences:,} "
        f"sequences; {args.threads} thread(s)"
    )

    def probabilities(logits):
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def loss_fn(labels):
        def f(out):
            loss, dout = nn.softmax_cross_entropy(out, labels)
            return loss, dout, probabilities(out)

        return f

    def step():
        x, labels, lengths = generate(args.batch, rng)
        loss, probs = model.train_last(x, lengths, loss_fn(labels), opt, args.clip)
        correct = tasks.temporal_order_correct(probs, labels)
        onehot = np.eye(len(classes))[labels]
        criterion.update(correct, np.square(probs - onehot).mean(axis=1))
        return loss, args.batch, criterion.accuracy()

    _common.train_loop(run, args, step, criterion.met)
    x, labels, lengths = generate(args.test_size, rng)
    probs = probabilities(model.predict_last(x, lengths))
    correct = tasks.temporal_order_correct(probs, labels)
    run.test_wrong = int((~correct).sum())
    run.notes += f"test argmax accuracy {np.mean(probs.argmax(1) == labels):.2%}. "
    _common.report(run, args, ylabel="training cross-entropy (moving avg)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
