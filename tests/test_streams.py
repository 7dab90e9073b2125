"""lf.Streams: many streams over one frozen model. Each stream stepped in any company equals stepping it
alone with model.step (1e-6 in fp32 and bf16, bitwise in int8); open, close, state and ids; bad calls
raise and change nothing; the batcher's futures, their order, cancellation and shutdown."""

import asyncio
import concurrent.futures
import gc
import threading
import weakref

import numpy as np
import pytest
from conftest import num_threads

import lstm_fast as lf

PRECISIONS = ("fp32", "bf16", "int8")


def _model(precision, **config):
    return lf.LSTM(5, 24, seed=3, **config).freeze(precision)


def _assert_same(got, want, precision):
    if precision == "int8":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("threads", (1, 2))
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize(
    "config", [dict(), dict(num_layers=2, proj_size=7, peephole=True)], ids=["plain", "layers-proj-peep"]
)
def test_each_stream_equals_stepping_it_alone(rng, precision, config, threads):
    model = _model(precision, **config)
    L, R, H = model.num_layers, model.output_size, model.hidden_size
    with num_threads(threads), lf.Streams(model) as streams:
        starts = [None, (rng.normal(size=(L, R)).astype(np.float32), rng.normal(size=(L, H)).astype(np.float32))]
        ids = [streams.open(starts[k % 2]) for k in range(40)]
        alone = {}  # each stream's state stepped alone: (h (L, 1, R), c (L, 1, H))
        for k, sid in enumerate(ids):
            start = starts[k % 2]
            alone[sid] = model.initial_state(1) if start is None else (start[0][:, None], start[1][:, None])
        for t in range(8):
            # A random subset of the streams in a random order, kept for two steps (the second finds
            # their states still in the batch), then another.
            if t % 2 == 0:
                chosen = rng.permutation(ids)[: rng.integers(1, len(ids) + 1)]
            x = rng.normal(size=(len(chosen), 5)).astype(np.float32)
            y = streams.step(chosen, x)
            assert y.shape == (len(chosen), R) and y.dtype == np.float32
            for i, sid in enumerate(chosen):
                y_alone, alone[sid] = model.step(x[i : i + 1], alone[sid])
                _assert_same(y[i], y_alone[0], precision)
            h, c = streams.state(chosen[0])  # read from the batch
            _assert_same(c, alone[chosen[0]][1][:, 0], precision)
        for sid in ids:
            h, c = streams.state(sid)
            _assert_same(h, alone[sid][0][:, 0], precision)
            _assert_same(c, alone[sid][1][:, 0], precision)


def test_open_close_state_and_ids(rng):
    model = _model("fp32", num_layers=2)
    streams = lf.Streams(model)
    a, b = streams.open(), streams.open()
    assert len(streams) == 2 and streams.ids() == [a, b]
    h0, c0 = streams.state(a)
    assert h0.shape == (2, 24) and c0.shape == (2, 24) and not h0.any() and not c0.any()
    streams.step([a], rng.normal(size=(1, 5)))
    h, c = streams.state(a)
    assert h.any() and not streams.state(b)[0].any()
    h[...] = 7  # a copy: the stream is unchanged
    assert not (streams.state(a)[0] == 7).any()
    h_final, c_final = streams.close(a)
    np.testing.assert_array_equal(c_final, c)
    assert len(streams) == 1 and streams.ids() == [b]
    with pytest.raises(ValueError, match=f"sid = {a} is not an open stream"):
        streams.state(a)
    reopened = streams.open((h_final, c_final))  # its slot again, but a new id
    assert reopened != a
    np.testing.assert_array_equal(streams.state(reopened)[1], c_final)
    with pytest.raises(ValueError, match="is not an open stream"):
        streams.step([a], np.zeros((1, 5)))


def _snapshot(streams):
    return {sid: tuple(a.copy() for a in streams.state(sid)) for sid in streams.ids()}


def test_bad_calls_raise_naming_it_and_change_nothing(rng):
    model = _model("int8")
    streams = lf.Streams(model)
    a, b = streams.open(), streams.open()
    streams.step([a, b], rng.normal(size=(2, 5)))
    before = _snapshot(streams)
    x2 = np.zeros((2, 5), np.float32)
    cases = [
        (([a, a], x2), ValueError, r"ids\[1\] = \d+ appears more than once"),
        (([a, 12345], x2), ValueError, r"ids\[1\] = 12345 is not an open stream"),
        (([a, -1], x2), ValueError, r"ids\[1\] = -1 is not an open stream"),
        (([a, b], np.zeros((2, 4))), ValueError, r"x must have shape \(n, I\) = \(2, 5\)"),
        (([a, b], np.zeros((3, 5))), ValueError, r"x must have shape"),
        (([[a, b]], x2), ValueError, "ids must be a 1-D sequence"),
        (([0.5, 1.5], x2), ValueError, "ids must be a 1-D sequence of int"),
        (([a, b], [["x"] * 5] * 2), TypeError, "expected a float array"),
    ]
    for args, error, message in cases:
        with pytest.raises(error, match=message):
            streams.step(*args)
        after = _snapshot(streams)
        assert after.keys() == before.keys()
        for sid in before:
            for got, want in zip(after[sid], before[sid]):
                np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match=r"state must be \(h \(L, R\), c \(L, H\)\)"):
        streams.open((np.zeros((1, 3)), np.zeros((1, 24))))
    with pytest.raises(ValueError, match="state must be a tuple"):
        streams.open(np.zeros((1, 24)))
    with pytest.raises(TypeError, match="sid must be an int"):
        streams.close("a")
    assert len(streams) == 2
    assert streams.step([], np.zeros((0, 5))).shape == (0, 24)


