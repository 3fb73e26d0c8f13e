"""The linear probe: logistic regression on the frozen ImageNet backbone's pooled features.

On its own it is the baseline a fine-tuning recipe has to beat (Kornblith et
al. 2019, "Do Better ImageNet Models Transfer Better?", sec. 3, logistic
regression on penultimate features); as the head's starting point it is the
first half of LP-FT (Kumar et al. 2022, "Fine-Tuning can Distort Pretrained
Features and Underperform Out-of-Distribution": linear probe, then fine-tune),
``head_init: probe`` in ``training.config.TrainConfig``. Images are
decoded and resized as the service does (``training.data.dataset.load_image``);
average-pooled features are standardised (bilinear ones are already
normalised), then scikit-learn's L2-regularised multinomial logistic
regression is fitted.
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
from training.config import TrainConfig
from training.data.dataset import Sample, load_image
from training.model import FEATURES_LAYER, PROJECTION_LAYER, frozen_backbone, pooled_features, set_head

# Training photos whose maps the bilinear projection's PCA is fitted on (every n-th photo, in the dataset's order).
PROJECTION_PHOTOS = 1024


def fit_linear_probe(
    features: np.ndarray, targets: np.ndarray, num_classes: int, c: float = 1.0, standardize: bool = True
) -> Pipeline:
    """Fit the probe.

    Args:
        features: ``float32 (n, F)`` pooled backbone features.
        targets: ``(n,)`` int class indices; every class in ``range(num_classes)`` must occur.
        num_classes: number of classes.
        c: inverse L2 strength (scikit-learn's ``C``; its default 1.0 suits standardised features).
        standardize: standardise the features first (the scaler stays in the pipeline, as the
            identity when ``False``, e.g. for bilinear features, already L2-normalised).

    Returns:
        a fitted scikit-learn pipeline (``StandardScaler``, ``LogisticRegression``).

    Raises:
        ValueError: a class without a photo.
    """
    missing = sorted(set(range(num_classes)) - set(np.unique(targets).tolist()))
    if missing:
        raise ValueError(f"the linear probe needs photos of every class; none of class index(es) {missing}")
    scaler = StandardScaler(with_mean=standardize, with_std=standardize)
    return make_pipeline(scaler, LogisticRegression(C=c, max_iter=5000)).fit(features, targets)


def head_weights(probe: Pipeline) -> tuple[np.ndarray, ...]:
    """The probe as the classifier head's weights (``training.model.set_head``).

    Returns:
        ``(mean, variance, kernel, bias)``: the scaler's ``(F,)`` mean and
        variance, the ``(F, num_classes)`` kernel and ``(num_classes,)`` bias
        of the logits, all ``float32``.
    """
    scaler, regression = probe[0], probe[-1]
    width = regression.coef_.shape[1]
    mean = np.zeros(width) if scaler.mean_ is None else scaler.mean_
    variance = np.ones(width) if scaler.var_ is None else scaler.var_
    return tuple(np.asarray(a, np.float32) for a in (mean, variance, regression.coef_.T, regression.intercept_))


def feature_extractor(config: TrainConfig) -> keras.Model:
    """The frozen backbone of ``config`` with global average pooling
    (multi-scale with ``config.multiscale_sides``: ``training.model.pooled_features``).

    Returns:
        ``keras.Model`` mapping float32 RGB pixels ``[0, 255]``
        ``(batch, size, size, 3)`` to ``float32 (batch, F)`` features.

    Raises:
        ValueError, training.backbones.catalog.WeightsUnavailableError: as
            ``training.backbones.catalog.build_backbone``.
    """
    spec, backbone = frozen_backbone(config)
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

    Raises:
        ValueError: bilinear pooling, whose projection is fitted by a training run
            (the same probe: ``stages: []``).
    """
    if config.pooling != "average":
        raise ValueError("method linear-probe pools by average; for the bilinear probe train with stages: []")
    started = time.perf_counter()
    extractor = feature_extractor(config)
    size = config.export_image_size()
    views = VIEW_SETS["flip"]
    train = view_features(extractor, [s.path for s in train_samples], size, views[:1])[:, 0]
    test = view_features(extractor, [s.path for s in test_samples], size, views)
    targets = np.array([labels.index(s.label) for s in train_samples])
    probe = fit_linear_probe(train, targets, len(labels), config.probe_c)
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


def fit_projection(model: keras.Model, dataset: tf.data.Dataset, photos: int = PROJECTION_PHOTOS) -> None:
    """Set bilinear pooling's projection (``training.model.PROJECTION_LAYER``) to the
    principal components of the backbone's channel vectors at every location of about
    ``photos`` training photos, every ``n``-th photo of ``dataset`` in its order (the
    same photos whatever the batch size): centred, then projected on the leading
    eigenvectors of their covariance (largest first).

    Args:
        model: from ``training.model.build_classifier`` with ``pooling: bilinear``.
        dataset: ``(pixels, one_hot)`` batches of the training photos, in a fixed order.
        photos: about how many photos to use.
    """
    layer = model.get_layer(PROJECTION_LAYER)
    extractor = keras.Model(model.input, layer.input)
    channels = layer.input.shape[-1]
    # Read once to count the photos, which also fills the dataset's cache for the passes that follow.
    batch_sizes = [len(pixels) for pixels, _ in dataset]
    total_photos, batch_size = sum(batch_sizes), batch_sizes[0]
    step = max(1, total_photos // photos)
    chosen = (dataset.unbatch().enumerate().filter(lambda index, _: index % step == 0)
              .map(lambda _, example: example[0]).batch(batch_size))
    total, outer, count = np.zeros(channels), np.zeros((channels, channels)), 0
    for pixels in chosen:
        maps = np.asarray(extractor.predict_on_batch(pixels), np.float64)
        vectors = maps.reshape(-1, maps.shape[-1])
        total, outer, count = total + vectors.sum(0), outer + vectors.T @ vectors, count + len(vectors)
    mean = total / count
    eigenvalues, eigenvectors = np.linalg.eigh(outer / count - np.outer(mean, mean))
    components = eigenvectors[:, ::-1][:, : layer.filters]
    layer.set_weights([components[None, None].astype(np.float32), (-mean @ components).astype(np.float32)])
    print(f"Bilinear projection: PCA of {count} locations of {len(range(0, total_photos, step))} photos, "
          f"{layer.filters} components keep {eigenvalues[::-1][: layer.filters].sum() / eigenvalues.sum():.1%} "
          "of the variance")


def init_head_from_probe(model: keras.Model, dataset: tf.data.Dataset, num_classes: int, c: float = 1.0) -> None:
    """LP-FT's first half: fit the linear probe on the frozen backbone's
    features of ``dataset`` (no augmentation) and start the head from it
    (``training.fitting.probe``, ``training.model.set_head``); with bilinear
    pooling, its projection is fitted first (``fit_projection``) and the
    features, already normalised, are not standardised.

    Args:
        model: from ``training.model.build_classifier``, backbone frozen.
        dataset: ``(pixels, one_hot)`` batches of the training photos.
        num_classes: number of classes.
        c: ``fit_linear_probe``'s.

    Raises:
        ValueError: a class without a training photo.
    """
    bilinear = PROJECTION_LAYER in {layer.name for layer in model.layers}
    if bilinear:
        fit_projection(model, dataset)
    extractor = keras.Model(model.inputs, model.get_layer(FEATURES_LAYER).output)
    feature_batches, target_batches = [], []
    batches, started = int(dataset.cardinality()), time.perf_counter()
    for index, (pixels, one_hot) in enumerate(dataset, 1):
        # predict_on_batch runs a compiled graph: called eagerly, the backbone held 8.9 GB at 380 px (issue 30).
        feature_batches.append(np.asarray(extractor.predict_on_batch(pixels), np.float32))
        target_batches.append(np.argmax(one_hot, axis=1))
        if index % max(1, batches // 4) == 0 or index == batches:  # minutes on a CPU at large sizes
            print(f"Probe features: batch {index}/{batches}, {time.perf_counter() - started:.0f} s", flush=True)
    features, targets = np.concatenate(feature_batches), np.concatenate(target_batches)
    probe = fit_linear_probe(features, targets, num_classes, c, standardize=not bilinear)
    set_head(model, *head_weights(probe))
    print(f"Head initialised from a linear probe on {len(targets)} training photos "
          f"(training accuracy {probe.score(features, targets):.3f})")
