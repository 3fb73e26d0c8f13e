"""training.evaluation.metrics on hand-computable inputs."""

import numpy as np
import pytest

from training.evaluation.metrics import (
    classification_metrics,
    expected_calibration_error,
    look_alike_confusions,
    look_alike_key,
    reliability_bins,
)
from training.evaluation.reports import worst_classes


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


def test_top5_counts_the_true_class_among_the_five_most_probable():
    labels = [f"c{i}" for i in range(7)]
    probabilities = np.array([[0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.05],    # true c4: 5th -> in the top 5
                              [0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.05]])   # true c5: 6th -> out
    metrics = classification_metrics(probabilities, np.array([4, 5]), labels)
    assert metrics["accuracy"] == 0.0 and metrics["top2_accuracy"] == 0.0 and metrics["top5_accuracy"] == 0.5


def test_look_alikes_are_the_same_make_model_and_body_in_another_year():
    labels = ["137_hyundai_elantra_sedan_2007", "138_hyundai_elantra_sedan_2012", "139_hyundai_elantra_touring_2012",
              "200_bmw_m3_coupe_2012"]
    assert look_alike_key(labels[0]) == look_alike_key(labels[1]) == "hyundai_elantra_sedan"
    assert look_alike_key(labels[2]) == "hyundai_elantra_touring" and look_alike_key("toyota_camry") == "toyota_camry"
    one_hot = np.eye(4)
    # true 2007 -> 2012 twice (look-alikes), 2012 -> touring (same make, another body), 2012 right, bmw -> 2007
    targets = np.array([0, 0, 1, 1, 3])
    probabilities = one_hot[[1, 1, 2, 1, 0]]
    found = look_alike_confusions(probabilities, targets, labels)
    assert found["groups"] == {"hyundai_elantra_sedan": labels[:2]}
    assert found["photos"] == 4 and found["errors"] == 3 and found["within_group"] == 2
    assert found["pairs"] == [{"true": labels[0], "predicted": labels[1], "count": 2}]


def test_worst_classes_are_the_lowest_recall_among_present_classes():
    probabilities = np.eye(4)[[0, 1, 1, 2, 2, 2]]
    metrics = classification_metrics(probabilities, np.array([0, 0, 1, 2, 2, 1]), ["a", "b", "c", "absent"])
    # recall: a 1/2, b 1/2 (precision 1/2 vs a's 1), c 1; "absent" has no photo
    assert worst_classes(metrics, 3) == ["b", "a", "c"]
