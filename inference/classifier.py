"""Load a SavedModel exported by :mod:`training.export` and classify images."""

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from inference.batching import Batcher
from inference.images import decode_image, resize
from inference.tta import DEFAULT_VIEWS, VIEWS, tta_batch


class ModelNotFoundError(FileNotFoundError):
    """The model directory holds no SavedModel."""


class Classifier:
    """A car-model classifier backed by an exported SavedModel.

    The SavedModel's ``serving_default`` signature takes ``images``: ``uint8``
    ``(batch, height, width, 3)`` RGB of any size and returns ``logits`` and
    ``probabilities``, ``float32`` ``(batch, num_classes)``; its ``metadata``
    signature returns the label names, the input size and a JSON string of
    training facts (see the README's "SavedModel signature").

    The signature is a concrete function (fixed input signature), so no call
    traces or retraces a graph; TensorFlow's kernels (oneDNN) are still built
    the first time each batch size is seen, which :meth:`warm_up` pays.

    Args:
        model_dir: the SavedModel directory.
        batch_size: dynamic batching (:class:`inference.batching.Batcher`):
            calls from concurrent threads are run together in forward passes
            of at most this many rows (images x TTA views); ``0`` runs each
            call on its own.
        batch_wait_ms: how long a call may wait for others to join its batch,
            in milliseconds (with batching).
        batch_threads: batches run side by side (with batching).

    Attributes:
        labels: class names, ``list[str]``, in the order of the outputs.
        image_size: ``(height, width)`` in pixels the model resizes to.
        metadata: ``dict`` read from the SavedModel (backbone, version,
            validation metrics...).

    Raises:
        ModelNotFoundError: ``model_dir`` has no ``saved_model.pb``.
    """

    def __init__(self, model_dir, batch_size=0, batch_wait_ms=0.0, batch_threads=1):
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
        self._largest_batch = max(batch_size, len(VIEWS))  # in rows, for warm_up
        self._batcher = Batcher(self._forward, batch_size, batch_wait_ms / 1000, batch_threads) if batch_size else None

    def predict_probabilities(self, images):
        """Run the model on a batch (sharing a forward pass with concurrent calls when batching).

        Args:
            images: ``uint8`` array ``(batch, height, width, 3)``, RGB.

        Returns:
            ``float32`` array ``(batch, num_classes)`` of probabilities.
        """
        return self._batcher(images) if self._batcher else self._forward(images)

    def _forward(self, images):
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
        """Decode uploaded bytes and resize them to the model's input size.

        JPEGs are decoded in draft mode at the smallest reduction covering the
        input size; resizing before the model (as training does, see
        :func:`training.data.load_image`) makes every image the same shape, so
        that concurrent requests can share a batch.

        Returns:
            ``uint8`` array ``(height, width, 3)`` of :attr:`image_size`, RGB.

        Raises:
            inference.images.ImageDecodeError: the bytes are no usable image.
        """
        height, width = self.image_size
        return resize(decode_image(data, max_pixels=max_pixels, min_size=(width, height)), (width, height))

    def top_k(self, probabilities, k):
        """The ``k`` most probable labels as ``[{"label", "probability"}]``, best first."""
        order = np.argsort(probabilities)[::-1][:k]
        return [{"label": self.labels[i], "probability": float(probabilities[i])} for i in order]

    def warm_up(self):
        """Run the model once at every batch size a request can meet, so that
        none pays the first call's cost (10-50 ms per new size on 2 cores,
        ``benchmarks/bare_model.py`` column "first ms")."""
        blank = np.zeros((1, *self.image_size, 3), dtype=np.uint8)
        for rows in range(1, self._largest_batch + 1):
            self._forward(np.repeat(blank, rows, axis=0))
