"""The int8 model (docs/int8.md): its conversion, written only when it agrees with the SavedModel
(training.export.int8, on a tiny model and synthetic photos), and serving it (CARCLF_PRECISION=int8)
from the shipped model/."""

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

from app import create_app
from inference.calibration import Calibration
from inference.contract import model_input
from inference.loading import load_predictor
from inference.model_folder import ModelNotFoundError
from inference.tta import DEFAULT_VIEWS, SERVED_VIEWS, predict_views, tta_batch
from tests.conftest import ROOT, SHIPPED_MODEL, assert_matches_schema, ready_app, shipped_validation_samples
from tests.helpers import first_per_class, synthetic_dataset, synthetic_photo
from training.data.dataset import Sample

INT8_FILES = {"model.int8.onnx", "calibration.int8.json", "int8_parity.json"}


@pytest.fixture(scope="module")
def tiny_model(tiny_savedmodel, tmp_path_factory):
    """The tiny SavedModel with its float32 conversions and known-model test, as training leaves it
    before the int8 step, and its split: ``(folder, train samples, validation samples)``, synthetic photos."""
    from training.evaluation.known_model import calibrate
    from training.export.litert import write_litert
    from training.export.onnx import write_onnx

    folder = tmp_path_factory.mktemp("tiny-int8") / "model"
    shutil.copytree(tiny_savedmodel, folder)
    data = synthetic_dataset(tmp_path_factory.mktemp("photos"), per_class=8)
    samples = [Sample(str(path), path.parent.name, path.name) for path in sorted(data.glob("*/*.jpg"))]
    train = [sample for sample in samples if int(Path(sample.path).stem) < 5]
    val = [sample for sample in samples if int(Path(sample.path).stem) >= 5]
    write_litert(folder, [sample.path for sample in val])
    write_onnx(folder, [sample.path for sample in val])
    # Every validation photo inside the threshold (quantile 1): with 6 photos, which one lies furthest
    # is a near tie that rounding may settle either way, here as between any two float32 runtimes.
    calibrate(folder, train, val, quantile=1.0)
    return folder, train, val


@pytest.fixture()
def tiny_copy(tiny_model, tmp_path):
    """A copy of ``tiny_model``'s folder, for a test to write into, with its split."""
    folder, train, val = tiny_model
    shutil.copytree(folder, tmp_path / "model")
    return tmp_path / "model", train, val


def test_the_int8_conversion_is_written_with_its_parity_and_its_own_known_model_threshold(tiny_copy):
    from training.export.int8 import write_int8

    folder, train, val = tiny_copy
    figures = write_int8(folder, train, val)
    assert INT8_FILES <= {path.name for path in folder.iterdir()}
    assert json.loads((folder / "int8_parity.json").read_text()) == figures
    assert figures["photos"] == len(train) + len(val)
    # Integer weights and activations up to the pooling; the features and the head in float32.
    graph = onnx.load(str(folder / "model.int8.onnx")).graph
    produced = {output: node for node in graph.node for output in node.output}
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in graph.node}
    assert any(tensor.data_type == onnx.TensorProto.INT8 for tensor in graph.initializer)
    assert produced["features"].op_type != "DequantizeLinear"
    int8, float32 = load_predictor(folder, "onnxruntime", precision="int8"), load_predictor(folder, "onnxruntime")
    images = np.stack([model_input(Path(sample.path).read_bytes(), int8.image_size) for sample in val])
    int8_features, float_features = int8.predict(images)[2], float32.predict(images)[2]
    assert not np.array_equal(int8_features, float_features)
    np.testing.assert_allclose(int8_features, float_features, atol=0.1 * np.abs(float_features).max())
    # The int8 test: the float32 neighbours, its threshold set by the same rule on its own features.
    stored, own = Calibration.load(folder), int8.calibration
    for views in SERVED_VIEWS.values():
        test, float_test = own.test(views), stored.test(views)
        np.testing.assert_array_equal(test.neighbours, float_test.neighbours)
        distances = test.distances(np.stack([predict_views(int8, image, views)[2] for image in images]))
        assert test.threshold == np.quantile(distances, stored.quantile, method="midpoint")
        assert test.report["validation"]["turned_away"] == int(np.sum(distances > test.threshold))


def test_an_int8_conversion_that_disagrees_writes_nothing(tiny_copy, monkeypatch):
    import training.export.int8 as int8_export
    from training.export.parity import ParityError, Tolerance

    folder, train, val = tiny_copy
    before = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    # No int8 model gives the float32 probabilities to the last bit.
    monkeypatch.setattr(int8_export, "INT8_TOLERANCE", Tolerance(max_probability_difference=0.0))
    with pytest.raises(ParityError, match=r"model.int8.onnx: ONNX Runtime does not answer .* probabilities differ"
                                          r".*Nothing was written"):
        int8_export.write_int8(folder, train, val)
    assert {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()} == before


def test_a_folder_without_model_onnx_names_the_command_that_writes_it(tiny_copy):
    from training.export.int8 import write_int8

    folder, train, val = tiny_copy
    (folder / "model.onnx").unlink()
    with pytest.raises(FileNotFoundError, match=r"No model.onnx .* to quantize.*carclf convert"):
        write_int8(folder, train, val)


