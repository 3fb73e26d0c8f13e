"""The LiteRT runtime (inference.litert) against the SavedModel on real photos, the
conversion's parity check (training.litert_export), a LiteRT service without TensorFlow, and
the interpreters lent first come, first served."""

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from inference.litert import FifoPool, LiteRTClassifier
from inference.predictor import Predictor
from inference.runtime import ModelLoadError, ModelNotFoundError, load_predictor
from inference.tta import DEFAULT_VIEWS, predict_views, tta_batch
from tests.conftest import ROOT, SHIPPED_MODEL, shipped_validation_samples
from tests.helpers import synthetic_photo
from tests.test_batching import call_concurrently


@pytest.fixture(scope="module")
def photos():
    """Two held-out validation photos per class, as encoded bytes."""
    counts, picked = {}, []
    for sample in shipped_validation_samples():
        if counts.setdefault(sample.label, 0) < 2:
            counts[sample.label] += 1
            picked.append(Path(sample.path).read_bytes())
    return picked


@pytest.fixture(scope="module")
def runtimes():
    """The shipped model on both runtimes: ``{"litert": ..., "tensorflow": ...}``."""
    return {runtime: load_predictor(SHIPPED_MODEL, runtime, interpreters=2) for runtime in ("litert", "tensorflow")}


def test_both_runtimes_are_predictors(runtimes):
    assert all(isinstance(runtime, Predictor) for runtime in runtimes.values())


@pytest.mark.shared
@pytest.mark.parametrize("views", [DEFAULT_VIEWS[:1], DEFAULT_VIEWS], ids=["no TTA", "TTA"])
def test_both_runtimes_give_the_same_answers_on_real_photos(runtimes, photos, views):
    litert, tensorflow = runtimes["litert"], runtimes["tensorflow"]
    assert (litert.labels, litert.image_size, litert.metadata) == (
        tensorflow.labels, tensorflow.image_size, tensorflow.metadata)
    for data in photos:
        image = litert.decode(data, max_pixels=40_000_000)
        assert np.array_equal(image, tensorflow.decode(data, max_pixels=40_000_000))
        (_, expected, expected_features), (_, probabilities, features) = (
            predict_views(runtime, image, views) for runtime in (tensorflow, litert))
        np.testing.assert_allclose(probabilities, expected, atol=1e-4)
        assert np.argmax(probabilities) == np.argmax(expected)
        known, distance = litert.calibration.known_model(features, views)
        expected_known, expected_distance = tensorflow.calibration.known_model(expected_features, views)
        assert known == expected_known and distance == pytest.approx(expected_distance, rel=1e-3, abs=1e-6)


@pytest.mark.shared
def test_interpreters_answer_concurrent_threads_as_if_alone(runtimes, photos):
    litert = runtimes["litert"]
    images = [litert.decode(data, max_pixels=40_000_000) for data in photos[:8]]

    def classify(image):
        return predict_views(litert, image)[1]

    together = call_concurrently(classify, images)
    for image, probabilities in zip(images, together):
        np.testing.assert_array_equal(probabilities, classify(image))
    assert len({int(np.argmax(p)) for p in together}) > 1


@pytest.mark.shared
def test_a_multithreaded_interpreter_answers_as_a_single_threaded_one(runtimes, photos):
    """The service's default (one interpreter, the worker's cores: gunicorn.conf.py) against one thread."""
    single, threaded = runtimes["litert"], load_predictor(SHIPPED_MODEL, "litert", interpreter_threads=2)
    for data in photos[:6]:
        image = single.decode(data, max_pixels=40_000_000)
        expected, answer = (predict_views(runtime, image) for runtime in (single, threaded))
        np.testing.assert_allclose(answer[1], expected[1], atol=1e-5)
        np.testing.assert_allclose(answer[2], expected[2], atol=1e-4)


def test_images_of_another_size_are_refused(runtimes):
    height, width = runtimes["litert"].image_size
    with pytest.raises(ValueError, match=rf"takes \({height}, {width}\)"):
        runtimes["litert"].predict(np.zeros((1, 96, 96, 3), np.uint8))


def model_copy(tmp_path, *names):
    """The LiteRT files of model/ copied into ``tmp_path``: ``names``."""
    for name in names:
        shutil.copy(SHIPPED_MODEL / name, tmp_path / name)
    return tmp_path


def test_a_folder_without_the_tflite_names_the_command_that_writes_it(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"No model.tflite .*python -m training.convert .*CARCLF_RUNTIME"):
        LiteRTClassifier(model_copy(tmp_path, "metadata.json"))


