"""Fitting the known-model test of an exported SavedModel and writing calibration.json (and, for its
int8 conversion, calibration.int8.json)."""

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.covariance import ledoit_wolf_shrinkage
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score

from inference.calibration import (
    ARRAYS_FILENAME,
    FILENAME,
    METHOD,
    Calibration,
    KnownModelTest,
    calibration_filename,
    mode_key,
)
from inference.model_folder import INT8_ONNX_FILENAME
from inference.predictor import Predictor
from inference.savedmodel import TensorFlowClassifier
from inference.tta import SERVED_VIEWS
from training.data.dataset import IMAGE_SUFFIXES, Sample
from training.evaluation.predictions import tta_outputs

# Keep 98% of validation: the product answers at least 97% of photos of the known models,
# and the threshold of 172 photos varies by about a point between folds (docs: the model card).
DEFAULT_QUANTILE = 0.98
# Eigenvectors of a compared covariance kept apart; the others share one variance.
DEFAULT_COMPONENTS = 256


# Every view of the service's TTA modes, each run once per photo; a mode averages its own.
SERVED = tuple(dict.fromkeys(view for views in SERVED_VIEWS.values() for view in views))


def view_outputs(classifier: Predictor, paths: Sequence[Path | str]) -> tuple[np.ndarray, ...]:
    """Logits, probabilities and features of every view of ``SERVED`` of each photo
    (``training.evaluation.predictions.tta_outputs``, decoded as the service does).

    Returns:
        ``(logits, probabilities, features)``, ``float32`` arrays
        ``(len(paths), len(SERVED), num_classes)`` (features: ``F`` last).

    Raises:
        inference.images.ImageDecodeError: an unreadable photo, named.
    """
    outputs = [out for _, _, out in tta_outputs(classifier, paths, SERVED)]
    if not outputs:  # still (0, views, width) arrays, so that scores of no photo are empty arrays
        blank = np.zeros((len(SERVED), *classifier.image_size, 3), np.uint8)
        return tuple(output[None, :, :][:0] for output in classifier.predict(blank))
    return tuple(np.stack([out[i] for out in outputs]) for i in range(3))


