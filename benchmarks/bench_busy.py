"""lstm_fast against torch.nn.LSTM and ONNX Runtime when the machine is not theirs alone: the shapes of
bench_torch.py (inference and training) and the B=1 streaming step, under each load, the three
libraries in the same run. Loads:

    quiet     nothing else running (the reference for "x quiet")
    busy      one CPU-bound process beside it (python -c 'while True: pass')
    two       two processes of the same library at once, each timing the same case (the slower shown)
    torch     inside a torch program: a torch matmul on torch's threads before every timed call
    affinity  a process restricted to 1 CPU (os.sched_setaffinity) while it sees all of them
    quota     a process in a cgroup with a CPU quota of 1 CPU (cgroup v1 cpu.cfs_quota_us or v2 cpu.max;
              skipped with a note when the cgroup cannot be created)

Every library runs in worker processes of its own (fresh per load), started with its default threads
(ORT with as many intra-op threads as lstm_fast, as in bench_torch.py). The parent starts and stops
the load and steps the workers through the cases together, so that for "two" both time at once.
Prints, per load and case, the medians, the ratio lstm_fast / the best peer under the same load and
lstm_fast's time / its quiet time; the step row gives p50 and p99 over thousands of calls (torch:
nn.LSTM on one step with the state; ORT is not timed on the step).

    python benchmarks/bench_busy.py [--loads quiet,busy] [--shapes medium,b1,step] [--modes inference]
                                    [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from bench_torch import SHAPES, median_ms, shape_case, step_calls

LOADS = ("quiet", "busy", "two", "torch", "affinity", "quota")
LIBS = ("lstm_fast", "torch", "ort")
STEP_CALLS = 5000  # timed steps per measurement, or as many as fit in STEP_SECONDS
STEP_SECONDS = 3.0


# ----------------------------------------------------------------------------------------------
# The worker: one library, cases prepared and timed on the parent's command (one JSON line each).


class Worker:
    def __init__(self, lib: str, torch_between: bool, repeats: int):
        import numpy as np
        import torch

        import lstm_fast as lf

        self.np, self.torch, self.lf = np, torch, lf
        self.lib, self.repeats = lib, repeats
        self.tmp = tempfile.mkdtemp()
        self.fn = None
        # The torch program's own work between calls: a product on torch's intra-op threads.
        a = torch.randn(512, 512)
        self.between = (lambda: torch.mm(a, a)) if torch_between else None

    def prepare(self, shape: str, mode: str) -> bool:
        """Builds the call to time; False when this library does not run this case."""
        np, torch, lf = self.np, self.torch, self.lf
        rng = np.random.default_rng(0)
        torch.manual_seed(0)
        if shape == "step":
            if self.lib == "ort":
                return False
            ours_step, torch_step = step_calls(rng)
            self.fn = ours_step if self.lib == "lstm_fast" else torch_step
            return True
        module, model, x, dy, xt, dyt = shape_case(shape, rng)
        if self.lib == "lstm_fast":
            if mode == "inference":
                self.fn = lambda: model(x)
            else:

                def ours_train():
                    model.forward(x, train=True)
                    model.backward(dy)

                self.fn = ours_train
        elif self.lib == "torch":
            if mode == "inference":

                def torch_infer():
                    with torch.no_grad():
                        module(xt)

                self.fn = torch_infer
            else:

                def torch_train():
                    module.zero_grad(set_to_none=True)
                    y, _ = module(xt)
                    y.backward(dyt)

                self.fn = torch_train
        else:
            if mode != "inference":
                return False
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = lf.get_num_threads()
            path = os.path.join(self.tmp, f"{shape}.onnx")
            model.to_onnx(path, with_state=False)
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            self.fn = lambda: session.run(None, {"x": x})
        return True

    def measure(self, shape: str) -> dict:
        if shape == "step":
            return self.measure_step()
        if self.between is None:
            return dict(ms=median_ms(self.fn, self.repeats, min_seconds=0.1))
        return dict(ms=self.median_between())

    def median_between(self) -> float:
        """As median_ms, but each timed call follows a torch product (not timed) on torch's threads."""
        time.sleep(0.3)
        self.between()
        self.fn()
        samples = []
        deadline = time.perf_counter() + 0.1
        while len(samples) < self.repeats or (time.perf_counter() < deadline and len(samples) < 50):
            self.between()
            start = time.perf_counter()
            self.fn()
            samples.append((time.perf_counter() - start) * 1e3)
        return statistics.median(samples)

    def measure_step(self) -> dict:
        """p50 and p99 of single step calls, each timed alone (a torch product before each under
        the torch load)."""
        time.sleep(0.3)
        for _ in range(100):
            self.fn()
        times = []
        deadline = time.perf_counter() + STEP_SECONDS
        while len(times) < STEP_CALLS and time.perf_counter() < deadline:
            if self.between is not None:
                self.between()
            start = time.perf_counter_ns()
            self.fn()
            times.append((time.perf_counter_ns() - start) * 1e-6)
        times.sort()
        return dict(
            ms=times[len(times) // 2], p99_ms=times[min(len(times) - 1, int(0.99 * len(times)))], calls=len(times)
        )


def worker_main(lib: str, torch_between: bool, repeats: int) -> None:
    worker = Worker(lib, torch_between, repeats)
    print(json.dumps(dict(ready=True)), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["do"] == "prepare":
            reply = dict(ok=worker.prepare(command["shape"], command["mode"]))
        else:
            reply = worker.measure(command["shape"])
        print(json.dumps(reply), flush=True)


# ----------------------------------------------------------------------------------------------
# The parent: loads, workers, the table.


def cgroup_for_quota() -> tuple[str | None, str]:
    """A fresh cgroup with a quota of 1 CPU: (path of its procs file, note). None when not allowed."""
    name = f"lstm_fast_bench_busy_{os.getpid()}"
    for root, quota_file, quota in (
        ("/sys/fs/cgroup", "cpu.max", "100000 100000\n"),  # v2
        ("/sys/fs/cgroup/cpu", "cpu.cfs_quota_us", "100000\n"),  # v1 (period 100000 us)
    ):
        if not os.path.exists(os.path.join(root, quota_file)) and not os.path.exists(
            os.path.join(root, "cgroup.subtree_control" if quota_file == "cpu.max" else "cpu.cfs_period_us")
        ):
            continue
        path = os.path.join(root, name)
        try:
            os.mkdir(path)
        except OSError as error:
            return None, f"cannot create a cgroup under {root}: {error.strerror}"
        try:
            with open(os.path.join(path, quota_file), "w") as f:
                f.write(quota)
            return os.path.join(path, "cgroup.procs"), f"cgroup {path}: quota 1 CPU ({quota.strip()})"
        except OSError as error:
            os.rmdir(path)
            return None, f"cannot set a CPU quota in {path}: {error.strerror}"
    return None, "no cgroup cpu controller found"


def start_worker(lib: str, load: str, repeats: int, procs_file: str | None) -> subprocess.Popen:
    def restrict():
        if load == "affinity":
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        if load == "quota" and procs_file:
            with open(procs_file, "w") as f:
                f.write(str(os.getpid()))

    command = [sys.executable, os.path.abspath(__file__), "--worker", lib, "--repeats", str(repeats)]
    if load == "torch":
        command.append("--torch-between")
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=restrict,
        cwd=os.path.dirname(os.path.abspath(__file__)),
    )
    return process


def ask(processes: list, command: dict) -> list:
    """Sends the command to every process first, then reads their replies (so that they run at once)."""
    for p in processes:
        p.stdin.write(json.dumps(command) + "\n")
        p.stdin.flush()
    replies = []
    for p in processes:
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"a worker died (exit code {p.wait()})")
        replies.append(json.loads(line))
    return replies


