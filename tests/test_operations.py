"""Operating the service: background model loading, health and readiness,
model metadata, the OpenAPI document, Prometheus metrics, request ids and JSON
logs, security headers, in-memory uploads and the example photos."""

import contextlib
import io
import json
import logging
import os
import runpy
import shutil
import threading

import pytest
from flask import request
from openapi_spec_validator import validate
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from app.logs import JsonFormatter
from app.pages import DEFAULT_PHOTO_HINT
from inference.model_folder import ModelNotFoundError
from tests.conftest import (
    CARS,
    OPENAPI,
    ROOT,
    SHIPPED_MODEL,
    assert_matches_schema,
    hold_model_loading,
    ready_app,
    require,
)


def jpeg_bytes():
    return next(require(CARS / "mazda_3").glob("*.jpg")).read_bytes()


@pytest.mark.shared
def test_model_loads_in_the_background_while_healthz_answers(monkeypatch):
    release = hold_model_loading(monkeypatch, 60)  # the real load waits until the loading state is checked
    flask_app = create_app({"MODEL_DIR": str(SHIPPED_MODEL), "LOAD_WAIT_S": 0.2})
    client = flask_app.test_client()
    assert client.get("/healthz").status_code == 200 and client.get("/healthz").json["status"] == "loading"
    for answer in (client.get("/readyz"), client.post("/predict", data={"file": (io.BytesIO(jpeg_bytes()), "a.jpg")})):
        assert answer.status_code == 503 and answer.json["error"]["code"] == "model_loading"
        assert answer.headers["Retry-After"] == "5"
    assert b"The model is loading" in client.get("/").data
    release.set()
    assert flask_app.extensions["model"].wait(120) == "ready"
    assert client.get("/readyz").json == {"status": "ready"}
    assert client.get("/healthz").json["status"] == "ready"


@pytest.mark.shared
def test_predict_waits_for_a_model_still_loading(monkeypatch):
    """A worker that was just (re)started holds /predict until its model is ready, within CARCLF_LOAD_WAIT_S."""
    release = hold_model_loading(monkeypatch, 60)
    flask_app = create_app({"MODEL_DIR": str(SHIPPED_MODEL), "LOAD_WAIT_S": 120})
    client = flask_app.test_client()
    threading.Timer(0.5, release.set).start()
    assert flask_app.extensions["model"].state == "loading"
    answer = client.post("/predict", data={"file": (io.BytesIO(jpeg_bytes()), "a.jpg")})
    assert answer.status_code == 200 and answer.json["predictions"]


# A file of the model each runtime loads, zeroed.
CORRUPT = {"tensorflow": "variables/variables.data-00000-of-00001", "litert": "model.tflite",
           "onnxruntime": "model.onnx"}


@pytest.mark.parametrize("runtime", list(CORRUPT))
def test_a_corrupt_model_fails_readiness_and_liveness(tmp_path, runtime):
    broken = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, broken)
    (broken / CORRUPT[runtime]).write_bytes(b"\0" * 100)
    flask_app = create_app({"MODEL_DIR": str(broken), "RUNTIME": runtime})
    assert flask_app.extensions["model"].wait(120) == "failed"
    client = flask_app.test_client()
    assert client.get("/healthz").status_code == 503
    answer = client.get("/readyz")
    assert answer.status_code == 503 and answer.json["error"]["code"] == "model_failed"


@pytest.mark.parametrize("runtime, message", [("tensorflow", "No SavedModel"), ("litert", "No model.tflite"),
                                              ("onnxruntime", "No model.onnx")])
def test_a_missing_model_fails_the_start_at_once(tmp_path, runtime, message):
    with pytest.raises(ModelNotFoundError, match=message):
        create_app({"MODEL_DIR": str(tmp_path), "RUNTIME": runtime})


