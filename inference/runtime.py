"""What every runtime of the served model shares, without TensorFlow, and the choice between them.

A model folder holds the SavedModel (TensorFlow, :mod:`inference.classifier`)
and, beside it, its float32 conversions ``model.onnx`` (ONNX Runtime,
:mod:`inference.ort`) and ``model.tflite`` (LiteRT, :mod:`inference.litert`)
with ``metadata.json``, written by ``python -m training.convert``. Every
runtime implements the predictor protocol (:mod:`inference.predictor`:
``labels``, ``image_size``, ``decode(bytes)``, ``predict(images) -> (logits,
probabilities, features)``) through :class:`ServedModel`, which adds what the
service needs on top: the model's metadata, metrics, calibration and a
warm-up; ONNX Runtime and LiteRT share :class:`PooledPasses`, their passes
lent first come, first served. Several model folders serve their
:class:`inference.ensemble.Ensemble` (:func:`load_predictor`).

Importing this module imports no runtime: :func:`load_predictor` imports
the chosen runtime only.
"""

import json
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from inference import DEFAULT_RUNTIME, RUNTIMES
from inference.calibration import Calibration
from inference.contract import model_input
from inference.images import DEFAULT_MAX_PIXELS
from inference.tta import SERVED_VIEWS

METADATA_FILENAME = "metadata.json"
TFLITE_FILENAME = "model.tflite"
ONNX_FILENAME = "model.onnx"
# What each runtime loads from a model folder, beside the SavedModel (written by training.convert).
RUNTIME_FILES = {"litert": (TFLITE_FILENAME, METADATA_FILENAME), "onnxruntime": (ONNX_FILENAME, METADATA_FILENAME)}
RUNTIME_NAMES = {"litert": "LiteRT", "onnxruntime": "ONNX Runtime"}
FIX = ("Copy the whole model folder again (the shipped model: 'git checkout -- model/'), or point "
       "CARCLF_MODEL_DIR at a model exported by 'python -m training.train'.")


class ModelNotFoundError(FileNotFoundError):
    """The model directory lacks the file the chosen runtime loads."""


class ModelLoadError(ValueError):
    """A model folder that cannot be served; the message names the file and the fix."""


def require_savedmodel(model_dir: Path | str) -> None:
    """Check that ``model_dir`` holds a SavedModel, cheaply (no TensorFlow load).

    Raises:
        ModelNotFoundError: no ``saved_model.pb`` there.
    """
    if not (Path(model_dir) / "saved_model.pb").is_file():
        raise ModelNotFoundError(
            f"No SavedModel in '{model_dir}' (no saved_model.pb). Train one with "
            "'python -m training.train --data DIR --out DIR' or point CARCLF_MODEL_DIR at one."
        )


