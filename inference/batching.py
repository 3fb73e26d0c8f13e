"""Dynamic batching: concurrent calls in one process gathered into one batched call.

The web service runs one request per gunicorn thread; a forward pass of 16
images costs far less than 16 passes of one (``benchmarks/bare_model.py``).
:class:`Batcher` lets each thread call the model as if alone while a single
background thread runs the calls that are waiting as one batch, as TF
Serving's ``BasicBatchScheduler`` does (tensorflow_serving/batching/README.md:
``max_batch_size``, ``batch_timeout_micros``, one batch thread).
"""

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np


class _Call:
    """One caller's rows, waiting for their outputs or their error."""

    __slots__ = ("rows", "queued_at", "outputs", "error", "done")

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows
        self.queued_at = time.monotonic()
        self.outputs: Any = None  # fn's rows for this call, once done
        self.error: Exception | None = None
        self.done = threading.Event()


_CLOSE = object()  # queued by close(): no call follows
_NONE = object()  # no call waiting (within the deadline)


class Batcher:
    """Run ``fn`` on the rows of concurrent callers concatenated into one batch.

    ``batcher(rows)`` blocks until ``fn`` has run on a batch that holds ``rows``
    and returns ``fn``'s outputs for them. Daemon batch threads, one forming
    a batch at a time, take the oldest waiting call, then the following
    waiting calls of the same trailing shape and dtype, in arrival order,
    while the batch holds at most ``max_rows`` rows; while it is not full they
    wait for more calls until ``max_wait_s`` after the oldest call was queued;
    then they call ``fn`` once. While ``fn`` runs, new calls queue up, so
    batches grow with the load even with ``max_wait_s=0`` (a lone call then
    pays no wait at all). A call of more than ``max_rows`` rows runs alone,
    never split. With ``threads > 1``, several batches run side by side (TF
    Serving's ``num_batch_threads``; its guide suggests one per core on CPU).

    When ``fn`` raises on a batch of several calls, each call is run again
    alone, so the error reaches only the caller whose rows cause it.

    Args:
        fn: ``np.ndarray (n, ...) -> np.ndarray (n, ...)``, output row ``i``
            belonging to input row ``i``; called from the batch threads only,
            by ``threads`` of them at once at most.
        max_rows: largest batch, in rows (first-axis entries), ``>= 1``.
        max_wait_s: longest wait for more calls, in seconds, ``>= 0``.
        threads: batch threads, ``>= 1``.

    Raises:
        ValueError: ``max_rows``, ``threads < 1`` or ``max_wait_s < 0``.
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], max_rows: int, max_wait_s: float = 0.0,
                 threads: int = 1) -> None:
        if max_rows < 1 or threads < 1 or max_wait_s < 0:
            raise ValueError(
                f"max_rows and threads must be >= 1 and max_wait_s >= 0, got {max_rows}, {threads}, {max_wait_s}"
            )
        self.fn, self.max_rows, self.max_wait_s = fn, max_rows, max_wait_s
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._set_aside: deque[_Call] = deque()  # calls taken from the queue that did not fit in a batch yet
        self._forming = threading.Lock()  # one batch thread forms a batch at a time
        self._lock = threading.Lock()
        self._closing = self._closed = False
        self._threads = [threading.Thread(target=self._run, name="batcher", daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """``fn``'s outputs for ``rows`` (``np.ndarray``, at least 1-D), computed in a shared batch.

        Raises:
            whatever ``fn`` raises on these rows; ``ValueError`` for a scalar;
            ``RuntimeError`` after :meth:`close`.
        """
        call = _Call(np.asarray(rows))
        if call.rows.ndim == 0:
            raise ValueError("rows must have at least one axis")
        with self._lock:
            if self._closing:
                raise RuntimeError("the batcher is closed")
            self._queue.put(call)
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.outputs

    def close(self) -> None:
        """Run the calls already queued, then stop the batch threads."""
        with self._lock:
            self._closing = True
            self._queue.put(_CLOSE)
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        while True:
            with self._forming:
                batch = self._next_batch()
            if batch is None:
                return
            self._execute(batch)

    def _next_batch(self) -> list[_Call] | None:
        """The calls of the next batch; ``None`` once closed and drained."""
        first = self._take(None)
        if first is _NONE:
            return None
        batch, rows = [first], len(first.rows)
        skipped = []
        deadline = first.queued_at + self.max_wait_s
        while rows < self.max_rows:
            call = self._take(deadline)
            if call is _NONE:
                break
            if call.rows.shape[1:] != first.rows.shape[1:] or call.rows.dtype != first.rows.dtype:
                skipped.append(call)  # for a later batch of its own shape
            elif rows + len(call.rows) > self.max_rows:
                skipped.append(call)  # first in the next batch
                break
            else:
                batch.append(call)
                rows += len(call.rows)
        self._set_aside.extendleft(reversed(skipped))
        return batch

    def _take(self, deadline: float | None) -> Any:
        """The oldest call not yet batched; ``_NONE`` if none comes before
        ``deadline`` (``time.monotonic()`` seconds; ``None``: wait forever) or once closed."""
        if self._set_aside:
            return self._set_aside.popleft()
        if self._closed:
            return _NONE
        try:
            if deadline is None:
                call = self._queue.get()
            else:
                remaining = deadline - time.monotonic()
                call = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
        except queue.Empty:
            return _NONE
        if call is _CLOSE:
            self._closed = True
            return _NONE
        return call

    def _execute(self, batch: list[_Call]) -> None:
        """Run ``fn`` once on ``batch``; on error, again per call to find whose rows fail."""
        try:
            rows = np.concatenate([call.rows for call in batch])
            outputs = self.fn(rows)
            if len(outputs) != len(rows):
                raise ValueError(f"the batched function returned {len(outputs)} rows for {len(rows)}")
        except Exception as error:  # noqa: BLE001 - handed to the caller(s)
            if len(batch) > 1:
                for call in batch:
                    self._execute([call])
                return
            batch[0].error = error
            batch[0].done.set()
            return
        start = 0
        for call in batch:
            call.outputs = outputs[start : start + len(call.rows)]
            start += len(call.rows)
            call.done.set()
