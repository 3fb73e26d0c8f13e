"""Export a trained classifier as a self-contained TensorFlow SavedModel.

Signatures (loadable with ``tf.saved_model.load`` alone, no project code):

- ``serving_default(images)``: ``images`` ``uint8 (batch, height, width, 3)``
  RGB of any size -> ``logits`` and ``probabilities``, ``float32
  (batch, num_classes)``, and ``features``, ``float32 (batch, channels)``: the
  pooled backbone features the known-model test uses
  (:mod:`inference.calibration`). Resizing (bilinear, antialiased) and the
  backbone's normalisation happen inside.
- ``metadata()``: ``labels`` ``string (num_classes,)``, ``image_size``
  ``int32 (2,)`` as (height, width), ``metadata_json`` ``string ()``.
"""

import json

import keras
import tensorflow as tf

from training.model import FEATURES_LAYER


class _ServingModule(tf.Module):
    def __init__(self, model, labels, image_size, metadata):
        super().__init__(name="car_classifier")
        # A fresh Model over the same layers: shares the weights, not the optimizer state.
        self.model = keras.Model(model.inputs, [model.outputs[0], model.get_layer(FEATURES_LAYER).output])
        self.labels = tf.Variable(labels, trainable=False, name="labels")
        self.image_size = tf.Variable([image_size, image_size], trainable=False, name="image_size")
        self.metadata_json = tf.Variable(json.dumps(metadata), trainable=False, name="metadata_json")

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve(self, images):
        pixels = tf.image.resize(tf.cast(images, tf.float32), self.image_size, antialias=True)
        logits, features = self.model(pixels, training=False)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits), "features": tf.cast(features, tf.float32)}

    @tf.function(input_signature=[])
    def describe(self):
        return {
            "labels": tf.identity(self.labels),
            "image_size": tf.identity(self.image_size),
            "metadata_json": tf.identity(self.metadata_json),
        }


def export_savedmodel(model, labels, image_size, metadata, out_dir):
    """Write ``model`` as a SavedModel in ``out_dir``.

    Args:
        model: Keras model mapping float32 pixels ``[0, 255]``
            ``(batch, image_size, image_size, 3)`` to logits, with a
            :data:`training.model.FEATURES_LAYER` layer
            (:func:`training.model.build_classifier`).
        labels: class names in output order, ``list[str]``.
        image_size: square input side in pixels the images are resized to.
        metadata: JSON-serialisable ``dict`` stored in the model (backbone,
            version, metrics...).
        out_dir: target directory (created; existing SavedModel files replaced).
    """
    module = _ServingModule(model, labels, image_size, metadata)
    tf.saved_model.save(
        module, str(out_dir), signatures={"serving_default": module.serve, "metadata": module.describe}
    )