@contextlib.contextmanager
def load_running(load: str):
    """The load's outside process (busy: a CPU-bound Python), always stopped."""
    spinner = None
    try:
        if load == "busy":
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.5)
        yield
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def run_load(load: str, cases: list, repeats: int, procs_file: str | None, libs: tuple) -> dict:
    """{(shape, mode, lib): reply} for one load."""
    results = {}
    copies = 2 if load == "two" else 1
    workers = {}
    try:
        with load_running(load):
            for lib in libs:
                workers[lib] = [start_worker(lib, load, repeats, procs_file) for _ in range(copies)]
                for p in workers[lib]:
                    if not json.loads(p.stdout.readline() or "{}").get("ready"):
                        raise RuntimeError(f"the {lib} worker did not start")
            for shape, mode in cases:
                for lib in libs:
                    group = workers[lib]
                    if not all(r["ok"] for r in ask(group, dict(do="prepare", shape=shape, mode=mode))):
                        continue
                    start = time.perf_counter()
                    replies = ask(group, dict(do="measure", shape=shape))
                    slowest = max(replies, key=lambda r: r["ms"])
                    results[(shape, mode, lib)] = slowest
                    p99 = f", p99 {slowest['p99_ms'] * 1e3:.0f} us" if "p99_ms" in slowest else ""
                    print(
                        f"  {load:8} {shape:6} {mode:9} {lib:9} {slowest['ms']:10.3f} ms{p99}"
                        f"  ({time.perf_counter() - start:.1f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        for group in workers.values():
            for p in group:
                p.kill()
                p.wait()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", default=",".join(LOADS), help="comma-separated subset of " + ",".join(LOADS))
    parser.add_argument("--shapes", default=",".join([*SHAPES, "step"]), help="of " + ",".join([*SHAPES, "step"]))
    parser.add_argument("--modes", default="inference,training", help="inference, training or both")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write the rows to this file")
    parser.add_argument("--worker", choices=LIBS, help=argparse.SUPPRESS)
    parser.add_argument("--torch-between", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker, args.torch_between, args.repeats)
        return

    import torch

    import lstm_fast as lf
    from lstm_fast import _core

    try:
        import onnxruntime  # noqa: F401

        libs = LIBS
    except ImportError:
        libs = LIBS[:2]
    loads = args.loads.split(",")
    if "quiet" not in loads:
        loads.insert(0, "quiet")  # the reference of the "x quiet" column
    modes = args.modes.split(",")
    cases = [(s, "streaming") if s == "step" else (s, m) for s in args.shapes.split(",") for m in modes]
    cases = list(dict.fromkeys(cases))

    peak = _core.fma_peak_gflops(1.0, lf.get_num_threads())
    machine = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; FP32 peak {peak:.0f} GFLOP/s (measured); lstm_fast {lf.__version__} ({lf.isa()}, "
        f"{lf.get_num_threads()} threads), torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"ORT {'yes' if 'ort' in libs else 'not installed'}"
    )
    print(machine)
    procs_file, quota_note = (None, "")
    if "quota" in loads:
        procs_file, quota_note = cgroup_for_quota()
        print(f"quota: {quota_note}")
        if procs_file is None:
            loads.remove("quota")
    results = {}
    started = time.perf_counter()
    try:
        for load in loads:
            print(f"load {load} ...", file=sys.stderr, flush=True)
            for key, reply in run_load(load, cases, args.repeats, procs_file, libs).items():
                results[(load, *key)] = reply
    finally:
        if procs_file:
            # Workers are gone (killed and waited for); an empty cgroup can be removed.
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(procs_file))
    print_table(loads, cases, results, machine, quota_note, args.json, peak, time.perf_counter() - started)


