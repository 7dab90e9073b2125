"""Inference over a very long stream keeps memory flat: T = 1,000,000 steps, in chunks with the state
carried from one to the next (and, with --step, one lstm.step() call per step).

    python tools/long_run.py [--steps 1000000] [--chunk 1000] [--step] [--max-growth-mib 8]

Prints the RSS before, at intervals and after, and the size of the state (it must stay finite).
Chunks with carried state give the outputs of one call over the whole sequence (checked on the
first chunks against a single call). Exit status 1 when the RSS grew by more than --max-growth-mib
after the first chunk, or the state stopped being finite.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _memory import rss_mib  # tools/ is on sys.path when a script here runs

import lstm_fast as lf


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--step", action="store_true", help="one lstm.step() call per time step")
    parser.add_argument("--max-growth-mib", type=float, default=8.0)
    args = parser.parse_args()

    model = lf.LSTM(16, 64, num_layers=2, seed=0)
    rng = np.random.default_rng(0)
    # A fixed pool of input chunks (generating 16 M random numbers per chunk would dominate the time).
    pool = [rng.normal(size=(args.chunk, 1, 16)).astype(np.float32) for _ in range(8)]

    # Chunks with carried state == one call over the whole (checked on 4 chunks).
    whole, _ = model(np.concatenate(pool[:4]))
    state, parts = None, []
    for x in pool[:4]:
        y, state = model(x, state)
        parts.append(y)
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5, atol=1e-5)

    print(
        f"LSTM(16, 64, num_layers=2), {args.steps} steps, "
        f"{'step() per step' if args.step else f'chunks of {args.chunk} with carried state'}"
    )
    print(f"RSS before: {rss_mib():.1f} MiB")
    state = model.initial_state(1)
    baseline = None
    start = time.perf_counter()
    done, k = 0, 0
    report = max(args.steps // 10, 1)
    next_report = report
    while done < args.steps:
        x = pool[k % len(pool)]
        k += 1
        n = min(args.chunk, args.steps - done)
        if args.step:
            for t in range(n):
                y, state = model.step(x[t], state)
        else:
            y, state = model(x[:n], state)
        done += n
        if baseline is None:
            baseline = rss_mib()
        if done >= next_report:
            print(f"  step {done:>9}: RSS {rss_mib():7.1f} MiB, max |c| {np.abs(state[1]).max():.3f}", flush=True)
            next_report += report
    elapsed = time.perf_counter() - start
    growth = rss_mib() - baseline
    finite = bool(np.isfinite(state[0]).all() and np.isfinite(state[1]).all())
    print(
        f"RSS after: {rss_mib():.1f} MiB (growth after the first chunk {growth:+.1f} MiB, "
        f"bound {args.max_growth_mib}); {elapsed:.1f} s, {args.steps / elapsed:,.0f} steps/s; state finite: {finite}"
    )
    if growth > args.max_growth_mib or not finite:
        print("FAIL")
        return 1
    print("OK: flat")
    return 0


if __name__ == "__main__":
    sys.exit(main())
