"""The served model on LiteRT (``ai-edge-litert``): its float32 ``model.tflite``, no TensorFlow.

``python -m training.convert`` writes ``model.tflite`` and ``metadata.json``
beside the SavedModel and checks on real photos that both give the same
answers. The ``.tflite`` has the SavedModel's ``serving_default`` signature
less the resize: ``images`` ``uint8 (batch, height, width, 3)`` at the model's
input size (the service resizes before the model) -> ``logits``,
``probabilities`` ``float32 (batch, num_classes)`` and ``features``
``float32 (batch, F)``. LiteRT runs it on XNNPACK, one core per interpreter,
and releases the GIL while it runs.
"""

import io
import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from wurlitzer import pipes

from inference.contract import OUTPUTS
from inference.runtime import FIX, TFLITE_FILENAME, ModelLoadError, ServedModel, read_metadata, require_model
from inference.tta import SERVED_VIEWS

log = logging.getLogger("carclf.litert")


def load_interpreter(model: bytes, threads: int = 1) -> Any:
    """A LiteRT interpreter of the ``.tflite`` bytes ``model``, its signature checked.

    Args:
        model: the ``.tflite`` file's contents, ``bytes`` (shared by every
            interpreter of a process: read once).
        threads: CPU threads per forward pass.

    Returns:
        the ``serving_default`` signature runner.

    Raises:
        ValueError: not a ``.tflite`` flatbuffer, or another signature (the
            message says which).
    """
    interpreter = Interpreter(model_content=model, num_threads=threads)
    signature = interpreter.get_signature_list().get("serving_default", {})
    if signature.get("inputs") != ["images"] or set(signature.get("outputs", ())) != set(OUTPUTS):
        raise ValueError(f"its signatures are {interpreter.get_signature_list()}, not 'serving_default' from "
                         f"'images' to {list(OUTPUTS)}")
    return interpreter.get_signature_runner("serving_default")