def print_table(loads, cases, results, machine, quota_note, json_path, peak, seconds) -> None:
    header = (
        f"{'load':8} {'shape':6} {'mode':9} {'lstm_fast ms':>12} {'torch ms':>9} {'ORT ms':>8} "
        f"{'/best peer':>10} {'x quiet':>8}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for load in loads:
        for shape, mode in cases:
            ours = results.get((load, shape, mode, "lstm_fast"))
            if ours is None:
                continue
            theirs = results.get((load, shape, mode, "torch"))
            onnx_rt = results.get((load, shape, mode, "ort"))
            quiet = results.get(("quiet", shape, mode, "lstm_fast"))
            peers = [r["ms"] for r in (theirs, onnx_rt) if r]
            row = dict(
                load=load,
                shape=shape,
                mode=mode,
                lstm_fast_ms=ours["ms"],
                torch_ms=theirs["ms"] if theirs else None,
                ort_ms=onnx_rt["ms"] if onnx_rt else None,
                ratio_best_peer=ours["ms"] / min(peers) if peers else None,
                ratio_quiet=ours["ms"] / quiet["ms"] if quiet else None,
            )
            if shape == "step":
                row.update(lstm_fast_p99_ms=ours["p99_ms"], torch_p99_ms=theirs["p99_ms"] if theirs else None)
            rows.append(row)

            def cell(value, width, scale=1.0, digits=2):
                return f"{value * scale:{width}.{digits}f}" if value is not None else " " * width

            if shape == "step":  # microseconds, p50/p99
                ours_text = f"{ours['ms'] * 1e3:.0f}/{ours['p99_ms'] * 1e3:.0f} us"
                torch_text = f"{theirs['ms'] * 1e3:.0f}/{theirs['p99_ms'] * 1e3:.0f}" if theirs else ""
                print(
                    f"{load:8} {shape:6} {'p50/p99':9} {ours_text:>12} {torch_text:>9} {'':>8} "
                    f"{cell(row['ratio_best_peer'], 10)} {cell(row['ratio_quiet'], 8)}"
                )
                continue
            print(
                f"{load:8} {shape:6} {mode:9} {cell(ours['ms'], 12)} {cell(row['torch_ms'], 9)} "
                f"{cell(row['ort_ms'], 8)} {cell(row['ratio_best_peer'], 10)} {cell(row['ratio_quiet'], 8)}"
            )
    print(
        f"/best peer: lstm_fast / the faster of torch and ORT under the same load (ORT: inference only; the step "
        f"row compares p50s, in us). x quiet: lstm_fast / its quiet time. two: the slower of the two processes. "
        f"Total {seconds:.0f} s."
    )
    if json_path:
        with open(json_path, "w") as f:
            json.dump(dict(machine=machine, fp32_peak_gflops=peak, quota=quota_note, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
