"""What every runtime of the served model shares, without TensorFlow, and the choice between them.

A model folder holds the SavedModel (TensorFlow, :mod:`inference.classifier`)
and, beside it, its float32 LiteRT conversion ``model.tflite`` with
``metadata.json`` (:mod:`inference.litert`, written by
``python -m training.convert``). Both runtimes implement the predictor
protocol (:mod:`inference.predictor`: ``labels``, ``image_size``,
``decode(bytes)``, ``predict(images) -> (logits, probabilities, features)``)
through :class:`ServedModel`, which adds what the service needs on top: the
model's metadata, metrics, calibration and a warm-up. Several model folders
serve their :class:`inference.ensemble.Ensemble` (:func:`load_predictor`).

Importing this module imports neither TensorFlow nor LiteRT:
:func:`load_predictor` imports the chosen runtime only.
"""

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from inference import DEFAULT_RUNTIME, RUNTIMES
from inference.calibration import Calibration
from inference.contract import model_input
from inference.images import DEFAULT_MAX_PIXELS

METADATA_FILENAME = "metadata.json"
TFLITE_FILENAME = "model.tflite"
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
            ``model.tflite`` or ``metadata.json`` (``litert``; the message
            gives the command that writes them).
        ValueError: ``runtime`` is not one of :data:`RUNTIMES`.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"Unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "tensorflow":
        require_savedmodel(model_dir)
        return
    missing = [name for name in (TFLITE_FILENAME, METADATA_FILENAME) if not (Path(model_dir) / name).is_file()]
    if missing:
        raise ModelNotFoundError(
            f"No {' or '.join(missing)} in '{model_dir}', which the LiteRT runtime loads. Write them from the "
            f"SavedModel there with 'python -m training.convert {model_dir}', or serve the SavedModel with "
            "CARCLF_RUNTIME=tensorflow."
        )


def load_predictor(model_dir: Path | str, runtime: str = DEFAULT_RUNTIME, **options: Any) -> "ServedModel":
    """The model of ``model_dir`` on ``runtime``, importing that runtime only.

    Args:
        model_dir: the model folder, or several joined by ``os.pathsep``: their
            :class:`inference.ensemble.Ensemble`, each member on ``runtime``.
        runtime: ``"litert"`` (:class:`inference.litert.LiteRTClassifier`) or
            ``"tensorflow"`` (:class:`inference.classifier.Classifier`).
        options: keyword arguments of that class (``interpreters`` for
            LiteRT; ``batch_size``, ``batch_wait_ms``, ``batch_threads`` for
            TensorFlow); the other runtime's are ignored.

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
    if runtime == "litert":
        from inference.litert import LiteRTClassifier

        return LiteRTClassifier(model_dir, options.get("interpreters", 1), options.get("interpreter_threads", 1))
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
            SavedModel resizes inside) or only of :attr:`image_size` (LiteRT).
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