class FifoPool:
    """Objects lent to one thread at a time, in the order the threads asked.

    A queue hands a returned object to whichever thread asks first, and a
    thread that is already running asks before a blocked one wakes up: with
    8 serving threads and one interpreter on one core, some requests waited
    13-15 s while the others went round (``benchmarks/service.py`` under
    ``taskset -c 0``, p99 at 8 clients). Here a returned object goes straight
    to the thread that has waited longest.

    Args:
        items: the objects to lend (interpreters).
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


class LiteRTClassifier(ServedModel):
    """A car-model classifier backed by ``model.tflite`` (see the module docstring): an
    :class:`inference.predictor.Predictor` (through :class:`inference.runtime.ServedModel`).

    LiteRT's interpreters may not be called by two threads at once, and each
    holds its own copy of the packed weights and activations (about 95 MB for
    the shipped model at two rows): the classifier
    keeps ``interpreters`` of them, each used by one serving thread at a time
    (a thread takes an idle one for its forward pass and gives it back, first
    come, first served: :class:`FifoPool`), so
    that memory follows the passes that run side by side, not the threads.
    With several interpreters, a batch of several images (a request's TTA
    views) is split into single images that run side by side on them, from
    a pool of as many threads: a lone request's views take one
    single-threaded pass's time, and each interpreter only ever holds the
    activations of one image.

    Args:
        model_dir: the model folder: ``model.tflite``, ``metadata.json`` and,
            optional, ``metrics.json`` and the calibration.
        interpreters: forward passes that may run side by side.
        threads: CPU threads of each pass (XNNPACK splits one pass's work). For
            the shipped multi-scale model on 2 cores, two single-threaded
            interpreters serve 8 clients about a sixth faster than one of two
            threads (0.90x against 0.76x the bare model), at the same lone
            latency, but hold about 50 MB more (its three backbone passes pack
            the weights three times per interpreter): the service's default
            is the one interpreter, within 250 MB (``gunicorn.conf.py``,
            README "Performance").

    Attributes:
        labels, image_size, metadata, metrics, calibration: as
            :class:`inference.runtime.ServedModel`.

    Raises:
        inference.runtime.ModelNotFoundError: no ``model.tflite`` or ``metadata.json``.
        inference.runtime.ModelLoadError: either is unreadable, or the
            ``.tflite`` is not this project's (message: the file and the fix).
        ValueError: ``calibration.json`` is malformed or names other labels.
    """

    def __init__(self, model_dir: Path | str, interpreters: int = 1, threads: int = 1) -> None:
        model_dir = Path(model_dir)
        require_model(model_dir, "litert")
        self.labels, self.image_size, self.metadata = read_metadata(model_dir)
        self._load_beside(model_dir)
        path = model_dir / TFLITE_FILENAME
        model = path.read_bytes()
        try:
            runners = [load_interpreter(model, threads) for _ in range(interpreters)]
        except ValueError as error:
            raise ModelLoadError(f"{path} is not a model of this project ({error}); write it again with "
                                 f"'python -m training.convert {model_dir}'. {FIX}") from None
        self._pool = FifoPool(runners)
        self._interpreters = interpreters
        self._side_by_side = ThreadPoolExecutor(interpreters, "litert") if interpreters > 1 else None

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the model on a batch, on an idle interpreter (waiting for one when all are
        busy); with several interpreters, one image per pass, side by side.

        Args:
            images: ``uint8`` array ``(batch, height, width, 3)``, RGB, of :attr:`image_size`.

        Returns:
            ``(logits, probabilities, features)``: ``float32`` arrays
            ``(batch, num_classes)``, ``(batch, num_classes)`` and ``(batch, F)``.

        Raises:
            ValueError: images of another size than :attr:`image_size`.
        """
        if images.shape[1:3] != self.image_size:
            raise ValueError(f"images of {images.shape[1:3]} pixels; the model takes {self.image_size}")
        if self._side_by_side is None or len(images) == 1:
            return self._forward(images)
        passes = [self._side_by_side.submit(self._forward, images[row:row + 1]) for row in range(len(images))]
        logits, probabilities, features = (np.concatenate(rows) for rows in zip(*(done.result() for done in passes)))
        return logits, probabilities, features

    def _forward(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`predict`'s outputs for ``images`` in one pass, on an idle interpreter."""
        runner = self._pool.take()
        try:
            outputs = runner(images=np.ascontiguousarray(images, dtype=np.uint8))
        finally:
            self._pool.give_back(runner)
        logits, probabilities, features = (outputs[name] for name in OUTPUTS)
        return logits, probabilities, features

    def warm_up(self, image_size: tuple[int, int] | None = None) -> None:
        """Run every interpreter once at each batch size a service request
        meets (the views of a TTA mode, :data:`inference.tta.SERVED_VIEWS`; one
        image with several interpreters, which split batches), so
        that no request pays for allocating tensors and XNNPACK's packing of
        the weights. ``image_size`` is ignored: the interpreters take
        :attr:`image_size` only (an ensemble resizes for them)."""
        blank = np.zeros((1, *self.image_size, 3), dtype=np.uint8)
        runners = [self._pool.take() for _ in range(self._interpreters)]
        largest = 1 if self._side_by_side else max(map(len, SERVED_VIEWS.values()))
        # A process's first forward pass prints "INFO: Created TensorFlow Lite XNNPACK delegate for
        # CPU." from C++ straight to stderr, which no setting turns off: captured at the file
        # descriptor and logged, so that the service's log stays one JSON object per line.
        printed = io.StringIO()
        try:
            with pipes(stdout=None, stderr=printed):
                for runner in runners:
                    for rows in range(1, largest + 1):
                        runner(images=np.repeat(blank, rows, axis=0))
        finally:
            for runner in runners:
                self._pool.give_back(runner)
            for line in printed.getvalue().splitlines():
                log.info(line)
