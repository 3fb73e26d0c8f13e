"""The known-model calibration (training.calibrate) on the shipped model with a
subset of its own split, and what the service makes of the file it writes."""

import shutil
from pathlib import Path

import pytest

from inference.calibration import Calibration
from inference.classifier import Classifier
from inference.tta import predict_views
from tests.conftest import CARS, SF_TEST, SHIPPED_MODEL, require
from tests.helpers import first_per_class
from training.calibrate import main
from training.data import model_split

pytestmark = pytest.mark.shared  # real photos or weights from ../shared


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A copy of model/ calibrated on 4 training photos per class, 20 validation
    photos and 5 whole-scene photos of other models, keeping 90% of validation."""
    from training.known_model import calibrate

    model = tmp_path_factory.mktemp("calibrated") / "model"
    shutil.copytree(SHIPPED_MODEL, model, ignore=shutil.ignore_patterns("calibration.*"))
    train, val = model_split(model, require(CARS))
    train = first_per_class(train, 4)
    unknown = sorted(require(SF_TEST).glob("*.jpg"))[:5]
    calibrate(model, train, val[:20], unknown, quantile=0.9)
    return model, val[:20]


def test_threshold_keeps_the_quantile_of_validation_and_the_service_agrees(calibrated):
    model, val = calibrated
    calibration = Calibration.load(model)
    assert calibration.method == "mahalanobis_features" and calibration.quantile == 0.9
    assert set(calibration.modes) == {"original", "original+hflip"}
    classifier = Classifier(model)
    for key, views in (("original", ("original",)), ("original+hflip", ("original", "hflip"))):
        report = calibration.modes[key].report
        assert report["validation"]["images"] == 20 and report["unknown"]["images"] == 5
        assert 1 <= report["validation"]["turned_away"] <= 2  # 10% of 20, ties aside
        turned_away = []
        for sample in val:
            _, _, features = predict_views(classifier, classifier.decode(Path(sample.path).read_bytes(), 10**9), views)
            known, distance = classifier.calibration.known_model(features, views)
            assert distance >= 0 and known == (distance <= calibration.modes[key].threshold)
            if not known:
                turned_away.append(Path(sample.path).name)
        assert turned_away == report["validation"]["files"]
        assert set(report["comparison"]) == {"mahalanobis_features", "max_softmax", "energy"}
        # The comparison applies the test's own rule to its score: the same photos turned away.
        shipped = report["comparison"]["mahalanobis_features"]
        assert shipped["validation_turned_away"] == report["validation"]["turned_away"]
        assert shipped["unknown_turned_away"] == report["unknown"]["turned_away"]
        unknown = report["unknown"]
        assert unknown["by_root"] == {"sf-test-photos": {"images": 5, "turned_away": unknown["turned_away"]}}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nowhere"], "training_config.json"),
        (["--model", str(SHIPPED_MODEL), "--quantile", "0"], "quantile must be in (0, 1]"),
        (["--model", str(SHIPPED_MODEL), "--unknown", "no/such/folder"], "is not a directory"),
    ],
)
def test_cli_errors_are_one_line_and_exit_nonzero(args, message):
    with pytest.raises(SystemExit) as caught:
        main([*args, "--data", str(require(CARS))])
    assert str(caught.value.code).startswith("error: ") and message in str(caught.value.code)
    assert "\n" not in str(caught.value.code)
