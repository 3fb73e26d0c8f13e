"""The predictor protocol: the one type of model the service and the training tools see.

Implemented by ``inference.ort.OnnxRuntimeClassifier`` (``model.onnx`` on
ONNX Runtime, the service's default runtime),
``inference.litert.LiteRTClassifier`` (``model.tflite`` on LiteRT),
``inference.savedmodel.TensorFlowClassifier`` (the SavedModel on
TensorFlow) and ``inference.ensemble.Ensemble`` (several predictors,
averaged); ``inference.loading.load_predictor`` opens one. Images reach
``Predictor.predict`` through ``inference.contract.model_input``
(encoded bytes to the model's input), and ``inference.tta.predict_views``
runs one image's TTA views through it, the one prediction path of the service
and the tools.
"""

from typing import Protocol, runtime_checkable

import numpy as np

from inference.calibration import Calibration


@runtime_checkable
class Predictor(Protocol):
    """A car-model classifier behind any runtime.

    Attributes:
        labels: class names, in the order of the outputs' last axis.
        image_size: ``(height, width)`` in pixels of the images ``predict`` takes.
        metadata: ``dict`` of training facts (name, version, backbone...).
        metrics: ``dict`` from ``metrics.json`` beside the model (validation
            accuracy), empty when absent.
        calibration: ``inference.calibration.Calibration`` from
            ``calibration.json`` beside the model, or ``None`` when absent.
        resizes_input: whether ``predict`` takes images of any size (the
            SavedModel resizes inside) or only of ``image_size`` (ONNX Runtime, LiteRT).
    """

    labels: list[str]
    image_size: tuple[int, int]
    metadata: dict
    metrics: dict
    calibration: Calibration | None
    resizes_input: bool

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the model on a batch.

        Args:
            images: ``uint8`` array ``(batch, height, width, 3)``, RGB, of ``image_size``.

        Returns:
            ``(logits, probabilities, features)``: ``float32`` arrays ``(batch,
            num_classes)``, ``(batch, num_classes)`` (rows summing to 1) and
            ``(batch, F)`` (the features of the known-model test,
            ``inference.calibration``).
        """
        ...

    def warm_up(self, image_size: tuple[int, int] | None = None) -> None:
        """Run the model once at every batch size a service request can meet (the views of
        a TTA mode, ``inference.tta.SERVED_VIEWS``), on images of ``image_size``
        (default ``image_size``; an ensemble's members get the ensemble's), so that no
        request pays a first call's cost."""
        ...
