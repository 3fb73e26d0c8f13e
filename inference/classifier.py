"""Load a SavedModel exported by :mod:`training.export` and classify images."""

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from inference.images import decode_image
from inference.tta import DEFAULT_VIEWS, tta_batch


class ModelNotFoundError(FileNotFoundError):
    """The model directory holds no SavedModel."""


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
        metadata: ``dict`` read from the SavedModel (backbone, version,
            validation metrics...).

    Raises:
        ModelNotFoundError: ``model_dir`` has no ``saved_model.pb``.
    """

    def __init__(self, model_dir):
        model_dir = Path(model_dir)
        if not (model_dir / "saved_model.pb").is_file():
            raise ModelNotFoundError(
                f"No SavedModel in '{model_dir}' (no saved_model.pb). Train one with "
                "'python -m training.train --data DIR --out DIR' or point CARCLF_MODEL_DIR at one."
            )
        self._module = tf.saved_model.load(str(model_dir))
        self._serve = self._module.signatures["serving_default"]
        facts = self._module.signatures["metadata"]()
        self.labels = [label.decode() for label in facts["labels"].numpy()]
        self.image_size = tuple(int(side) for side in facts["image_size"].numpy())
        self.metadata = json.loads(facts["metadata_json"].numpy().decode())

    def predict_probabilities(self, images):
        """Run the model on a batch.

        Args:
            images: ``uint8`` array ``(batch, height, width, 3)``, RGB.

        Returns:
            ``float32`` array ``(batch, num_classes)`` of probabilities.
        """
        outputs = self._serve(images=tf.convert_to_tensor(images, dtype=tf.uint8))
        return outputs["probabilities"].numpy()

    def classify(self, image, views=DEFAULT_VIEWS):
        """Probabilities for one image, averaged over its TTA views.

        Args:
            image: ``uint8`` array ``(height, width, 3)``, RGB.
            views: TTA view names (:data:`inference.tta.VIEWS`), run as one
                batch; ``("original",)`` turns TTA off.

        Returns:
            ``float32`` array ``(num_classes,)`` summing to 1.
        """
        return self.predict_probabilities(tta_batch(image, views)).mean(axis=0)

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
        """Run one TTA batch so the first real request pays no start-up cost."""
        self.classify(np.zeros((*self.image_size, 3), dtype=np.uint8))
