"""Several SavedModels as one classifier: their probabilities are averaged."""

import numpy as np

from inference.classifier import Classifier


class LabelMismatchError(ValueError):
    """The models of an ensemble do not share the same labels in the same order."""


class Ensemble(Classifier):
    """Averages the probabilities of SavedModels that share their label list.

    Each member resizes images to its own input size inside its SavedModel,
    so members of different input sizes (e.g. 224 and 300 px) mix freely. An
    ensemble of one model behaves exactly as that model's :class:`Classifier`;
    ``classify``, ``decode``, ``top_k`` and ``warm_up`` work as there.

    Attributes:
        members: the member :class:`Classifier` objects, in the given order.
        labels: the shared class names.
        image_size: the largest member input ``(height, width)``, so JPEGs are
            decoded (draft mode) large enough for every member.
        metadata: ``{"members": [member metadata...]}``, or the single
            member's metadata for an ensemble of one.

    Raises:
        ValueError: no model directory given.
        inference.classifier.ModelNotFoundError: a directory holds no SavedModel.
        LabelMismatchError: the members' labels differ (names or order).
    """

    def __init__(self, model_dirs):  # pylint: disable=super-init-not-called -- members load the SavedModels
        model_dirs = [str(path) for path in model_dirs]
        if not model_dirs:
            raise ValueError("an ensemble needs at least one model directory")
        self.members = [Classifier(path) for path in model_dirs]
        first = self.members[0]
        for path, member in zip(model_dirs[1:], self.members[1:]):
            if member.labels != first.labels:
                raise LabelMismatchError(
                    f"models disagree on labels: '{model_dirs[0]}' has {first.labels} but '{path}' has "
                    f"{member.labels}; an ensemble needs the same labels in the same order"
                )
        self.labels = first.labels
        self.image_size = tuple(int(side) for side in np.max([m.image_size for m in self.members], axis=0))
        self.metadata = first.metadata if len(self.members) == 1 else {"members": [m.metadata for m in self.members]}

    def predict_probabilities(self, images):
        """The members' probabilities for a batch, averaged.

        Args:
            images: ``uint8`` array ``(batch, height, width, 3)``, RGB.

        Returns:
            ``float32`` array ``(batch, num_classes)``, rows summing to 1.
        """
        return np.mean([member.predict_probabilities(images) for member in self.members], axis=0, dtype=np.float32)
