"""Stream-frames per second of lf.Streams.step (n live streams advanced as one batched step) against
what a user of the other engines does for n independent streams: one call per stream-frame, with
lstm_fast's own Model.step (B = 1) and with an ONNX Runtime session of one step (h0, c0 fed back), in
the same run, on the same threads. Model: LSTM(64, 256) by default, one layer.

    python benchmarks/bench_streams.py [--streams 1,16,64,256,1024] [--precisions fp32,int8] [--json out.json]

Each figure is the median over --repeats samples of about --seconds / --repeats each; "x per call" is
Streams' frames/s over the best per-call engine's at the same precision.

Then the submit path (--submit-streams asyncio tasks, each awaiting `asubmit` frame after frame, as
fast as answered and at 100 frames/s each: frames/s and the p50/p99 latency of a frame), and the
capacity in real-time streams: the most streams at 100 frames/s each that one `Streams.step` every
10 ms serves with a frame's latency (the start of its 10 ms period to its output) p99 <= 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import tempfile
import time

import numpy as np
from bench_torch import median_ms

import lstm_fast as lf


def frames_per_second(run, frames_per_call: int, seconds: float, repeats: int) -> float:
    """frames_per_call over the median time of run() (bench_torch.median_ms)."""
    return frames_per_call / median_ms(run, repeats, seconds) * 1e3


def streams_run(model, n, rng):
    streams = lf.Streams(model)
    ids = np.array([streams.open() for _ in range(n)], np.int64)
    x = rng.standard_normal((n, model.input_size), dtype=np.float32)
    return lambda: streams.step(ids, x)


def per_call_run(model, n, rng):
    """n streams, one Model.step call each per frame (their states kept in a list)."""
    states = [model.initial_state(1) for _ in range(n)]
    x = rng.standard_normal((n, 1, model.input_size), dtype=np.float32)

    def run():
        for k in range(n):
            _, states[k] = model.step(x[k], states[k])

    return run


def ort_run(lstm, precision, n, rng, tmp, threads):
    """n streams, one ORT session call each per frame; None without onnxruntime or at bf16."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    if precision == "bf16":
        return None
    path = os.path.join(tmp, "step.onnx")
    lstm.to_onnx(path, with_state=True)
    if precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's advice to pre-process

        quantize_dynamic(path, os.path.join(tmp, "step8.onnx"), weight_type=QuantType.QInt8)
        path = os.path.join(tmp, "step8.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    H = lstm.hidden_size
    states = [[np.zeros((1, 1, H), np.float32), np.zeros((1, 1, H), np.float32)] for _ in range(n)]
    x = rng.standard_normal((n, 1, 1, lstm.input_size), dtype=np.float32)

    def run():
        for k in range(n):
            _, states[k][0], states[k][1] = session.run(None, {"x": x[k], "h0": states[k][0], "c0": states[k][1]})

    return run


def submit_path(model, n, seconds, rate=None):
    """n streams, each an asyncio task awaiting asubmit frame after frame (rate: frames/s each, paced;
    None: as fast as answered), for `seconds`: (frames/s, p50 ms, p99 ms) of a frame submitted to
    answered."""
    x = np.random.default_rng(1).standard_normal(model.input_size, dtype=np.float32)
    latencies = []

    async def stream(streams, sid, start):
        t = start + (np.random.default_rng(sid % 1000).uniform(0, 1 / rate) if rate else 0.0)
        while t < start + seconds:
            if rate:
                await asyncio.sleep(max(0.0, t - time.perf_counter()))
            sent = time.perf_counter()
            await streams.asubmit(sid, x)
            latencies.append(time.perf_counter() - sent)
            t = t + 1 / rate if rate else time.perf_counter()

    async def run():
        with lf.Streams(model, max_wait_us=500) as streams:
            ids = [streams.open() for _ in range(n)]
            start = time.perf_counter()
            await asyncio.gather(*(stream(streams, sid, start) for sid in ids))
            return time.perf_counter() - start

    elapsed = asyncio.run(run())
    ms = np.percentile(latencies, [50, 99]) * 1e3
    return len(latencies) / elapsed, float(ms[0]), float(ms[1])


def capacity(model, candidates, seconds, frame_rate=100.0, p99_ms=20.0):
    """The most real-time streams (frame_rate frames/s each) among `candidates` that one Streams.step
    a frame period serves with the frame's latency (its period's start to its output) p99 <= p99_ms and
    no backlog: [(n, p99 ms, kept up)]."""
    period = 1 / frame_rate
    rows = []
    for n in candidates:
        streams = lf.Streams(model)
        ids = np.array([streams.open() for _ in range(n)], np.int64)
        x = np.random.default_rng(2).standard_normal((n, model.input_size), dtype=np.float32)
        streams.step(ids, x)  # warm: the first step of n streams allocates their batch
        latencies, start = [], time.perf_counter()
        for tick in range(int(seconds * frame_rate)):
            due = start + tick * period  # the frames of this period are all in by now
            time.sleep(max(0.0, due - time.perf_counter()))
            streams.step(ids, x)
            latencies.append(time.perf_counter() - due)
        p99 = float(np.percentile(latencies, 99)) * 1e3
        rows.append((n, p99, p99 <= p99_ms))
        if p99 > 2 * p99_ms:
            break
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1,16,64,256,1024")
    parser.add_argument("--precisions", default="fp32,bf16,int8")
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--submit-streams", type=int, default=256)
    parser.add_argument("--submit-seconds", type=float, default=2.0)
    parser.add_argument("--capacity", default="500,1000,2000,3000,4000,6000,8000", help="stream counts to try")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    threads = lf.get_num_threads()
    rng = np.random.default_rng(0)
    lstm = lf.LSTM(args.input_size, args.hidden_size, seed=0)
    print(f"lstm_fast {lf.__version__} ({lf.isa()}, {threads} threads), LSTM({args.input_size}, {args.hidden_size})")
    print(
        f"{'precision':9} {'streams':>7} {'Streams f/s':>12} {'Model.step f/s':>15} {'ORT f/s':>10} {'x per call':>10}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in args.precisions.split(","):
            model = lstm.freeze(precision)
            for n in (int(s) for s in args.streams.split(",")):
                ours = frames_per_second(streams_run(model, n, rng), n, args.seconds, args.repeats)
                per_call = min(n, 64)  # per-call engines: rate per frame does not depend on n; time 64 at most
                alone = frames_per_second(per_call_run(model, per_call, rng), per_call, args.seconds, args.repeats)
                ort_call = ort_run(lstm, precision, per_call, rng, tmp, threads)
                ort_rate = frames_per_second(ort_call, per_call, args.seconds, args.repeats) if ort_call else None
                best = max(alone, ort_rate or 0.0)
                rows.append(
                    dict(precision=precision, streams=n, streams_fps=ours, model_step_fps=alone, ort_fps=ort_rate)
                )
                ort_text = f"{ort_rate:10.0f}" if ort_rate else f"{'-':>10}"
                print(f"{precision:9} {n:7d} {ours:12.0f} {alone:15.0f} {ort_text} {ours / best:10.1f}")
    print(f"\nthe submit path (asyncio, asubmit per frame), {args.submit_streams} streams:")
    print(f"{'precision':9} {'mode':>22} {'frames/s':>9} {'p50 ms':>7} {'p99 ms':>7}")
    submits, capacities = [], []
    for precision in args.precisions.split(","):
        model = lstm.freeze(precision)
        for rate in (None, 100.0):
            fps, p50, p99 = submit_path(model, args.submit_streams, args.submit_seconds, rate)
            mode = "as fast as answered" if rate is None else f"{rate:g} frames/s each"
            submits.append(
                dict(precision=precision, streams=args.submit_streams, rate=rate, fps=fps, p50_ms=p50, p99_ms=p99)
            )
            print(f"{precision:9} {mode:>22} {fps:9.0f} {p50:7.2f} {p99:7.2f}")
    print("\ncapacity: real-time streams at 100 frames/s, one Streams.step a 10 ms period, p99 <= 20 ms:")
    for precision in args.precisions.split(","):
        rows_c = capacity(lstm.freeze(precision), [int(c) for c in args.capacity.split(",")], args.submit_seconds)
        served = max([n for n, _, ok in rows_c if ok], default=0)
        capacities.append(dict(precision=precision, trials=rows_c, streams=served))
        trials = ", ".join(f"{n}: {p99:.1f} ms" for n, p99, _ in rows_c)
        print(f"{precision:9} {served:6d} streams   (p99 by streams: {trials})")
    if args.json:
        with open(args.json, "w") as f:
            result = dict(isa=lf.isa(), threads=threads, rows=rows, submit=submits, capacity=capacities)
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
