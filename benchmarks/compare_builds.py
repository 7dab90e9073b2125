"""Two builds of lstm_fast against each other, interleaved: A B A B ... in fresh processes, so that a
slow period of a shared machine hits both. Prints, per case, each build's median time over the
rounds and the ratio new / old (median and range of the per-round ratios; below 1: the new build is
faster).

    python benchmarks/compare_builds.py --old /path/with/old/lstm_fast [--rounds 5] [--threads 2]

`--old` is a folder that holds an installed `lstm_fast` package (put first on PYTHONPATH); the new
build is the one this interpreter imports. Cases: inference and training (forward + backward) at the
shapes of bench_torch.py, the frozen models (fp32, bf16, int8) at two of them, and the streaming step
of lf.LSTM and of the frozen models.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from bench_torch import SHAPES, median_ms


def worker(threads: int) -> None:
    """Runs every case in this process and prints {case: ms} as JSON."""
    import numpy as np

    import lstm_fast as lf

    lf.set_num_threads(threads)
    rng = np.random.default_rng(0)
    out = {}
    for name, (T, B, I, H, L, bidirectional) in SHAPES.items():
        if name == "xl":  # (seconds a round in training: left to bench_torch.py and bench_precision.py)
            continue
        model = lf.LSTM(I, H, L, bidirectional=bidirectional, seed=0)
        x = rng.standard_normal((T, B, I), dtype=np.float32)
        dy = np.ones((T, B, model.num_directions * H), np.float32)
        out[f"{name} inference"] = median_ms(lambda: model(x), 7)

        def train():
            model.forward(x, train=True)
            model.backward(dy)

        out[f"{name} training"] = median_ms(train, 7)
        if name in ("medium", "b1"):
            for precision in ("fp32", "bf16", "int8"):
                frozen = model.freeze(precision)
                out[f"{name} {precision} model"] = median_ms(lambda: frozen(x), 7)
    model = lf.LSTM(64, 256, seed=0)
    state = model.initial_state(1)
    x_t = rng.standard_normal((1, 64), dtype=np.float32)
    out["step B1 I64 H256 (us)"] = 1e3 * median_ms(lambda: model.step(x_t, state), 7)
    for precision in ("fp32", "int8"):
        frozen = model.freeze(precision)
        _, frozen_state = frozen.step(x_t)
        out[f"{precision} model step B1 (us)"] = 1e3 * median_ms(lambda: frozen.step(x_t, frozen_state), 7)
    print(json.dumps(out))


def run(pythonpath: str | None, threads: int) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, __file__, "--worker", "--threads", str(threads)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.abspath(__file__)),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", help="folder holding the old build's lstm_fast package")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.threads)
        return
    if not args.old:
        parser.error("--old is required")
    old, new = [], []
    for k in range(args.rounds):
        old.append(run(args.old, args.threads))
        new.append(run(None, args.threads))
        print(f"round {k + 1}/{args.rounds} done", file=sys.stderr)
    print(f"{'case':28s} {'old ms':>9s} {'new ms':>9s}  new/old median [min, max]")
    for case in old[0]:
        ratios = [n[case] / o[case] for o, n in zip(old, new)]
        print(
            f"{case:28s} {statistics.median(o[case] for o in old):9.3f} {statistics.median(n[case] for n in new):9.3f}"
            f"  {statistics.median(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}]"
        )


if __name__ == "__main__":
    main()