def test_model_metadata(client):
    answer = client.get("/v1/models/car-model-classifier")
    assert answer.status_code == 200
    body = answer.json
    assert_matches_schema(body, "ModelMetadata")
    assert len(body["labels"]) == 10 and "kia_rio" in body["labels"]
    size = json.loads((SHIPPED_MODEL / "training_config.json").read_text())["image_size"]
    assert body["input_size"] == {"height": size, "width": size} and body["backbone"] == "EfficientNetLite0"
    assert body["default_tta_views"] == ["original", "hflip"]
    metrics = json.loads((SHIPPED_MODEL / "metrics.json").read_text())
    assert body["training_metrics"]["accuracy"] == metrics["accuracy"]
    calibration = json.loads((SHIPPED_MODEL / "calibration.json").read_text())
    for key in ("original", "original+hflip"):
        assert body["known_model_test"]["modes"][key]["threshold"] == calibration["modes"][key]["threshold"]
    missing = client.get("/v1/models/resnet")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "model_not_found"


@pytest.mark.shared
def test_without_calibration_known_model_is_null(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model, ignore=shutil.ignore_patterns("calibration.*"))
    client = ready_app({"MODEL_DIR": str(model)}).test_client()
    answer = client.post("/predict", data={"file": (io.BytesIO(jpeg_bytes()), "car.jpg")})
    assert answer.status_code == 200 and answer.json["known_model"] is None and answer.json["distance"] is None
    assert client.get("/v1/models/car-model-classifier").json["known_model_test"] is None


def test_openapi_document_is_valid_and_matches_the_routes(client, shipped_app):
    served = client.get("/openapi.json")
    assert served.status_code == 200 and served.json == OPENAPI
    validate(OPENAPI)
    routes = {rule.rule.replace("<", "{").replace(">", "}") for rule in shipped_app.url_map.iter_rules()}
    assert set(OPENAPI["paths"]) <= routes
    assert client.get("/docs").status_code == 200


def metric_samples(client):
    text = client.get("/metrics").get_data(as_text=True)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.shared
def test_metrics_count_requests_latency_in_flight_and_inference(client):
    before = metric_samples(client)
    predict_ok = ("carclf_http_requests_total", (("endpoint", "/predict"), ("method", "POST"), ("status", "200")))
    assert client.post("/predict", data={"file": (io.BytesIO(jpeg_bytes()), "car.jpg")}).status_code == 200
    after = metric_samples(client)
    assert after[predict_ok] == before.get(predict_ok, 0) + 1
    assert after[("carclf_model_inference_seconds_count", ())] >= 1
    assert after[("carclf_http_request_duration_seconds_count", (("endpoint", "/predict"),))] >= 1
    assert after[("carclf_http_requests_in_flight", ())] == 1  # the /metrics request itself
    assert sum(v for (name, _), v in after.items() if name == "carclf_images_classified_total") >= 1


