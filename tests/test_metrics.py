"""training.metrics on hand-computable inputs."""

import numpy as np
import pytest

from training.metrics import classification_metrics, expected_calibration_error, reliability_bins


def test_ece_of_a_hand_computed_case():
    # Confidences 0.9, 0.92 (same bin of 15: (13/15, 14/15]), 0.7 and 0.55 (bins of their own).
    probabilities = np.array([[0.9, 0.1], [0.08, 0.92], [0.3, 0.7], [0.55, 0.45]])
    targets = np.array([0, 0, 1, 1])  # right, wrong, right, wrong
    # Bin 13: accuracy 1/2, confidence 0.91 -> 2/4 * 0.41; bin 10: 1/4 * |1 - 0.7|; bin 8: 1/4 * |0 - 0.55|.
    expected = 0.5 * 0.41 + 0.25 * 0.3 + 0.25 * 0.55
    assert expected_calibration_error(probabilities, targets) == pytest.approx(expected)
    table = reliability_bins(probabilities, targets)
    assert table["count"].tolist() == [0] * 8 + [1, 0, 1, 0, 0, 2, 0]
    assert table["accuracy"][13] == 0.5 and table["confidence"][13] == pytest.approx(0.91)
    assert np.isnan(table["accuracy"][0]) and table["edges"][-1] == 1.0


def test_ece_is_zero_when_confidence_matches_accuracy():
    # Four predictions at confidence 0.75, three right: perfectly calibrated.
    probabilities = np.tile([[0.75, 0.25]], (4, 1))
    assert expected_calibration_error(probabilities, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(probabilities, np.array([1, 1, 1, 1])) == pytest.approx(0.75)


def test_classification_metrics_by_hand():
    labels = ["a", "b", "c"]
    probabilities = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    targets = np.array([0, 1, 2, 1])  # the last is wrong (predicted a), its label second best
    metrics = classification_metrics(probabilities, targets, labels)
    assert metrics["accuracy"] == 0.75 and metrics["top2_accuracy"] == 1.0
    assert metrics["per_class"]["a"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert metrics["per_class"]["b"]["precision"] == 1.0 and metrics["per_class"]["b"]["recall"] == 0.5
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert 0 < metrics["ece"] < 1


def test_undefined_per_class_figures_are_none():
    probabilities = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]])
    metrics = classification_metrics(probabilities, np.array([0, 1]), ["a", "b", "never"])
    assert metrics["per_class"]["never"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert metrics["macro_f1"] == 1.0  # over the classes that occur
