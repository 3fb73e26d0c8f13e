"""The runtimes without TensorFlow, ONNX Runtime (inference.ort) and LiteRT (inference.litert),
against the SavedModel on real photos; the conversions' parity checks (training.export.parity, training.export.litert,
training.export.onnx); a service on either without TensorFlow; and passes lent first come,
first served (inference.passes.PooledPasses)."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from inference.contract import model_input
from inference.litert import LiteRTClassifier
from inference.loading import load_predictor
from inference.model_folder import ModelLoadError, ModelNotFoundError
from inference.ort import OnnxRuntimeClassifier
from inference.passes import FifoPool
from inference.predictor import Predictor
from inference.tta import DEFAULT_VIEWS, predict_views, tta_batch
from tests.conftest import ROOT, SHIPPED_MODEL, shipped_validation_samples
from tests.helpers import call_concurrently, synthetic_photo


@pytest.fixture(scope="module")
def photos():
    """Two held-out validation photos per class, as encoded bytes."""
    counts, picked = {}, []
    for sample in shipped_validation_samples():
        if counts.setdefault(sample.label, 0) < 2:
            counts[sample.label] += 1
            picked.append(Path(sample.path).read_bytes())
    return picked


# Each runtime without TensorFlow: its class and the file it loads.
LIGHT = {"onnxruntime": (OnnxRuntimeClassifier, "model.onnx"), "litert": (LiteRTClassifier, "model.tflite")}


@pytest.fixture(scope="module")
def runtimes():
    """The shipped model on every runtime, two passes side by side: ``{"onnxruntime": ..., ...}``."""
    return {runtime: load_predictor(SHIPPED_MODEL, runtime, passes=2)
            for runtime in ("onnxruntime", "litert", "tensorflow")}


def test_every_runtime_is_a_predictor(runtimes):
    assert all(isinstance(runtime, Predictor) for runtime in runtimes.values())


@pytest.mark.shared
@pytest.mark.parametrize("runtime", LIGHT)
@pytest.mark.parametrize("views", [DEFAULT_VIEWS[:1], DEFAULT_VIEWS], ids=["no TTA", "TTA"])
def test_each_runtime_gives_the_savedmodels_answers_on_real_photos(runtimes, photos, runtime, views):
    light, tensorflow = runtimes[runtime], runtimes["tensorflow"]
    assert (light.labels, light.image_size, light.metadata) == (
        tensorflow.labels, tensorflow.image_size, tensorflow.metadata)
    for data in photos:
        image = model_input(data, light.image_size, max_pixels=40_000_000)
        (_, expected, expected_features), (_, probabilities, features) = (
            predict_views(model, image, views) for model in (tensorflow, light))
        np.testing.assert_allclose(probabilities, expected, atol=1e-4)
        assert np.argmax(probabilities) == np.argmax(expected)
        known, distance = light.calibration.known_model(features, views)
        expected_known, expected_distance = tensorflow.calibration.known_model(expected_features, views)
        assert known == expected_known and distance == pytest.approx(expected_distance, rel=1e-3, abs=1e-6)


@pytest.mark.shared
@pytest.mark.parametrize("runtime", LIGHT)
def test_passes_answer_concurrent_threads_as_if_alone(runtimes, photos, runtime):
    light = runtimes[runtime]
    images = [model_input(data, light.image_size, max_pixels=40_000_000) for data in photos[:8]]

    def classify(image):
        return predict_views(light, image)[1]

    together = call_concurrently(classify, images)
    for image, probabilities in zip(images, together):
        np.testing.assert_array_equal(probabilities, classify(image))
    assert len({int(np.argmax(p)) for p in together}) > 1


@pytest.mark.shared
def test_a_multithreaded_interpreter_answers_as_a_single_threaded_one(runtimes, photos):
    """The service's default (one interpreter, the worker's cores: gunicorn.conf.py) against one thread."""
    single, threaded = runtimes["litert"], load_predictor(SHIPPED_MODEL, "litert", threads=2)
    for data in photos[:6]:
        image = model_input(data, single.image_size, max_pixels=40_000_000)
        expected, answer = (predict_views(runtime, image) for runtime in (single, threaded))
        np.testing.assert_allclose(answer[1], expected[1], atol=1e-5)
        np.testing.assert_allclose(answer[2], expected[2], atol=1e-4)


@pytest.mark.parametrize("runtime", LIGHT)
def test_images_of_another_size_are_refused(runtimes, runtime):
    height, width = runtimes[runtime].image_size
    with pytest.raises(ValueError, match=rf"takes \({height}, {width}\)"):
        runtimes[runtime].predict(np.zeros((1, 96, 96, 3), np.uint8))


def model_copy(tmp_path, *names):
    """Files of model/ copied into ``tmp_path``: ``names``."""
    for name in names:
        shutil.copy(SHIPPED_MODEL / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("runtime", LIGHT)
def test_a_folder_without_the_models_file_names_the_command_that_writes_it(tmp_path, runtime):
    load, file = LIGHT[runtime]
    with pytest.raises(ModelNotFoundError, match=rf"No {file} .*carclf convert .*CARCLF_RUNTIME"):
        load(model_copy(tmp_path, "metadata.json"))


@pytest.mark.parametrize("runtime", LIGHT)
@pytest.mark.parametrize("keep", [0, 5000, 6_000_000])
def test_a_truncated_model_file_names_the_file_and_the_fix(tmp_path, runtime, keep):
    load, file = LIGHT[runtime]
    folder = model_copy(tmp_path, "metadata.json")
    (folder / file).write_bytes((SHIPPED_MODEL / file).read_bytes()[:keep])
    with pytest.raises(ModelLoadError) as caught:
        load(folder)
    message = str(caught.value)
    assert str(folder / file) in message and "carclf convert" in message
    assert "git checkout -- model/" in message


@pytest.mark.parametrize("runtime", LIGHT)
def test_a_malformed_metadata_file_names_itself(tmp_path, runtime):
    load, file = LIGHT[runtime]
    folder = model_copy(tmp_path, file)
    (folder / "metadata.json").write_text('{"labels": []}')
    with pytest.raises(ModelLoadError, match=r"metadata.json could not be read.*git checkout -- model/"):
        load(folder)


@pytest.mark.parametrize("parity_file", ["litert_parity.json", "onnx_parity.json"])
def test_the_committed_conversions_passed_the_parity_check(parity_file):
    figures = json.loads((SHIPPED_MODEL / parity_file).read_text())
    # The shipped model's conversions were checked on its 858 photos (model card).
    assert figures["photos"] >= 172 and figures["top1_agreement"] == 1 and figures["known_model_agreement"] == 1
    assert figures["max_probability_difference"] < 1e-4


@pytest.mark.shared
def test_a_conversion_that_disagrees_writes_nothing(tmp_path, monkeypatch, photos):
    import training.export.litert as litert_export
    import training.export.parity as parity

    folder = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, folder, ignore=shutil.ignore_patterns("model.tflite", "metadata.json", "litert_*"))
    # The committed .tflite stands in for a fresh conversion (seconds of CPU); a limit no float model meets fails it.
    monkeypatch.setattr(litert_export, "convert_savedmodel", lambda _: (SHIPPED_MODEL / "model.tflite").read_bytes())
    monkeypatch.setattr(parity, "MAX_PROBABILITY_DIFFERENCE", 0.0)
    paths = [str(sample.path) for sample in shipped_validation_samples()[:4]]
    with pytest.raises(parity.ParityError, match=r"on 4 real photos: probabilities differ.*Nothing was"):
        litert_export.write_litert(folder, paths)
    assert not {"model.tflite", "metadata.json", "litert_parity.json"} & {path.name for path in folder.iterdir()}
    monkeypatch.setattr(parity, "MAX_PROBABILITY_DIFFERENCE", 1e-4)
    figures = litert_export.write_litert(folder, paths)
    assert figures["top1_agreement"] == 1 and (folder / "model.tflite").is_file()
    assert LiteRTClassifier(folder).metadata == load_predictor(SHIPPED_MODEL, "tensorflow").metadata


@pytest.mark.shared
def test_an_onnx_conversion_that_disagrees_writes_nothing(tmp_path, monkeypatch, photos):
    import training.export.onnx as onnx_export
    import training.export.parity as parity

    folder = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, folder, ignore=shutil.ignore_patterns("model.onnx", "onnx_*"))
    # The committed .onnx stands in for a fresh conversion; a limit no float model meets fails it.
    monkeypatch.setattr(onnx_export, "convert_tflite", lambda _: (SHIPPED_MODEL / "model.onnx").read_bytes())
    monkeypatch.setattr(parity, "MAX_PROBABILITY_DIFFERENCE", 0.0)
    paths = [str(sample.path) for sample in shipped_validation_samples()[:4]]
    with pytest.raises(parity.ParityError, match=r"ONNX Runtime does not answer .* on 4 real photos"):
        onnx_export.write_onnx(folder, paths)
    assert not {"model.onnx", "onnx_parity.json"} & {path.name for path in folder.iterdir()}
    monkeypatch.setattr(parity, "MAX_PROBABILITY_DIFFERENCE", 1e-4)
    figures = onnx_export.write_onnx(folder, paths)
    assert figures["top1_agreement"] == 1 and (folder / "model.onnx").is_file()


def test_the_onnx_conversion_keeps_the_contracts_names_and_the_committed_answers(tmp_path):
    from training.export.onnx import convert_tflite

    folder = model_copy(tmp_path, "metadata.json")
    (folder / "model.onnx").write_bytes(convert_tflite(SHIPPED_MODEL / "model.tflite"))
    batch = tta_batch(model_input(synthetic_photo(3), OnnxRuntimeClassifier(folder).image_size), DEFAULT_VIEWS)
    for got, expected in zip(OnnxRuntimeClassifier(folder).predict(batch),
                             OnnxRuntimeClassifier(SHIPPED_MODEL).predict(batch)):
        np.testing.assert_allclose(got, expected, atol=1e-6)


SERVE_WITHOUT_TENSORFLOW = """
import sys
from app import create_app
app = create_app({"MODEL_DIR": sys.argv[1], "RUNTIME": sys.argv[3], "PRECISION": sys.argv[4]})
assert app.extensions["model"].wait(120) == "ready"
with open(sys.argv[2], "rb") as photo:
    answer = app.test_client().post("/predict?tta=1", data={"file": (photo, "car.jpg")})
