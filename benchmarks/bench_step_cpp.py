"""Streaming latency: one LSTM step at batch 1 in C++ (lstm_fast::Model::step), beside the bound set by
reading the weights once per step on this machine, and beside torch's per-step call.

    python benchmarks/bench_step_cpp.py [--quick]

Builds benchmarks/cpp against the installed package (``python -m lstm_fast --cmakedir``), saves one
single-layer model per shape from Python, and prints per shape:
  - C++ step: median time of Model::step (B = 1), in microseconds;
  - weight-read bound: the time one streaming pass over a buffer of the model's weight bytes takes (a
    warm buffer of the same size, so it is read from the cache level - or the memory - that would hold
    the weights); a step cannot beat it without reading fewer bytes;
  - torch: median time of one torch.nn.LSTM call on a (1, 1, I) input with the state passed, under
    torch.no_grad(), once with torch's default threads and once with 1 thread (the C++ step uses 1);
  - the ratios C++ / bound (>= 1; 1 would be bandwidth-bound) and C++ / torch (below 1: C++ faster).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import lstm_fast as lf

HERE = Path(__file__).resolve().parent
SHAPES = [(128, 128), (256, 256), (512, 512), (64, 512)]  # (I, H)


def build(folder: Path) -> Path:
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    for args in (
        [
            "cmake",
            "-S",
            str(HERE / "cpp"),
            "-B",
            str(folder),
            *generator,
            "-DCMAKE_BUILD_TYPE=Release",
            f"-Dlstm_fast_DIR={lf.get_cmake_dir()}",
        ],
        ["cmake", "--build", str(folder)],
    ):
        subprocess.run(args, check=True, capture_output=True, text=True)
    return folder / "bench_step"


def torch_step_us(I: int, H: int, threads: int | None, min_run: float) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        lstm = torch.nn.LSTM(I, H)
        x = torch.randn(1, 1, I)
        state = (torch.zeros(1, 1, H), torch.zeros(1, 1, H))
        with torch.no_grad():

            def call():
                nonlocal state
                _, state = lstm(x, state)

            calls = 1
            while True:
                t0 = time.perf_counter()
                for _ in range(calls):
                    call()
                if time.perf_counter() - t0 >= min_run:
                    break
                calls *= 2
            times = []
            for _ in range(7):
                t0 = time.perf_counter()
                for _ in range(calls):
                    call()
                times.append((time.perf_counter() - t0) / calls)
        return float(np.median(times)) * 1e6
    finally:
        torch.set_num_threads(previous)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    args = parser.parse_args()
    min_run = 0.02 if args.quick else 0.1

    with tempfile.TemporaryDirectory(prefix="lstm_fast-bench-") as tmp:
        program = build(Path(tmp) / "build")
        rows = []
        for I, H in SHAPES:
            path = Path(tmp) / f"lstm_{I}_{H}.safetensors"
            lf.LSTM(I, H, seed=0).save(path)
            out = subprocess.run([str(program), str(path), str(min_run)], check=True, capture_output=True, text=True)
            r = json.loads(out.stdout)
            r.update(I=I, H=H, torch_us=torch_step_us(I, H, None, min_run), torch1_us=torch_step_us(I, H, 1, min_run))
            rows.append(r)

    try:
        import torch

        torch_version, torch_threads = torch.__version__, torch.get_num_threads()
    except ImportError:
        torch_version, torch_threads = None, None
    print(
        f"lstm_fast {lf.__version__} C++ Model::step, batch 1, one layer; {os.cpu_count()} CPUs; "
        f"main-memory read bandwidth {rows[0]['dram_GBps']:.1f} GB/s (streaming sum over 512 MiB)"
    )
    if torch_version:
        print(f"torch {torch_version}: nn.LSTM call per step, no_grad, {torch_threads} threads (default) and 1 thread")
    header = (
        f"{'I':>4} {'H':>4} {'weights':>9} {'C++ step':>9} {'bound':>8} {'read':>8} {'C++/bound':>9} "
        f"{'torch':>8} {'C++/torch':>9} {'torch 1t':>8} {'C++/1t':>7}"
    )
    print(header)
    for r in rows:
        line = (
            f"{r['I']:>4} {r['H']:>4} {r['weight_bytes'] / 2**10:>7.0f}Ki {r['step_us']:>7.1f}us "
            f"{r['read_us']:>6.1f}us {r['read_GBps']:>5.1f}GB/s {r['step_us'] / r['read_us']:>8.2f}x"
        )
        if r["torch_us"] is not None:
            line += (
                f" {r['torch_us']:>6.1f}us {r['step_us'] / r['torch_us']:>9.2f} "
                f"{r['torch1_us']:>6.1f}us {r['step_us'] / r['torch1_us']:>7.2f}"
            )
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
