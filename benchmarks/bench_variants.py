"""What a cell variant costs: lf.LSTM with each variant against the plain LSTM of the same shape, in the
same run, inference and training (forward + backward; recurrent dropout acts in training only), the
variants' calls interleaved with the plain
one's so that the machine's slow spells fall on all of them alike.

    python benchmarks/bench_variants.py [--shapes medium,b1] [--rounds 15]

The shapes are bench_torch.py's. Each figure is the median over --rounds rounds of the variant's time
over the plain LSTM's in the same round, with the range (min-max) of those ratios; the plain times are
medians in ms. The variants issue's targets: cell_clip and coupled_gates at most 1.05x in inference,
recurrent dropout and zoneout at most 1.1x in training (zoneout's inference mixes with d = z), layer
norm at most 1.3x in training at the medium shape.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from bench_torch import SHAPES
from tqdm import tqdm

import lstm_fast as lf

VARIANTS = {
    "plain": {},
    "cell_clip": dict(cell_clip=1.0),
    "coupled_gates": dict(coupled_gates=True),
    "recurrent_dropout": dict(recurrent_dropout=0.25),
    "zoneout": dict(zoneout=(0.05, 0.5)),  # Krueger et al.'s z_h, z_c for character-level models
    "layer_norm": dict(layer_norm=True),
}


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(shape: str, rounds: int, progress: tqdm) -> dict:
    """{mode: {variant: [seconds per round]}} for one shape."""
    T, B, I, H, layers, bidirectional = SHAPES[shape]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I), dtype=np.float32)
    models = {
        name: lf.LSTM(I, H, layers, bidirectional=bidirectional, seed=0, **kwargs) for name, kwargs in VARIANTS.items()
    }
    dy = None
    calls = {}
    for name, model in models.items():
        y, _ = model.forward(x)
        dy = np.ones_like(y) if dy is None else dy

        def train(model=model):
            model.forward(x)
            model.backward(dy)

        calls[name] = dict(inference=lambda model=model: model(x), training=train)
    times: dict = {mode: {name: [] for name in models} for mode in ("inference", "training")}
    for _ in range(rounds):
        for mode in times:
            for name in models:
                times[mode][name].append(timed(calls[name][mode]))
        progress.update()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="small,medium,b1,deep")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    shapes = args.shapes.split(",")
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        parser.error(f"unknown shapes {unknown}; known: {list(SHAPES)}")
    print(f"lstm_fast {lf.__version__} ({lf.isa()}, {lf.get_num_threads()} threads)")
    results = {}
    with tqdm(total=len(shapes) * args.rounds, desc="rounds", leave=False) as progress:
        for shape in shapes:
            results[shape] = measure(shape, args.rounds, progress)
    names = [n for n in VARIANTS if n != "plain"]
    print(f"{'shape':7s} {'mode':9s} {'plain ms':>9s} " + " ".join(f"{n + ' / plain':>24s}" for n in names))
    for shape, times in results.items():
        for mode, by_variant in times.items():
            plain = np.array(by_variant["plain"])
            cells = []
            for n in names:
                ratio = np.array(by_variant[n]) / plain
                cells.append(f"{np.median(ratio):.3f} ({ratio.min():.2f}-{ratio.max():.2f})")
            print(f"{shape:7s} {mode:9s} {np.median(plain) * 1e3:9.2f} " + " ".join(f"{c:>24s}" for c in cells))


if __name__ == "__main__":
    main()
