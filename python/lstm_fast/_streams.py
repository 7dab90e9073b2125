"""lf.Streams: many independent streams over one frozen model, stepped together.

Each open stream has a slot holding its state (h (L, R), c (L, H)). ``step(ids, x)`` advances any of
them by one time step as one batched step of the model, so the weights are read once for all of them
(the C++ ``lstm_fast::Streams``). ``submit`` queues single frames for a background batcher that runs
the frames of distinct streams waiting at the same moment as one step (continuous batching).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

import numpy as np

from . import _core
from ._model import Model

State = Tuple[np.ndarray, np.ndarray]


_IDLE_SECONDS = 1.0  # how long the batcher's thread waits for a frame before it ends


class _Frame:
    """One submitted frame and where its output goes: a concurrent.futures.Future (submit), or an
    asyncio future of `loop` (asubmit), resolved from the loop's own thread."""

    __slots__ = ("sid", "x", "future", "loop", "submitted")

    def __init__(self, sid: int, x: np.ndarray, future: Any, loop: Any) -> None:
        self.sid, self.x, self.future, self.loop = sid, x, future, loop
        self.submitted = time.monotonic()

    def start(self) -> bool:
        """False if the frame was cancelled (then it must not run)."""
        if self.loop is None:
            return self.future.set_running_or_notify_cancel()
        return not self.future.cancelled()  # read from another thread: at worst it runs for nothing

    def cancel(self) -> None:
        if self.loop is None:
            self.future.cancel()
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.future.cancel)


def _resolve(outcomes: List[Tuple[Any, Any, bool]]) -> None:
    """Sets asyncio futures (on their loop's thread): (future, value, is_error)."""
    for future, value, failed in outcomes:
        if not future.done():
            if failed:
                future.set_exception(value)
            else:
                future.set_result(value)


