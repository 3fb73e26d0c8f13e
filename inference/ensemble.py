"""Several models as one ``inference.predictor.Predictor``: their probabilities are averaged.

Imports no runtime: the members come loaded (``inference.loading.load_predictor`` opens
several model folders as their ensemble), so that an ensemble on ONNX Runtime or LiteRT imports
no TensorFlow."""

from collections.abc import Sequence

import numpy as np

from inference.images import resize
from inference.predictor import Predictor


class LabelMismatchError(ValueError):
    """The models of an ensemble do not share the same labels in the same order."""


class Ensemble:
    """Averages the probabilities of models that share their label list: an
    ``inference.predictor.Predictor`` of member predictors.

    A SavedModel resizes images to its own input size inside, and ONNX Runtime and LiteRT
    members are given images resized to theirs, so members of different input sizes (e.g. 224 and
    300 px) mix freely. An ensemble of one model answers exactly as that model.

    Args:
        members: ``(folder, predictor)`` pairs, in order: each member and the folder it was
            loaded from (named in errors).

    Attributes:
        members: the member predictors, in the given order.
        labels: the shared class names.
        image_size: the largest member input ``(height, width)``, so JPEGs are
            decoded (draft mode) large enough for every member.
        metadata: the single member's metadata; for several, ``{"name": the
            first's, "version": the versions joined by ``+``, "members": [member metadata...]}``.
        metrics: the single member's training metrics; ``{}`` for several.
        calibration: the single member's ``inference.calibration.Calibration``;
            ``None`` for several (each member's test measures its own features).
        resizes_input: ``False``: ``predict`` takes images of ``image_size``.

    Raises:
        ValueError: no member given.
        LabelMismatchError: the members' labels differ (names or order).
    """

    resizes_input = False

    def __init__(self, members: Sequence[tuple[str, Predictor]]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one model")
        model_dirs = [folder for folder, _ in members]
        self.members = [member for _, member in members]
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
        """Warm every member up on images of the ensemble's ``image_size`` (``image_size`` is ignored)."""
        for member in self.members:
            member.warm_up(self.image_size)


def _sized_for(member: Predictor, images: np.ndarray) -> np.ndarray:
    """``images`` as ``member`` takes them: resized to its input size unless it resizes inside."""
    if member.resizes_input or images.shape[1:3] == member.image_size:
        return images
    height, width = member.image_size
    return np.stack([resize(image, (width, height)) for image in images])
