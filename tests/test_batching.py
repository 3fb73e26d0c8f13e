"""Dynamic batching (inference.batching.Batcher) with real threads."""

import threading
import time

import numpy as np
import pytest

from inference.batching import Batcher


class Recorder:
    """A batched function that records the batches it gets: ``rows * 10``,
    failing on batches that hold a negative row."""

    def __init__(self, delay=0.0):
        self.batches, self.delay = [], delay

    def __call__(self, rows):
        self.batches.append(len(rows))
        time.sleep(self.delay)  # lets calls queue up meanwhile, as during a forward pass
        if (rows < 0).any():
            raise ValueError("negative row")
        return rows * 10


def call_concurrently(batcher, inputs):
    """Call ``batcher`` from one thread per input, released together; returns outputs or exceptions, in order."""
    results = [None] * len(inputs)
    start = threading.Barrier(len(inputs))

    def caller(index):
        start.wait()
        try:
            results[index] = batcher(inputs[index])
        except Exception as error:  # noqa: BLE001 - checked by the test
            results[index] = error

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_calls_share_one_batch_and_get_their_own_rows():
    fn = Recorder()
    inputs = [np.full((2, 3), caller) for caller in range(8)]
    batcher = Batcher(fn, max_rows=16, max_wait_s=30)  # the batch closes when full, long before the wait ends
    results = call_concurrently(batcher, inputs)
    batcher.close()
    assert fn.batches == [16]
    for rows, outputs in zip(inputs, results):
        np.testing.assert_array_equal(outputs, rows * 10)


def test_batches_stay_within_max_rows_and_a_larger_call_runs_alone():
    fn = Recorder(delay=0.01)
    inputs = [np.full((1 + caller % 3, 2), caller) for caller in range(20)] + [np.full((6, 2), 99)]
    batcher = Batcher(fn, max_rows=4)
    results = call_concurrently(batcher, inputs)
    batcher.close()
    assert sum(fn.batches) == sum(len(rows) for rows in inputs)
    assert max(fn.batches) == 6 and all(size <= 4 for size in fn.batches if size != 6)
    assert len(fn.batches) < len(inputs)  # calls that queued during a pass were batched
    for rows, outputs in zip(inputs, results):
        np.testing.assert_array_equal(outputs, rows * 10)


def test_an_error_reaches_only_the_caller_whose_rows_fail():
    fn = Recorder()
    inputs = [np.full((2, 3), caller) for caller in range(6)]
    inputs[4] = -inputs[4]
    batcher = Batcher(fn, max_rows=12, max_wait_s=30)
    results = call_concurrently(batcher, inputs)
    assert isinstance(results[4], ValueError) and str(results[4]) == "negative row"
    for caller in (0, 1, 2, 3, 5):
        np.testing.assert_array_equal(results[caller], inputs[caller] * 10)
    np.testing.assert_array_equal(batcher(np.ones((12, 3))), np.full((12, 3), 10))  # still serving (a full batch)
    batcher.close()


def test_calls_of_different_shapes_are_batched_apart():
    fn = Recorder(delay=0.01)
    inputs = [np.full((1, 3 if caller % 2 else 5), caller) for caller in range(10)]
    batcher = Batcher(fn, max_rows=8, max_wait_s=0.05)
    results = call_concurrently(batcher, inputs)
    batcher.close()
    for rows, outputs in zip(inputs, results):
        np.testing.assert_array_equal(outputs, rows * 10)


def test_a_closed_batcher_refuses_calls_and_bad_settings_are_refused():
    batcher = Batcher(Recorder(), max_rows=4)
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher(np.ones((1, 2)))
    with pytest.raises(ValueError, match="max_rows"):
        Batcher(Recorder(), max_rows=0)


def test_several_batch_threads_run_batches_side_by_side():
    running, overlapped = [], threading.Event()

    def fn(rows):  # notes when two batches are inside fn at once
        running.append(1)
        if len(running) > 1:
            overlapped.set()
        overlapped.wait(timeout=30)
        running.pop()
        return rows * 10

    inputs = [np.full((2, 3), caller) for caller in range(8)]
    batcher = Batcher(fn, max_rows=8, threads=2)
    results = call_concurrently(batcher, inputs)
    batcher.close()
    assert overlapped.is_set()
    for rows, outputs in zip(inputs, results):
        np.testing.assert_array_equal(outputs, rows * 10)
