"""Shared fixtures: real photos from ../shared, the shipped model, tiny trained models."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CARCLF_SHARED", ROOT.parent / "shared"))
CARS = SHARED / "data" / "cars-ru10"
SF_TEST = SHARED / "data" / "sf-test-photos"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_224_imagenet_notop.weights.h5"
SHIPPED_MODEL = ROOT / "model"
TINY_CLASSES = ("kia_rio", "lada_kalina", "mazda_3")


def hold_model_loading(monkeypatch, seconds):
    """Make every app created afterwards keep its model loading until the returned
    ``threading.Event`` is set (or ``seconds`` pass): a worker just (re)started."""
    import threading

    import app.model

    release = threading.Event()
    load_predictor = app.model.load_predictor

    def held_load_predictor(*args, **options):
        release.wait(seconds)
        return load_predictor(*args, **options)

    monkeypatch.setattr(app.model, "load_predictor", held_load_predictor)
    return release


# Under CI (CI=true, .ci/run) and `make test-fast` (CARCLF_STRICT=1) nothing a test needs may be absent:
# CI has ../shared beside the clone and installs Chromium and nginx; the fast tier needs none of them.
STRICT = os.environ.get("CI") == "true" or os.environ.get("CARCLF_STRICT") == "1"


def absent(message):
    """Skip the calling test, saying why something it needs is absent; fail instead when ``STRICT``."""
    if STRICT:
        pytest.fail(f"{message} (a failure, not a skip, under CI=true or CARCLF_STRICT=1)")
    pytest.skip(message)


def require(path):
    """``path``, a file or folder from ../shared; ``absent`` when it is not there."""
    if not path.exists():
        absent(f"{path} is absent (real data and weights live in ../shared; set CARCLF_SHARED to elsewhere)")
    return path


def shipped_validation_samples():
    """The validation photos of model/ (held out by group, never trained on),
    re-created from its training_config.json; skips when ../shared is absent."""
    from training.data.dataset import model_split

    return model_split(SHIPPED_MODEL, require(CARS))[1]


@pytest.fixture(scope="session")
def cars():
    """The cars-ru10 dataset root."""
    return require(CARS)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A dozen real photos: 3 classes x 4 photos, ImageFolder layout, one group per photo."""
    require(CARS)
    root = tmp_path_factory.mktemp("tiny")
    for label in TINY_CLASSES:
        (root / label).mkdir()
        for photo in sorted((CARS / label).glob("*.jpg"))[:4]:
            shutil.copy(photo, root / label / photo.name)
    return root


def make_kaggle_tree(root, categories, per_class, skip=0):
    """Write a Kaggle-layout dataset (train.csv ``Id,Category`` + train/<Category>/<Id>)
    of real photos: ``categories`` maps a Category index to a cars-ru10 class;
    ``skip`` photos of each class are passed over first. Returns ``root``."""
    rows = ["Id,Category"]
    for category, label in categories.items():
        (root / "train" / str(category)).mkdir(parents=True)
        for photo in sorted((require(CARS) / label).glob("*.jpg"))[skip:skip + per_class]:
            shutil.copy(photo, root / "train" / str(category) / photo.name)
            rows.append(f"{photo.name},{category}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def kaggle_dataset(tmp_path_factory):
    """9 real photos in the Kaggle layout, Categories 0, 1, 2 = kia_rio, lada_kalina,
    mazda_3, none of them in ``tiny_dataset``."""
    return make_kaggle_tree(tmp_path_factory.mktemp("kaggle"), dict(enumerate(TINY_CLASSES)), 3, skip=4)


@pytest.fixture(scope="session")
def tiny_savedmodel(tmp_path_factory):
    """A SavedModel of the project's contract around a tiny random network, exported as
    training exports (no ../shared): labels ``a`` and ``b``, input 32 px, 8 features."""
    import keras

    from training.export.savedmodel import export_savedmodel
    from training.model import FEATURES_LAYER

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    hidden = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(keras.layers.Rescaling(1 / 255)(inputs))
    features = keras.layers.GlobalAveragePooling2D(name=FEATURES_LAYER)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(features))
    out = tmp_path_factory.mktemp("tiny-model")
    export_savedmodel(model, ["a", "b"], 32, {"name": "car-model-classifier", "version": "tiny"}, out)
    return out


def ready_app(overrides):
    """``create_app(overrides)`` once its model has loaded in the background."""
    from app import create_app

    app = create_app(overrides)
    assert app.extensions["model"].wait(timeout=120) == "ready"
    return app


@pytest.fixture(scope="session")
def shipped_app():
    """The Flask app serving the shipped model in model/."""
    return ready_app({"MODEL_DIR": str(SHIPPED_MODEL)})


@pytest.fixture()
def client(shipped_app):
    return shipped_app.test_client()


OPENAPI = json.loads((ROOT / "app" / "openapi.json").read_text())


def assert_matches_schema(body, name):
    """Validate a JSON body against ``#/components/schemas/<name>`` of app/openapi.json
    (OpenAPI 3.1 schemas are JSON Schema 2020-12)."""
    from jsonschema import Draft202012Validator

    schema = {"$ref": f"#/components/schemas/{name}", "components": OPENAPI["components"]}
    Draft202012Validator(schema).validate(body)


GUNICORN = Path(sys.executable).with_name("gunicorn")


def curl(*args):
    """Run curl; return ``(HTTP status, parsed JSON body)``."""
    result = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=60)
    body, status = result.stdout.rsplit("\n", 1)
    return int(status), json.loads(body)


@pytest.fixture(scope="session")
def examples_dir(tmp_path_factory):
    """Example photos for the page (CARCLF_EXAMPLES_DIR), copied from ../shared into a
    temporary folder: one held-out photo of a known model and one whole-scene photo
    of another car model. Empty when ../shared is absent."""
    folder = tmp_path_factory.mktemp("examples")
    if CARS.exists() and SF_TEST.exists():
        known = next(s for s in shipped_validation_samples() if s.label == "kia_rio")
        shutil.copy(known.path, folder / "a_kia_rio.jpg")
        shutil.copy(SF_TEST / "3201.jpg", folder / "b_other_model.jpg")
    return folder


@pytest.fixture(scope="session")
def server_log(tmp_path_factory):
    """Where the `server` fixture's gunicorn writes its output (JSON request logs included)."""
    return tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"


@pytest.fixture(scope="session")
def server(server_log, examples_dir, tmp_path_factory):
    """`gunicorn wsgi:app` serving model/ on a free loopback port (uploads capped at 1 MiB,
    Prometheus multiprocess mode on, example photos from `examples_dir`, no HOME), once ready."""
    from tests.helpers import free_port

    port = free_port()
    env = {**os.environ, "BIND": f"127.0.0.1:{port}", "CARCLF_MAX_UPLOAD_MB": "1",
           "CARCLF_EXAMPLES_DIR": str(examples_dir),
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("prometheus")),
           # A HOME that does not exist: gunicorn's control socket, were it on, would fail there (logged).
           "HOME": str(tmp_path_factory.mktemp("home") / "absent")}
    env.pop("XDG_RUNTIME_DIR", None)
    with open(server_log, "w") as handle:
        process = subprocess.Popen([str(GUNICORN), "wsgi:app"], cwd=ROOT, env=env, stdout=handle, stderr=handle)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited: {server_log.read_text()[-2000:]}")
        try:
            if curl(f"{url}/readyz")[0] == 200:
                break
        except (ValueError, subprocess.TimeoutExpired):
            pass
        time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("gunicorn did not become ready within 90 s")
    yield url
    process.terminate()
    process.wait(timeout=30)
