"""Does the GIL get out of the way? Inference on one shared model from 1 and from 2 Python threads.

    python benchmarks/bench_threads.py [--calls N] [--repeats R]

lstm_fast releases the GIL while the C++ core runs, so two Python threads calling the same model
run on two cores at once. With the library's own threading off (lf.set_num_threads(1): each call on
its caller's thread) the work is N independent calls; it prints the time of all N on one thread,
then split over two threads, and the ratio (the speedup; about 2 on two idle cores, 1 if the GIL
were held). "cores busy" is the process's CPU time over wall time: with the GIL held it could not
exceed 1; on a machine other work shares it shows how much of the second core the threads got. It
also checks that the threaded results equal the serial ones bit for bit. Medians of R repeats.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import numpy as np

import lstm_fast as lf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    lf.set_num_threads(1)
    model = lf.LSTM(64, 256, seed=0)
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(100, 16, 64)).astype(np.float32) for _ in range(args.calls)]
    model(inputs[0])  # warm up

    def run(chunk, out):
        for k in chunk:
            out[k] = model(inputs[k])[0]

    def timed(threads):
        out = [None] * args.calls
        chunks = [range(t, args.calls, threads) for t in range(threads)]
        workers = [threading.Thread(target=run, args=(c, out)) for c in chunks]
        start, cpu = time.perf_counter(), time.process_time()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        wall = time.perf_counter() - start
        return wall, (time.process_time() - cpu) / wall, out

    # Whatever the load: does a Python thread keep running while another is inside one long call?
    # With the GIL held it would not advance at all until the call returned.
    long_x = np.concatenate(inputs[:10])
    count, stop = [0], [False]

    def spin():
        while not stop[0]:
            count[0] += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    time.sleep(0.1)
    before, start = count[0], time.perf_counter()
    model(long_x)
    call, during = time.perf_counter() - start, count[0] - before
    stop[0] = True
    spinner.join()

    one, two, cores1, cores2 = [], [], [], []
    for _ in range(args.repeats):
        t1, c1, serial_out = timed(1)
        t2, c2, threaded_out = timed(2)
        one.append(t1)
        two.append(t2)
        cores1.append(c1)
        cores2.append(c2)
        assert all(np.array_equal(a, b) for a, b in zip(serial_out, threaded_out)), "threaded != serial"
    m1, m2 = statistics.median(one), statistics.median(two)
    print(f"cores: {os.cpu_count()}, ISA: {lf.isa()}, lf.set_num_threads(1), load average {os.getloadavg()[0]:.2f}")
    print(f"{args.calls} calls of LSTM(64, 256) on x (100, 16, 64) float32, median of {args.repeats}")
    # Cores busy = process CPU time / wall time: with the GIL held it could not exceed 1.
    print(f"  1 Python thread : {m1 * 1e3:8.1f} ms, {statistics.median(cores1):.2f} cores busy")
    print(f"  2 Python threads: {m2 * 1e3:8.1f} ms, {statistics.median(cores2):.2f} cores busy")
    print(f"  speedup 1 -> 2 threads: {m1 / m2:.2f}x  (results bitwise equal to serial)")
    print(
        f"GIL: during one {call * 1e3:.0f} ms call on x {long_x.shape}, another Python thread counted to "
        f"{during:,} (next to nothing if the GIL were held)"
    )


if __name__ == "__main__":
    main()
