"""The known-model calibration (training.calibrate) on the shipped model with a
subset of its own split, and what the service makes of the file it writes."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from inference.calibration import METHOD, Calibration
from inference.contract import model_input
from inference.savedmodel import TensorFlowClassifier
from inference.tta import predict_views
from tests.conftest import CARS, SF_TEST, SHARED, SHIPPED_MODEL, require
from tests.helpers import carclf_error, first_per_class
from training.data.dataset import model_split
from training.evaluation.known_model import fit_gaussians, read_other_models

STANFORD = SHARED / "data" / "stanford-cars"
ANGLES = {"136_hyundai_accent_sedan_2012": "hyundai_solaris", "187_toyota_camry_sedan_2012": "toyota_camry"}


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A copy of model/ calibrated on 4 training photos per class, 20 validation
    photos and 5 whole-scene photos of other models, keeping 90% of validation."""
    from training.evaluation.known_model import calibrate

    model = tmp_path_factory.mktemp("calibrated") / "model"
    shutil.copytree(SHIPPED_MODEL, model, ignore=shutil.ignore_patterns("calibration.*"))
    train, val = model_split(model, require(CARS))
    unknown = sorted(require(SF_TEST).glob("*.jpg"))[:5]
    calibrate(model, first_per_class(train, 4), val[:20], unknown, quantile=0.9)
    return model, val[:20]


@pytest.mark.shared
def test_threshold_keeps_the_quantile_of_validation_and_the_service_agrees(calibrated):
    model, val = calibrated
    calibration = Calibration.load(model)
    assert calibration.method == METHOD and calibration.quantile == 0.9
    assert set(calibration.modes) == {"original", "original+hflip"}
    classifier = TensorFlowClassifier(model)
    for key, views in (("original", ("original",)), ("original+hflip", ("original", "hflip"))):
        report = calibration.modes[key].report
        assert report["validation"]["images"] == 20 and report["unknown"]["images"] == 5
        assert 1 <= report["validation"]["turned_away"] <= 2  # 10% of 20, ties aside
        turned_away = []
        for sample in val:
            image = model_input(Path(sample.path).read_bytes(), classifier.image_size, 10**9)
            _, _, features = predict_views(classifier, image, views)
            known, distance = classifier.calibration.known_model(features, views)
            assert distance >= 0 and known == (distance <= calibration.modes[key].threshold)
            if not known:
                turned_away.append(Path(sample.path).name)
        assert turned_away == report["validation"]["files"]
        assert set(report["comparison"]) == {METHOD, "mahalanobis", "max_softmax", "energy"}
        # The comparison applies the test's own rule to its score: the same photos turned away.
        shipped = report["comparison"][METHOD]
        assert shipped["validation_turned_away"] == report["validation"]["turned_away"]
        assert shipped["unknown_turned_away"] == report["unknown"]["turned_away"]
        unknown = report["unknown"]
        assert unknown["by_root"] == {"sf-test-photos": {"images": 5, "turned_away": unknown["turned_away"]}}


@pytest.mark.shared
def test_other_models_are_split_by_model_and_other_angles_kept_apart():
    background, measured, angles = read_other_models([require(STANFORD)], ANGLES)
    model_of = {half: {path.parent.name for path in paths}
                for half, paths in (("fit", background), ("measured", measured))}
    # Stanford's folders start with the official class id: odd ids fit, even ids are measured.
    models = sorted(path.name for path in STANFORD.iterdir() if path.is_dir() and path.name not in ANGLES)
    assert sorted(model_of["fit"]) == [name for name in models if int(name[:3]) % 2 == 1]
    assert sorted(model_of["measured"]) == [name for name in models if int(name[:3]) % 2 == 0]
    assert len(background) + len(measured) + len(angles) == len(list(STANFORD.glob("*/*.jpg")))
    assert {Path(sample.path).parent.name: sample.label for sample in angles} == ANGLES


@pytest.mark.shared
def test_a_background_of_other_models_turns_away_more_models_it_never_saw(tmp_path):
    """model/ calibrated on 20 training photos per class and 60 validation
    photos; the relative Mahalanobis comparison gets a background of 60 photos
    of 30 other models and is measured on 60 photos of 30 models it never saw."""
    from training.evaluation.known_model import calibrate

    background, measured, _ = read_other_models([require(STANFORD)], ANGLES)
    background = [path for path in background if path.stem[-1] in "02"][:60]
    measured = [path for path in measured if path.stem[-1] in "02"][:60]
    train, val = model_split(SHIPPED_MODEL, require(CARS))
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model, ignore=shutil.ignore_patterns("calibration.*"))
    calibrate(model, first_per_class(train, 20), val[:60], measured, 0.99, background_paths=background)
    report = Calibration.load(model).modes["original"].report
    assert report["background"]["images"] == 60 and report["unknown"]["images"] == 60
    comparison = report["comparison"]
    assert comparison[METHOD]["unknown_turned_away"] == report["unknown"]["turned_away"]
    # Same rule (keep 99% of validation), same photos: the background makes the difference.
    assert comparison["mahalanobis_minus_background"]["unknown_turned_away"] > \
        comparison["mahalanobis"]["unknown_turned_away"]


@pytest.mark.shared
@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nowhere"], "training_config.json"),
        (["--model", str(SHIPPED_MODEL), "--quantile", "0"], "quantile must be in (0, 1]"),
        (["--model", str(SHIPPED_MODEL), "--unknown", "no/such/folder"], "is not a directory"),
    ],
)
def test_cli_errors_are_one_line_and_exit_nonzero(args, message, capsys):
    error = carclf_error(capsys, "calibrate", *args, "--data", require(CARS))
    assert message in error


def test_mahalanobis_distances_match_the_definition_on_the_shipped_models_features():
    """The expanded distance (no (n, m, F) residuals) equals min over centres of
    (x - mu)^T Sigma^-1 (x - mu) with Sigma in probabilistic-PCA form, on the shipped model's features."""
    calibration_arrays = np.load(require(SHIPPED_MODEL) / "calibration.npz")
    features = np.asarray(calibration_arrays["original"], np.float64)[:120]
    classes = np.arange(len(features)) % 4
    gaussians = fit_gaussians(features, classes, components=16)
    u = gaussians.components
    precision = (u.T / gaussians.variances) @ u + (np.eye(u.shape[1]) - u.T @ u) / gaussians.noise_variance
    expected = [min((x - mu) @ precision @ (x - mu) for mu in gaussians.means) for x in features[:10]]
    np.testing.assert_allclose(gaussians.distances(features[:10]), expected, rtol=1e-6)
