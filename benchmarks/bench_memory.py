"""Memory of a training step: the peak resident memory a forward(train=True) + backward adds, against T.

    python benchmarks/bench_memory.py [--steps 1000,2000,5000,10000,20000] [--batch 16 --input 64 --hidden 256]

Each T runs in a fresh process: it makes the model, the input x (T, B, I) and dy, notes its resident
memory (the baseline), runs one training step and reads the process's peak (ru_maxrss). The growth is
what the step itself needs: the trace (per row of a step, each layer's input, the activated gates,
c_t, c_{t-1} and h_{t-1}), y, and the backward's gradients w.r.t. the gate pre-activations, dx and the
weight gradients. Printed with the numbers per row of a step (T * B rows) and the time of the step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np
import lstm_fast as lf

T, B, I, H = (int(v) for v in sys.argv[1:5])
model = lf.LSTM(I, H, seed=0)
x = np.random.default_rng(0).standard_normal((T, B, I), dtype=np.float32)
dy = np.ones((T, B, H), dtype=np.float32)
model.forward(x[:2])  # the library's first-use setup (thread pool, kernels) outside the measurement
model.backward(dy[:2])

def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (resource.getpagesize() // 1024)

baseline = rss_kib()
start = time.perf_counter()
model.forward(x)
model.backward(dy)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps(dict(baseline_kib=baseline, peak_kib=peak, seconds=seconds)))
"""


def measure(T: int, B: int, I: int, H: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(T), str(B), str(I), str(H)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="1000,2000,5000,10000,20000", help="comma-separated T")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--input", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    args = parser.parse_args()
    B, I, H = args.batch, args.input, args.hidden
    print(f"one layer, B {B}, I {I}, H {H}, float32; peak resident memory a training step adds")
    print(f"{'T':>7s} {'growth MiB':>11s} {'bytes / row':>12s} {'floats / row':>13s} {'step s':>7s}")
    for T in (int(t) for t in args.steps.split(",")):
        r = measure(T, B, I, H)
        growth = (r["peak_kib"] - r["baseline_kib"]) * 1024
        per_row = growth / (T * B)
        print(f"{T:7d} {growth / 2**20:11.1f} {per_row:12.0f} {per_row / 4:13.0f} {r['seconds']:7.2f}")


if __name__ == "__main__":
    main()