@contextlib.contextmanager
def request_log():
    """Capture the JSON request log lines written meanwhile, as a ``StringIO``."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("carclf.request")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


def test_request_id_is_returned_and_logged_as_json(client):
    with request_log() as lines:
        answer = client.get("/healthz", headers={"X-Request-ID": "trace-42.a"})
    assert answer.headers["X-Request-ID"] == "trace-42.a"
    entry = json.loads(lines.getvalue().strip().splitlines()[-1])
    assert entry["request_id"] == "trace-42.a" and entry["path"] == "/healthz" and entry["status"] == 200
    assert entry["method"] == "GET" and entry["duration_ms"] >= 0 and entry["level"] == "info"
    generated = client.get("/healthz", headers={"X-Request-ID": "<script>alert(1)</script>"}).headers["X-Request-ID"]
    assert len(generated) == 32 and generated.isalnum()


@pytest.mark.parametrize("path", ["/", "/docs", "/static/app.js", "/openapi.json", "/healthz", "/predict", "/nowhere"])
def test_security_headers_on_every_response(client, path):
    headers = client.get(path).headers
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_uploads_stay_in_memory(shipped_app):
    big = b"\xff" * 2_000_000  # Werkzeug alone would spool this to a temporary file (over 500 kB)
    with shipped_app.test_request_context("/predict", method="POST", data={"file": (io.BytesIO(big), "big.jpg")}):
        assert isinstance(request.files["file"].stream, io.BytesIO)


def test_example_photos_come_only_from_the_configured_folder(shipped_app, client, monkeypatch, tmp_path):
    assert b'id="examples"' not in client.get("/").data  # none unless CARCLF_EXAMPLES_DIR is set
    for name in ("a.png", "b.jpg"):
        Image.new("RGB", (30, 20)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a photo")
    monkeypatch.setitem(shipped_app.config, "EXAMPLES_DIR", str(tmp_path))
    page = client.get("/").get_data(as_text=True)
    assert page.count('class="example"') == 2 and 'data-src="/examples/a.png"' in page
    photo = client.get("/examples/a.png")
    assert photo.status_code == 200 and photo.mimetype == "image/png"
    for name in ("notes.txt", "..%2Fa.png", "missing.jpg"):
        assert client.get(f"/examples/{name}").status_code == 404


def test_a_relative_examples_dir_lists_and_serves_its_photos(monkeypatch, tmp_path):
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (30, 20)).save(tmp_path / "photos" / "car.png")
    monkeypatch.chdir(tmp_path)  # relative to the directory the service starts in, not to app/
    monkeypatch.setenv("CARCLF_EXAMPLES_DIR", "photos")
    flask_app = create_app({"MODEL_DIR": str(SHIPPED_MODEL)})
    client = flask_app.test_client()
    assert 'data-src="/examples/car.png"' in client.get("/").get_data(as_text=True)
    photo = client.get("/examples/car.png")
    assert photo.status_code == 200 and photo.mimetype == "image/png"
    flask_app.extensions["model"].wait(120)


def test_the_page_says_which_photos_work_best(shipped_app, client, monkeypatch):
    classifier = shipped_app.extensions["model"].classifier
    if "photo_hint" not in classifier.metadata:  # the shipped model's card says it; newer models carry their own
        assert DEFAULT_PHOTO_HINT in client.get("/").get_data(as_text=True)
    monkeypatch.setitem(classifier.metadata, "photo_hint", "Side views of vans work best.")
    page = client.get("/").get_data(as_text=True)
    assert "Side views of vans work best." in page and DEFAULT_PHOTO_HINT not in page


def test_the_api_page_lists_every_operation_and_schema_as_html(client):
    page = client.get("/docs").get_data(as_text=True)
    for path, methods in OPENAPI["paths"].items():
        for method in methods:
            assert f"<h3>{method.upper()} {path}</h3>" in page
    assert all(f'id="schema-{name}"' in page for name in OPENAPI["components"]["schemas"])
    assert "<code>image/*</code>" in page  # the raw image body of /predict
    assert "&#34;$ref&#34;" not in page and '"$ref"' not in page  # no raw JSON dumped


def test_favicon_is_served(client):
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    for path in ("/", "/docs"):
        assert 'rel="icon" href="/static/favicon.svg"' in client.get(path).get_data(as_text=True)


def test_gunicorn_binds_the_loopback_interface_unless_told(monkeypatch):
    for variable in ("BIND", "HOST", "PORT"):
        monkeypatch.delenv(variable, raising=False)
    for variable in ("CARCLF_INTERPRETERS", "CARCLF_INTERPRETER_THREADS",
                     "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        monkeypatch.setenv(variable, os.environ.get(variable, "1"))  # restored afterwards: the file sets defaults
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["bind"] == "127.0.0.1:8000"
    monkeypatch.setenv("HOST", "0.0.0.0")  # as the Docker image does
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["bind"] == "0.0.0.0:8000"


def test_client_address_from_a_trusted_proxy_is_logged():
    flask_app = create_app({"MODEL_DIR": str(SHIPPED_MODEL), "TRUSTED_PROXIES": 1})
    with request_log() as lines:
        flask_app.test_client().get("/healthz", headers={"X-Forwarded-For": "203.0.113.7"})
    assert json.loads(lines.getvalue().strip().splitlines()[-1])["remote_addr"] == "203.0.113.7"
    flask_app.extensions["model"].wait(120)  # let its background load finish
