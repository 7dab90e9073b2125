"""Drives examples/serve_streams.py on loopback: N concurrent clients, each a live stream sending frames
at a fixed rate and timing each answer. Prints a live progress line, then frames/s and the p50/p99
latency of a frame (sent to answered).

    python examples/load_streams.py --url ws://127.0.0.1:8765 --clients 256 --rate 100 --seconds 10

--leave K: K of the clients disconnect halfway through; --malformed K: K of the clients send a
malformed frame now and then (each must be answered with an error, the stream going on). Exits 1 if a
client saw anything it should not have (a wrong answer size, a missing error, a dropped connection).

--streams-per-connection k: each client is a gateway carrying k streams on one connection (the
server's multiplexed protocol), sending one frame of each of them per period in one message; the
frames/s and latencies count each of the k frames.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import numpy as np
from websockets.asyncio.client import connect


class Tally:
    def __init__(self) -> None:
        self.latencies: list = []  # seconds, one a message (a message of k frames stands for k of them)
        self.frames = 0
        self.errors_answered = 0
        self.problems: list = []
        self.connected = 0

    def percentile(self, q: float, last: int | None = None) -> float:
        """The q-th percentile of the latencies (of the last `last` messages), in ms."""
        latencies = self.latencies[-last:] if last else self.latencies
        return float(np.percentile(latencies, q)) * 1e3 if latencies else float("nan")


async def client(k: int, args, tally: Tally, start: float) -> None:
    rng = np.random.default_rng(k)
    leave_at = args.seconds / 2 if k < args.leave else args.seconds
    malformed = args.leave <= k < args.leave + args.malformed
    k_streams = args.streams_per_connection
    async with connect(args.url, max_size=1 << 24, compression=None) as ws:
        hello = json.loads(await ws.recv())
        I, O = hello["input_size"], hello["output_size"]
        if k_streams > 1:
            await ws.send(json.dumps(dict(streams=k_streams)))
            opened = json.loads(await ws.recv())
            if opened != dict(streams=k_streams):
                tally.problems.append(f"client {k}: asked for {k_streams} streams, got {opened}")
                return
            I, O = k_streams * I, k_streams * O  # a message is a block of k frames
        tally.connected += 1
        period, sent = 1.0 / args.rate, 0
        # Start at a random phase so that the clients' frames do not all arrive in the same instant.
        next_at = start + rng.uniform(0, period)
        # Frames drawn ahead, so that the clients spend their share of the cores on the transport.
        frames = [rng.standard_normal(I).astype("<f4").tobytes() for _ in range(8)]
        while next_at - start < leave_at:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            if malformed and sent % 10 == 5:
                await ws.send(b"\0" * (4 * I - 1))
                answer = await ws.recv()
                if isinstance(answer, str) and "error" in json.loads(answer):
                    tally.errors_answered += 1
                else:
                    tally.problems.append(f"client {k}: no error for a malformed frame")
            t0 = time.perf_counter()
            await ws.send(frames[sent % len(frames)])
            answer = await ws.recv()
            tally.latencies.append(time.perf_counter() - t0)
            tally.frames += k_streams
            if not isinstance(answer, bytes) or len(answer) != 4 * O:
                tally.problems.append(f"client {k}: an answer of {len(answer)} bytes, expected {4 * O}")
            sent += 1
            next_at += period
    tally.connected -= 1


async def progress(tally: Tally, start: float, seconds: float) -> None:
    while True:
        await asyncio.sleep(0.5)
        elapsed = time.perf_counter() - start
        print(
            f"\r{elapsed:5.1f}/{seconds:.0f} s  clients {tally.connected:4d}  frames {tally.frames:8d}"
            f"  {tally.frames / elapsed:9.0f} f/s  p50 {tally.percentile(50, 5000):6.2f} ms"
            f"  p99 {tally.percentile(99, 5000):6.2f} ms (last 5,000)",
            end="",
            file=sys.stderr,
            flush=True,
        )


async def main(args) -> int:
    tally = Tally()
    start = time.perf_counter() + 0.5  # time for every client to connect
    ticker = asyncio.create_task(progress(tally, time.perf_counter(), args.seconds))
    clients = (client(k, args, tally, start) for k in range(args.clients))
    results = await asyncio.gather(*clients, return_exceptions=True)
    elapsed = time.perf_counter() - start
    ticker.cancel()
    print(file=sys.stderr)
    for k, result in enumerate(results):
        if isinstance(result, Exception):
            tally.problems.append(f"client {k}: {type(result).__name__}: {result}")
    print(
        f"clients {args.clients} x {args.streams_per_connection} streams at {args.rate:g} frames/s: "
        f"{tally.frames} frames in {elapsed:.1f} s, "
        f"{tally.frames / elapsed:.0f} frames/s, latency p50 {tally.percentile(50):.2f} ms, "
        f"p99 {tally.percentile(99):.2f} ms; malformed frames answered with an error: {tally.errors_answered}"
    )
    for problem in tally.problems[:20]:
        print("problem:", problem)
    return 1 if tally.problems else 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="ws://127.0.0.1:8765")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rate", type=float, default=100, help="frames per second per client")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--leave", type=int, default=0, help="clients that leave halfway")
    parser.add_argument("--malformed", type=int, default=0, help="clients that send malformed frames too")
    parser.add_argument("--streams-per-connection", type=int, default=1, help="k streams multiplexed per client")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.rate <= 0 or args.seconds <= 0 or args.leave + args.malformed > args.clients:
        parser.error("--clients >= 1, --rate > 0, --seconds > 0, and --leave + --malformed <= --clients")
    if not 1 <= args.streams_per_connection <= 4096:
        parser.error("--streams-per-connection must be in [1, 4096]")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
