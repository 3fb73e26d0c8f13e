"""Forward passes lent first come, first served: what ONNX Runtime and LiteRT share.

A runtime whose passes cannot all run at once on one object (LiteRT's
interpreters) or that should not run more passes side by side than the
worker has cores (ONNX Runtime's one session) lends a few runners to the
serving threads through ``FifoPool``; ``PooledPasses`` reads the
model folder (``inference.model_folder``) and implements the
``inference.predictor.Predictor`` protocol on those runners.
"""

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from inference import DEFAULT_PRECISION
from inference.calibration import Calibration
from inference.model_folder import FIX, ModelLoadError, model_files, read_beside, read_metadata, require_files
from inference.tta import SERVED_VIEWS


class FifoPool:
    """Objects lent to one thread at a time, in the order the threads asked.

    A queue hands a returned object to whichever thread asks first, and a
    thread that is already running asks before a blocked one wakes up: with
    8 serving threads and one interpreter on one core, some requests waited
    seconds while the others went round (docs/performance.md, "Settings chosen
    by measurement"). Here a returned object goes straight to the thread that
    has waited longest.

    Args:
        items: the objects to lend (LiteRT interpreters, or one ONNX Runtime session once per pass it may run
            at a time).
    """

    def __init__(self, items: list[Any]) -> None:
        self._lock = threading.Lock()
        self._idle = list(items)
        self._waiting: deque[tuple[threading.Event, list[Any]]] = deque()

    def take(self) -> Any:
        """An idle object, waiting (first come, first served) while every one is lent."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
            turn: tuple[threading.Event, list[Any]] = (threading.Event(), [])
            self._waiting.append(turn)
        turn[0].wait()
        return turn[1][0]

    def give_back(self, item: Any) -> None:
        """Return ``item``: to the longest-waiting thread if any, else to the idle ones."""
        with self._lock:
            if not self._waiting:
                self._idle.append(item)
                return
            ready, slot = self._waiting.popleft()
        slot.append(item)
        ready.set()


class PooledPasses:
    """An ``inference.predictor.Predictor`` whose forward passes run on a few runners lent
    first come, first served (``FifoPool``), so that memory follows the
    passes that run side by side, not the serving threads. With several
    runners, a batch of several images (a request's TTA views) is split into
    single images that run side by side, from a pool of as many threads: a
    lone request's views take one single-threaded pass's time, and each pass
    only ever holds the activations of one image. Subclasses call
    ``_open`` with what makes their runners and implement ``_run``.

    Attributes:
        labels, image_size, metadata, metrics, calibration: as
            ``inference.predictor.Predictor``, read from the model folder by ``_open``
            (the calibration of its precision).
        resizes_input: ``False``: the runners take images of ``image_size`` only.
    """

    labels: list[str]
    image_size: tuple[int, int]
    metadata: dict
    metrics: dict
    calibration: Calibration | None
    resizes_input = False
    _pool: FifoPool
    _runners: int
    _side_by_side: ThreadPoolExecutor | None

    def _open(self, model_dir: Path, runtime: str, runners: Callable[[Path], list[Any]],
              precision: str = DEFAULT_PRECISION) -> None:
        """Read ``model_dir``'s metadata, metrics and calibration, and lend the runners that
        ``runners`` makes of its ``runtime`` model file at ``precision`` (one per pass that may run at a time).

        Raises:
            inference.model_folder.ModelNotFoundError: no model file or ``metadata.json``
                (``inference.model_folder.require_files``).
            inference.model_folder.ModelLoadError: either is unreadable, or ``runners`` raised
                ``ValueError`` (not a model of this project: the message names the file and the fix).
            ValueError: the calibration is malformed or names other labels; ``precision`` is not
                one that ``runtime`` serves.
        """
        require_files(model_dir, runtime, precision)
        facts = read_metadata(model_dir)
        self.labels, self.image_size, self.metadata = facts.labels, facts.image_size, facts.metadata
        self.metrics, self.calibration = read_beside(model_dir, self.labels, precision)
        path = model_dir / model_files(runtime, precision)[0]
        try:
            lent = runners(path)
        except ValueError as error:
            command = "quantize" if precision == "int8" else "convert"
            raise ModelLoadError(f"{path} is not a model of this project ({error}); write it again with "
                                 f"'carclf {command} {model_dir}'. {FIX}") from None
        self._pool = FifoPool(lent)
        self._runners = len(lent)
        self._side_by_side = ThreadPoolExecutor(len(lent), "passes") if len(lent) > 1 else None

    def _run(self, runner: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One forward pass of ``images`` (``uint8``, contiguous) on ``runner``: ``predict``'s outputs."""
        raise NotImplementedError

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the model on a batch, on an idle runner (waiting for one when all are
        busy); with several runners, one image per pass, side by side.

        Args:
            images: ``uint8`` array ``(batch, height, width, 3)``, RGB, of ``image_size``.

        Returns:
            ``(logits, probabilities, features)``: ``float32`` arrays
            ``(batch, num_classes)``, ``(batch, num_classes)`` and ``(batch, F)``.

        Raises:
            ValueError: images of another size than ``image_size``.
        """
        if images.shape[1:3] != self.image_size:
            raise ValueError(f"images of {images.shape[1:3]} pixels; the model takes {self.image_size}")
        if self._side_by_side is None or len(images) == 1:
            return self._forward(images)
        passes = [self._side_by_side.submit(self._forward, images[row:row + 1]) for row in range(len(images))]
        logits, probabilities, features = (np.concatenate(rows) for rows in zip(*(done.result() for done in passes)))
        return logits, probabilities, features

    def _forward(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``predict``'s outputs for ``images`` in one pass, on an idle runner."""
        runner = self._pool.take()
        try:
            return self._run(runner, np.ascontiguousarray(images, dtype=np.uint8))
        finally:
            self._pool.give_back(runner)

    def warm_up(self, image_size: tuple[int, int] | None = None) -> None:
        """Run every distinct runner once at each batch size a service request meets (the
        views of a TTA mode, ``inference.tta.SERVED_VIEWS``; one image with
        several runners, which split batches), so that no request pays for
        allocating tensors or packing the weights. ``image_size`` is ignored: the
        runners take ``image_size`` only (an ensemble resizes for them)."""
        blank = np.zeros((1, *self.image_size, 3), dtype=np.uint8)
        runners = [self._pool.take() for _ in range(self._runners)]
        largest = 1 if self._side_by_side else max(map(len, SERVED_VIEWS.values()))
        try:
            for runner in {id(runner): runner for runner in runners}.values():  # a shared session once
                for rows in range(1, largest + 1):
                    self._run(runner, np.repeat(blank, rows, axis=0))
        finally:
            for runner in runners:
                self._pool.give_back(runner)
