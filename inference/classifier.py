"""Load a SavedModel exported by :mod:`training.export` and classify images."""

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from inference.calibration import Calibration
from inference.images import decode_image
from inference.tta import DEFAULT_VIEWS, tta_batch


class ModelNotFoundError(FileNotFoundError):
    """The model directory holds no SavedModel."""


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


class Classifier:
    """A car-model classifier backed by an exported SavedModel.

    The SavedModel's ``serving_default`` signature takes ``images``: ``uint8``
    ``(batch, height, width, 3)`` RGB of any size and returns ``logits`` and
    ``probabilities``, ``float32`` ``(batch, num_classes)``; its ``metadata``
    signature returns the label names, the input size and a JSON string of
    training facts (see the README's "SavedModel signature").

    Attributes:
        labels: class names, ``list[str]``, in the order of the outputs.
        image_size: ``(height, width)`` in pixels the model resizes to.
        metadata: ``dict`` read from the SavedModel (name, version, backbone...).
        metrics: ``dict`` from ``metrics.json`` beside it (validation accuracy),
            empty when absent.
        calibration: :class:`inference.calibration.Calibration` from
            ``calibration.json`` beside it, or ``None`` when absent.

    Raises:
        ModelNotFoundError: ``model_dir`` has no ``saved_model.pb``.
        ValueError: ``calibration.json`` is malformed or names other labels.
    """

    def __init__(self, model_dir):
        model_dir = Path(model_dir)
        require_savedmodel(model_dir)
        self._module = tf.saved_model.load(str(model_dir))
        self._serve = self._module.signatures["serving_default"]
        facts = self._module.signatures["metadata"]()
        self.labels = [label.decode() for label in facts["labels"].numpy()]
        self.image_size = tuple(int(side) for side in facts["image_size"].numpy())
        self.metadata = json.loads(facts["metadata_json"].numpy().decode())
        metrics_path = model_dir / "metrics.json"
        self.metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
        self.calibration = Calibration.load(model_dir)
        if self.calibration is not None and self.calibration.labels != self.labels:
            raise ValueError(f"{model_dir}/calibration.json was fitted for other labels; rerun training.calibrate")

    def predict(self, images):
        """Run the model on a batch.

        Args:
            images: ``uint8`` array ``(batch, height, width, 3)``, RGB.

        Returns:
            ``(logits, probabilities)``, two ``float32`` arrays ``(batch, num_classes)``.
        """
        outputs = self._serve(images=tf.convert_to_tensor(images, dtype=tf.uint8))
        return outputs["logits"].numpy(), outputs["probabilities"].numpy()

    def predict_probabilities(self, images):
        """Probabilities of a batch: ``float32 (batch, num_classes)`` (see :meth:`predict`)."""
        return self.predict(images)[1]

    def predict_views(self, image, views=DEFAULT_VIEWS):
        """Logits and probabilities of one image, each averaged over its TTA views.

        Args:
            image: ``uint8`` array ``(height, width, 3)``, RGB.
            views: TTA view names (:data:`inference.tta.VIEWS`), run as one
                batch; ``("original",)`` turns TTA off.

        Returns:
            ``(logits, probabilities)``, two ``float32`` arrays ``(num_classes,)``;
            the probabilities sum to 1.
        """
        logits, probabilities = self.predict(tta_batch(image, views))
        return logits.mean(axis=0), probabilities.mean(axis=0)

    def classify(self, image, views=DEFAULT_VIEWS):
        """Probabilities of one image averaged over its TTA views: ``float32 (num_classes,)``.

        Goes through :meth:`predict_probabilities`, which
        :class:`inference.ensemble.Ensemble` overrides.
        """
        return self.predict_probabilities(tta_batch(image, views)).mean(axis=0)

    def known_model(self, logits, views=DEFAULT_VIEWS):
        """Whether the top class is trustworthy (:mod:`inference.calibration`).

        Args:
            logits: ``float32 (num_classes,)``, averaged over ``views``.
            views: the TTA views the logits came from.

        Returns:
            ``(known, distance)``: ``bool`` (distance within the calibrated
            threshold) and the squared Mahalanobis distance as ``float``;
            ``(None, None)`` when the model has no calibration for ``views``.
        """
        test = self.calibration.test(views) if self.calibration else None
        if test is None:
            return None, None
        distance = float(test.distances(logits))
        return distance <= test.threshold, distance

    def decode(self, data, max_pixels):
        """Decode uploaded bytes for this model (JPEG draft mode at its input size).

        Raises:
            inference.images.ImageDecodeError: the bytes are no usable image.
        """
        height, width = self.image_size
        return decode_image(data, max_pixels=max_pixels, min_size=(width, height))

    def top_k(self, probabilities, k):
        """The ``k`` most probable labels as ``[{"label", "probability"}]``, best first."""
        order = np.argsort(probabilities)[::-1][:k]
        return [{"label": self.labels[i], "probability": float(probabilities[i])} for i in order]

    def warm_up(self):
        """Run every TTA setting once so the first real request pays no start-up cost."""
        image = np.zeros((*self.image_size, 3), dtype=np.uint8)
        for views in (DEFAULT_VIEWS, DEFAULT_VIEWS[:1]):
            self.classify(image, views)