def test_bad_construction():
    with pytest.raises(TypeError, match="model must be an lf.Model"):
        lf.Streams(lf.LSTM(3, 4))
    with pytest.raises(ValueError, match="unidirectional"):
        lf.Streams(lf.LSTM(3, 4, bidirectional=True).freeze("fp32"))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_batch"):
            lf.Streams(_model("fp32"), max_batch=bad)
    with pytest.raises(ValueError, match="max_wait_us"):
        lf.Streams(_model("fp32"), max_wait_us=-1)


@pytest.mark.parametrize("precision", ("fp32", "int8"))
def test_submitted_frames_run_in_order_and_equal_model_step(rng, precision):
    model = _model(precision)
    frames = rng.normal(size=(12, 6, 5)).astype(np.float32)  # 12 streams x 6 frames
    with lf.Streams(model, max_batch=5, max_wait_us=100) as streams:
        ids = [streams.open() for _ in range(12)]
        futures = [[None] * 6 for _ in ids]

        def submit_all(k):  # one stream's frames, in order, from a thread of its own
            for t in range(6):
                futures[k][t] = streams.submit(ids[k], frames[k, t])

        threads = [threading.Thread(target=submit_all, args=(k,)) for k in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for k in range(12):
            state = model.initial_state(1)
            for t in range(6):
                want, state = model.step(frames[k, t][None], state)
                _assert_same(futures[k][t].result(timeout=10), want[0], precision)


def test_bad_frames_fail_their_future_only(rng):
    model = _model("fp32")
    with lf.Streams(model, max_wait_us=0) as streams:
        sid = streams.open()
        bad_shape = streams.submit(sid, np.zeros(4))
        unknown = streams.submit(999, np.zeros(5))
        good = streams.submit(sid, np.ones(5))
        with pytest.raises(ValueError, match=r"x_t must have shape \(I,\) = \(5,\)"):
            bad_shape.result(timeout=10)
        with pytest.raises(ValueError, match="sid = 999 is not an open stream"):
            unknown.result(timeout=10)
        want, _ = model.step(np.ones((1, 5), np.float32))
        np.testing.assert_allclose(good.result(timeout=10), want[0], atol=1e-6)


def test_asubmit(rng):
    model = _model("bf16")
    frames = rng.normal(size=(4, 5)).astype(np.float32)

    async def stream(streams, sid):
        return [await streams.asubmit(sid, x) for x in frames]

    async def main(streams):
        ids = [streams.open() for _ in range(3)]
        return await asyncio.gather(*(stream(streams, sid) for sid in ids))

    with lf.Streams(model) as streams:
        outputs = asyncio.run(main(streams))
    want, _ = model(frames[:, None])
    for ys in outputs:
        np.testing.assert_allclose(np.stack(ys), want[:, 0], atol=1e-6)


def test_close_and_shutdown_cancel_pending_frames():
    model = _model("fp32")
    streams = lf.Streams(model, max_batch=1000, max_wait_us=10_000_000)  # nothing runs by itself
    a, b = streams.open(), streams.open()
    pending_a = [streams.submit(a, np.zeros(5)) for _ in range(3)]
    pending_b = streams.submit(b, np.zeros(5))
    streams.close(a)
    assert all(f.cancelled() for f in pending_a) and not pending_b.done()
    streams.shutdown()
    assert pending_b.cancelled()
    with pytest.raises(RuntimeError, match="after shutdown"):
        streams.submit(b, np.zeros(5))
    # cancel_futures=False runs what is queued first
    streams = lf.Streams(model, max_batch=1000, max_wait_us=10_000_000)
    sid = streams.open()
    queued = streams.submit(sid, np.ones(5))
    streams.shutdown(cancel_futures=False)
    assert queued.result(timeout=0) is not None
    assert isinstance(queued, concurrent.futures.Future)


def test_an_idle_batcher_ends_and_the_next_submit_starts_another(monkeypatch):
    from lstm_fast import _streams

    monkeypatch.setattr(_streams, "_IDLE_SECONDS", 0.05)
    model = _model("fp32")
    streams = lf.Streams(model)  # never shut down: its thread must not keep it alive
    sid = streams.open()
    first = streams.submit(sid, np.ones(5)).result(timeout=10)
    thread = streams._batcher
    thread.join(timeout=10)
    assert not thread.is_alive() and streams._batcher is None
    second = streams.submit(sid, np.ones(5)).result(timeout=10)
    want = model(np.ones((2, 1, 5), np.float32))[0][:, 0]
    np.testing.assert_allclose(np.stack([first, second]), want, atol=1e-6)
    streams._batcher.join(timeout=10)
    ref = weakref.ref(streams)
    del streams
    gc.collect()
    assert ref() is None


def test_close_from_another_thread_wakes_an_awaited_asubmit():
    # The awaiting loop has nothing else to wake it: the cancellation must reach it by itself.
    model = _model("fp32")
    outcome = []

    async def main(streams):
        sid = streams.open()
        pending = asyncio.ensure_future(streams.asubmit(sid, np.zeros(5)))
        await asyncio.sleep(0.01)  # queued; the batcher waits for more
        threading.Timer(0.2, streams.close, args=(sid,)).start()  # once the loop sleeps in select
        try:
            await pending
        except asyncio.CancelledError:
            outcome.append("cancelled")

    with lf.Streams(model, max_batch=1000, max_wait_us=10_000_000) as streams:
        runner = threading.Thread(target=asyncio.run, args=(main(streams),), daemon=True)
        runner.start()
        runner.join(timeout=10)
        assert not runner.is_alive() and outcome == ["cancelled"]
