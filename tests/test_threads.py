"""Threads: one model shared for inference, separate models trained side by side, all equal to serial.

The GIL is released while the core works; how much that buys is measured by
benchmarks/bench_threads.py, not here (no timing in tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import lstm_fast as lf

THREADS = 8


def run_script(script: str) -> None:
    """Runs `script` in a fresh interpreter (threads and CPU affinity of its own); it must exit 0
    and print "ok"."""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "ok"


def run_in_threads(jobs):
    """Runs every job on its own thread, all released at once; returns their results in order."""
    results = [None] * len(jobs)
    errors = []
    start = threading.Barrier(len(jobs))

    def worker(k):
        try:
            start.wait()
            results[k] = jobs[k]()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_layers=2, bidirectional=True),  # directions side by side, within each call
        dict(proj_size=16, peephole=True),  # a team of threads shares each step (B*4H*R is large)
    ],
)
def test_one_model_from_eight_threads_equals_serial(rng, kwargs):
    model = lf.LSTM(16, 64, seed=0, **kwargs)
    inputs = [rng.normal(size=(20, 8, 16)).astype(np.float32) for _ in range(THREADS)]
    lengths = [None if k % 2 else rng.integers(1, 21, size=8) for k in range(THREADS)]
    serial = [model(x, lengths=n) for x, n in zip(inputs, lengths)]
    for _ in range(3):  # several rounds: interleavings differ
        concurrent = run_in_threads([lambda x=x, n=n: model(x, lengths=n) for x, n in zip(inputs, lengths)])
        for (y, (h, c)), (y_s, (h_s, c_s)) in zip(concurrent, serial):
            np.testing.assert_array_equal(y, y_s)
            np.testing.assert_array_equal(h, h_s)
            np.testing.assert_array_equal(c, c_s)


def test_one_model_streamed_from_eight_threads_equals_serial(rng):
    model = lf.LSTM(4, 32, num_layers=2, seed=1)
    inputs = [rng.normal(size=(30, 2, 4)) for _ in range(THREADS)]

    def stream(x):
        state, ys = model.initial_state(2), []
        for x_t in x:
            y_t, state = model.step(x_t, state)
            ys.append(y_t)
        return np.stack(ys), state

    serial = [stream(x) for x in inputs]
    concurrent = run_in_threads([lambda x=x: stream(x) for x in inputs])
    for (y, (h, c)), (y_s, (h_s, c_s)) in zip(concurrent, serial):
        np.testing.assert_array_equal(y, y_s)
        np.testing.assert_array_equal(h, h_s)
        np.testing.assert_array_equal(c, c_s)


def train(seed, steps=15):
    """A few SGD steps of a fresh model on its own data: the final weights and loss."""
    rng = np.random.default_rng(seed)
    model = lf.LSTM(8, 32, num_layers=2, dropout=0.2, seed=seed)
    x, target = rng.normal(size=(25, 4, 8)), rng.normal(size=(25, 4, 32))
    for _ in range(steps):
        y, _ = model.forward(x, train=True)
        model.backward(2 * (y - target) / y.size)
        for name, p in model.state_dict().items():
            p -= 0.1 * model.grads[name]
    return {k: v.copy() for k, v in model.state_dict().items()}, float(np.mean((model(x)[0] - target) ** 2))


def test_separate_models_train_concurrently_like_serially():
    serial = [train(seed) for seed in range(4)]
    concurrent = run_in_threads([lambda seed=seed: train(seed) for seed in range(4)])
    for (weights, loss), (weights_s, loss_s) in zip(concurrent, serial):
        assert loss == loss_s
        for name in weights_s:
            np.testing.assert_array_equal(weights[name], weights_s[name])


def test_set_num_threads_from_another_thread_while_models_run(rng):
    # The thread budget is read once per layer: changing it mid-flight is safe, and results agree with
    # serial ones to rounding (a different team splits the products differently).
    model = lf.LSTM(16, 64, num_layers=2, bidirectional=True, seed=2, dtype=np.float64)
    x = rng.normal(size=(30, 8, 16))
    expected, _ = model(x)
    before = lf.get_num_threads()
    try:

        def flip():
            for k in range(200):
                lf.set_num_threads(1 + k % 3)

        results = run_in_threads([flip] + [lambda: model(x)[0] for _ in range(4)])
    finally:
        lf.set_num_threads(before)
    for y in results[1:]:
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


_ONE_CPU_SCRIPT = r"""
import glob, os, sys
import numpy as np
import lstm_fast as lf
rng = np.random.default_rng(0)
x = rng.standard_normal((40, 24, 16)).astype(np.float32)
dy = rng.standard_normal((40, 24, 2 * 64)).astype(np.float32)

def run():
    # A team per step (B * 4H * R >= 32k) and the two directions side by side.
    model = lf.LSTM(16, 64, 2, bidirectional=True, dtype=np.float32, seed=1)
    y, _ = model.forward(x)
    dx, _ = model.backward(dy)
    return y, dx, model.grads["weight_hh_l0"]

def workers():
    # The pool's threads (named lstm_fast): thread id -> the CPUs it may run on.
    found = {}
    for status in glob.glob(f"/proc/{os.getpid()}/task/*/status"):
        fields = dict(line.split(":", 1) for line in open(status).read().splitlines() if ":" in line)
        if fields["Name"].strip() == "lstm_fast":
            found[status.split("/")[-2]] = fields["Cpus_allowed_list"].strip()
    return found

