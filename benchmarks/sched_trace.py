"""Where the CPUs go during lstm_fast's calls when it shares the machine: a scheduler trace.

    python benchmarks/sched_trace.py torch   # b1 inference inside a torch program (bench_busy's "torch")
    python benchmarks/sched_trace.py two     # two processes timing medium inference at once ("two")

Runs the case under `perf record -a -e sched:sched_switch` (needs perf and the right to trace the
whole system, e.g. root) with CLOCK_MONOTONIC time stamps; the case logs each timed call's start and
end on the same clock. For the calls of one process it prints how the two CPUs' time was spent, by
thread (the caller, lstm_fast's helper, torch's OpenMP worker, the other process's threads, idle),
and the context switches inside the calls: which thread left a CPU (R: preempted while runnable, S:
asleep, waiting) and which one took it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

CASE = r"""
import json, os, sys, time
import numpy as np
import lstm_fast as lf
case, out = sys.argv[1], sys.argv[2]
clock = lambda: time.clock_gettime(time.CLOCK_MONOTONIC)
if case == "torch":
    import torch
    T, B, I, H = 1000, 1, 64, 256
    a = torch.randn(512, 512)
else:
    T, B, I, H = 100, 64, 256, 256
x = np.random.default_rng(0).standard_normal((T, B, I), dtype=np.float32)
lstm = lf.LSTM(I, H, seed=0)
lstm(x)
calls, end = [], clock() + 4.0
while clock() < end:
    if case == "torch":
        a @ a  # torch's OpenMP threads work, then spin for a while
    t0 = clock()
    lstm(x)
    calls.append((t0, clock()))
threads = [int(t) for t in os.listdir("/proc/self/task")]
json.dump(dict(pid=os.getpid(), threads=threads, calls=calls[3:]), open(out, "w"))
"""

SWITCH = re.compile(
    r"\s*\d+\s+\[(\d+)\]\s+([\d.]+): sched:sched_switch: prev_comm=(.*?) prev_pid=(\d+) .*?"
    r"prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)"
)


def switches(text):
    """(time, cpu, prev tid, prev state, next tid) and the comm of each tid, in time order."""
    events, names = [], {}
    for line in text.splitlines():
        m = SWITCH.match(line)
        if m:
            cpu, t, prev_comm, prev, state, next_comm, nxt = m.groups()
            names[int(prev)], names[int(nxt)] = prev_comm, next_comm
            events.append((float(t), int(cpu), int(prev), state[0], int(nxt)))
    return sorted(events), names


def runs_by_cpu(events):
    """cpu -> [(start, end, tid)]: who ran on each CPU between its switches."""
    runs, current = collections.defaultdict(list), {}
    for t, cpu, _prev, _state, nxt in events:
        if cpu in current:
            start, tid = current[cpu]
            runs[cpu].append((start, t, tid))
        current[cpu] = (t, nxt)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=["torch", "two"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logs = [os.path.join(tmp, f"calls{k}.json") for k in range(2 if args.case == "two" else 1)]
        script = os.path.join(tmp, "case.py")
        with open(script, "w") as f:
            f.write(CASE)
        case = [sys.executable, script, args.case]
        command = " & ".join(shlex.join(case + [log]) for log in logs) + "; wait"
        data = os.path.join(tmp, "perf.data")
        subprocess.run(
            ["perf", "record", "-a", "-q", "-k", "CLOCK_MONOTONIC", "-e", "sched:sched_switch", "-o", data]
            + ["--", "sh", "-c", command],
            check=True,
        )
        text = subprocess.run(
            ["perf", "script", "-i", data, "-F", "tid,cpu,time,event,trace"], capture_output=True, text=True, check=True
        ).stdout
        processes = [json.load(open(log)) for log in logs]
    events, names = switches(text)
    owner = {}
    for k, p in enumerate(processes):
        who = "" if args.case == "torch" else ("this process's " if k == 0 else "the other process's ")
        for tid in p["threads"]:
            if tid == p["pid"]:
                owner[tid] = who + "caller"
            elif names.get(tid, "").startswith("lstm_fast"):
                owner[tid] = who + "lstm_fast helper"
            elif names.get(tid) == "python":
                owner[tid] = who + "torch OpenMP worker" if args.case == "torch" else who + "python thread"

    def label(tid):
        return "idle" if tid == 0 else owner.get(tid, "other: " + names.get(tid, "?"))

    calls = processes[0]["calls"][1:-1]
    wall = sum(b - a for a, b in calls)
    cpu_time = collections.Counter()
    for cpu_runs in runs_by_cpu(events).values():
        for start, end, tid in cpu_runs:
            for a, b in calls:
                overlap = min(b, end) - max(a, start)
                if overlap > 0:
                    cpu_time[label(tid)] += overlap
    n = len(calls)
    print(f"{args.case}: {n} calls of {wall / n * 1e3:.2f} ms; the 2 CPUs' {2 * wall / n * 1e3:.2f} ms a call went to:")
    for who, seconds in cpu_time.most_common(8):
        print(f"  {who:40s} {seconds / n * 1e3:7.2f} ms  {seconds / (2 * wall) * 100:5.1f}%")
    inside = collections.Counter()
    starts = [a for a, _ in calls]
    for t, _cpu, prev, state, nxt in events:
        i = max(0, min(len(calls) - 1, sum(1 for s in starts if s <= t) - 1))
        if calls[i][0] <= t <= calls[i][1]:
            inside[(label(prev), state, label(nxt))] += 1
    print("  switches a call (thread out, R preempted / S asleep, thread in):")
    for (out, state, into), count in inside.most_common(8):
        print(f"    {out} ({state}) -> {into}: {count / n:.1f}")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)")
