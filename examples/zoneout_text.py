"""Zoneout against overfitting: a character-level language model of Python source, with and without it.

    python examples/zoneout_text.py                     # about 3 minutes on 2 cores
    python examples/zoneout_text.py --updates 3000 --zoneout 0.05,0.5

Data, shipped with every Python: the source of a few standard-library modules. The training text is
small (--train-chars, 40,000 by default) so that an LSTM of 256 units learns it by heart; the
validation text is other modules the model never sees. Both models are one ``lf.LSTM`` layer and a
linear readout over the characters, trained on the same batches (sequences of --seq-len characters at
random places in the training text) with Adam, the same seed and the same number of updates. One of
them has ``zoneout=(z_h, z_c)`` (Krueger et al. 2016: in training each unit keeps its previous h and
c with probability z_h and z_c; in evaluation it mixes them by those probabilities).

Printed: a table of the training and validation loss in bits per character (bpc) at the end and the
best validation bpc, for both. Written: the learning curves as a plot (PNG) and the numbers (JSON) in
--out. The plain LSTM's validation loss turns up as it memorises; zoneout's keeps falling longer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import lstm_fast as lf
from lstm_fast import nn, optim

TRAIN_MODULES = ("argparse", "textwrap", "string", "shlex", "csv", "calendar", "fractions", "heapq")
VALID_MODULES = ("bisect", "colorsys", "fnmatch", "glob", "keyword", "numbers", "operator", "pprint")


def module_text(names) -> str:
    """The source files of the named standard-library modules, joined."""
    folder = Path(os.__file__).parent
    return "\n".join((folder / f"{name}.py").read_text(encoding="utf-8") for name in names)


def encode(text: str, alphabet: str) -> np.ndarray:
    """Characters -> indices into alphabet (characters outside it: the last index, '?')."""
    index = {ch: k for k, ch in enumerate(alphabet)}
    return np.array([index.get(ch, len(alphabet) - 1) for ch in text], dtype=np.int64)


class CharModel:
    """One-hot characters -> lf.LSTM -> linear readout -> scores over the alphabet."""

    def __init__(self, vocab: int, hidden: int, zoneout, seed: int, lr: float) -> None:
        self.vocab = vocab
        self.lstm = lf.LSTM(vocab, hidden, zoneout=zoneout, forget_bias=1.0, seed=seed)
        self.readout = nn.Linear(hidden, vocab, seed=seed + 1)
        params = optim.combine(lstm=self.lstm.state_dict(), readout=self.readout.params)
        self.opt = optim.Adam(params, lr=lr)

    def loss(self, codes: np.ndarray, train: bool) -> float:
        """Mean cross-entropy (nats) of predicting codes[1:] from codes[:-1]; codes (T + 1, B). With
        train, one Adam update with the gradient clipped to norm 1."""
        x = np.eye(self.vocab, dtype=np.float32)[codes[:-1]]
        y, _ = self.lstm.forward(x, train=train)
        loss, dlogits = nn.softmax_cross_entropy(self.readout(y), codes[1:])
        if train:
            dy = self.readout.backward(dlogits)
            self.lstm.backward(dy)
            grads = optim.combine(lstm=self.lstm.grads, readout=self.readout.grads)
            optim.clip_grad_norm(grads, 1.0)
            self.opt.step(grads)
        return float(loss)


def batch_at(codes: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """(length + 1, B): the characters from each start."""
    return np.stack([codes[s : s + length + 1] for s in starts], axis=1)


def evaluate(model: CharModel, codes: np.ndarray, length: int, batch: int) -> float:
    """Bits per character over consecutive windows of the text (at most 16 batches of them)."""
    starts = np.arange(0, len(codes) - length - 1, length)[: 16 * batch]
    losses = [model.loss(batch_at(codes, starts[k : k + batch], length), False) for k in range(0, len(starts), batch)]
    return float(np.mean(losses)) / math.log(2)


def train(args, zoneout, codes, label) -> dict:
    """Trains one model; returns its learning curve (bpc every --eval-every updates)."""
    train_codes, valid_codes = codes
    model = CharModel(args.vocab, args.hidden, zoneout, args.seed, args.lr)
    rng = np.random.default_rng(args.seed)  # the same batches for both models
    curve = dict(updates=[], train_bpc=[], valid_bpc=[])
    start = time.perf_counter()
    for update in tqdm(range(1, args.updates + 1), desc=label, leave=False):
        starts = rng.integers(0, len(train_codes) - args.seq_len - 1, size=args.batch)
        model.loss(batch_at(train_codes, starts, args.seq_len), True)
        if update % args.eval_every == 0 or update == args.updates:
            curve["updates"].append(update)
            curve["train_bpc"].append(evaluate(model, train_codes, args.seq_len, args.batch))
            curve["valid_bpc"].append(evaluate(model, valid_codes, args.seq_len, args.batch))
    curve["seconds"] = time.perf_counter() - start
    return curve


def plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (label, curve), color in zip(curves.items(), ("tab:red", "tab:blue")):
        ax.plot(curve["updates"], curve["valid_bpc"], color=color, label=f"{label}: validation")
        ax.plot(curve["updates"], curve["train_bpc"], color=color, linestyle=":", label=f"{label}: training")
    ax.set_xlabel("updates")
    ax.set_ylabel("bits per character")
    ax.set_title("Character-level LSTM on Python source: plain vs zoneout")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--updates", type=int, default=2000, help="Adam updates per model")
    p.add_argument("--zoneout", default="0.05,0.5", help="z_h,z_c of the zoneout model")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--train-chars", type=int, default=40_000, help="characters of training text")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=lf.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results", help="folder for the plot (PNG) and the numbers (JSON)")
    p.add_argument("--quick", action="store_true", help="a tiny run to check the script")
    args = p.parse_args(argv)
    try:
        args.zoneout = tuple(float(z) for z in args.zoneout.split(","))
    except ValueError:
        p.error(f"--zoneout must be z_h,z_c, got {args.zoneout!r}")
    if len(args.zoneout) != 2 or not all(0 <= z < 1 for z in args.zoneout):
        p.error(f"--zoneout must be two numbers in [0, 1), got {args.zoneout}")
    for name in ("updates", "hidden", "batch", "seq_len", "eval_every", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.quick:
        args.updates, args.eval_every, args.hidden, args.train_chars = 6, 3, 32, 5000
    return args


def main(argv=None) -> int:
    args = parse(argv)
    lf.set_num_threads(args.threads)
    train_text = module_text(TRAIN_MODULES)[: args.train_chars]
    valid_text = module_text(VALID_MODULES)
    alphabet = "".join(sorted(set(train_text) - {"?"})) + "?"
    args.vocab = len(alphabet)
    codes = (encode(train_text, alphabet), encode(valid_text, alphabet))
    if len(codes[0]) < args.seq_len + 2:
        sys.exit(f"--train-chars must exceed --seq-len + 1, got {args.train_chars}")
    curves = {
        "plain": train(args, 0.0, codes, "plain"),
        f"zoneout {args.zoneout}": train(args, args.zoneout, codes, "zoneout"),
    }
    print("| model | training bpc | validation bpc | best validation bpc (update) | seconds |")
    print("|---|---|---|---|---|")
    for label, c in curves.items():
        best = int(np.argmin(c["valid_bpc"]))
        print(
            f"| {label} | {c['train_bpc'][-1]:.3f} | {c['valid_bpc'][-1]:.3f} | "
            f"{c['valid_bpc'][best]:.3f} ({c['updates'][best]}) | {c['seconds']:.0f} |"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "zoneout_text.json").write_text(json.dumps(dict(args={k: v for k, v in vars(args).items()}, curves=curves)))
    plot(curves, out / "zoneout_text.png")
    print(f"wrote {out / 'zoneout_text.png'} and {out / 'zoneout_text.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
