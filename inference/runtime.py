"""What every runtime of the served model shares, without TensorFlow, and the choice between them.

A model folder holds the SavedModel (TensorFlow, :mod:`inference.classifier`)
and, beside it, its float32 LiteRT conversion ``model.tflite`` with
``metadata.json`` (:mod:`inference.litert`, written by
``python -m training.convert``). Both runtimes implement the predictor
protocol (``labels``, ``image_size``, ``decode(bytes)``, ``predict(images) ->
(logits, probabilities, features)``) through :class:`ServedModel`, which adds
what the service needs on top: TTA views, the known-model test, top-k.

Importing this module imports neither TensorFlow nor LiteRT:
:func:`load_predictor` imports the chosen runtime only.
"""

import json
from pathlib import Path

import numpy as np

from inference import DEFAULT_RUNTIME, RUNTIMES
from inference.calibration import Calibration
from inference.images import decode_image, resize
from inference.tta import DEFAULT_VIEWS, tta_batch

METADATA_FILENAME = "metadata.json"
TFLITE_FILENAME = "model.tflite"
FIX = ("Copy the whole model folder again (the shipped model: 'git checkout -- model/'), or point "
       "CARCLF_MODEL_DIR at a model exported by 'python -m training.train'.")


class ModelNotFoundError(FileNotFoundError):
    """The model directory lacks the file the chosen runtime loads."""


class ModelLoadError(ValueError):
    """A model folder that cannot be served; the message names the file and the fix."""


def require_savedmodel(model_dir):
    """Check that ``model_dir`` holds a SavedModel, cheaply (no TensorFlow load).

    Raises:
        ModelNotFoundError: no ``saved_model.pb`` there.
    """
    if not (Path(model_dir) / "saved_model.pb").is_file():
        raise ModelNotFoundError(
            f"No SavedModel in '{model_dir}' (no saved_model.pb). Train one with "
            "'python -m training.train --data DIR --out DIR' or point CARCLF_MODEL_DIR at one."
        )


def require_model(model_dir, runtime):
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


def load_predictor(model_dir, runtime=DEFAULT_RUNTIME, **options):
    """The model of ``model_dir`` on ``runtime``, importing that runtime only.

    Args:
        model_dir: the model folder.
        runtime: ``"litert"`` (:class:`inference.litert.LiteRTClassifier`) or
            ``"tensorflow"`` (:class:`inference.classifier.Classifier`).
        options: keyword arguments of that class (``interpreters`` for
            LiteRT; ``batch_size``, ``batch_wait_ms``, ``batch_threads`` for
            TensorFlow); the other runtime's are ignored.

    Raises:
        ModelNotFoundError, ModelLoadError: see :func:`require_model` and the classes.
        ValueError: an unknown runtime.
    """
    require_model(model_dir, runtime)
    if runtime == "litert":
        from inference.litert import LiteRTClassifier

        return LiteRTClassifier(model_dir, interpreters=options.get("interpreters", 1))
    from inference.classifier import Classifier

    return Classifier(model_dir, **{key: value for key, value in options.items() if key != "interpreters"})


