"""Evaluating exported SavedModels (one, or an ensemble) on labelled photos, without and with TTA."""

import os
import statistics
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import keras
import numpy as np

from inference import DEFAULT_PRECISION
from inference.contract import model_input
from inference.images import ImageDecodeError
from inference.loading import load_predictor
from inference.predictor import Predictor
from inference.tta import DEFAULT_VIEWS, VIEW_SETS, predict_views, tta_batch
from training.data.dataset import Sample
from training.evaluation.metrics import classification_metrics, look_alike_confusions
from training.fitting.callbacks import progress_verbosity

LATENCY_IMAGES = 20  # images timed per view set


WARM_UP_IMAGES = 3  # classified before timing: graph tracing, thread pools and caches

PathT = TypeVar("PathT", bound=Path | str)


@dataclass
class Evaluation:
    """What ``evaluate`` measured, for JSON and for ``training.evaluation.reports``.

    Attributes:
        labels: class names in output order.
        paths: image paths, ``list[str]`` of length ``n``.
        targets: ``int`` array ``(n,)``, true class indices.
        views: ``{set name: tuple of view names}``; ``none`` is no TTA.
        probabilities: ``{set name: float32 array (n, num_classes)}``, the
            probabilities averaged over the set's views (and the models).
        metrics: JSON-ready ``dict``, see ``evaluate``.
    """

    labels: list[str]
    paths: list[str]
    targets: np.ndarray
    views: dict[str, Sequence[str]]
    probabilities: dict[str, np.ndarray]
    metrics: dict[str, Any]


def read_image(predictor: Predictor, path: Path | str) -> np.ndarray:
    """Decode a file as the service decodes an upload (no pixel-count cap).

    Raises:
        inference.images.ImageDecodeError: the file is no usable image; the
            message names the file.
    """
    try:
        return model_input(Path(path).read_bytes(), predictor.image_size, max_pixels=sys.maxsize)
    except ImageDecodeError as error:
        raise ImageDecodeError(error.code, f"{path}: {error}") from None


