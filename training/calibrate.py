"""Calibrate the known-model test of an exported SavedModel: ``calibration.json``.

    python -m training.calibrate --model DIR --data DIR [--unknown DIR] [--quantile 0.99]

Re-creates the model's own group-aware train/validation split from its
``training_config.json``, fits the class centres and shared covariance of the
logits on the training split, and sets the threshold at the ``--quantile`` of
the validation distances (see :mod:`inference.calibration`), for each TTA
setting the service offers. ``--unknown`` (a folder of photos of other car
models) measures how many of them the threshold turns away, beside two other
scores chosen by the same rule: the maximum softmax probability (Hendrycks &
Gimpel 2017) and the energy score (Liu et al. 2020). ``training.train`` runs
this after every export.
"""

import argparse
import json
import sys
from pathlib import Path

import keras
import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score

from inference.calibration import METHOD, Calibration, KnownModelTest, mode_key
from inference.classifier import Classifier, ModelNotFoundError
from inference.tta import DEFAULT_VIEWS, tta_batch
from training.config import TrainConfig
from training.data import IMAGE_SUFFIXES, load_samples, split_by_group

DEFAULT_QUANTILE = 0.99
# The TTA settings the service offers: a prefix of DEFAULT_VIEWS each.
MODES = (DEFAULT_VIEWS[:1], DEFAULT_VIEWS)


def view_outputs(classifier, paths):
    """Logits and probabilities of every TTA view of each photo, decoded as the service does.

    Returns:
        ``(logits, probabilities)``, ``float32`` arrays ``(len(paths), len(DEFAULT_VIEWS), num_classes)``.
    """
    logits, probabilities = [], []
    progress = keras.utils.Progbar(len(paths), unit_name="image")
    for path in paths:
        image = classifier.decode(Path(path).read_bytes(), max_pixels=sys.maxsize)
        batch_logits, batch_probabilities = classifier.predict(tta_batch(image, DEFAULT_VIEWS))
        logits.append(batch_logits)
        probabilities.append(batch_probabilities)
        progress.add(1)
    shape = (len(paths), len(DEFAULT_VIEWS), len(classifier.labels))
    return np.reshape(logits, shape), np.reshape(probabilities, shape)


def fit_test(train_logits, train_classes, val_logits, quantile):
    """Fit class centres and a shared covariance, then the threshold.

    The covariance of the logits around their class centres is estimated with
    Ledoit-Wolf shrinkage (scikit-learn), which stays well conditioned on a
    few hundred photos.

    Args:
        train_logits: ``(n_train, num_classes)`` logits of the training split.
        train_classes: ``(n_train,)`` int class indices.
        val_logits: ``(n_val, num_classes)`` logits of the validation split.
        quantile: share of validation photos to keep inside the threshold.

    Returns:
        :class:`inference.calibration.KnownModelTest`.
    """
    num_classes = train_logits.shape[1]
    means = np.stack([train_logits[train_classes == c].mean(axis=0) for c in range(num_classes)])
    precision = LedoitWolf(assume_centered=True).fit(train_logits - means[train_classes]).precision_
    test = KnownModelTest(means.tolist(), precision.tolist(), threshold=0.0)
    test.threshold = float(np.quantile(test.distances(val_logits), quantile, method="higher"))
    return test


def mean_logits(outputs, views):
    """Logits averaged over the first ``len(views)`` TTA views: ``(n, num_classes)``."""
    return outputs[0][:, : len(views)].mean(axis=1)


def scores(outputs, views, test):
    """Three known-model scores of each photo, higher = more like a known model.

    Returns:
        ``dict``: the negated distance of ``test``, ``max_softmax`` (the top
        probability) and ``energy`` (the negative energy ``logsumexp(logits)``,
        Liu et al. 2020, temperature 1), each ``(n,)``.
    """
    logits = mean_logits(outputs, views)
    return {
        METHOD: -test.distances(logits),
        "max_softmax": outputs[1][:, : len(views)].mean(axis=1).max(axis=1),
        "energy": np.logaddexp.reduce(logits, axis=1),
    }


def compare_scores(val, unknown, quantile):
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
    table = {}
    for name, known in val.items():
        threshold = float(np.quantile(known, 1 - quantile, method="lower"))
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


