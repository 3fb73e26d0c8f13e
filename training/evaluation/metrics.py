"""Classification metrics from predicted probabilities: accuracy, top-2, top-5,
per-class precision and recall, macro-F1 (scikit-learn), the expected
calibration error with its reliability bins, and confusions between look-alike
classes."""

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import f1_score, precision_recall_fscore_support

ECE_BINS = 15  # Guo et al. 2017 use 15 equal-width confidence bins


def reliability_bins(probabilities: ArrayLike, targets: ArrayLike, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Confidence and accuracy per equal-width confidence bin.

    The confidence of a prediction is its top probability; bin ``m`` (0-based)
    holds the predictions with confidence in ``(m / bins, (m + 1) / bins]``
    (Guo et al. 2017, "On Calibration of Modern Neural Networks", sec. 2).

    Args:
        probabilities: ``float`` array ``(n, num_classes)``, rows summing to 1.
        targets: ``int`` array ``(n,)`` of true class indices.
        bins: number of bins.

    Returns:
        ``dict`` of arrays of length ``bins``: ``edges`` (upper bin edges),
        ``count`` (``int``), ``confidence`` and ``accuracy`` (means over the
        bin, ``nan`` for an empty bin).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(targets)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "edges": np.arange(1, bins + 1) / bins,
            "count": count,
            "confidence": np.bincount(index, confidence, minlength=bins) / count,
            "accuracy": np.bincount(index, correct, minlength=bins) / count,
        }


def expected_calibration_error(probabilities: ArrayLike, targets: ArrayLike, bins: int = ECE_BINS) -> float:
    """Expected calibration error (ECE), Guo et al. 2017, eq. (3):
    ``sum over bins of |B_m| / n * |accuracy(B_m) - confidence(B_m)|``.

    Written here because the libraries that ship it (torchmetrics, netcal,
    TensorFlow Probability) each pull in a second deep-learning framework.

    Args:
        probabilities: ``float`` array ``(n, num_classes)``.
        targets: ``int`` array ``(n,)`` of true class indices.
        bins: equal-width confidence bins (15 as in the paper).

    Returns:
        ``float`` in ``[0, 1]``; 0 is perfectly calibrated.
    """
    table = reliability_bins(probabilities, targets, bins)
    filled = table["count"] > 0
    gaps = np.abs(table["accuracy"][filled] - table["confidence"][filled])
    return float(np.sum(table["count"][filled] * gaps) / np.sum(table["count"]))


def _none_if_nan(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def classification_metrics(probabilities: ArrayLike, targets: ArrayLike, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, top-2 and top-5 accuracy, macro-F1, ECE and per-class figures.

    Args:
        probabilities: ``float`` array ``(n, len(labels))``.
        targets: ``int`` array ``(n,)`` of true class indices into ``labels``.
        labels: class names, in output order.

    Returns:
        JSON-ready ``dict``: ``accuracy``, ``top2_accuracy``, ``top5_accuracy``
        (the true class among the k most probable; 1 where k >= the classes), ``macro_f1``
        (unweighted mean F1 over the classes that occur in the targets or the
        predictions, scikit-learn's default), ``ece``, and ``per_class``:
        ``{label: {precision, recall, f1, support}}`` with ``None`` where a
        figure is undefined (a class never predicted or never present).
    """
    targets = np.asarray(targets)
    probabilities = np.asarray(probabilities)
    predicted = probabilities.argmax(axis=1)
    ranked = np.argsort(-probabilities, axis=1, kind="stable")
    classes = np.arange(len(labels))
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predicted, labels=classes, zero_division=np.nan
    )
    return {
        "accuracy": float(np.mean(predicted == targets)),
        "top2_accuracy": float(np.mean(np.any(ranked[:, :2] == targets[:, None], axis=1))),
        "top5_accuracy": float(np.mean(np.any(ranked[:, :5] == targets[:, None], axis=1))),
        "macro_f1": float(f1_score(targets, predicted, average="macro", zero_division=0)),
        "ece": expected_calibration_error(probabilities, targets),
        "per_class": {
            label: {
                "precision": _none_if_nan(precision[i]),
                "recall": _none_if_nan(recall[i]),
                "f1": _none_if_nan(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
    }


def look_alike_key(label: str) -> str:
    """The class name less a leading numeric id and a trailing year: the key that
    look-alike classes share (Stanford Cars' ``137_hyundai_elantra_sedan_2007`` and
    ``138_hyundai_elantra_sedan_2012`` -> ``hyundai_elantra_sedan``)."""
    return re.sub(r"_(19|20)\d\d$", "", re.sub(r"^\d+_", "", label))


def look_alike_confusions(probabilities: ArrayLike, targets: ArrayLike, labels: Sequence[str]) -> dict[str, Any]:
    """How many mistakes confuse look-alike classes: the same make, model and body
    in another year (classes whose ``look_alike_key`` is shared).

    Args:
        probabilities: ``float`` array ``(n, len(labels))``.
        targets: ``int`` array ``(n,)`` of true class indices into ``labels``.
        labels: class names, in output order.

    Returns:
        JSON-ready ``dict``: ``groups`` (``{key: [labels]}``, groups of two or
        more classes), ``photos`` (photos of those classes), ``errors`` (their
        mistakes), ``within_group`` (mistakes predicting a look-alike) and
        ``pairs``: ``[{"true", "predicted", "count"}]``, most frequent first.
    """
    keys = [look_alike_key(label) for label in labels]
    groups = {key: [label for label, other in zip(labels, keys) if other == key] for key in dict.fromkeys(keys)}
    groups = {key: members for key, members in groups.items() if len(members) > 1}
    predicted = np.asarray(probabilities).argmax(axis=1)
    true = np.asarray(targets)
    in_groups = np.isin(true, [i for i, key in enumerate(keys) if key in groups])
    wrong = in_groups & (predicted != true)
    pairs = Counter((labels[t], labels[p]) for t, p in zip(true[wrong], predicted[wrong]) if keys[t] == keys[p])
    return {
        "groups": groups,
        "photos": int(in_groups.sum()),
        "errors": int(wrong.sum()),
        "within_group": int(sum(pairs.values())),
        "pairs": [{"true": true, "predicted": guess, "count": count} for (true, guess), count in pairs.most_common()],
    }