def tta_outputs(
    predictor: Predictor, paths: Sequence[PathT], views: Sequence[str], skipped: list[str] | None = None
) -> Iterator[tuple[PathT, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Run every TTA view of each image file through the predictor, one batch per image,
    showing a progress bar: the per-image loop of evaluation, calibration and submissions.

    Args:
        predictor: an ``inference.predictor.Predictor``.
        paths: image files.
        views: view names (``inference.tta.VIEWS``).
        skipped: a list to which the message of each unreadable image is appended, the
            image then left out; ``None``: an unreadable image raises.

    Yields:
        ``(path, image, outputs)`` per readable image, in order: the image as
        ``read_image`` decodes it, ``uint8 (height, width, 3)``, and
        ``predictor.predict``'s ``(logits, probabilities, features)`` of its views,
        ``float32`` ``(len(views), num_classes)`` (features: ``F`` last).

    Raises:
        inference.images.ImageDecodeError: an unreadable image (without ``skipped``),
            the message naming the file.
    """
    progress = keras.utils.Progbar(len(paths), unit_name="image", verbose=progress_verbosity())
    for path in paths:
        try:
            image = read_image(predictor, path)
        except ImageDecodeError as error:
            if skipped is None:
                raise
            skipped.append(str(error))
        else:
            yield path, image, predictor.predict(tta_batch(image, views))
        progress.add(1)


def view_probabilities(
    predictor: Predictor, paths: Sequence[Path | str], views: Sequence[str]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Probabilities of every TTA view of every image (``tta_outputs``).

    Args:
        predictor: an ``inference.predictor.Predictor``.
        paths: image files.
        views: view names (``inference.tta.VIEWS``).

    Returns:
        ``(probabilities, images)``: ``float32`` array ``(len(paths),
        len(views), num_classes)``, and the first ``LATENCY_IMAGES``
        decoded images (for ``latency_ms``).

    Raises:
        inference.images.ImageDecodeError: an unreadable image.
    """
    kept: list[np.ndarray]
    results, kept = [], []
    for _, image, (_, probabilities, _) in tta_outputs(predictor, paths, views):
        if len(kept) < LATENCY_IMAGES:
            kept.append(image)
        results.append(probabilities)
    return np.stack(results), kept


def latency_ms(predictor: Predictor, images: Sequence[np.ndarray], views: Sequence[str]) -> float:
    """Median milliseconds to classify one decoded image with ``views``:
    building the views and running the model(s), after a warm-up on the
    first ``WARM_UP_IMAGES`` images.

    Args:
        predictor: as in ``view_probabilities``.
        images: decoded ``uint8`` images ``(height, width, 3)``.
        views: view names.

    Returns:
        ``float`` milliseconds (decoding the file not included).
    """
    for image in images[:WARM_UP_IMAGES]:
        predict_views(predictor, image, views)
    timings = []
    for image in images:
        started = time.perf_counter()
        predict_views(predictor, image, views)
        timings.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(timings), 2)


def shown_path(path: Path | str) -> str:
    """``path`` as metrics record it: relative to the current directory, so that
    no absolute path of this machine is printed or saved."""
    return os.path.relpath(path)


def mistakes(
    paths: list[str], targets: np.ndarray, probabilities: np.ndarray, labels: list[str]
) -> list[dict[str, str | float]]:
    """Wrong predictions, most confident first, as ``{file, path, label, predicted, probability}``
    (``file``: the file name; ``path``: ``shown_path``)."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != targets)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")]
    return [
        {
            "file": Path(paths[i]).name,
            "path": shown_path(paths[i]),
            "label": labels[targets[i]],
            "predicted": labels[predicted[i]],
            "probability": round(float(probabilities[i, predicted[i]]), 4),
        }
        for i in wrong
    ]


def evaluate(
    model_dirs: Sequence[Path | str], samples: Sequence[Sample], view_sets: Mapping[str, Sequence[str]],
    runtime: str = "tensorflow", precision: str = DEFAULT_PRECISION,
) -> Evaluation:
    """Measure one SavedModel, or the ensemble of several, on ``samples``.

    Every view of the union of the sets runs once per image, as one batch; a
    set's probabilities are the mean over its views (and over the models).

    Args:
        model_dirs: SavedModel directories (several: their probabilities are
            averaged, see ``inference.ensemble.Ensemble``).
        samples: ``list[training.data.dataset.Sample]`` whose labels the models know.
        view_sets: ``{name: tuple of view names}``; the no-TTA set
            ``none: ("original",)`` is always measured too.
        runtime, precision: what runs the models (``inference.loading.load_predictor``):
            the SavedModel on TensorFlow by default; ``onnxruntime`` and ``int8`` for ``model.int8.onnx``.

    Returns:
        ``Evaluation`` whose ``metrics`` are ``{"models", "images",
        "labels", "no_tta": {...}, "tta": {name: {...}}}``, each block holding
        ``views``, ``training.evaluation.metrics.classification_metrics``,
        ``latency_ms`` (per image, see ``latency_ms``) and ``errors``
        (``mistakes``) and ``look_alikes``
        (``training.evaluation.metrics.look_alike_confusions``).

    Raises:
        inference.model_folder.ModelNotFoundError: no SavedModel in a directory (or no file of ``runtime``).
        inference.ensemble.LabelMismatchError: the models' labels differ.
        inference.images.ImageDecodeError: an unreadable image.
        ValueError: no samples, or a sample's label is unknown to the model; a precision ``runtime`` lacks.
    """
    predictor = load_predictor(model_dirs, runtime, precision=precision)
    if not samples:
        raise ValueError("no images to evaluate")
    unknown = {sample.label for sample in samples} - set(predictor.labels)
    if unknown:
        raise ValueError(f"labels unknown to the model: {sorted(unknown)}")
    view_sets = {"none": VIEW_SETS["none"], **{k: tuple(v) for k, v in view_sets.items() if k != "none"}}
    union = tuple(dict.fromkeys(view for views in view_sets.values() for view in views))
    paths = [sample.path for sample in samples]
    targets = np.array([predictor.labels.index(sample.label) for sample in samples])
    per_view, images = view_probabilities(predictor, paths, union)
    probabilities, blocks = {}, {}
    for name, views in view_sets.items():
        probabilities[name] = per_view[:, [union.index(view) for view in views]].mean(axis=1)
        blocks[name] = {
            "views": list(views),
            **classification_metrics(probabilities[name], targets, predictor.labels),
            "latency_ms": latency_ms(predictor, images, views),
            "errors": mistakes(paths, targets, probabilities[name], predictor.labels),
            "look_alikes": look_alike_confusions(probabilities[name], targets, predictor.labels),
        }
    metrics = {
        "models": [shown_path(path) for path in model_dirs],
        "images": len(samples),
        "labels": predictor.labels,
        "no_tta": blocks.pop("none"),
        "tta": blocks,
    }
    return Evaluation(predictor.labels, paths, targets, view_sets, probabilities, metrics)


def evaluate_savedmodel(
    model_dir: Path | str | list[Path] | list[str] | tuple[Path | str, ...],
    samples: Sequence[Sample],
    views: Sequence[str] = DEFAULT_VIEWS,
) -> dict[str, Any]:
    """Metrics of a SavedModel (or a list of them, an ensemble) without and
    with one set of TTA views, as written to a training run's ``metrics.json``.

    Args:
        model_dir: a SavedModel directory, or a list of them.
        samples: ``list[training.data.dataset.Sample]`` whose labels the model knows.
        views: TTA view names.

    Returns:
        ``dict``: ``accuracy`` and ``accuracy_tta`` (fractions in [0, 1]),
        ``tta_views``, ``errors_tta`` (the TTA mistakes), and the full blocks
        ``no_tta`` and ``tta`` described in ``evaluate``.

    Raises:
        As ``evaluate``.
    """
    model_dirs = model_dir if isinstance(model_dir, (list, tuple)) else [model_dir]
    metrics = evaluate(model_dirs, samples, {"tta": tuple(views)}).metrics
    no_tta, tta = metrics["no_tta"], metrics["tta"]["tta"]
    return {
        "accuracy": no_tta["accuracy"],
        "accuracy_tta": tta["accuracy"],
        "tta_views": tta["views"],
        "errors_tta": tta["errors"],
        "no_tta": no_tta,
        "tta": tta,
    }
