"""Memory stays flat over many calls: 10,000 training forward + backward calls (and the other entry
points: inference, step, save/load, and the error paths) with the process's RSS printed at intervals.

    python tools/leak_check.py [--calls 10000] [--max-growth-mib 8]

Exit status 1 when the RSS grew by more than --max-growth-mib between the end of the warm-up (the
first tenth of the calls, when allocator pools and caches fill) and the end. A leak of even one small
array per call (a 16 x 32 float32 gradient is 2 KiB) would add ~20 MiB over 10,000 calls.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
from _memory import rss_mib  # tools/ is on sys.path when a script here runs

import lstm_fast as lf


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--max-growth-mib", type=float, default=8.0)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    models = [
        lf.LSTM(8, 32, num_layers=2, bidirectional=True, proj_size=16, peephole=True, dropout=0.1, seed=0),
        lf.LSTM(8, 32, seed=1, dtype=np.float64),
    ]
    x = rng.normal(size=(20, 4, 8)).astype(np.float32)
    lengths = [20, 15, 7, 1]
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "m.safetensors")
    models[1].save(path)
    bad = os.path.join(folder, "bad.safetensors")
    with open(bad, "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")

    warmup = max(1, args.calls // 10)
    interval = max(1, args.calls // 10)
    baseline = None
    print(f"{'calls':>7}  {'RSS MiB':>8}")
    print(f"{0:>7}  {rss_mib():8.1f}")
    for k in range(1, args.calls + 1):
        model = models[k % 2]
        y, state = model.forward(x, lengths=lengths if k % 3 == 0 else None, train=True)
        model.backward(np.ones_like(y), dstate=state)
        if k % 10 == 0:  # the other entry points, less often
            model(x, state)
            lf.LSTM(8, 32, seed=k).step(x[0])
            lf.load(path)
            for call in (
                lambda: model.backward(y),
                lambda: lf.load(bad),
                lambda: model(x[..., :3]),
                lambda: lf.LSTM(10**9, 10**9),
            ):
                try:
                    call()
                except ValueError:
                    pass
        if k == warmup:
            baseline = rss_mib()
        if k % interval == 0:
            print(f"{k:>7}  {rss_mib():8.1f}", flush=True)
    growth = rss_mib() - baseline
    print(f"RSS growth after warm-up ({warmup} calls): {growth:+.1f} MiB (bound {args.max_growth_mib} MiB)")
    if growth > args.max_growth_mib:
        print("FAIL: memory grows with the number of calls")
        return 1
    print("OK: flat")
    return 0


if __name__ == "__main__":
    sys.exit(main())
