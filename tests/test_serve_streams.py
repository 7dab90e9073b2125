"""examples/serve_streams.py under examples/load_streams.py: 32 clients for a few seconds, then 4
gateways of 8 multiplexed streams each; some leaving halfway and some sending malformed frames; every
frame answered, every malformed one (and every bad multiplexing request) with an error, and no stream
left open after the clients have gone."""

import asyncio
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(url, cwd, *args):
    load = subprocess.run(
        [sys.executable, str(EXAMPLES / "load_streams.py"), "--url", url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    assert load.returncode == 0, load.stdout + load.stderr[-3000:]
    summary = re.search(r"(\d+) frames in .* answered with an error: (\d+)", load.stdout)
    assert summary, load.stdout
    return int(summary.group(1)), int(summary.group(2))


def _ask(url, request):
    from websockets.asyncio.client import connect

    async def ask():
        async with connect(url) as ws:
            json.loads(await ws.recv())  # hello
            await ws.send(request)
            return json.loads(await ws.recv())

    return asyncio.run(ask())


def test_server_answers_32_clients_and_leaks_no_stream(tmp_path):
    pytest.importorskip("websockets")
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "serve_streams.py"), "--port", "0"]
        + ["--input-size", "16", "--hidden-size", "32"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        line = server.stdout.readline()
        match = re.search(r"ws://\S+", line)
        assert match, line + server.stderr.read()
        url = match.group(0)
        frames, errors = _load(
            url, tmp_path, "--clients", "32", "--rate", "50", "--seconds", "3", "--leave", "4", "--malformed", "4"
        )
        assert frames > 32 * 50  # 28 clients for 3 s and 4 for 1.5 s at 50 frames/s, less the slow start
        assert errors >= 4  # each malformed client sent at least one bad frame
        # Gateways: 4 connections of 8 streams each, one of them leaving halfway, one sending bad blocks.
        mux = ("--clients", "4", "--streams-per-connection", "8", "--leave", "1", "--malformed", "1")
        mux_frames, mux_errors = _load(url, tmp_path, *mux, "--rate", "50", "--seconds", "3")
        assert mux_frames > 32 * 50 and mux_errors >= 1
        frames += mux_frames
        for bad in ('{"streams": 0}', '{"streams": 5000}', '{"streams": "8"}', "{not json"):
            assert "error" in _ask(url, bad), bad
        stats = _ask(url, "stats")
        assert stats["open_streams"] == 0 and stats["frames"] >= frames
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
        assert "open streams at exit: 0" in out, out + err
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
