"""Memory of a training step: the peak resident memory a forward(train=True) + backward adds, against T,
with the whole trace (checkpoint=None) and checkpointed (checkpoint="auto", or the steps given).

    python benchmarks/bench_memory.py [--steps 1000,2000,5000,10000,20000] [--batch 16 --input 64 --hidden 256]
        [--checkpoint none,auto] [--json out.json]

Each T runs in a fresh process: it makes the model, the input x (T, B, I) and dy, notes its resident
memory (the baseline), runs one training step and reads the process's peak (VmHWM). The growth is
what the step itself needs: the trace (per row of a step, each layer's input, the activated gates,
c_t, c_{t-1} and h_{t-1}), y, and the backward's gradients w.r.t. the gate pre-activations, dx and the
weight gradients. Printed with the numbers per row of a step (T * B rows) and the time of the step, and
for each checkpointed mode its growth and time against the whole trace's at the same T.
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
checkpoint = None if sys.argv[5] == "none" else sys.argv[5] if sys.argv[5] == "auto" else int(sys.argv[5])
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
model.forward(x, checkpoint=checkpoint)
model.backward(dy)
seconds = time.perf_counter() - start
with open("/proc/self/status") as f:  # the peak, KiB (not ru_maxrss: Linux carries the parent's over exec)
    peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(json.dumps(dict(baseline_kib=baseline, peak_kib=peak, seconds=seconds)))
"""


def measure(T: int, B: int, I: int, H: int, checkpoint: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(T), str(B), str(I), str(H), checkpoint],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="1000,2000,5000,10000,20000", help="comma-separated T")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--input", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--checkpoint", default="none,auto", help="comma-separated modes: none, auto or k")
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()
    B, I, H = args.batch, args.input, args.hidden
    modes = args.checkpoint.split(",")
    print(f"one layer, B {B}, I {I}, H {H}, float32; peak resident memory a training step adds")
    header = ("T", 7), ("checkpoint", 10), ("growth MiB", 11), ("floats / row", 13), ("step s", 7), ("memory", 7)
    print(" ".join(f"{name:>{width}s}" for name, width in header), f"{'time':>6s}")
    rows = []
    for T in (int(t) for t in args.steps.split(",")):
        first = None
        for mode in modes:
            r = measure(T, B, I, H, mode)
            growth = (r["peak_kib"] - r["baseline_kib"]) * 1024
            first = first or (growth, r["seconds"])
            rows.append(dict(steps=T, checkpoint=mode, growth_bytes=growth, seconds=r["seconds"]))
            print(
                f"{T:7d} {mode:>10s} {growth / 2**20:11.1f} {growth / (T * B) / 4:13.0f} {r['seconds']:7.2f}"
                f" {growth / first[0]:6.2f}x {r['seconds'] / first[1]:5.2f}x"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(batch=B, input=I, hidden=H, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