def read_metadata(model_dir):
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
        return list(facts["labels"]), tuple(int(side) for side in facts["image_size"]), dict(facts["metadata"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(f"{path} could not be read ({error}). {FIX}") from None


def write_metadata(model_dir, labels, image_size, metadata):
    """Write ``metadata.json`` into ``model_dir`` (read by :func:`read_metadata`).

    Args:
        labels: class names in output order.
        image_size: ``(height, width)`` the model takes.
        metadata: JSON-ready ``dict`` of training facts.
    """
    facts = {"labels": list(labels), "image_size": [int(side) for side in image_size], "metadata": metadata}
    (Path(model_dir) / METADATA_FILENAME).write_text(json.dumps(facts, indent=2) + "\n")


class ServedModel:
    """The runtime-independent half of a served model: subclasses set
    :attr:`labels`, :attr:`image_size` and :attr:`metadata`, call
    :meth:`_load_beside` and implement :meth:`predict`.

    Attributes:
        labels: class names, ``list[str]``, in the order of the outputs.
        image_size: ``(height, width)`` in pixels the model takes.
        metadata: ``dict`` of training facts (name, version, backbone...).
        metrics: ``dict`` from ``metrics.json`` beside the model (validation
            accuracy), empty when absent.
        calibration: :class:`inference.calibration.Calibration` from
            ``calibration.json`` beside it, or ``None`` when absent.
    """

    labels: list
    image_size: tuple
    metadata: dict

    def _load_beside(self, model_dir):
        """Read ``metrics.json`` and the calibration from ``model_dir``, once :attr:`labels` is set.

        Raises:
            ValueError: ``calibration.json`` is malformed or names other labels.
        """
        metrics_path = Path(model_dir) / "metrics.json"
        self.metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        self.calibration = Calibration.load(model_dir)
        if self.calibration is not None and self.calibration.labels != self.labels:
            raise ValueError(f"{model_dir}/calibration.json was fitted for other labels; rerun training.calibrate")

    def predict(self, images):
        """Run the model on a batch.

        Args:
            images: ``uint8`` array ``(batch, height, width, 3)``, RGB, of
                :attr:`image_size` (:meth:`decode` gives that size).

        Returns:
            ``(logits, probabilities, features)``: ``float32`` arrays
            ``(batch, num_classes)``, ``(batch, num_classes)`` and
            ``(batch, F)`` (pooled backbone features, :mod:`inference.calibration`).
        """
        raise NotImplementedError

    def predict_probabilities(self, images):
        """Probabilities of a batch: ``float32 (batch, num_classes)`` (see :meth:`predict`)."""
        return self.predict(images)[1]

    def predict_views(self, image, views=DEFAULT_VIEWS):
        """Logits, probabilities and features of one image, each averaged over its TTA views.

        Args:
            image: ``uint8`` array ``(height, width, 3)``, RGB.
            views: TTA view names (:data:`inference.tta.VIEWS`), run as one
                batch; ``("original",)`` turns TTA off.

        Returns:
            ``(logits, probabilities, features)``, ``float32`` arrays
            ``(num_classes,)``, ``(num_classes,)`` and ``(F,)``; the
            probabilities sum to 1.
        """
        return tuple(outputs.mean(axis=0) for outputs in self.predict(tta_batch(image, views)))

    def classify(self, image, views=DEFAULT_VIEWS):
        """Probabilities of one image averaged over its TTA views: ``float32 (num_classes,)``.

        Goes through :meth:`predict_probabilities`, which
        :class:`inference.ensemble.Ensemble` overrides.
        """
        return self.predict_probabilities(tta_batch(image, views)).mean(axis=0)

    def known_model(self, features, views=DEFAULT_VIEWS):
        """Whether the top class is trustworthy (:mod:`inference.calibration`).

        Args:
            features: ``float32 (F,)``, averaged over ``views``.
            views: the TTA views the logits came from.

        Returns:
            ``(known, distance)``: ``bool`` (distance within the calibrated
            threshold) and the cosine distance to the nearest training photo as ``float``;
            ``(None, None)`` when the model has no calibration for ``views``.
        """
        test = self.calibration.test(views) if self.calibration else None
        if test is None:
            return None, None
        distance = float(test.distances(features))
        return distance <= test.threshold, distance

    def decode(self, data, max_pixels, max_full_pixels=None):
        """Decode uploaded bytes and resize them to the model's input size.

        JPEGs are decoded in draft mode at the smallest reduction covering the
        input size; resizing before the model (as training does, see
        :func:`training.data.load_image`) makes every image the same shape, so
        that concurrent requests can share a batch. ``max_pixels`` and
        ``max_full_pixels`` are :func:`inference.images.decode_image`'s limits.

        Returns:
            ``uint8`` array ``(height, width, 3)`` of :attr:`image_size`, RGB.

        Raises:
            inference.images.ImageDecodeError: the bytes are no usable image.
        """
        height, width = self.image_size
        pixels = decode_image(data, max_pixels=max_pixels, min_size=(width, height), max_full_pixels=max_full_pixels)
        return resize(pixels, (width, height))

    def top_k(self, probabilities, k):
        """The ``k`` most probable labels as ``[{"label", "probability"}]``, best first."""
        order = np.argsort(probabilities)[::-1][:k]
        return [{"label": self.labels[i], "probability": float(probabilities[i])} for i in order]
