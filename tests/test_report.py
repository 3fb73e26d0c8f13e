"""Training reports from a tiny real training run; ensembles of models with different labels."""

import json

import numpy as np
import pytest
from PIL import Image

from inference.ensemble import LabelMismatchError
from inference.loading import load_predictor
from tests.conftest import MOBILENET_WEIGHTS, SF_TEST, SHIPPED_MODEL, require
from tests.helpers import carclf, carclf_error


@pytest.fixture(scope="module")
def tiny_model(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-model")
    carclf("train", "--data", tiny_dataset, "--out", out, "--backbone", "MobileNetV2", "--alpha", "0.35", "--weights",
           require(MOBILENET_WEIGHTS), "--image-size", "96", "--batch-size", "4", "--val-fraction", "0.25", "--stage",
           "head:2:1e-3:0", "--stage", "finetune:1:1e-4:0.5")
    return out


def assert_drawn_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300 and image.height > 300
        assert np.asarray(image.convert("L")).std() > 10


@pytest.mark.shared
def test_training_writes_learning_curves_with_the_learning_rate(tiny_model):
    history = json.loads((tiny_model / "history.json").read_text())
    for stage, epochs in zip(history, (2, 1)):
        rates = stage["learning_rate"]
        assert len(rates) == len(stage["loss"]) == epochs
        assert all(0 < rate <= stage["stage"]["learning_rate"] * 1.0001 for rate in rates)
    assert_drawn_png(tiny_model / "report" / "learning_curves.png")
    markdown = (tiny_model / "report" / "report.md").read_text()
    assert "](learning_curves.png)" in markdown and "| head | 2 | 0.001 |" in markdown and "ECE" in markdown


@pytest.mark.shared
def test_report_cli_rewrites_a_report_and_refuses_a_non_run(tiny_model, tmp_path, capsys):
    (tiny_model / "report" / "learning_curves.png").unlink()
    carclf("report", "--model", tiny_model)
    assert_drawn_png(tiny_model / "report" / "learning_curves.png")
    error = carclf_error(capsys, "report", "--model", tmp_path)
    assert "No history.json" in error


@pytest.mark.shared
def test_ensembles_need_the_same_labels(tiny_model, tmp_path, capsys):
    with pytest.raises(LabelMismatchError, match="same labels in the same order"):
        load_predictor([SHIPPED_MODEL, tiny_model], "tensorflow")
    error = carclf_error(capsys, "predict", "--model", SHIPPED_MODEL, "--model", tiny_model, "--images",
                         require(SF_TEST), "--out", tmp_path / "s.csv")
    assert "models disagree on labels" in error
