"""training.evaluate and its report on the shipped model over real held-out validation photos."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.contract import model_input
from inference.savedmodel import TensorFlowClassifier
from inference.tta import VIEW_SETS, predict_views
from tests.conftest import CARS, SHIPPED_MODEL, shipped_validation_samples
from tests.helpers import carclf, carclf_error, first_per_class
from training.evaluation.predictions import evaluate, evaluate_savedmodel


@pytest.fixture(scope="module")
def samples():
    """Two held-out validation photos per class (20), never trained on by model/."""
    return first_per_class(shipped_validation_samples(), 2)


@pytest.fixture(scope="module")
def evaluation(samples):
    return evaluate([SHIPPED_MODEL], samples, {"flip": VIEW_SETS["flip"], "scales": VIEW_SETS["scales"]})


@pytest.mark.shared
def test_metrics_of_the_shipped_model_with_and_without_tta(evaluation, samples):
    metrics = evaluation.metrics
    assert metrics["images"] == 20 and list(metrics["tta"]) == ["flip", "scales"]
    for block in [metrics["no_tta"], *metrics["tta"].values()]:
        assert block["accuracy"] >= 0.9 and block["top2_accuracy"] >= block["accuracy"]
        assert 0.8 <= block["macro_f1"] <= 1 and 0 <= block["ece"] <= 1 and block["latency_ms"] > 0
        assert set(block["per_class"]) == set(metrics["labels"])
        assert all(figures["support"] == 2 for figures in block["per_class"].values())
        assert len(block["errors"]) == round((1 - block["accuracy"]) * 20)
    assert metrics["no_tta"]["views"] == ["original"] and metrics["tta"]["scales"]["views"] == list(VIEW_SETS["scales"])


@pytest.mark.shared
def test_probabilities_match_the_classifier_used_by_the_service(evaluation, samples):
    classifier = TensorFlowClassifier(SHIPPED_MODEL)
    for index in (0, 7, 19):
        image = model_input(Path(samples[index].path).read_bytes(), classifier.image_size, max_pixels=10**9)
        for name, views in evaluation.views.items():
            served = predict_views(classifier, image, views)[1]
            assert np.allclose(evaluation.probabilities[name][index], served, atol=1e-5)
    accuracy = np.mean(evaluation.probabilities["none"].argmax(axis=1) == evaluation.targets)
    assert evaluation.metrics["no_tta"]["accuracy"] == accuracy


@pytest.mark.shared
def test_ensemble_of_the_model_with_itself_equals_the_model(samples, evaluation):
    twice = evaluate([SHIPPED_MODEL, SHIPPED_MODEL], samples[:6], {"flip": VIEW_SETS["flip"]})
    for name in ("none", "flip"):
        assert np.allclose(twice.probabilities[name], evaluation.probabilities[name][:6], atol=1e-6)
    assert [Path(path).resolve() for path in twice.metrics["models"]] == [SHIPPED_MODEL] * 2
    assert not any(os.path.isabs(path) for path in twice.metrics["models"])  # no path of this machine


@pytest.mark.shared
def test_evaluate_savedmodel_keeps_the_training_summary(samples):
    metrics = evaluate_savedmodel(SHIPPED_MODEL, samples[:4])
    assert metrics["tta_views"] == ["original", "hflip"] and metrics["accuracy"] == metrics["no_tta"]["accuracy"]
    assert metrics["accuracy_tta"] == metrics["tta"]["accuracy"] and metrics["errors_tta"] == metrics["tta"]["errors"]


@pytest.mark.shared
def test_cli_writes_json_and_a_report_with_readable_pngs(tmp_path, capsys):
    # Real photos, two of them filed under a wrong label: the gallery must show them, most confident first.
    data = tmp_path / "data"
    photos = sorted((CARS / "mazda_3").glob("*.jpg"))[:4]
    for folder, chosen in (("mazda_3", photos[:2]), ("kia_rio", photos[2:])):
        (data / folder).mkdir(parents=True)
        for photo in chosen:
            (data / folder / photo.name).write_bytes(photo.read_bytes())
    report = tmp_path / "report"
    carclf("evaluate", "--model", SHIPPED_MODEL, "--data", data, "--tta-views", "flip", "--tta-views",
           "original,zoom_out", "--out", tmp_path / "metrics.json", "--report", report)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["images"] == 4 and metrics["split"] == "all" and Path(metrics["data"]).resolve() == data
    out = capsys.readouterr().out
    assert "| original,zoom_out:" in out and '"no_tta"' not in out  # the table printed, the JSON in the file
    assert str(tmp_path / "metrics.json") in out
    assert list(metrics["tta"]) == ["flip", "original,zoom_out"] and metrics["tta"]["flip"]["accuracy"] == 0.5
    errors = metrics["tta"]["flip"]["errors"]
    assert {e["file"] for e in errors} == {p.name for p in photos[2:]}
    assert {e["predicted"] for e in errors} == {"mazda_3"}
    assert errors[0]["probability"] >= errors[1]["probability"]
    assert not any(os.path.isabs(path) for path in [metrics["data"], *metrics["models"], *(e["path"] for e in errors)])
    markdown = (report / "report.md").read_text()
    for png in ("confusion_matrix.png", "mistakes.png", "reliability.png"):
        assert f"]({png})" in markdown
        with Image.open(report / png) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 250
            assert np.asarray(image.convert("L")).std() > 10  # drawn, not blank
    assert "| flip: original, hflip | 0.500 |" in markdown


@pytest.mark.shared
@pytest.mark.parametrize("args, message", [
    (["--tta-views", "spin"], "Unknown TTA view"),
    (["--model", "/nonexistent"], "No SavedModel"),
])
def test_cli_errors_are_one_line(tmp_path, args, message, capsys):
    error = carclf_error(capsys, "evaluate", "--model", SHIPPED_MODEL, "--data", CARS, *args)
    assert message in error


@pytest.mark.shared
def test_unreadable_photo_is_named(tmp_path, capsys):
    (tmp_path / "kia_rio").mkdir()
    (tmp_path / "mazda_3").mkdir()
    (tmp_path / "kia_rio" / "broken.jpg").write_bytes(b"not a jpeg")
    photo = next((CARS / "mazda_3").glob("*.jpg"))
    (tmp_path / "mazda_3" / photo.name).write_bytes(photo.read_bytes())
    error = carclf_error(capsys, "evaluate", "--model", SHIPPED_MODEL, "--data", tmp_path)
    assert "broken.jpg" in error