@pytest.fixture(scope="module")
def int8_app():
    """The Flask app serving the shipped model at CARCLF_PRECISION=int8."""
    return ready_app({"MODEL_DIR": str(SHIPPED_MODEL), "PRECISION": "int8"})


def test_the_service_serves_int8_and_says_so(int8_app, client):
    metadata = int8_app.test_client().get("/v1/models/car-model-classifier").json
    assert_matches_schema(metadata, "ModelMetadata")
    assert metadata["precision"] == "int8" and client.get("/v1/models/car-model-classifier").json["precision"] \
        == "float32"
    thresholds = json.loads((SHIPPED_MODEL / "calibration.int8.json").read_text())["modes"]
    for key, mode in metadata["known_model_test"]["modes"].items():
        assert mode["threshold"] == thresholds[key]["threshold"]
    answer = int8_app.test_client().post("/predict", data={"file": (io.BytesIO(synthetic_photo(5)), "car.jpg")})
    assert answer.status_code == 200 and isinstance(answer.json["known_model"], bool)
    assert_matches_schema(answer.json, "PredictResponse")


def test_the_shipped_int8_model_is_a_few_mb_and_passed_its_check():
    from training.export.int8 import INT8_TOLERANCE

    assert (SHIPPED_MODEL / "model.int8.onnx").stat().st_size < 0.5 * (SHIPPED_MODEL / "model.onnx").stat().st_size
    figures = json.loads((SHIPPED_MODEL / "int8_parity.json").read_text())
    # Checked on all 858 photos of cars-ru10 (the model card).
    assert figures["photos"] >= 858 and figures["top1_agreement"] >= INT8_TOLERANCE.min_top1_agreement
    assert figures["known_model_agreement"] >= INT8_TOLERANCE.min_known_model_agreement


@pytest.mark.shared
def test_served_int8_answers_agree_with_the_savedmodel_on_held_out_photos(int8_app):
    """Through the service with its default TTA, on two held-out photos per class: the top class and the
    known-model answer of the SavedModel (its own threshold for each), on all but at most one photo."""
    tensorflow = load_predictor(SHIPPED_MODEL, "tensorflow")
    same_top = same_known = 0
    samples = first_per_class(shipped_validation_samples(), 2)
    for sample in samples:
        data = Path(sample.path).read_bytes()
        answer = int8_app.test_client().post("/predict", data={"file": (io.BytesIO(data), "car.jpg")}).json
        _, probabilities, features = predict_views(tensorflow, model_input(data, tensorflow.image_size), DEFAULT_VIEWS)
        same_top += answer["predictions"][0]["label"] == tensorflow.labels[int(np.argmax(probabilities))]
        same_known += answer["known_model"] == tensorflow.calibration.known_model(features, DEFAULT_VIEWS)[0]
    assert len(samples) == 20 and same_top >= 19 and same_known >= 19


def test_int8_on_a_runtime_without_it_is_refused_at_start():
    with pytest.raises(ValueError, match=r"litert runtime serves float32 only.*CARCLF_RUNTIME=onnxruntime"):
        create_app({"MODEL_DIR": str(SHIPPED_MODEL), "RUNTIME": "litert", "PRECISION": "int8"})


@pytest.mark.parametrize("missing", ["model.int8.onnx", "calibration.int8.json"])
def test_a_folder_without_the_int8_files_names_the_command_that_writes_them(tmp_path, missing):
    folder = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, folder, ignore=shutil.ignore_patterns(missing, "saved_model.pb", "variables"))
    with pytest.raises(ModelNotFoundError, match=rf"No {missing} .*carclf quantize .*PRECISION=float32"):
        create_app({"MODEL_DIR": str(folder), "PRECISION": "int8"})
    assert create_app({"MODEL_DIR": str(folder)}).extensions["model"].wait(120) == "ready"


@pytest.mark.parametrize("raw, expected", [(None, "float32"), ("INT8", "int8"), (" float32", "float32")])
def test_the_precision_setting_parses(raw, expected):
    from app.config import settings_from_env

    assert settings_from_env({} if raw is None else {"CARCLF_PRECISION": raw})["PRECISION"] == expected
    with pytest.raises(ValueError, match="CARCLF_PRECISION='fp16' is not a valid precision"):
        settings_from_env({"CARCLF_PRECISION": "fp16"})


def test_the_int8_images_model_folder_keeps_model_int8_onnx_only(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, folder)
    subprocess.run([ROOT / "deploy" / "slim-model.sh", "onnxruntime", folder, "int8"], check=True)
    files = {path.name for path in folder.iterdir()}
    assert "model.int8.onnx" in files and not {"model.onnx", "model.tflite", "saved_model.pb", "variables"} & files
    served = load_predictor(folder, "onnxruntime", precision="int8")
    image = tta_batch(model_input(synthetic_photo(2), served.image_size), DEFAULT_VIEWS)
    for got, expected in zip(served.predict(image),
                             load_predictor(SHIPPED_MODEL, "onnxruntime", precision="int8").predict(image)):
        np.testing.assert_array_equal(got, expected)
    bad = subprocess.run([ROOT / "deploy" / "slim-model.sh", "litert", folder, "int8"], capture_output=True, text=True)
    assert bad.returncode == 2 and "int8 is served by onnxruntime only" in bad.stderr
