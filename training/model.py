"""The classifier: preprocessing, backbone and head; which layers train."""

import keras

from training.backbones import build_backbone, get_spec


def build_classifier(config, num_classes):
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
        ``(batch, num_classes)``, float32 also under mixed precision;
        ``backbone`` is the inner feature extractor, frozen.

    Raises:
        ValueError, training.backbones.WeightsUnavailableError: see
            :func:`training.backbones.build_backbone`.
    """
    spec = get_spec(config.backbone)
    backbone = build_backbone(config.backbone, config.weights, None, config.alpha)
    backbone.trainable = False
    inputs = keras.Input((None, None, 3), name="pixels")
    features = backbone(keras.layers.Lambda(spec.preprocess_input, name="preprocess_input")(inputs))
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    x = keras.layers.Dropout(config.dropout, name="head_dropout")(x)
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(x)
    return keras.Model(inputs, logits, name=f"{config.backbone}_classifier"), backbone


def set_trainable(backbone, unfreeze, train_bn=False):
    """Train the top ``unfreeze`` fraction of the backbone's layers, freeze the rest.

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
    first = len(backbone.layers) - round(unfreeze * len(backbone.layers))
    trained = 0
    for index, layer in enumerate(backbone.layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = index >= first and (train_bn or not is_bn)
        trained += layer.trainable
    return trained