class Streams:
    """Many streams over one unidirectional ``lf.Model`` of any precision.

    Args:
        model: the frozen model (``lstm.freeze(...)`` or ``lf.load_model(...)``), unidirectional.
        max_batch: the batcher runs a step as soon as this many distinct streams have a frame waiting
            (None: as soon as every open stream has one).
        max_wait_us: ... or when the oldest waiting frame has waited this long, in microseconds.

    Every stream's outputs equal stepping it alone with ``model.step`` (to 1e-6 in fp32 and bf16,
    bitwise in int8). Calls are thread-safe. Use as a context manager, or call ``shutdown()``, to stop
    the batcher's thread.
    """

    def __init__(self, model: Model, max_batch: Optional[int] = None, max_wait_us: float = 200) -> None:
        if not isinstance(model, Model):
            raise TypeError(f"model must be an lf.Model (lstm.freeze() or lf.load_model()), got {type(model).__name__}")
        if model.bidirectional:
            raise ValueError("model must be unidirectional: a stream steps forward in time, got a bidirectional model")
        if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
            raise ValueError(f"max_batch must be None or an int >= 1, got {max_batch!r}")
        if isinstance(max_wait_us, bool) or not isinstance(max_wait_us, (int, float)) or not 0 <= max_wait_us < 1e12:
            raise ValueError(f"max_wait_us must be a number >= 0, got {max_wait_us!r}")
        self.model = model
        self.max_batch = max_batch
        self.max_wait_us = max_wait_us
        self._core = _core.Streams(model._core)
        self._lock = threading.RLock()  # the streams' states: open, close, state, step
        self._open: set = set()
        # Submitted frames by stream, each stream's oldest first, the streams in the order their oldest
        # frame came (a stream moves to the end when its oldest runs).
        self._pending: Dict[int, Deque[_Frame]] = {}
        self._queued = threading.Condition(threading.Lock())  # guards _pending, _batcher, _stopping
        self._batcher: Optional[threading.Thread] = None
        self._stopping = False

    # ---- the streams -----------------------------------------------------------------------------

    def open(self, state: Optional[State] = None) -> int:
        """A new stream from zeros, or from ``state = (h (L, R), c (L, H))``; returns its id."""
        h = c = None
        if state is not None:
            h, c = self._check_state(state)
        with self._lock:
            sid = int(self._core.open(h, c))
            self._open.add(sid)
        return sid

    def close(self, sid: int) -> State:
        """Ends stream ``sid``: its frames still queued are cancelled; returns its final state (h, c)."""
        with self._lock:
            self._check_id("sid", sid)
            with self._queued:
                mine = list(self._pending.pop(sid, ()))
            h, c = self._core.close(sid)
            self._open.discard(sid)
        for frame in mine:
            frame.cancel()
        return h, c

    def state(self, sid: int) -> State:
        """A copy of stream ``sid``'s state (h (L, R), c (L, H))."""
        with self._lock:
            self._check_id("sid", sid)
            return tuple(self._core.state(sid))

    def step(self, ids: Any, x: Any) -> np.ndarray:
        """One time step of the streams ``ids`` ((n,) distinct open ids) on ``x`` (n, I); returns y (n, O).

        Raises ValueError naming the id or the shape that is wrong, and then changes no stream."""
        id_array = self._check_ids(ids)
        x = _as_float32(x)
        want = (len(id_array), self.model.input_size)
        if x.shape != want:
            raise ValueError(f"x must have shape (n, I) = {want} for {len(id_array)} ids, got {x.shape}")
        with self._lock:
            return self._core.step(id_array, x)

    def __len__(self) -> int:
        return len(self._core)

    def ids(self) -> List[int]:
        """The ids of the open streams."""
        with self._lock:
            return [int(i) for i in self._core.ids()]

    def __repr__(self) -> str:
        return f"Streams({self.model!r}, open={len(self)}, max_batch={self.max_batch}, max_wait_us={self.max_wait_us})"

    # ---- the batcher -----------------------------------------------------------------------------

    def submit(self, sid: int, x_t: Any) -> concurrent.futures.Future:
        """Queues one frame x_t (I,) of stream ``sid``; returns a Future of its output y_t (O,).

        A frame that cannot run (an id that is not open, a wrong shape) gives a Future that fails with
        the ValueError; the other frames are unaffected. A stream's frames run in the order submitted.
        """
        future: concurrent.futures.Future = concurrent.futures.Future()
        error = self._queue_frame(sid, x_t, future, None)
        if error is not None:
            future.set_exception(error)
        return future

    async def asubmit(self, sid: int, x_t: Any) -> np.ndarray:
        """``submit`` for asyncio: awaits the frame's output y_t (O,). The batcher resolves a batch's
        futures with one call into each event loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        error = self._queue_frame(sid, x_t, future, loop)
        if error is not None:
            raise error
        return await future

    def _queue_frame(self, sid: Any, x_t: Any, future: Any, loop: Any) -> Optional[Exception]:
        """Queues the frame, or returns what is wrong with it; wakes the batcher only when a batch may
        have become due (the first waiting stream starts its clock, the wanted-th makes it full)."""
        try:
            x = _as_float32(x_t)
            if x.shape != (self.model.input_size,):
                raise ValueError(f"x_t must have shape (I,) = ({self.model.input_size},), got {x.shape}")
            self._check_id("sid", sid)
        except (TypeError, ValueError) as error:
            return error
        with self._queued:
            if self._stopping:
                raise RuntimeError("submit after shutdown")
            frames = self._pending.get(sid)
            if frames is None:
                frames = self._pending[sid] = collections.deque()
                waiting = len(self._pending)
                if waiting == 1 or waiting >= self._wanted():
                    self._queued.notify()
            frames.append(_Frame(sid, x, future, loop))
            if self._batcher is None:
                self._batcher = threading.Thread(target=self._run, name="lstm_fast-streams", daemon=True)
                self._batcher.start()
        return None

    def shutdown(self, wait: bool = True, cancel_futures: bool = True) -> None:
        """Stops the batcher: the frames still queued are cancelled (or run first with
        ``cancel_futures=False``); ``wait`` joins its thread."""
        with self._queued:
            self._stopping = True
            dropped = [f for frames in self._pending.values() for f in frames] if cancel_futures else []
            if cancel_futures:
                self._pending.clear()
            self._queued.notify()
            batcher = self._batcher
        for frame in dropped:
            frame.cancel()
        if wait and batcher is not None and batcher is not threading.current_thread():
            batcher.join()

    def __enter__(self) -> "Streams":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def _wanted(self) -> int:
        return self.max_batch if self.max_batch is not None else max(1, len(self._open))

    def _run(self) -> None:
        while True:
            with self._queued:
                batch = self._next_batch()
            if batch is None:
                return
            self._run_batch(batch)

    def _next_batch(self) -> Optional[List[_Frame]]:
        """Waits (holding _queued) until a batch is due: the frames to run, or None to stop. After
        _IDLE_SECONDS without a frame the thread ends (the next submit starts another), so that an
        unused Streams is not kept alive, nor its thread, by the thread's reference to it."""
        while True:
            if not self._pending and not self._stopping:
                self._queued.wait(_IDLE_SECONDS)
                if not self._pending and not self._stopping:
                    self._batcher = None
                    return None
                continue
            if not self._pending:
                return None
            wanted = self._wanted()
            oldest = next(iter(self._pending.values()))[0]
            remaining = oldest.submitted + self.max_wait_us * 1e-6 - time.monotonic()
            if self._stopping or remaining <= 0 or len(self._pending) >= wanted:
                return self._take(wanted)
            self._queued.wait(remaining)

    def _take(self, wanted: int) -> List[_Frame]:
        """Removes and returns the oldest frame of each of the first ``wanted`` waiting streams."""
        batch = []
        for sid in list(itertools.islice(self._pending, wanted)):
            frames = self._pending.pop(sid)
            batch.append(frames.popleft())
            if frames:
                self._pending[sid] = frames  # to the end: its next frame is newer than the others'
        return batch

    def _run_batch(self, batch: List[_Frame]) -> None:
        with self._lock:
            ready = []
            for frame in batch:
                if frame.sid not in self._open:  # closed after its frame was taken: cancelled like the rest
                    frame.cancel()
                elif frame.start():
                    ready.append(frame)
            if not ready:
                return
            try:
                y = self._core.step(np.array([f.sid for f in ready], np.int64), np.stack([f.x for f in ready]))
                outcomes = [(frame, y[i], False) for i, frame in enumerate(ready)]
            except Exception as error:  # noqa: BLE001 - handed to the futures, never lost
                outcomes = [(frame, error, True) for frame in ready]
        by_loop: Dict[Any, List[Tuple[Any, Any, bool]]] = {}
        for frame, value, failed in outcomes:
            if frame.loop is None:
                (frame.future.set_exception if failed else frame.future.set_result)(value)
            else:
                by_loop.setdefault(frame.loop, []).append((frame.future, value, failed))
        for loop, results in by_loop.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, results)

    # ---- checks ----------------------------------------------------------------------------------

    def _check_id(self, name: str, sid: Any) -> None:
        if isinstance(sid, bool) or not isinstance(sid, (int, np.integer)):
            raise TypeError(f"{name} must be an int stream id, got {type(sid).__name__}")
        if int(sid) not in self._open:
            raise ValueError(f"{name} = {sid} is not an open stream")

    def _check_ids(self, ids: Any) -> np.ndarray:
        array = np.asarray(ids)
        if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
            raise ValueError(f"ids must be a 1-D sequence of int stream ids, got shape {array.shape} of {array.dtype}")
        return np.ascontiguousarray(array, dtype=np.int64)

    def _check_state(self, state: Any) -> State:
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ValueError(f"state must be a tuple (h, c), got {type(state).__name__}")
        L, R, H = self.model.num_layers, self.model.output_size, self.model.hidden_size
        h, c = (_as_float32(a) for a in state)
        if h.shape != (L, R) or c.shape != (L, H):
            raise ValueError(f"state must be (h (L, R), c (L, H)) = ({(L, R)}, {(L, H)}), got ({h.shape}, {c.shape})")
        return h, c


def _as_float32(a: Any) -> np.ndarray:
    try:
        array = np.asarray(a)
    except Exception as error:  # noqa: BLE001
        raise TypeError(f"expected a float array, got {type(a).__name__}") from error
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"expected a float array, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)
