"""Suspect labels: group folds on cars-ru10, and a real 2-fold run on a dozen photos."""

import csv

import numpy as np
import pytest
from PIL import Image

from tests.conftest import MOBILENET_WEIGHTS, require
from tests.helpers import carclf, carclf_error
from training.data.dataset import load_samples
from training.evaluation.label_issues import assign_folds

FAST = ["--backbone", "MobileNetV2", "--alpha", "0.35", "--image-size", "96", "--batch-size", "4",
        "--val-fraction", "0.5", "--patience", "1", "--stage", "head:1:1e-3:0"]


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.shared
def test_folds_keep_groups_together_and_every_class_in_every_fold(cars):
    samples, labels = load_samples(cars)
    fold_of = assign_folds(samples, 5, seed=42)
    assert sorted(set(fold_of)) == [0, 1, 2, 3, 4]
    fold_of_group = {}
    for sample, fold in zip(samples, fold_of):
        assert fold_of_group.setdefault(sample.group, fold) == fold
    for fold in range(5):
        assert {s.label for s, k in zip(samples, fold_of) if k == fold} == set(labels)
    with pytest.raises(ValueError, match="at least 2"):
        assign_folds(samples, 1, seed=42)


@pytest.fixture(scope="module")
def suspects_run(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("suspects")
    carclf("suspects", "--data", tiny_dataset, "--out", out, "--folds", "2", "--weights", require(MOBILENET_WEIGHTS),
           *FAST)
    return out


@pytest.mark.shared
def test_two_fold_run_writes_out_of_fold_probabilities_suspects_gallery_and_cleaned_labels(suspects_run, tiny_dataset):
    samples, labels = load_samples(tiny_dataset)
    oof = read_csv(suspects_run / "out_of_fold.csv")
    assert len(oof) == 12 and {row["fold"] for row in oof} == {"0", "1"}
    assert all(abs(sum(float(row[label]) for label in labels) - 1) < 1e-3 for row in oof)
    by_path = {row["path"]: row for row in oof}
    suspects = read_csv(suspects_run / "suspects.csv")
    header = (suspects_run / "suspects.csv").read_text().splitlines()[0]
    assert header == "path,given_label,suggested_label,self_confidence"
    for row in suspects:
        assert row["path"].split("/")[0] == row["given_label"] and row["suggested_label"] in labels
        assert float(row["self_confidence"]) == pytest.approx(float(by_path[row["path"]][row["given_label"]]), abs=1e-4)
    confidences = [float(row["self_confidence"]) for row in suspects]
    assert confidences == sorted(confidences)  # worst first
    with Image.open(suspects_run / "suspects.png") as image:
        assert image.format == "PNG" and np.asarray(image.convert("L")).std() > 10
    cleaned, _ = load_samples(suspects_run / "cleaned")
    assert len(cleaned) == 12 - len(suspects)
    assert {s.path for s in cleaned} == {s.path for s in samples} - {str(tiny_dataset / r["path"]) for r in suspects}
    # Each fold model trained on the other fold only.
    for fold in (0, 1):
        fold_data, _ = load_samples(suspects_run / "folds" / f"fold{fold}" / "data")
        held_out = {str(tiny_dataset / row["path"]) for row in oof if row["fold"] == str(fold)}
        assert len(fold_data) + len(held_out) == 12 and not {s.path for s in fold_data} & held_out


@pytest.mark.shared
def test_drop_writes_a_dataset_without_the_reviewed_rows(tiny_dataset, tmp_path, capsys):
    reviewed = tmp_path / "reviewed.csv"
    reviewed.write_text("path,given_label,suggested_label,self_confidence\n"
                        f"kia_rio/{min((tiny_dataset / 'kia_rio').iterdir()).name},kia_rio,mazda_3,0.1\n")
    carclf("suspects", "--data", tiny_dataset, "--drop", reviewed, "--out", tmp_path / "clean")
    kept, labels = load_samples(tmp_path / "clean")
    assert len(kept) == 11 and labels == ["kia_rio", "lada_kalina", "mazda_3"]
    reviewed.write_text("path\nkia_rio/not_there.jpg\n")
    error = carclf_error(capsys, "suspects", "--data", tiny_dataset, "--drop", reviewed, "--out", tmp_path / "clean2")
    assert "not in the dataset" in error