@dataclass
class Gaussians:
    """Gaussians with one shared covariance, in probabilistic-PCA form
    (Tipping & Bishop 1999): ``U diag(variances) U^T + noise_variance (I - U U^T)``.

    Attributes:
        means: ``(m, F)`` centres (one per class, or one for a background).
        components: ``(k, F)`` orthonormal leading eigenvectors of the shared covariance.
        variances: ``(k,)`` its eigenvalues along them.
        noise_variance: its mean eigenvalue in the other ``F - k`` directions.
    """

    means: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    noise_variance: float

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of ``(n, F)`` features to the nearest centre: ``float64 (n,)``.

        Expanded, ``|x - mu|^2 = |x|^2 - 2 x.mu + |mu|^2``, so that no ``(n, m, F)`` residuals
        are held: with wide features (bilinear pooling: 8,256) they would take tens of GB.
        """
        features = np.asarray(features, np.float64)
        projected = (features @ self.components.T)[:, None, :] - self.means @ self.components.T  # (n, m, k)
        inside = np.sum(projected**2 / self.variances, axis=-1)
        squared = np.sum(features**2, axis=1)[:, None] - 2 * features @ self.means.T + np.sum(self.means**2, axis=1)
        outside = (squared - np.sum(projected**2, axis=-1)) / self.noise_variance
        return (inside + outside).min(axis=-1)


def fit_gaussians(features: np.ndarray, classes: np.ndarray, components: int = DEFAULT_COMPONENTS) -> Gaussians:
    """Class centres and one shared covariance around them (Lee et al. 2018's
    Mahalanobis score, a comparison in the calibration's report).

    The covariance is the Ledoit-Wolf shrunk estimate (Ledoit & Wolf 2004;
    scikit-learn's ``ledoit_wolf_shrinkage``), well conditioned although the
    features have more dimensions (1280) than there are photos, stored by its
    ``components`` leading eigenvectors and eigenvalues, the other eigenvalues
    replaced by their mean.

    Args:
        features: ``(n, F)`` features.
        classes: ``(n,)`` int class indices ``0..m-1`` (all zeros: one Gaussian).
        components: eigenvectors kept apart.

    Returns:
        ``Gaussians`` with ``m`` centres.
    """
    num_classes = int(classes.max()) + 1
    means = np.stack([features[classes == c].mean(axis=0) for c in range(num_classes)])
    residuals = np.asarray(features - means[classes], np.float64)
    shrinkage = ledoit_wolf_shrinkage(residuals, assume_centered=True)
    with np.errstate(invalid="ignore"):  # no spread at all: PCA's explained_variance_ratio_ (unused) is 0 / 0
        pca = PCA(svd_solver="full").fit(residuals)
    eigenvalues = np.zeros(residuals.shape[1])
    # PCA divides by n - 1; Ledoit-Wolf works with the biased (1/n) covariance.
    eigenvalues[: pca.n_components_] = pca.explained_variance_ * (len(residuals) - 1) / len(residuals)
    shrunk = (1 - shrinkage) * eigenvalues + shrinkage * eigenvalues.mean()
    # Classes of one photo each leave no spread to estimate (a tiny dataset): a floor keeps distances finite.
    shrunk = np.maximum(shrunk, np.finfo(np.float32).eps * (eigenvalues.max() or 1.0))
    kept = min(components, pca.n_components_)
    # Features of fewer dimensions than components (tiny models) leave no other direction: the
    # smallest kept variance then only divides rounding errors.
    noise = shrunk[kept:] if kept < len(shrunk) else shrunk[kept - 1:]
    return Gaussians(means, pca.components_[:kept], shrunk[:kept], float(noise.mean()))


def fit_test(train_features: np.ndarray, val_features: np.ndarray, quantile: float) -> KnownModelTest:
    """The nearest-neighbour test: the training photos' features, then the threshold.

    Args:
        train_features: ``(n_train, F)`` features of the training split.
        val_features: ``(n_val, F)`` features of held-out photos of the known models.
        quantile: share of validation photos to keep inside the threshold.

    Returns:
        ``inference.calibration.KnownModelTest``.
    """
    test = KnownModelTest(train_features, threshold=0.0)
    test.threshold = threshold(test, val_features, quantile)
    return test


def threshold(test: KnownModelTest, val_features: np.ndarray, quantile: float) -> float:
    """The rule of the threshold: the ``quantile`` of the distances of ``val_features`` ``(n_val, F)``
    (held-out photos of the known models) to ``test``'s neighbours."""
    # Midway between two photos, so that rounding never moves a validation photo across it.
    return float(np.quantile(test.distances(val_features), quantile, method="midpoint"))


def mean_outputs(outputs: Sequence[np.ndarray], views: Sequence[str], index: int) -> np.ndarray:
    """Output ``index`` (0 logits, 1 probabilities, 2 features) of ``view_outputs``
    averaged over the TTA ``views``: ``(n, width)``."""
    return outputs[index][:, [SERVED.index(view) for view in views]].mean(axis=1)


def scores(
    outputs: Sequence[np.ndarray],
    views: Sequence[str],
    test: KnownModelTest,
    mahalanobis: Gaussians,
    background: Gaussians | None = None,
) -> dict[str, np.ndarray]:
    """Known-model scores of each photo, higher = more like a known model.

    Args:
        outputs: ``view_outputs`` of the photos.
        views: the TTA setting.
        test: its ``inference.calibration.KnownModelTest``.
        mahalanobis: ``Gaussians`` of the known classes.
        background: ``Gaussians`` of other car models, or ``None``.

    Returns:
        ``dict`` of ``(n,)`` arrays: the negated score of ``test``;
        ``mahalanobis``, the negated distance to the nearest class centre (Lee
        et al. 2018); with a background, ``mahalanobis_minus_background``, the
        same minus the distance to the background (the relative Mahalanobis
        distance of Ren et al. 2021 with the background fitted on other car
        models, as in outlier exposure, Hendrycks et al. 2019);
        ``max_softmax`` (the top probability, Hendrycks & Gimpel 2017) and
        ``energy`` (``logsumexp(logits)``, Liu et al. 2020, temperature 1).
    """
    features = mean_outputs(outputs, views, 2)
    to_centres = mahalanobis.distances(features)
    relative = {} if background is None else {
        "mahalanobis_minus_background": background.distances(features) - to_centres}
    return {
        METHOD: -test.distances(features),
        "mahalanobis": -to_centres,
        **relative,
        "max_softmax": mean_outputs(outputs, views, 1).max(axis=1),
        "energy": np.logaddexp.reduce(mean_outputs(outputs, views, 0), axis=1),
    }


def compare_scores(
    val: Mapping[str, np.ndarray], unknown: Mapping[str, np.ndarray], quantile: float
) -> dict[str, dict[str, float | None]]:
    """Each score's threshold by the same rule, what it turns away, and its AUROC.

    Args:
        val, unknown: ``dict`` score name -> ``(n,)`` array, higher = more like
            a known model (``unknown`` may be empty arrays).
        quantile: share of validation photos kept.

    Returns:
        ``dict`` score name -> ``{"threshold", "validation_turned_away",
        "unknown_turned_away", "auroc"}`` (AUROC of known vs. unknown; ``None``
        without unknown photos).
    """
    table: dict[str, dict[str, float | None]] = {}
    for name, known in val.items():
        threshold = float(np.quantile(known, 1 - quantile, method="midpoint"))  # the rule of fit_test
        other = unknown[name]
        auroc = None
        if len(other):
            is_known = np.r_[np.ones(len(known)), np.zeros(len(other))]
            auroc = round(float(roc_auc_score(is_known, np.r_[known, other])), 4)
        table[name] = {
            "threshold": threshold,
            "validation_turned_away": int(np.sum(known < threshold)),
            "unknown_turned_away": int(np.sum(other < threshold)),
            "auroc": auroc,
        }
    return table


def other_angle_outcomes(
    outputs: Sequence[np.ndarray], views: Sequence[str], test: KnownModelTest, targets: np.ndarray
) -> dict[str, int]:
    """What the service answers for photos of known models seen otherwise.

    Args:
        outputs: ``view_outputs`` of the photos.
        views: the TTA setting.
        test: its ``inference.calibration.KnownModelTest``.
        targets: ``(n,)`` int class index of each photo.

    Returns:
        ``dict``: ``images``, and how many were ``answered_right`` (known,
        right label), ``answered_wrong`` (known, wrong label) and ``turned_away``.
    """
    known = test.distances(mean_outputs(outputs, views, 2)) <= test.threshold
    right = mean_outputs(outputs, views, 1).argmax(axis=1) == targets
    return {"images": len(targets), "answered_right": int(np.sum(known & right)),
            "answered_wrong": int(np.sum(known & ~right)), "turned_away": int(np.sum(~known))}


def turned_away_by_root(
    paths: Iterable[Path | str],
    outputs: Sequence[np.ndarray],
    views: Sequence[str],
    test: KnownModelTest,
    roots: Sequence[Path | str],
) -> dict[str, dict[str, int]]:
    """``{folder name: {"images", "turned_away"}}`` of unknown-model photos, per
    the first of ``roots`` each photo lies under (else its own folder)."""
    far = test.distances(mean_outputs(outputs, views, 2)) > test.threshold
    table: dict[str, dict[str, int]] = {}
    for path, turned_away in zip(map(Path, paths), far):
        root = next((Path(r) for r in roots if path.is_relative_to(r)), path.parent)
        counts = table.setdefault(root.name, {"images": 0, "turned_away": 0})
        counts["images"] += 1
        counts["turned_away"] += int(turned_away)
    return table


@dataclass
class MeasuredPhotos:
    """The photos a known-model test is measured on, and what it answers for them.

    Attributes:
        validation: ``training.data.dataset.Sample`` held-out photos of the known models (the threshold's).
        unknown: photos of car models the model does not know.
        unknown_roots: the folders ``unknown`` were read from (counted per folder).
        other_angle: ``training.data.dataset.Sample`` photos of known models seen otherwise.
    """

    validation: Sequence[Sample]
    unknown: Sequence[Path | str] = ()
    unknown_roots: Sequence[Path | str] = ()
    other_angle: Sequence[Sample] = ()

    def outputs(self, predictor: Predictor) -> tuple[tuple[np.ndarray, ...], ...]:
        """``predictor``'s ``view_outputs`` of the validation, unknown and other-angle photos."""
        return (view_outputs(predictor, [sample.path for sample in self.validation]),
                view_outputs(predictor, list(self.unknown)),
                view_outputs(predictor, [sample.path for sample in self.other_angle]))

    def report(self, test: KnownModelTest, views: Sequence[str], outputs: Sequence[Sequence[np.ndarray]],
               labels: Sequence[str]) -> dict:
        """What ``test`` turns away of each set (``KnownModelTest.report``'s ``validation``,
        ``unknown`` and ``other_angle``), given ``outputs`` and the model's ``labels``."""
        val, unknown, angles = outputs
        turned_away = test.distances(mean_outputs(val, views, 2)) > test.threshold
        report: dict = {"validation": {
            "images": len(self.validation),
            "turned_away": int(turned_away.sum()),
            "files": [Path(s.path).name for s, out in zip(self.validation, turned_away) if out],
        }}
        if self.unknown:
            by_root = turned_away_by_root(self.unknown, unknown, views, test, self.unknown_roots)
            report["unknown"] = {"images": len(self.unknown),
                                 "turned_away": sum(counts["turned_away"] for counts in by_root.values()),
                                 "by_root": by_root}
        if self.other_angle:
            targets = np.array([labels.index(sample.label) for sample in self.other_angle], int)
            report["other_angle"] = other_angle_outcomes(angles, views, test, targets)
        return report


def int8_calibration(calibration: Calibration, predictor: Predictor, photos: MeasuredPhotos) -> Calibration:
    """The known-model test of the int8 model: ``calibration``'s neighbours (the float32 model's
    features of the training photos) with thresholds set by the same rule on ``predictor``'s
    features of the same validation photos, measured on ``photos`` as ``calibrate`` measures.

    Args:
        calibration: the float32 model's, as loaded from ``calibration.json`` (the neighbours the
            service reads).
        predictor: the int8 model (``model.int8.onnx`` on ONNX Runtime).
        photos: the validation photos of ``calibration`` and, optional, photos it is measured on.

    Returns:
        the ``inference.calibration.Calibration`` for ``calibration.int8.json``.
    """
    outputs = photos.outputs(predictor)
    modes = {}
    for views in SERVED_VIEWS.values():
        test = copy.copy(calibration.modes[mode_key(views)])  # the same neighbours, another threshold
        test.threshold = threshold(test, mean_outputs(outputs[0], views, 2), calibration.quantile)
        test.report = photos.report(test, views, outputs, calibration.labels)
        modes[mode_key(views)] = test
    return Calibration(METHOD, calibration.quantile, calibration.labels, modes)


def calibrate(
    model_dir: Path | str,
    train_samples: list[Sample],
    val_samples: list[Sample],
    unknown_paths: Sequence[Path | str] = (),
    quantile: float = DEFAULT_QUANTILE,
    other_angle: Sequence[Sample] = (),
    unknown_roots: Sequence[Path | str] = (),
    background_paths: Sequence[Path | str] = (),
) -> Calibration:
    """Fit and write ``calibration.json`` for the SavedModel in ``model_dir``.

    Args:
        model_dir: SavedModel directory (written by ``training.export.savedmodel``).
        train_samples, val_samples: the model's own split (``training.data.dataset.Sample`` lists).
        unknown_paths: photos of car models the model does not know (measured
            only; also counted per folder of ``unknown_roots`` they lie under,
            ``report["unknown"]["by_root"]``).
        quantile: share of validation photos kept inside the threshold, in ``(0, 1]``.
        other_angle: ``training.data.dataset.Sample`` photos of known models seen
            otherwise (other angles, generations), measured only.
        unknown_roots: the folders ``unknown_paths`` were read from.
        background_paths: photos of other car models (none of them in
            ``unknown_paths``) that the compared relative Mahalanobis score's
            background is fitted on; empty: no such comparison.

    With ``model.int8.onnx`` in ``model_dir``, also fits and writes its own test,
    ``calibration.int8.json`` (``int8_calibration``), measured on the same photos.

    Returns:
        the ``inference.calibration.Calibration`` written (the float32 model's).

    Raises:
        ModelNotFoundError: no SavedModel in ``model_dir``.
        ValueError: ``quantile`` out of range, an empty split, or labels the model does not know.
    """
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    if not train_samples or not val_samples:
        raise ValueError("calibration needs photos in both the training and the validation split")
    # The old calibration goes first: one from an older release would stop the model loading.
    for name in (FILENAME, ARRAYS_FILENAME, calibration_filename("int8")):
        (Path(model_dir) / name).unlink(missing_ok=True)
    classifier = TensorFlowClassifier(model_dir)
    unknown_labels = {sample.label for sample in [*train_samples, *val_samples, *other_angle]} - set(classifier.labels)
    if unknown_labels:
        raise ValueError(f"labels unknown to the model: {sorted(unknown_labels)}")
    untrained = set(classifier.labels) - {sample.label for sample in train_samples}
    if untrained:
        raise ValueError(f"no training photo of {sorted(untrained)}: their centres cannot be fitted")
    train_classes = np.array([classifier.labels.index(sample.label) for sample in train_samples])
    print(f"Features of {len(train_samples)} training, {len(val_samples)} validation, "
          f"{len(background_paths)} background and {len(unknown_paths)} unknown-model photos")
    photos = MeasuredPhotos(val_samples, unknown_paths, unknown_roots, other_angle)
    train = view_outputs(classifier, [sample.path for sample in train_samples])
    background = view_outputs(classifier, list(background_paths))
    outputs = photos.outputs(classifier)
    val, unknown, _ = outputs
    modes = {}
    for views in SERVED_VIEWS.values():
        test = fit_test(mean_outputs(train, views, 2), mean_outputs(val, views, 2), quantile)
        mahalanobis = fit_gaussians(mean_outputs(train, views, 2), train_classes)
        other_cars = fit_gaussians(mean_outputs(background, views, 2), np.zeros(len(background_paths), int)) \
            if background_paths else None
        test.report = photos.report(test, views, outputs, classifier.labels)
        test.report["background"] = {"images": len(background_paths)}
        test.report["comparison"] = compare_scores(scores(val, views, test, mahalanobis, other_cars),
                                                   scores(unknown, views, test, mahalanobis, other_cars), quantile)
        modes[mode_key(views)] = test
    calibration = Calibration(METHOD, quantile, classifier.labels, modes)
    calibration.save(model_dir)
    if (Path(model_dir) / INT8_ONNX_FILENAME).is_file():
        calibrate_int8(model_dir, photos)
    return calibration


def calibrate_int8(model_dir: Path | str, photos: MeasuredPhotos) -> Calibration:
    """Fit and write ``calibration.int8.json``, the known-model test of ``model_dir``'s
    ``model.int8.onnx`` (``int8_calibration``, with the quantile of ``calibration.json``).

    Args:
        model_dir: a model folder with ``calibration.json`` and ``model.int8.onnx``.
        photos: its validation photos and, optional, photos it is measured on.

    Returns:
        the ``inference.calibration.Calibration`` written.

    Raises:
        ValueError: no ``calibration.json`` (or a malformed one).
        inference.model_folder.ModelNotFoundError: no ``model.int8.onnx``.
    """
    from inference.ort import OnnxRuntimeClassifier

    calibration = Calibration.load(model_dir)  # the neighbours as the service reads them
    if calibration is None:
        raise ValueError(f"No {FILENAME} in '{model_dir}': the int8 test shares its neighbours; "
                         "run carclf calibrate without --int8-only first")
    print(f"The validation and measured photos through {INT8_ONNX_FILENAME}, for its own threshold")
    int8 = int8_calibration(calibration, OnnxRuntimeClassifier(model_dir, precision="int8"), photos)
    int8.save(model_dir, "int8")
    return int8


def summary(calibration: Calibration) -> str:
    """One line per TTA setting: threshold and what it turns away."""
    lines = []
    for key, test in calibration.modes.items():
        validation, unknown = test.report["validation"], test.report.get("unknown")
        line = (f"{key}: threshold {test.threshold:.2f}; "
                f"validation turned away {validation['turned_away']}/{validation['images']}")
        if unknown:
            line += f"; unknown models turned away {unknown['turned_away']}/{unknown['images']}"
            line += "".join(f" ({name}: {c['turned_away']}/{c['images']})" for name, c in unknown["by_root"].items())
        angle = test.report.get("other_angle")
        if angle:
            line += (f"; known models from other angles: {angle['answered_right']} right, "
                     f"{angle['answered_wrong']} wrong, {angle['turned_away']} turned away of {angle['images']}")
        lines.append(line)
    return "\n".join(lines)


def image_files(folder: Path | str) -> list[Path]:
    """The images under ``folder`` (recursive), sorted: ``list[Path]``."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def read_unknown(roots: Iterable[Path | str], other_angle: Mapping[str, str]) -> tuple[list[Path], list[Sample]]:
    """The photos under ``roots``, split into unknown models and known models from other angles.

    Args:
        roots: folders searched recursively for images.
        other_angle: ``{sub-folder name: known label}``.

    Returns:
        ``(unknown_paths, other_angle_samples)``: sorted ``list[Path]`` and
        ``list[training.data.dataset.Sample]`` (group: the file name).

    Raises:
        FileNotFoundError: a root is not a directory.
    """
    unknown, angles = [], []
    for root in map(Path, roots):
        if not root.is_dir():
            raise FileNotFoundError(f"'{root}' is not a directory")
        for path in image_files(root):
            label = other_angle.get(path.parent.name)
            if label is None:
                unknown.append(path)
            else:
                angles.append(Sample(str(path), label, path.name))
    return unknown, angles


def read_other_models(
    roots: Iterable[Path | str], other_angle: Mapping[str, str]
) -> tuple[list[Path], list[Path], list[Sample]]:
    """Photos of other car models, one sub-folder per model, split by model:
    the 1st, 3rd, 5th... sub-folder (sorted by name, other-angle folders
    counted) fit the background, the others are only measured, so that the
    measured figures are on car models the background never saw (for Stanford
    Cars: odd official class ids fit, even ids measured).

    Args:
        roots: folders with one sub-folder per car model.
        other_angle: ``{sub-folder name: known label}``: measured apart, in neither half.

    Returns:
        ``(background_paths, measured_paths, other_angle_samples)``.

    Raises:
        FileNotFoundError: a root is not a directory.
    """
    background: list[Path]
    measured: list[Path]
    background, measured, angles = [], [], []
    for root in map(Path, roots):
        unknown, root_angles = read_unknown([root], other_angle)
        angles += root_angles
        # Counted with the other-angle folders, so that a folder's half does not depend on which those are.
        models = sorted(path.name for path in root.iterdir() if path.is_dir())
        fitted = set(models[::2])
        for path in unknown:
            (background if path.relative_to(root).parts[0] in fitted else measured).append(path)
    return background, measured, angles