# The pool's workers start on the whole machine, pinned off this thread's CPU ...
lf.set_num_threads(4)
run()
before = workers()
# ... then this thread (the one that calls) is held to one CPU: the workers must follow it there.
cpu = sorted(os.sched_getaffinity(0))[0]
os.sched_setaffinity(0, {cpu})
results = []
for threads in (1, 2, 4):
    lf.set_num_threads(threads)
    results.append(run())
for other in results[1:]:
    for a, b in zip(results[0], other):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
# Kept for reuse, so three in all (a pair of directions, each with a team of two). Each one that has
# run a job since is on the caller's CPU; one whose every job the caller did itself first (taken back,
# team.hpp: on one CPU a helper rarely gets to start) has not moved and runs nothing.
after = workers()
assert len(after) == 3 and after.keys() == before.keys(), (before, after)
assert all(after[t] in (str(cpu), before[t]) for t in after), (cpu, before, after)
print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity (Linux)")
def test_teams_on_a_process_restricted_to_one_cpu_finish_and_agree():
    # Helper threads are kept off their caller's CPU when the affinity mask allows it
    # (cpp/src/runtime/affinity.hpp). With a single allowed CPU there is nowhere else: the team must still
    # finish (its members yield while they wait) and give the one-thread answer, and the pool's
    # workers, started before the restriction, must move to that CPU with their next job.
    run_script(_ONE_CPU_SCRIPT)


_FORK_SCRIPT = r"""
import os, signal, sys
import numpy as np
import lstm_fast as lf
lf.set_num_threads(2)
rng = np.random.default_rng(0)
x = rng.standard_normal((40, 24, 16)).astype(np.float32)
model = lf.LSTM(16, 64, 2, bidirectional=True, dtype=np.float32, seed=1)
expected, _ = model(x)  # the parent's pool has workers now
pid = os.fork()
if pid == 0:
    # The child has none of the parent's threads: its first call must start workers of its own.
    signal.alarm(60)
    y, _ = model(x)
    os._exit(0 if np.array_equal(y, expected) else 3)
_, status = os.waitpid(pid, 0)
assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
y, _ = model(x)  # and the parent's pool still works
np.testing.assert_array_equal(y, expected)
print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_workers_of_its_own():
    # The workers persist between calls (cpp/src/runtime/team.hpp); fork() copies only the calling thread.
    run_script(_FORK_SCRIPT)


def _workers() -> set[str]:
    """Thread ids of this process's lstm_fast workers (cpp/src/runtime/team.cpp names them)."""
    tids = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as comm:
                if comm.read().strip() == "lstm_fast":
                    tids.add(tid)
        except FileNotFoundError:  # a thread that ended meanwhile
            pass
    return tids


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc (Linux)")
def test_calls_reuse_the_workers_instead_of_starting_threads(rng):
    model = lf.LSTM(16, 64, 2, bidirectional=True, dtype=np.float32, seed=1)
    x = rng.standard_normal((40, 24, 16)).astype(np.float32)
    dy = np.ones((40, 24, 128), np.float32)
    before = lf.get_num_threads()
    try:
        lf.set_num_threads(4)  # a pair of directions, each with a team of two: three workers at once
        model.forward(x)
        model.backward(dy)
        workers = _workers()
        assert len(workers) >= 3
        for _ in range(20):
            model.forward(x)
            model.backward(dy)
            model(x)
        assert _workers() == workers  # the same threads, none started since
    finally:
        lf.set_num_threads(before)


_STALL_SCRIPT = r"""
import sys
import numpy as np
import lstm_fast as lf
lf.set_num_threads(2)
rng = np.random.default_rng(0)
out = {}
# The unit split (a segment per step): B = 1, H = 256, and with a projection and peepholes.
model = lf.LSTM(64, 256, seed=1)
x = rng.standard_normal((20, 1, 64)).astype(np.float32)
out["b1"], _ = model(x)
state = model.initial_state(1)
for t in range(5):
    out[f"step{t}"], state = model.step(x[t], state)
model = lf.LSTM(32, 128, proj_size=64, peephole=True, seed=2)
x = rng.standard_normal((12, 8, 32)).astype(np.float32)
y, _ = model.forward(x, train=True)
dx, _ = model.backward(np.ones_like(y))
out["proj_y"], out["proj_dx"], out["proj_dw"] = y, dx, model.grads["weight_hh_l0"]
# The row split, and the two directions side by side.
model = lf.LSTM(16, 64, 2, bidirectional=True, seed=3)
out["bi"], _ = model(rng.standard_normal((30, 32, 16)).astype(np.float32))
np.savez(sys.argv[1], **out)
print("ok")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell environment")
def test_a_stalled_helper_changes_no_result_and_hangs_no_call(tmp_path):
    # LSTM_FAST_TEST_STALL_US makes every worker sleep before each job and before every 8th segment
    # (cpp/src/runtime/team.cpp), as a helper descheduled on a busy machine: the caller then takes the late
    # helper's slices, the helper catches up, and members wait long enough to sleep (team.hpp) and must
    # be woken; the results must be those of a run without the stall.
    runs = {}
    for stall in ("0", "3000"):
        path = tmp_path / f"stall{stall}.npz"
        env = dict(os.environ, LSTM_FAST_TEST_STALL_US=stall)
        done = subprocess.run(
            [sys.executable, "-c", _STALL_SCRIPT, str(path)], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr
        runs[stall] = dict(np.load(path))
    assert runs["0"].keys() == runs["3000"].keys()
    for name, expected in runs["0"].items():
        np.testing.assert_array_equal(runs["3000"][name], expected, err_msg=name)
