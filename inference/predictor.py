"""The predictor protocol: what the service and the training tools need of a model runtime.

Implemented by :class:`inference.ort.OnnxRuntimeClassifier` (``model.onnx`` on
ONNX Runtime, the service's default runtime),
:class:`inference.litert.LiteRTClassifier` (``model.tflite`` on LiteRT),
:class:`inference.classifier.Classifier`
(a TensorFlow SavedModel) and :class:`inference.ensemble.Ensemble` (several
predictors, averaged), each through :class:`inference.runtime.ServedModel`.
Everything else builds on these four members:
:func:`inference.tta.predict_views` runs one image's TTA views through
:meth:`Predictor.predict`, the one prediction path of the service and the tools.
"""

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Predictor(Protocol):
    """A car-model classifier behind any runtime.

    Attributes:
        labels: class names, in the order of the outputs' last axis.
        image_size: ``(height, width)`` in pixels of the images :meth:`predict` takes.
    """

    labels: list[str]
    image_size: tuple[int, int]

    def decode(self, data: bytes, max_pixels: int = ..., max_full_pixels: int | None = None) -> np.ndarray:
        """Encoded image bytes as the model's input (:func:`inference.contract.model_input`).

        Args:
            data: the encoded file.
            max_pixels, max_full_pixels: :func:`inference.images.decode_image`'s limits.

        Returns:
            ``uint8`` array ``(height, width, 3)`` of :attr:`image_size`, RGB.

        Raises:
            inference.images.ImageDecodeError: the bytes are no usable image.
        """
        ...

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the model on a batch.

        Args:
            images: ``uint8`` array ``(batch, height, width, 3)``, RGB, of :attr:`image_size`.

        Returns:
            ``(logits, probabilities, features)``: ``float32`` arrays ``(batch,
            num_classes)``, ``(batch, num_classes)`` (rows summing to 1) and
            ``(batch, F)`` (the features of the known-model test,
            :mod:`inference.calibration`).
        """
        ...