def require_model(model_dir: Path | str, runtime: str) -> None:
    """Check that ``model_dir`` holds what ``runtime`` loads, cheaply (nothing imported or read).

    Raises:
        ModelNotFoundError: no ``saved_model.pb`` (``tensorflow``), or no
            ``model.tflite`` (``litert``) or ``model.onnx`` (``onnxruntime``)
            or ``metadata.json`` (the message gives the command that writes them).
        ValueError: ``runtime`` is not one of :data:`RUNTIMES`.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"Unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "tensorflow":
        require_savedmodel(model_dir)
        return
    missing = [name for name in RUNTIME_FILES[runtime] if not (Path(model_dir) / name).is_file()]
    if missing:
        raise ModelNotFoundError(
            f"No {' or '.join(missing)} in '{model_dir}', which the {RUNTIME_NAMES[runtime]} runtime loads. "
            "Write them from the "
            f"SavedModel there with 'python -m training.convert {model_dir}', or serve the SavedModel with "
            "CARCLF_RUNTIME=tensorflow."
        )


def load_predictor(model_dir: Path | str, runtime: str = DEFAULT_RUNTIME, **options: Any) -> "ServedModel":
    """The model of ``model_dir`` on ``runtime``, importing that runtime only.

    Args:
        model_dir: the model folder, or several joined by ``os.pathsep``: their
            :class:`inference.ensemble.Ensemble`, each member on ``runtime``.
        runtime: ``"onnxruntime"`` (:class:`inference.ort.OnnxRuntimeClassifier`),
            ``"litert"`` (:class:`inference.litert.LiteRTClassifier`) or
            ``"tensorflow"`` (:class:`inference.classifier.Classifier`).
        options: ``interpreters`` (passes side by side: LiteRT's interpreters,
            ONNX Runtime's runs of its one session) and ``interpreter_threads``
            (CPU threads of each pass) for LiteRT and ONNX Runtime;
            ``batch_size``, ``batch_wait_ms``, ``batch_threads`` for
            TensorFlow; the other runtimes' are ignored.

    Raises:
        ModelNotFoundError, ModelLoadError: see :func:`require_model` and the classes.
        ValueError: an unknown runtime.
        inference.ensemble.LabelMismatchError: an ensemble's members have other labels.
    """
    model_dirs = str(model_dir).split(os.pathsep)
    if len(model_dirs) > 1:
        from inference.ensemble import Ensemble

        return Ensemble(model_dirs, runtime, **options)
    require_model(model_dir, runtime)
    passes, threads = options.get("interpreters", 1), options.get("interpreter_threads", 1)
    if runtime == "onnxruntime":
        from inference.ort import OnnxRuntimeClassifier

        return OnnxRuntimeClassifier(model_dir, passes, threads)
    if runtime == "litert":
        from inference.litert import LiteRTClassifier

        return LiteRTClassifier(model_dir, passes, threads)
    from inference.classifier import Classifier

    return Classifier(model_dir, **{key: value for key, value in options.items() if not key.startswith("interpreter")})


def read_metadata(model_dir: Path | str) -> tuple[list[str], tuple[int, int], dict]:
    """``metadata.json`` of ``model_dir``: what the SavedModel's ``metadata`` signature returns.

    Returns:
        ``(labels, image_size, metadata)``: ``list[str]``, ``(height, width)``
        and the ``dict`` of training facts (name, version, backbone...).

    Raises:
        ModelLoadError: the file is unreadable or lacks a field.
    """
    path = Path(model_dir) / METADATA_FILENAME
    try:
        facts = json.loads(path.read_text())
        height, width = (int(side) for side in facts["image_size"])
        return list(facts["labels"]), (height, width), dict(facts["metadata"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(f"{path} could not be read ({error}). {FIX}") from None


def write_metadata(model_dir: Path | str, labels: list[str], image_size: tuple[int, int], metadata: dict) -> None:
    """Write ``metadata.json`` into ``model_dir`` (read by :func:`read_metadata`).

    Args:
        labels: class names in output order.
        image_size: ``(height, width)`` the model takes.
        metadata: JSON-ready ``dict`` of training facts.
    """
    facts = {"labels": list(labels), "image_size": [int(side) for side in image_size], "metadata": metadata}
    (Path(model_dir) / METADATA_FILENAME).write_text(json.dumps(facts, indent=2) + "\n")


class ServedModel:
    """What the service serves, on any runtime: an :class:`inference.predictor.Predictor`
    with the model's metadata, metrics, calibration and a warm-up. Subclasses set
    :attr:`labels`, :attr:`image_size` and :attr:`metadata`, call :meth:`_load_beside`
    (single models) and implement :meth:`predict` and :meth:`warm_up`.

    Attributes:
        labels: class names, ``list[str]``, in the order of the outputs.
        image_size: ``(height, width)`` in pixels the model takes.
        metadata: ``dict`` of training facts (name, version, backbone...).
        metrics: ``dict`` from ``metrics.json`` beside the model (validation
            accuracy), empty when absent.
        calibration: :class:`inference.calibration.Calibration` from
            ``calibration.json`` beside it, or ``None`` when absent.
        resizes_input: whether :meth:`predict` takes images of any size (the
            SavedModel resizes inside) or only of :attr:`image_size` (ONNX Runtime, LiteRT).
    """

    labels: list[str]
    image_size: tuple[int, int]
    metadata: dict
    metrics: dict
    calibration: Calibration | None
    resizes_input = False

    def _load_beside(self, model_dir: Path | str) -> None:
        """Read ``metrics.json`` and the calibration from ``model_dir``, once :attr:`labels` is set.

        Raises:
            ValueError: ``calibration.json`` is malformed or names other labels.
        """
        metrics_path = Path(model_dir) / "metrics.json"
        self.metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        self.calibration = Calibration.load(model_dir)
        if self.calibration is not None and self.calibration.labels != self.labels:
            raise ValueError(f"{model_dir}/calibration.json was fitted for other labels; rerun training.calibrate")

    def decode(self, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_full_pixels: int | None = None) -> np.ndarray:
        """Uploaded bytes as the model's input (:func:`inference.contract.model_input`, as
        training reads its photos): every image the same shape, so that concurrent requests
        can share a batch. ``max_pixels`` and ``max_full_pixels`` are
        :func:`inference.images.decode_image`'s limits.

        Returns:
            ``uint8`` array ``(height, width, 3)`` of :attr:`image_size`, RGB.

        Raises:
            inference.images.ImageDecodeError: the bytes are no usable image.
        """
        return model_input(data, self.image_size, max_pixels, max_full_pixels)

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the model on a batch (:meth:`inference.predictor.Predictor.predict`)."""
        raise NotImplementedError

    def warm_up(self, image_size: tuple[int, int] | None = None) -> None:
        """Run the model once at every batch size a service request can meet (the views of
        a TTA mode, :data:`inference.tta.SERVED_VIEWS`), on images of ``image_size``
        (default :attr:`image_size`; an ensemble's members get the ensemble's)."""
        raise NotImplementedError


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


