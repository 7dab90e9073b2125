"""Stream-frames per second of lf.Streams.step (n live streams advanced as one batched step) against
what a user of the other engines does for n independent streams: one call per stream-frame, with
lstm_fast's own Model.step (B = 1) and with an ONNX Runtime session of one step (h0, c0 fed back), in
the same run, on the same threads. Model: LSTM(64, 256) by default, one layer.

    python benchmarks/bench_streams.py [--streams 1,16,64,256,1024] [--precisions fp32,int8] [--json out.json]

Each figure is the median over --repeats samples of about --seconds / --repeats each; "x per call" is
Streams' frames/s over the best per-call engine's at the same precision.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1,16,64,256,1024")
    parser.add_argument("--precisions", default="fp32,bf16,int8")
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
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
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(isa=lf.isa(), threads=threads, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
