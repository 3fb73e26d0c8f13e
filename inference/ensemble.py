"""Several models as one :class:`inference.predictor.Predictor`: their probabilities are averaged.

Imports no runtime itself: each member is loaded by :func:`inference.runtime.load_predictor`
on the runtime asked for, so that an ensemble on ONNX Runtime or LiteRT imports no TensorFlow."""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.images import resize
from inference.runtime import ServedModel, load_predictor


class LabelMismatchError(ValueError):
    """The models of an ensemble do not share the same labels in the same order."""


class Ensemble(ServedModel):
    """Averages the probabilities of models that share their label list.

    Composed of one predictor per model (:func:`inference.runtime.load_predictor`);
    a SavedModel resizes images to its own input size inside, and ONNX Runtime and LiteRT
    members are given images resized to theirs, so members of different input sizes (e.g. 224 and
    300 px) mix freely. An ensemble of one model answers exactly as that model.

    Args:
        model_dirs: model directories, in order.
        runtime: the runtime of every member (:data:`inference.RUNTIMES`); the
            training tools' TensorFlow by default.
        options: :func:`inference.runtime.load_predictor` keyword arguments for every member.

    Attributes:
        members: the member predictors, in the given order.
        labels: the shared class names.
        image_size: the largest member input ``(height, width)``, so JPEGs are
            decoded (draft mode) large enough for every member.
        metadata: the single member's metadata; for several, ``{"name": the
            first's, "version": the versions joined by ``+``, "members": [member metadata...]}``.
        metrics: the single member's training metrics; ``{}`` for several.
        calibration: the single member's :class:`inference.calibration.Calibration`;
            ``None`` for several (each member's test measures its own features).

    Raises:
        ValueError: no model directory given.
        inference.runtime.ModelNotFoundError: a directory lacks what ``runtime`` loads.
        LabelMismatchError: the members' labels differ (names or order).
    """

    def __init__(self, model_dirs: Sequence[Path | str], runtime: str = "tensorflow", **options: Any) -> None:
        model_dirs = [str(path) for path in model_dirs]
        if not model_dirs:
            raise ValueError("an ensemble needs at least one model directory")
        self.members = [load_predictor(path, runtime, **options) for path in model_dirs]
        first = self.members[0]
        for path, member in zip(model_dirs[1:], self.members[1:]):
            if member.labels != first.labels:
                raise LabelMismatchError(
                    f"models disagree on labels: '{model_dirs[0]}' has {first.labels} but '{path}' has "
                    f"{member.labels}; an ensemble needs the same labels in the same order"
                )
        self.labels = first.labels
        self.image_size = (max(m.image_size[0] for m in self.members), max(m.image_size[1] for m in self.members))
        alone = len(self.members) == 1
        self.metadata = first.metadata if alone else {
            "name": first.metadata.get("name"),
            "version": "+".join(str(m.metadata.get("version")) for m in self.members),
            "members": [m.metadata for m in self.members],
        }
        self.metrics = first.metrics if alone else {}
        self.calibration = first.calibration if alone else None

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The members' outputs for a batch, combined.

        Args:
            images: ``uint8`` array ``(batch, height, width, 3)``, RGB.

        Returns:
            ``(logits, probabilities, features)``: the members' logits and
            probabilities averaged, ``float32 (batch, num_classes)`` (the
            probabilities' rows sum to 1; the logits are not those of the
            averaged probabilities), and their features side by side,
            ``float32 (batch, sum of the members' F)``.
        """
        logits, probabilities, features = zip(*(member.predict(_sized_for(member, images)) for member in self.members))
        return (np.stack(logits).mean(axis=0, dtype=np.float32), np.stack(probabilities).mean(axis=0, dtype=np.float32),
                np.concatenate(features, axis=1))

    def warm_up(self, image_size: tuple[int, int] | None = None) -> None:
        """Warm every member up on images of the ensemble's :attr:`image_size` (``image_size`` is ignored)."""
        for member in self.members:
            member.warm_up(self.image_size)


def _sized_for(member: ServedModel, images: np.ndarray) -> np.ndarray:
    """``images`` as ``member`` takes them: resized to its input size unless it resizes inside."""
    if member.resizes_input or images.shape[1:3] == member.image_size:
        return images
    height, width = member.image_size
    return np.stack([resize(image, (width, height)) for image in images])


def open_model(model_dirs: Path | str | Sequence[Path | str], runtime: str = "tensorflow",
               **options: Any) -> ServedModel:
    """The predictor of one model directory or the :class:`Ensemble` of several.

    Args:
        model_dirs: a directory, several joined by ``os.pathsep`` (as in ``CARCLF_MODEL_DIR``), or a list.
        runtime: as :class:`Ensemble`.
        options: :func:`inference.runtime.load_predictor` keyword arguments.

    Raises:
        As :class:`Ensemble`.
    """
    if isinstance(model_dirs, (str, os.PathLike)):
        model_dirs = str(model_dirs).split(os.pathsep)
    return load_predictor(model_dirs[0], runtime, **options) if len(model_dirs) == 1 \
        else Ensemble(model_dirs, runtime, **options)
