"""Several SavedModels as one :class:`inference.predictor.Predictor`: their probabilities are averaged."""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.classifier import Classifier
from inference.contract import model_input
from inference.images import DEFAULT_MAX_PIXELS


class LabelMismatchError(ValueError):
    """The models of an ensemble do not share the same labels in the same order."""


class Ensemble:
    """Averages the probabilities of SavedModels that share their label list.

    Composed of one :class:`inference.classifier.Classifier` per model; each
    resizes images to its own input size inside its SavedModel, so members of
    different input sizes (e.g. 224 and 300 px) mix freely. An ensemble of one
    model answers exactly as that model's :class:`Classifier`.

    Args:
        model_dirs: SavedModel directories, in order.
        options: :class:`Classifier` keyword arguments (dynamic batching) for every member.

    Attributes:
        members: the member :class:`Classifier` objects, in the given order.
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
        inference.classifier.ModelNotFoundError: a directory holds no SavedModel.
        LabelMismatchError: the members' labels differ (names or order).
    """

    def __init__(self, model_dirs: Sequence[Path | str], **options: Any) -> None:
        model_dirs = [str(path) for path in model_dirs]
        if not model_dirs:
            raise ValueError("an ensemble needs at least one model directory")
        self.members = [Classifier(path, **options) for path in model_dirs]
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

    def decode(self, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_full_pixels: int | None = None) -> np.ndarray:
        """Encoded bytes as the input of every member (:func:`inference.contract.model_input` at
        :attr:`image_size`): ``uint8 (height, width, 3)``; raises ``ImageDecodeError``."""
        return model_input(data, self.image_size, max_pixels, max_full_pixels)

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
        logits, probabilities, features = zip(*(member.predict(images) for member in self.members))
        return (np.stack(logits).mean(axis=0, dtype=np.float32), np.stack(probabilities).mean(axis=0, dtype=np.float32),
                np.concatenate(features, axis=1))

    def warm_up(self) -> None:
        """Warm every member up (:meth:`Classifier.warm_up`) on images of the ensemble's :attr:`image_size`."""
        for member in self.members:
            member.warm_up(self.image_size)


def open_model(model_dirs: Path | str | Sequence[Path | str], **options: Any) -> Classifier | Ensemble:
    """The predictor of one SavedModel directory (a :class:`Classifier`) or of several (an :class:`Ensemble`).

    Args:
        model_dirs: a directory, several joined by ``os.pathsep`` (as in ``CARCLF_MODEL_DIR``), or a list.
        options: :class:`Classifier` keyword arguments (dynamic batching).

    Raises:
        As :class:`Ensemble`.
    """
    if isinstance(model_dirs, (str, os.PathLike)):
        model_dirs = str(model_dirs).split(os.pathsep)
    return Classifier(model_dirs[0], **options) if len(model_dirs) == 1 else Ensemble(model_dirs, **options)
