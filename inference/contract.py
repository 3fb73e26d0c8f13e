"""The model contract: what an exported SavedModel takes and gives, and how image bytes become its input.

Written by ``training.export.savedmodel``, read by ``inference.savedmodel.TensorFlowClassifier``
and the benchmarks; docs/runtimes.md describes it for people.

- ``SERVING_SIGNATURE`` takes ``INPUT``, ``uint8 (batch, height, width, 3)``
  RGB, and returns ``OUTPUTS``: ``logits`` and ``probabilities``, ``float32
  (batch, num_classes)``, and ``features``, ``float32 (batch, F)``, the pooled
  backbone features of the known-model test (``inference.calibration``).
- ``METADATA_SIGNATURE`` takes nothing and returns ``METADATA_OUTPUTS``:
  ``labels`` ``string (num_classes,)``, ``image_size`` ``int32 (2,)`` as
  ``(height, width)``, ``metadata_json`` ``string ()``; ``ModelFacts.from_savedmodel`` reads them.

``model_input`` turns encoded bytes into the model's input, the same way
for training photos (``training.data.dataset.load_image``) and uploads
(``app.api``): decoded by
``inference.images.decode_image`` (JPEG draft mode and Pillow's ``reduce``
toward the input size), then one resize to exactly the input size with
Pillow's bilinear filter (``inference.images.resize``), the kernel the
shipped model was trained with. The SavedModel's own resize (bilinear,
antialiased) then meets an image of its size already and changes nothing.
"""

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.images import DEFAULT_MAX_PIXELS, decode_image, resize

SERVING_SIGNATURE = "serving_default"
METADATA_SIGNATURE = "metadata"
INPUT = "images"
OUTPUTS = ("logits", "probabilities", "features")
METADATA_OUTPUTS = ("labels", "image_size", "metadata_json")
# What a SavedModel must have to load: signature -> outputs. ``features`` is not
# required (models exported before the known-model test lack it; the service then fails at warm-up).
SIGNATURES = {SERVING_SIGNATURE: frozenset(OUTPUTS[:2]), METADATA_SIGNATURE: frozenset(METADATA_OUTPUTS)}


@dataclass(frozen=True)
class ModelFacts:
    """What a model says about itself: a SavedModel's ``METADATA_SIGNATURE``
    (``from_savedmodel``), or its conversions' ``metadata.json``
    (``inference.model_folder.read_metadata``).

    Attributes:
        labels: class names, in the order of the outputs.
        image_size: ``(height, width)`` in pixels of the model's input.
        metadata: the training facts (name, version, backbone, weights, photo_hint).
    """

    labels: list[str]
    image_size: tuple[int, int]
    metadata: dict

    @classmethod
    def from_savedmodel(cls, module: Any) -> "ModelFacts":
        """Call the ``METADATA_SIGNATURE`` of a loaded SavedModel (``tf.saved_model.load``'s result)."""
        facts = module.signatures[METADATA_SIGNATURE]()
        return cls(
            labels=[label.decode() for label in facts["labels"].numpy()],
            image_size=(int(facts["image_size"][0]), int(facts["image_size"][1])),
            metadata=json.loads(facts["metadata_json"].numpy().decode()),
        )


def model_input(data: bytes, image_size: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS,
                max_full_pixels: int | None = None) -> np.ndarray:
    """Encoded image bytes as the model's input: decoded, upright, RGB, resized to ``image_size``.

    Args:
        data: the encoded file (``inference.images.FORMATS``).
        image_size: ``(height, width)`` of the model's input.
        max_pixels, max_full_pixels: ``inference.images.decode_image``'s limits.

    Returns:
        ``uint8`` array ``(height, width, 3)``.

    Raises:
        inference.images.ImageDecodeError: the bytes are no usable image.
    """
    height, width = image_size
    pixels = decode_image(data, max_pixels=max_pixels, min_size=(width, height), max_full_pixels=max_full_pixels)
    return resize(pixels, (width, height))
