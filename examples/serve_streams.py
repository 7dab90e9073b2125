"""A WebSocket server of live LSTM streams: one stream per connection, every frame answered with the
model's output, the frames that arrive together run as one batched step (lf.Streams' batcher).

    python examples/serve_streams.py [--model model.safetensors] [--precision int8] [--port 8765]

Protocol (websockets, https://websockets.readthedocs.io): on connecting, the server sends a text
message {"input_size": I, "output_size": O}. Each binary message is one frame, I little-endian
float32; the answer is O little-endian float32. A malformed frame (another length, a text message)
gets a text {"error": "..."} and the stream goes on. The text message "stats" gets
{"open_streams": n, "frames": total} (a connection that only asks for stats opens no stream). The
stream is closed when the client leaves. Needs `pip install websockets`.

A connection can instead carry k streams (a gateway multiplexing its callers, so that the per-message
cost of the transport is paid once per k frames): its first message is the text {"streams": k}, which
opens k streams and is answered {"streams": k}; then each binary message is one frame of each of them,
[k, I] float32, answered [k, O]. The messages of all such connections that wait at the same moment
run as one lf.Streams.step, the next step starting as soon as the last one ends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

import numpy as np
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

import lstm_fast as lf


class Multiplexed:
    """The frames of multiplexed connections, each message a block of its streams' frames, run as one
    Streams.step of every block waiting when the last step ends (a connection's next block waits for
    the next step: its streams must not appear twice in one)."""

    MAX_STREAMS = 4096

    def __init__(self, streams: lf.Streams) -> None:
        self.streams = streams
        self.waiting: list = []  # (ids, x block, future)
        self.wake = asyncio.Event()
        self.stepper: asyncio.Task | None = None

    async def run(self, ids: np.ndarray, x: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((ids, x, future))
        self.wake.set()
        if self.stepper is None or self.stepper.done():
            self.stepper = asyncio.create_task(self.steps())
        return await future

    async def steps(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, later, seen = [], [], set()
            for block in self.waiting:
                first = int(block[0][0])
                (later if first in seen else batch).append(block)
                seen.add(first)
            self.waiting = later
            if later:
                self.wake.set()
            batch = [block for block in batch if not block[2].done()]  # a client that left
            if not batch:
                continue
            ids = np.concatenate([block[0] for block in batch])
            x = np.concatenate([block[1] for block in batch])
            try:  # step releases the GIL: the event loop goes on meanwhile
                y = await loop.run_in_executor(None, self.streams.step, ids, x)
            except Exception as error:  # noqa: BLE001 - every block of the step fails with it
                for block in batch:
                    if not block[2].done():
                        block[2].set_exception(error)
                continue
            at = 0
            for block in batch:
                if not block[2].done():
                    block[2].set_result(y[at : at + len(block[0])])
                at += len(block[0])


class StreamServer:
    def __init__(self, model: lf.Model, max_batch: int | None, max_wait_us: float) -> None:
        self.model = model
        self.streams = lf.Streams(model, max_batch=max_batch, max_wait_us=max_wait_us)
        self.multiplexed = Multiplexed(self.streams)
        self.frames = 0

    def hello(self) -> str:
        return json.dumps(dict(input_size=self.model.input_size, output_size=self.model.output_size))

    async def handle(self, connection) -> None:
        await connection.send(self.hello())
        sid = None  # opened at the first frame
        try:
            async for message in connection:
                if message == "stats":
                    await connection.send(json.dumps(dict(open_streams=len(self.streams), frames=self.frames)))
                    continue
                if sid is None and isinstance(message, str) and message.startswith("{"):
                    await self.handle_multiplexed(connection, message)
                    return
                x_t = self.frame(message)
                if isinstance(x_t, str):
                    await connection.send(json.dumps(dict(error=x_t)))
                    continue
                if sid is None:
                    sid = self.streams.open()
                y_t = await self.streams.asubmit(sid, x_t)
                self.frames += 1
                await connection.send(np.asarray(y_t, "<f4").tobytes())
        except ConnectionClosed:
            pass
        finally:
            if sid is not None:
                self.streams.close(sid)

    async def handle_multiplexed(self, connection, request: str) -> None:
        """A connection of k streams (its first message {"streams": k}): a block of k frames a message."""
        try:
            k = json.loads(request)["streams"]
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= Multiplexed.MAX_STREAMS:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            limit = Multiplexed.MAX_STREAMS
            await connection.send(
                json.dumps(dict(error=f'expected {{"streams": k}}, 1 <= k <= {limit}, got {request[:80]!r}'))
            )
            return
        ids = np.array([self.streams.open() for _ in range(k)], np.int64)
        try:
            await connection.send(json.dumps(dict(streams=k)))
            async for message in connection:
                x = self.frame(message, k)
                if isinstance(x, str):
                    await connection.send(json.dumps(dict(error=x)))
                    continue
                y = await self.multiplexed.run(ids, x)
                self.frames += k
                await connection.send(np.asarray(y, "<f4").tobytes())
        except ConnectionClosed:
            pass
        finally:
            for sid in ids:
                self.streams.close(int(sid))

    def frame(self, message, k: int | None = None) -> np.ndarray | str:
        """The frame (I,) of a message, or the block (k, I) of a multiplexed one; or what is wrong."""
        I = self.model.input_size
        shape = f"float32 x {I}" if k is None else f"float32 x {k} x {I}"
        expected = 4 * I * (1 if k is None else k)
        if isinstance(message, str):
            return f"a frame is a binary message of {expected} bytes ({shape}), got text"
        if len(message) != expected:
            return f"a frame is {expected} bytes ({shape}), got {len(message)}"
        x = np.frombuffer(message, "<f4")
        return x if k is None else x.reshape(k, I)


def load_model(args) -> lf.Model:
    if args.model:
        return lf.load_model(args.model, args.precision)
    return lf.LSTM(args.input_size, args.hidden_size, seed=0).freeze(args.precision or "int8")


async def main(args) -> None:
    server = StreamServer(load_model(args), args.max_batch, args.max_wait_us)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    # No per-message deflate: float32 frames do not compress, and it took half of the server's time.
    async with serve(server.handle, args.host, args.port, max_size=1 << 20, compression=None) as ws:
        port = ws.sockets[0].getsockname()[1]
        print(f"serving {server.model!r} on ws://{args.host}:{port}", flush=True)
        await stop
    server.streams.shutdown()
    print(f"served {server.frames} frames; open streams at exit: {len(server.streams)}", flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model file (lf.load_model); default: a fresh LSTM")
    parser.add_argument("--precision", choices=["fp32", "bf16", "int8"], help="convert the model on load")
    parser.add_argument("--input-size", type=int, default=64, help="of the fresh LSTM")
    parser.add_argument("--hidden-size", type=int, default=256, help="of the fresh LSTM")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0: any free port (printed)")
    parser.add_argument("--max-batch", type=int, default=None)
    parser.add_argument("--max-wait-us", type=float, default=500)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
