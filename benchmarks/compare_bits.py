"""Two builds of lstm_fast against each other, bit for bit: the outputs and gradients of every cell
variant (plain, peephole, clip, coupled gates, zoneout, layer norm and their mixes) at three shapes, one
and two threads, fp32 and bf16 training and the three frozen precisions, under each instruction set this
CPU runs, with the dot instructions and without. Prints, per setting, how many arrays differ; exits 1
if any does. For a change meant to keep behaviour: the golden tests (tests/golden) cover fewer cases.

    python benchmarks/compare_bits.py --old /path/with/old/lstm_fast

`--old` is a folder that holds an installed `lstm_fast` package (put first on PYTHONPATH); the new
build is the one this interpreter imports.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile

import numpy as np

VARIANTS = {
    "plain": {},
    "peephole": {"peephole": True},
    "clip": {"cell_clip": 0.5},
    "coupled": {"coupled_gates": True},
    "zoneout": {"zoneout": (0.2, 0.3)},
    "layer_norm": {"layer_norm": True},
    "clip_coupled_peephole": {"cell_clip": 0.7, "coupled_gates": True, "peephole": True},
    "layer_norm_zoneout": {"layer_norm": True, "zoneout": 0.25},
    "projection": {"proj_size": 7},
}
SHAPES = [(7, 3, 19), (70, 2, 32), (3, 40, 48)]  # (T, B, H): tails, a long few-row call, a packed batch


def worker(path: str) -> None:
    """Writes every case's arrays to `path` (.npz)."""
    import lstm_fast as lf

    rng = np.random.default_rng(0)
    out = {}
    for (name, kwargs), (T, B, H), threads in itertools.product(VARIANTS.items(), SHAPES, (1, 2)):
        lf.set_num_threads(threads)
        model = lf.LSTM(6, H, 1, seed=1, **kwargs)
        x = rng.standard_normal((T, B, 6)).astype(np.float32)
        key = f"{name} T{T} B{B} H{H} threads{threads}"
        out[f"{key} inference"] = model(x)[0]
        for precision in ("fp32", "bf16"):
            y, _ = model.forward(x, train=True, precision=precision)
            dx, _ = model.backward(np.ones_like(y))
            out[f"{key} {precision} y"], out[f"{key} {precision} dx"] = y, dx
            for param, grad in model.grads.items():
                out[f"{key} {precision} d{param}"] = grad
        for precision in ("fp32", "bf16", "int8"):
            out[f"{key} {precision} model"] = model.freeze(precision)(x)[0]
    np.savez(path, **out)


def arrays(pythonpath: str | None, env_extra: dict, folder: str, name: str) -> dict:
    env = dict(os.environ, **env_extra)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    path = os.path.join(folder, name + ".npz")
    subprocess.run([sys.executable, __file__, "--worker", path], env=env, check=True)
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", help="folder holding the old build's lstm_fast package")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    if not args.old:
        parser.error("--old is required")
    import lstm_fast as lf

    settings = [{"LSTM_FAST_ISA": isa} for isa in lf.supported_isas()] + [{"LSTM_FAST_NO_DOT_INSTRUCTIONS": "1"}]
    differing = 0
    with tempfile.TemporaryDirectory() as folder:
        for setting in settings:
            old = arrays(args.old, setting, folder, "old")
            new = arrays(None, setting, folder, "new")
            diff = [k for k in new if k not in old or old[k].tobytes() != new[k].tobytes()]
            differing += len(diff)
            print(f"{setting}: {len(new)} arrays, {len(diff)} differ" + "".join(f"\n  {k}" for k in diff[:10]))
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()