def calibrate(model_dir, train_samples, val_samples, unknown_paths=(), quantile=DEFAULT_QUANTILE):
    """Fit and write ``calibration.json`` for the SavedModel in ``model_dir``.

    Args:
        model_dir: SavedModel directory (written by :mod:`training.export`).
        train_samples, val_samples: the model's own split (``training.data.Sample`` lists).
        unknown_paths: photos of car models the model does not know (measured only).
        quantile: share of validation photos kept inside the threshold, in ``(0, 1]``.

    Returns:
        the :class:`inference.calibration.Calibration` written.

    Raises:
        ModelNotFoundError: no SavedModel in ``model_dir``.
        ValueError: ``quantile`` out of range, an empty split, or labels the model does not know.
    """
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    if not train_samples or not val_samples:
        raise ValueError("calibration needs photos in both the training and the validation split")
    classifier = Classifier(model_dir)
    unknown_labels = {sample.label for sample in train_samples + val_samples} - set(classifier.labels)
    if unknown_labels:
        raise ValueError(f"labels unknown to the model: {sorted(unknown_labels)}")
    untrained = set(classifier.labels) - {sample.label for sample in train_samples}
    if untrained:
        raise ValueError(f"no training photo of {sorted(untrained)}: their centres cannot be fitted")
    train_classes = np.array([classifier.labels.index(sample.label) for sample in train_samples])
    print(f"Logits of {len(train_samples)} training, {len(val_samples)} validation "
          f"and {len(unknown_paths)} unknown-model photos")
    train = view_outputs(classifier, [sample.path for sample in train_samples])
    val = view_outputs(classifier, [sample.path for sample in val_samples])
    unknown = view_outputs(classifier, list(unknown_paths))
    modes = {}
    for views in MODES:
        test = fit_test(mean_logits(train, views), train_classes, mean_logits(val, views), quantile)
        turned_away = test.distances(mean_logits(val, views)) > test.threshold
        test.report["validation"] = {
            "images": len(val_samples),
            "turned_away": int(turned_away.sum()),
            "files": [Path(s.path).name for s, out in zip(val_samples, turned_away) if out],
        }
        comparison = compare_scores(scores(val, views, test), scores(unknown, views, test), quantile)
        test.report["comparison"] = comparison
        if unknown_paths:
            test.report["unknown"] = {"images": len(unknown_paths),
                                      "turned_away": comparison[METHOD]["unknown_turned_away"]}
        modes[mode_key(views)] = test
    calibration = Calibration(METHOD, quantile, classifier.labels, modes)
    calibration.save(model_dir)
    return calibration


def model_split(model_dir, data):
    """The ``(train, validation)`` samples of ``data`` as split for the model in ``model_dir``.

    Raises:
        FileNotFoundError: no ``training_config.json`` in ``model_dir`` or no dataset.
    """
    config = TrainConfig.from_dict(json.loads((Path(model_dir) / "training_config.json").read_text()))
    samples, _ = load_samples(data)
    return split_by_group(samples, config.val_fraction, config.seed)


def summary(calibration):
    """One line per TTA setting: threshold and what it turns away."""
    lines = []
    for key, test in calibration.modes.items():
        validation, unknown = test.report["validation"], test.report.get("unknown")
        line = (f"{key}: threshold {test.threshold:.2f}; "
                f"validation turned away {validation['turned_away']}/{validation['images']}")
        if unknown:
            line += f"; unknown models turned away {unknown['turned_away']}/{unknown['images']}"
        lines.append(line)
    return "\n".join(lines)


def main(argv=None):
    """Command-line entry point; exits with status 1 and a one-line message on bad input."""
    parser = argparse.ArgumentParser(prog="python -m training.calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="SavedModel directory (with its training_config.json)")
    parser.add_argument("--data", required=True, help="the dataset the model was trained on")
    parser.add_argument("--unknown", help="folder of photos of car models the model does not know (measured only)")
    parser.add_argument("--quantile", type=float, default=DEFAULT_QUANTILE,
                        help=f"share of validation photos kept as known; default {DEFAULT_QUANTILE}")
    args = parser.parse_args(argv)
    try:
        train_samples, val_samples = model_split(args.model, args.data)
        unknown = []
        if args.unknown:
            if not Path(args.unknown).is_dir():
                raise FileNotFoundError(f"--unknown '{args.unknown}' is not a directory")
            unknown = sorted(p for p in Path(args.unknown).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        calibration = calibrate(args.model, train_samples, val_samples, unknown, args.quantile)
    except (FileNotFoundError, ModelNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    print(f"{Path(args.model) / 'calibration.json'} written\n{summary(calibration)}")


if __name__ == "__main__":
    main()