assert answer.status_code == 200 and answer.json["tta_views"] == 2, answer.json
print(sorted({name.split(".")[0] for name in sys.modules} & {"tensorflow", "keras", "ai_edge_litert", "onnxruntime"}))
"""


@pytest.mark.parametrize("runtime, precision, imported", [("onnxruntime", "float32", ["onnxruntime"]),
                                                         ("onnxruntime", "int8", ["onnxruntime"]),
                                                         ("litert", "float32", ["ai_edge_litert"])])
def test_serving_without_tensorflow_imports_its_runtime_only(tmp_path, runtime, precision, imported):
    """From the model folder as the Docker image ships it for that runtime and precision (deploy/slim-model.sh):
    the other copies of the model are gone, and the service does not miss them. Nothing is
    written in the home folder (ONNX Runtime's telemetry is off), which the image's read-only root
    does not allow."""
    folder, photo, home = tmp_path / "model", tmp_path / "car.jpg", tmp_path / "home"
    home.mkdir()
    shutil.copytree(SHIPPED_MODEL, folder)
    subprocess.run([ROOT / "deploy" / "slim-model.sh", runtime, folder, precision], check=True)
    assert not {"saved_model.pb", "variables"} & {path.name for path in folder.iterdir()}
    assert sum(path.stat().st_size for path in folder.iterdir()) < 0.5 * sum(
        path.stat().st_size for path in SHIPPED_MODEL.rglob("*"))
    photo.write_bytes(synthetic_photo(1))
    result = subprocess.run([sys.executable, "-c", SERVE_WITHOUT_TENSORFLOW, str(folder), str(photo), runtime,
                             precision], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HOME": str(home)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == repr(imported)
    assert not list(home.rglob("*"))


def test_the_tensorflow_images_model_folder_keeps_the_savedmodel_only(tmp_path, runtimes):
    folder = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, folder)
    subprocess.run([ROOT / "deploy" / "slim-model.sh", "tensorflow", folder], check=True)
    assert not {"model.onnx", "model.tflite"} & {path.name for path in folder.iterdir()}
    batch = np.stack([model_input(synthetic_photo(seed), runtimes["tensorflow"].image_size) for seed in (1, 2)])
    slimmed = load_predictor(folder, "tensorflow")
    for got, expected in zip(slimmed.predict(batch), runtimes["tensorflow"].predict(batch)):
        np.testing.assert_allclose(got, expected, atol=1e-6)
    bad = subprocess.run([ROOT / "deploy" / "slim-model.sh", "tflite", folder], capture_output=True, text=True)
    assert bad.returncode == 2 and "onnxruntime|litert|tensorflow" in bad.stderr


LITERT_WARM_UP = """
import logging, sys, threading
from app.logs import configure_logging
from inference.litert import LiteRTClassifier
configure_logging("INFO")
classifier = LiteRTClassifier(sys.argv[1])
done = threading.Event()
def requests():  # the service answers /healthz and /readyz while the model warms up
    while not done.wait(0.001):
        logging.getLogger("carclf.request").info("request")
thread = threading.Thread(target=requests)
thread.start()
classifier.warm_up()
done.set()
thread.join()
"""


def test_litert_s_line_on_stderr_becomes_a_log_record():
    """LiteRT's C++ side prints a text line at a process's first pass, which would break the service's
    one-JSON-object-per-line log: the warm-up captures it and logs it; what other threads log meanwhile
    (the service's request lines) is written back as it was, not logged again inside another line."""
    result = subprocess.run([sys.executable, "-c", LITERT_WARM_UP, str(SHIPPED_MODEL)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(record["logger"] == "carclf.litert" and record["message"].startswith("INFO: Created")
               for record in records)
    assert {record["message"] for record in records if record["logger"] != "carclf.litert"} == {"request"}
    assert not any(record["message"].startswith("{") for record in records)


@pytest.mark.parametrize("runtime", LIGHT)
def test_with_two_passes_a_requests_views_run_side_by_side_one_image_each(runtime, monkeypatch):
    """Each of the two TTA views waits at a barrier inside its forward pass: run one after the other, the
    first would wait alone until the barrier breaks. The answers are those of one pass at a time."""
    load, _ = LIGHT[runtime]
    predictor = load(SHIPPED_MODEL, 2)
    together = threading.Barrier(2, timeout=30)
    rows = []
    run = predictor._run

    def at_the_barrier(runner, images):
        rows.append(len(images))
        together.wait()
        return run(runner, images)

    monkeypatch.setattr(predictor, "_run", at_the_barrier)
    batch = tta_batch(model_input(synthetic_photo(1), predictor.image_size), DEFAULT_VIEWS)
    outputs = predictor.predict(batch)
    assert rows == [1, 1]
    for got, expected in zip(outputs, load(SHIPPED_MODEL).predict(batch)):
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_a_returned_interpreter_goes_to_the_thread_that_waited_longest():
    """No barging: the thread giving an interpreter back and asking again at once waits behind the
    threads already waiting (with a queue it took it straight back, and on one core some requests
    waited 15 s)."""
    pool = FifoPool(["interpreter"])
    lent = pool.take()
    served = []

    def request(name):
        served.append((name, pool.take()))
        pool.give_back("interpreter")

    threads = []
    for name in ("first", "second"):
        threads.append(threading.Thread(target=request, args=(name,)))
        threads[-1].start()
        deadline = time.monotonic() + 10
        while len(pool._waiting) < len(threads) and time.monotonic() < deadline:  # queued in this order
            time.sleep(0.001)
    pool.give_back(lent)
    assert pool.take() == "interpreter"  # after both waiting threads
    assert served == [("first", "interpreter"), ("second", "interpreter")]
    for thread in threads:
        thread.join(timeout=10)
