"""The classifier: preprocessing, backbone and head; which layers train."""

import re
from collections.abc import Sequence
from functools import partial

import keras
import numpy as np

from training.backbones import build_backbone, get_spec
from training.config import TrainConfig

# The pooled backbone features, before the head's normalisation and dropout.
FEATURES_LAYER = "head_pool"
# A layer's block: keras.applications names block layers "block2a_expand_conv"
# (EfficientNet) or "block_13_expand" (MobileNetV2), the last conv "top_conv".
_BLOCK = re.compile(r"^(block_?\d+[a-z]?|stem|top)_")


def build_classifier(config: TrainConfig, num_classes: int) -> tuple[keras.Model, keras.Model]:
    """Backbone plus head, as in the Keras transfer-learning guide
    (keras.io/guides/transfer_learning): global average pooling,
    BatchNormalization, dropout, dense.

    Args:
        config: :class:`training.config.TrainConfig` (backbone, weights, alpha,
            dropout).
        num_classes: number of output classes.

    Returns:
        ``(model, backbone)``: ``model`` maps float32 RGB pixels in ``[0, 255]``,
        shape ``(batch, height, width, 3)`` of any size (so that stages can
        change the image size: progressive resizing), to float32 logits
        ``(batch, num_classes)``, float32 also under mixed precision; its
        layer :data:`FEATURES_LAYER` gives the pooled backbone features
        ``(batch, channels)`` the known-model test uses; ``backbone`` is the
        inner feature extractor, frozen.

    Raises:
        ValueError, training.backbones.WeightsUnavailableError: see
            :func:`training.backbones.build_backbone`.
    """
    spec = get_spec(config.backbone)
    backbone = build_backbone(config.backbone, config.weights, None, config.alpha)
    backbone.trainable = False
    inputs = keras.Input((None, None, 3), name="pixels")
    pixels = keras.layers.Lambda(spec.preprocess_input, name="preprocess_input")(inputs)
    x = pooled_features(backbone, pixels, config.multiscale_sides)
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    x = keras.layers.Dropout(config.dropout, name="head_dropout")(x)
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(x)
    return keras.Model(inputs, logits, name=f"{config.backbone}_classifier"), backbone


def pooled_features(backbone: keras.Model, pixels: keras.KerasTensor, sides: Sequence[int] = ()) -> keras.KerasTensor:
    """The backbone's globally average-pooled features, as layer :data:`FEATURES_LAYER`.

    With ``sides``, multi-scale features: the same backbone (shared weights)
    also sees ``pixels`` downscaled to each ``side x side`` inside the graph,
    and the pooled features of every scale are concatenated, the input's
    first (as in multi-scale pooling of CNN features, Gong et al. 2014,
    "Multi-scale Orderless Pooling of Deep Convolutional Activation
    Features"). The resize is bilinear without antialiasing: LiteRT has a
    kernel for it (``RESIZE_BILINEAR``), none for the antialiased one.

    Args:
        backbone: a feature extractor (``keras.Model``), any input size.
        pixels: ``(batch, height, width, 3)`` float32, already normalised for the backbone.
        sides: extra input sides in pixels; empty: one scale.

    Returns:
        ``(batch, channels * (1 + len(sides)))`` float32.
    """
    if not sides:
        return keras.layers.GlobalAveragePooling2D(name=FEATURES_LAYER)(backbone(pixels))
    pooled = [keras.layers.GlobalAveragePooling2D(name="pool_input")(backbone(pixels))]
    for side in sides:
        # A Lambda, not keras.layers.Resizing: that layer's seed generator would not export into the SavedModel.
        resized = keras.layers.Lambda(partial(keras.ops.image.resize, size=(side, side), interpolation="bilinear"),
                                      name=f"resize_{side}")(pixels)
        pooled.append(keras.layers.GlobalAveragePooling2D(name=f"pool_{side}")(backbone(resized)))
    return keras.layers.Concatenate(name=FEATURES_LAYER)(pooled)


def set_head(model: keras.Model, mean: np.ndarray, variance: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> None:
    """Set the head to a fitted linear classifier on standardised features:
    ``head_bn`` standardises with ``mean`` and ``variance`` (gamma 1, beta 0;
    its epsilon 1e-3 aside, scikit-learn's ``StandardScaler``), ``logits``
    applies ``kernel`` and ``bias``.

    Args:
        model: from :func:`build_classifier`.
        mean, variance: ``float32 (F,)``.
        kernel: ``float32 (F, num_classes)``; bias: ``float32 (num_classes,)``.
    """
    model.get_layer("head_bn").set_weights([np.ones_like(mean), np.zeros_like(mean), mean, variance])
    model.get_layer("logits").set_weights([kernel, bias])


def block_of(layer_name: str) -> str:
    """The block a backbone layer belongs to (``block2a``, ``block_13``, ``top``), or the layer's own name."""
    match = _BLOCK.match(layer_name)
    return match.group(1) if match else layer_name


def set_trainable(backbone: keras.Model, unfreeze: float, train_bn: bool = False) -> int:
    """Train the top ``unfreeze`` fraction of the backbone's layers, freeze the rest.

    The boundary moves down to the start of the block it falls in, so that a
    block (expansion, depthwise and projection convolutions and its residual)
    is always trained whole, never half of it.

    BatchNormalization layers stay frozen (and so run in inference mode, with
    their ImageNet statistics) unless ``train_bn``: updating them on small
    batches of a small dataset wrecks the pretrained features (Keras
    transfer-learning guide, "fine-tuning").

    Args:
        backbone: the ``keras.Model`` returned by :func:`build_classifier`.
        unfreeze: fraction in ``[0, 1]`` of layers, counted from the output.
        train_bn: let BatchNormalization layers train too.

    Returns:
        the number of backbone layers set trainable.
    """
    backbone.trainable = True
    layers = backbone.layers
    first = len(layers) - round(unfreeze * len(layers))
    while 0 < first < len(layers) and block_of(layers[first - 1].name) == block_of(layers[first].name):
        first -= 1
    trained = 0
    for index, layer in enumerate(backbone.layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = index >= first and (train_bn or not is_bn)
        trained += layer.trainable
    return trained
