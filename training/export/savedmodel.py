"""Export a trained classifier as a self-contained TensorFlow SavedModel.

Its signatures are the model contract, ``inference.contract`` (loadable
with ``tf.saved_model.load`` alone, no project code). Images of any size are
resized inside (bilinear, antialiased: a no-op for the input of
``inference.contract.model_input``, already of the model's size), and the
backbone's normalisation happens inside too.
"""

import json
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from inference.contract import INPUT, METADATA_OUTPUTS, METADATA_SIGNATURE, OUTPUTS, SERVING_SIGNATURE
from training.model import FEATURES_LAYER


class _ServingModule(tf.Module):
    def __init__(self, model: keras.Model, labels: list[str], image_size: int, metadata: dict[str, Any]) -> None:
        super().__init__(name="car_classifier")
        # A fresh Model over the same layers: shares the weights, not the optimizer state.
        self.model = keras.Model(model.inputs, [model.outputs[0], model.get_layer(FEATURES_LAYER).output])
        self.labels = tf.Variable(labels, trainable=False, name="labels")
        self.image_size = tf.Variable([image_size, image_size], trainable=False, name="image_size")
        self.metadata_json = tf.Variable(json.dumps(metadata), trainable=False, name="metadata_json")

    # The argument's name is the signature's input name, INPUT.
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT)])
    def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = tf.image.resize(tf.cast(images, tf.float32), self.image_size, antialias=True)
        logits, features = self.model(pixels, training=False)
        return dict(zip(OUTPUTS, (logits, tf.nn.softmax(logits), tf.cast(features, tf.float32))))

    @tf.function(input_signature=[])
    def describe(self) -> dict[str, tf.Tensor]:
        return dict(zip(METADATA_OUTPUTS, map(tf.identity, (self.labels, self.image_size, self.metadata_json))))


def export_savedmodel(
    model: keras.Model, labels: list[str], image_size: int, metadata: dict[str, Any], out_dir: Path | str
) -> None:
    """Write ``model`` as a SavedModel of ``inference.contract`` in ``out_dir``.

    Args:
        model: Keras model mapping float32 pixels ``[0, 255]``
            ``(batch, image_size, image_size, 3)`` to logits, with a
            ``training.model.FEATURES_LAYER`` layer
            (``training.model.build_classifier``).
        labels: class names in output order, ``list[str]``.
        image_size: square input side in pixels the images are resized to.
        metadata: JSON-serialisable ``dict`` stored in the model (backbone,
            version, metrics...).
        out_dir: target directory (created; existing SavedModel files replaced).
    """
    module = _ServingModule(model, labels, image_size, metadata)
    tf.saved_model.save(
        module, str(out_dir), signatures={SERVING_SIGNATURE: module.serve, METADATA_SIGNATURE: module.describe}
    )