class PooledPasses(ServedModel):
    """A :class:`ServedModel` whose forward passes run on a few runners lent
    first come, first served (:class:`FifoPool`), so that memory follows the
    passes that run side by side, not the serving threads. With several
    runners, a batch of several images (a request's TTA views) is split into
    single images that run side by side, from a pool of as many threads: a
    lone request's views take one single-threaded pass's time, and each pass
    only ever holds the activations of one image. Subclasses call
    :meth:`_open` with what makes their runners and implement :meth:`_run`.

    Attributes:
        labels, image_size, metadata, metrics, calibration: as
            :class:`ServedModel`, read from the model folder by :meth:`_open`.
    """

    _pool: FifoPool
    _runners: int
    _side_by_side: ThreadPoolExecutor | None

    def _open(self, model_dir: Path, runtime: str, runners: Callable[[Path], list[Any]]) -> None:
        """Read ``model_dir``'s metadata, metrics and calibration, and lend the runners that
        ``runners`` makes of its ``runtime`` model file (one per pass that may run at a time).

        Raises:
            ModelNotFoundError: no model file or ``metadata.json``.
            ModelLoadError: either is unreadable, or ``runners`` raised ``ValueError`` (not a
                model of this project: the message names the file and the fix).
            ValueError: ``calibration.json`` is malformed or names other labels.
        """
        require_model(model_dir, runtime)
        self.labels, self.image_size, self.metadata = read_metadata(model_dir)
        self._load_beside(model_dir)
        path = model_dir / RUNTIME_FILES[runtime][0]
        try:
            lent = runners(path)
        except ValueError as error:
            raise ModelLoadError(f"{path} is not a model of this project ({error}); write it again with "
                                 f"'python -m training.convert {model_dir}'. {FIX}") from None
        self._pool = FifoPool(lent)
        self._runners = len(lent)
        self._side_by_side = ThreadPoolExecutor(len(lent), "passes") if len(lent) > 1 else None

    def _run(self, runner: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One forward pass of ``images`` (``uint8``, contiguous) on ``runner``: :meth:`predict`'s outputs."""
        raise NotImplementedError

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the model on a batch, on an idle runner (waiting for one when all are
        busy); with several runners, one image per pass, side by side.

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
        """:meth:`predict`'s outputs for ``images`` in one pass, on an idle runner."""
        runner = self._pool.take()
        try:
            return self._run(runner, np.ascontiguousarray(images, dtype=np.uint8))
        finally:
            self._pool.give_back(runner)

    def warm_up(self, image_size: tuple[int, int] | None = None) -> None:
        """Run every distinct runner once at each batch size a service request meets (the
        views of a TTA mode, :data:`inference.tta.SERVED_VIEWS`; one image with
        several runners, which split batches), so that no request pays for
        allocating tensors or packing the weights. ``image_size`` is ignored: the
        runners take :attr:`image_size` only (an ensemble resizes for them)."""
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