@pytest.mark.parametrize("keep", [0, 5000, 6_000_000])
def test_a_truncated_tflite_names_the_file_and_the_fix(tmp_path, keep):
    folder = model_copy(tmp_path, "metadata.json")
    (folder / "model.tflite").write_bytes((SHIPPED_MODEL / "model.tflite").read_bytes()[:keep])
    with pytest.raises(ModelLoadError) as caught:
        LiteRTClassifier(folder)
    message = str(caught.value)
    assert str(folder / "model.tflite") in message and "python -m training.convert" in message
    assert "git checkout -- model/" in message


def test_a_malformed_metadata_file_names_itself(tmp_path):
    folder = model_copy(tmp_path, "model.tflite")
    (folder / "metadata.json").write_text('{"labels": []}')
    with pytest.raises(ModelLoadError, match=r"metadata.json could not be read.*git checkout -- model/"):
        LiteRTClassifier(folder)


def test_the_committed_tflite_passed_the_parity_check():
    figures = json.loads((SHIPPED_MODEL / "litert_parity.json").read_text())
    # The shipped model's conversion was checked on its 172 validation photos (model card).
    assert figures["photos"] >= 172 and figures["top1_agreement"] == 1 and figures["known_model_agreement"] == 1
    assert figures["max_probability_difference"] < 1e-4


@pytest.mark.shared
def test_a_conversion_that_disagrees_writes_nothing(tmp_path, monkeypatch, photos):
    import training.litert_export as litert_export

    folder = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, folder, ignore=shutil.ignore_patterns("model.tflite", "metadata.json", "litert_*"))
    # The committed .tflite stands in for a fresh conversion (seconds of CPU); a limit no float model meets fails it.
    monkeypatch.setattr(litert_export, "convert_savedmodel", lambda _: (SHIPPED_MODEL / "model.tflite").read_bytes())
    monkeypatch.setattr(litert_export, "MAX_PROBABILITY_DIFFERENCE", 0.0)
    paths = [str(sample.path) for sample in shipped_validation_samples()[:4]]
    with pytest.raises(litert_export.ParityError, match=r"on 4 real photos: probabilities differ.*Nothing was"):
        litert_export.write_litert(folder, paths)
    assert not {"model.tflite", "metadata.json", "litert_parity.json"} & {path.name for path in folder.iterdir()}
    monkeypatch.setattr(litert_export, "MAX_PROBABILITY_DIFFERENCE", 1e-4)
    figures = litert_export.write_litert(folder, paths)
    assert figures["top1_agreement"] == 1 and (folder / "model.tflite").is_file()
    assert LiteRTClassifier(folder).metadata == load_predictor(SHIPPED_MODEL, "tensorflow").metadata


SERVE_WITHOUT_TENSORFLOW = """
import sys
from app import create_app
app = create_app({"MODEL_DIR": sys.argv[1], "RUNTIME": "litert"})
assert app.extensions["model"].wait(120) == "ready"
with open(sys.argv[2], "rb") as photo:
    answer = app.test_client().post("/predict?tta=1", data={"file": (photo, "car.jpg")})
assert answer.status_code == 200 and answer.json["tta_views"] == 2, answer.json
print(sorted(name for name in sys.modules if name.split(".")[0] in ("tensorflow", "keras")))
"""


def test_serving_on_litert_imports_no_tensorflow(tmp_path):
    photo = tmp_path / "car.jpg"
    photo.write_bytes(synthetic_photo(1))
    result = subprocess.run([sys.executable, "-c", SERVE_WITHOUT_TENSORFLOW, str(SHIPPED_MODEL), str(photo)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_with_two_interpreters_a_requests_views_run_side_by_side_one_image_each():
    """Each of the two TTA views waits at a barrier inside its forward pass: run one after the other, the
    first would wait alone until the barrier breaks. The answers are those of one interpreter."""
    predictor = LiteRTClassifier(SHIPPED_MODEL, interpreters=2)
    together = threading.Barrier(2, timeout=30)
    rows = []

    def at_the_barrier(runner):
        def run(images):
            rows.append(len(images))
            together.wait()
            return runner(images=images)
        return run

    predictor._pool = FifoPool([at_the_barrier(runner) for runner in predictor._pool._idle])
    batch = tta_batch(predictor.decode(synthetic_photo(1)), DEFAULT_VIEWS)
    outputs = predictor.predict(batch)
    assert rows == [1, 1]
    for got, expected in zip(outputs, LiteRTClassifier(SHIPPED_MODEL).predict(batch)):
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
