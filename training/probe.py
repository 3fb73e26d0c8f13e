"""The linear probe: logistic regression on the frozen ImageNet backbone's pooled features.

On its own it is the baseline a fine-tuning recipe has to beat (Kornblith et
al. 2019, "Do Better ImageNet Models Transfer Better?", sec. 3, logistic
regression on penultimate features); as the head's starting point it is the
first half of LP-FT (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained
Features and Underperform Out-of-Distribution": linear probe, then fine-tune),
``head_init: probe`` in :class:`training.config.TrainConfig`. Images are
decoded and resized as the service does (:func:`training.data.load_image`);
the features are standardised, then scikit-learn's L2-regularised multinomial
logistic regression is fitted.
"""

import time
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from inference.tta import VIEW_SETS, tta_batch
from training.backbones import build_backbone, get_spec
from training.config import TrainConfig
from training.data import Sample, load_image
from training.model import FEATURES_LAYER, pooled_features, set_head

# Inverse L2 strength on standardised features (scikit-learn's default).
PROBE_C = 1.0


def fit_linear_probe(features: np.ndarray, targets: np.ndarray, num_classes: int) -> Pipeline:
    """Fit the probe.

    Args:
        features: ``float32 (n, F)`` pooled backbone features.
        targets: ``(n,)`` int class indices; every class in ``range(num_classes)`` must occur.
        num_classes: number of classes.

    Returns:
        a fitted scikit-learn pipeline (``StandardScaler``, ``LogisticRegression``).

    Raises:
        ValueError: a class without a photo.
    """
    missing = sorted(set(range(num_classes)) - set(np.unique(targets).tolist()))
    if missing:
        raise ValueError(f"the linear probe needs photos of every class; none of class index(es) {missing}")
    return make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=5000)).fit(features, targets)


def head_weights(probe: Pipeline) -> tuple[np.ndarray, ...]:
    """The probe as the classifier head's weights (:func:`training.model.set_head`).

    Returns:
        ``(mean, variance, kernel, bias)``: the scaler's ``(F,)`` mean and
        variance, the ``(F, num_classes)`` kernel and ``(num_classes,)`` bias
        of the logits, all ``float32``.
    """
    scaler, regression = probe[0], probe[-1]
    return tuple(np.asarray(a, np.float32) for a in (scaler.mean_, scaler.var_, regression.coef_.T,
                                                      regression.intercept_))


def feature_extractor(config: TrainConfig) -> keras.Model:
    """The frozen backbone of ``config`` with global average pooling
    (multi-scale with ``config.multiscale_sides``: :func:`training.model.pooled_features`).

    Returns:
        ``keras.Model`` mapping float32 RGB pixels ``[0, 255]``
        ``(batch, size, size, 3)`` to ``float32 (batch, F)`` features.

    Raises:
        ValueError, training.backbones.WeightsUnavailableError: as
            :func:`training.backbones.build_backbone`.
    """
    spec = get_spec(config.backbone)
    backbone = build_backbone(config.backbone, config.weights, None, config.alpha)
    backbone.trainable = False
    inputs = keras.Input((None, None, 3))
    return keras.Model(inputs, pooled_features(backbone, spec.preprocess_input(inputs), config.multiscale_sides))


def view_features(
    extractor: keras.Model, paths: Sequence[str], image_size: int, views: Sequence[str], batch_size: int = 32
) -> np.ndarray:
    """Features of every TTA view of each image.

    Returns:
        ``float32 (len(paths), len(views), F)``.
    """
    batches = []
    for start in range(0, len(paths), batch_size):
        images = [load_image(path, image_size) for path in paths[start : start + batch_size]]
        stacked = np.concatenate([tta_batch(image, views) for image in images]).astype(np.float32)
        batches.append(extractor.predict(stacked, verbose=0).reshape(len(images), len(views), -1))
    return np.concatenate(batches)


def run_probe(
    config: TrainConfig, train_samples: Sequence[Sample], test_samples: Sequence[Sample], labels: list[str]
) -> dict[str, float]:
    """Fit the probe on ``train_samples`` and score it on ``test_samples``,
    without TTA and with the ``flip`` views (probabilities averaged).

    Returns:
        ``dict``: ``accuracy``, ``accuracy_tta`` (fractions), ``train_seconds``
        (features and fit) and ``epochs`` (0).
    """
    started = time.perf_counter()
    extractor = feature_extractor(config)
    size = config.export_image_size()
    views = VIEW_SETS["flip"]
    train = view_features(extractor, [s.path for s in train_samples], size, views[:1])[:, 0]
    test = view_features(extractor, [s.path for s in test_samples], size, views)
    targets = np.array([labels.index(s.label) for s in train_samples])
    probe = fit_linear_probe(train, targets, len(labels))
    seconds = time.perf_counter() - started
    truth = np.array([labels.index(s.label) for s in test_samples])
    per_view = np.stack([probe.predict_proba(test[:, i]) for i in range(len(views))], axis=1)
    accuracy = float(np.mean(per_view[:, 0].argmax(1) == truth))
    accuracy_tta = float(np.mean(per_view.mean(axis=1).argmax(1) == truth))
    keras.backend.clear_session()
    return {
        "accuracy": accuracy,
        "accuracy_tta": accuracy_tta,
        "train_seconds": round(seconds, 1),
        "epochs": 0,
    }


def init_head_from_probe(model: keras.Model, dataset: tf.data.Dataset, num_classes: int) -> None:
    """LP-FT's first half: fit the linear probe on the frozen backbone's
    features of ``dataset`` (no augmentation) and start the head from it
    (:mod:`training.probe`, :func:`training.model.set_head`).

    Args:
        model: from :func:`training.model.build_classifier`, backbone frozen.
        dataset: ``(pixels, one_hot)`` batches of the training photos.
        num_classes: number of classes.

    Raises:
        ValueError: a class without a training photo.
    """
    extractor = keras.Model(model.inputs, model.get_layer(FEATURES_LAYER).output)
    feature_batches, target_batches = [], []
    for pixels, one_hot in dataset:
        feature_batches.append(np.asarray(extractor(pixels, training=False), np.float32))
        target_batches.append(np.argmax(one_hot, axis=1))
    features, targets = np.concatenate(feature_batches), np.concatenate(target_batches)
    probe = fit_linear_probe(features, targets, num_classes)
    set_head(model, *head_weights(probe))
    print(f"Head initialised from a linear probe on {len(targets)} training photos "
          f"(training accuracy {probe.score(features, targets):.3f})")
