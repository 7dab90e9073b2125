"""A WebSocket server of live LSTM streams: one stream per connection, every frame answered with the
model's output, the frames that arrive together run as one batched step (lf.Streams' batcher).

    python examples/serve_streams.py [--model model.safetensors] [--precision int8] [--port 8765]

Protocol (websockets, https://websockets.readthedocs.io): on connecting, the server sends a text
message {"input_size": I, "output_size": O}. Each binary message is one frame, I little-endian
float32; the answer is O little-endian float32. A malformed frame (another length, a text message)
gets a text {"error": "..."} and the stream goes on. The text message "stats" gets
{"open_streams": n, "frames": total} (a connection that only asks for stats opens no stream). The
stream is closed when the client leaves. Needs `pip install websockets`.
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


class StreamServer:
    def __init__(self, model: lf.Model, max_batch: int | None, max_wait_us: float) -> None:
        self.model = model
        self.streams = lf.Streams(model, max_batch=max_batch, max_wait_us=max_wait_us)
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

    def frame(self, message) -> np.ndarray | str:
        """The frame of a message, or what is wrong with it."""
        expected = 4 * self.model.input_size
        if isinstance(message, str):
            return f"a frame is a binary message of {expected} bytes (float32 x {self.model.input_size}), got text"
        if len(message) != expected:
            return f"a frame is {expected} bytes (float32 x {self.model.input_size}), got {len(message)}"
        return np.frombuffer(message, "<f4")


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
