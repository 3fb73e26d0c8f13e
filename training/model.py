"""The classifier: preprocessing, backbone and head; which layers train."""

import re
from collections.abc import Sequence
from functools import partial

import keras
import numpy as np

from training.backbones.catalog import BackboneSpec, build_backbone, get_spec
from training.config import TrainConfig

# The pooled backbone features, before the head's normalisation and dropout.
FEATURES_LAYER = "head_pool"
# Bilinear pooling's 1x1 convolution from the backbone's channels to ``bilinear_dim`` (its PCA at first).
PROJECTION_LAYER = "bilinear_projection"
# A layer's block: keras.applications names block layers "block2a_expand_conv"
# (EfficientNet) or "block_13_expand" (MobileNetV2), the last conv "top_conv".
_BLOCK = re.compile(r"^(block_?\d+[a-z]?|stem|top)_")


def build_classifier(config: TrainConfig, num_classes: int) -> tuple[keras.Model, keras.Model]:
    """Backbone plus head, as in the Keras transfer-learning guide
    (keras.io/guides/transfer_learning): global average pooling (or
    ``bilinear_features`` with ``pooling: bilinear``), BatchNormalization,
    dropout, dense.

    Args:
        config: ``training.config.TrainConfig`` (backbone, weights, alpha,
            multiscale_sides, pooling, bilinear_dim, dropout).
        num_classes: number of output classes.

    Returns:
        ``(model, backbone)``: ``model`` maps float32 RGB pixels in ``[0, 255]``,
        shape ``(batch, height, width, 3)`` of any size (so that stages can
        change the image size: progressive resizing), to float32 logits
        ``(batch, num_classes)``, float32 also under mixed precision; its
        layer ``FEATURES_LAYER`` gives the pooled backbone features
        ``(batch, channels)`` the known-model test uses; ``backbone`` is the
        inner feature extractor, frozen.

    Raises:
        ValueError, training.backbones.catalog.WeightsUnavailableError: see
            ``training.backbones.catalog.build_backbone``.
    """
    spec, backbone = frozen_backbone(config)
    inputs = keras.Input((None, None, 3), name="pixels")
    pixels = keras.layers.Lambda(spec.preprocess_input, name="preprocess_input")(inputs)
    if config.pooling == "bilinear":
        x = bilinear_features(backbone(pixels), config.bilinear_dim)
    else:
        x = pooled_features(backbone, pixels, config.multiscale_sides)
    # Started from the probe, head_bn is the probe's fixed standardisation: trained, it would standardise by each
    # batch's statistics, which the probe's weights were not fitted on (Stanford Cars, bilinear features: the
    # validation accuracy fell from the probe's 0.757 to 0.195 in the first epoch).
    x = keras.layers.BatchNormalization(name="head_bn", trainable=config.head_init != "probe")(x)
    x = keras.layers.Dropout(config.dropout, name="head_dropout")(x)
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(x)
    return keras.Model(inputs, logits, name=f"{config.backbone}_classifier"), backbone


def frozen_backbone(config: TrainConfig) -> tuple[BackboneSpec, keras.Model]:
    """``config``'s backbone (name, weights, alpha), any input size, every layer frozen, with its spec.

    Raises:
        ValueError, training.backbones.catalog.WeightsUnavailableError: see
            ``training.backbones.catalog.build_backbone``.
    """
    backbone = build_backbone(config.backbone, config.weights, None, config.alpha)
    backbone.trainable = False
    return get_spec(config.backbone), backbone


def pooled_features(backbone: keras.Model, pixels: keras.KerasTensor, sides: Sequence[int] = ()) -> keras.KerasTensor:
    """The backbone's globally average-pooled features, as layer ``FEATURES_LAYER``.

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


def bilinear_features(maps: keras.KerasTensor, dim: int) -> keras.KerasTensor:
    """Bilinear (second-order) pooling of a feature map, as layer ``FEATURES_LAYER``:
    the outer product of each location's channel vector with itself, averaged over the
    locations, then signed square root and L2 normalisation (Lin, RoyChowdhury & Maji
    2015, "Bilinear CNN Models for Fine-grained Visual Recognition", sec. 3). It keeps
    which parts co-occur, which global average pooling blurs: the difference between
    two years of one model is a grille or a lamp. The map is first projected to ``dim``
    channels by the 1x1 convolution ``PROJECTION_LAYER`` (set to the PCA of the
    training photos' maps by ``training.fitting.probe.fit_projection``), and only the upper
    triangle of the symmetric matrix is kept: 8,256 features at ``dim`` 128 instead of
    Lite0's 1280 * 1281 / 2.

    Args:
        maps: the backbone's output ``(batch, h, w, channels)``.
        dim: projected channels; the features have ``dim * (dim + 1) / 2`` entries.

    Returns:
        ``(batch, dim * (dim + 1) // 2)`` float32, unit L2 norm.
    """
    projected = keras.layers.Conv2D(dim, 1, name=PROJECTION_LAYER)(maps)
    pooled = keras.layers.Lambda(partial(_signed_sqrt_gram, dim=dim), name="bilinear_pool", dtype="float32")(projected)
    return keras.layers.UnitNormalization(name=FEATURES_LAYER, dtype="float32")(pooled)


def _signed_sqrt_gram(projected: keras.KerasTensor, dim: int) -> keras.KerasTensor:
    """Upper triangle of the location-averaged Gram matrix of ``(batch, h, w, dim)``, signed square root."""
    flat = keras.ops.reshape(keras.ops.cast(projected, "float32"), (keras.ops.shape(projected)[0], -1, dim))
    gram = keras.ops.matmul(keras.ops.transpose(flat, (0, 2, 1)), flat) / keras.ops.cast(keras.ops.shape(flat)[1],
                                                                                        "float32")
    rows, cols = np.triu_indices(dim)
    upper = keras.ops.take(keras.ops.reshape(gram, (-1, dim * dim)), rows * dim + cols, axis=1)
    # The small constant keeps the square root's gradient finite at 0.
    return keras.ops.sign(upper) * keras.ops.sqrt(keras.ops.abs(upper) + 1e-12)


def set_head(model: keras.Model, mean: np.ndarray, variance: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> None:
    """Set the head to a fitted linear classifier on standardised features:
    ``head_bn`` standardises with ``mean`` and ``variance`` (gamma 1, beta 0;
    its epsilon 1e-3 aside, scikit-learn's ``StandardScaler``), ``logits``
    applies ``kernel`` and ``bias``.

    Args:
        model: from ``build_classifier``.
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
        backbone: the ``keras.Model`` returned by ``build_classifier``.
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
