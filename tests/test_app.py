"""The Flask service with the shipped model, on real photos: the JSON contract,
TTA, parameters, and bad input answered with 4xx JSON errors."""

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import SF_TEST, SHIPPED_MODEL, require, shipped_validation_samples


@pytest.fixture(scope="module")
def validation_photos():
    """One held-out validation photo per class (never trained on by model/)."""
    first = {}
    for sample in shipped_validation_samples():
        first.setdefault(sample.label, sample)
    return list(first.values())


def post_photo(client, path, **fields):
    with open(path, "rb") as handle:
        return client.post("/predict", data={"file": (handle, path.name), **fields})


def post_bytes(client, data, name="car.jpg"):
    return client.post("/predict", data={"file": (io.BytesIO(data), name)})


def test_shipped_model_classifies_held_out_real_photos(client, validation_photos):
    assert len(validation_photos) == 10
    correct = 0
    for sample in validation_photos:
        answer = post_photo(client, Path(sample.path))
        assert answer.status_code == 200
        correct += answer.json["predictions"][0]["label"] == sample.label
    assert correct >= 9


def test_json_contract(client, validation_photos):
    answer = post_photo(client, Path(validation_photos[0].path))
    body = answer.json
    assert answer.content_type == "application/json"
    assert set(body) == {"predictions", "tta_views", "model", "time_ms"}
    predictions = body["predictions"]
    assert len(predictions) == 3 and all(set(p) == {"label", "probability"} for p in predictions)
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
    assert body["tta_views"] == 2 and body["model"]["version"] and body["time_ms"] > 0


def test_top_k_and_tta_switch(client, validation_photos):
    path = Path(validation_photos[1].path)
    everything = post_photo(client, path, top_k="10").json
    assert len(everything["predictions"]) == 10
    assert abs(sum(p["probability"] for p in everything["predictions"]) - 1) < 1e-4
    plain = post_photo(client, path, tta="0", top_k="1").json
    assert plain["tta_views"] == 1 and len(plain["predictions"]) == 1
    assert plain["predictions"][0]["probability"] != pytest.approx(everything["predictions"][0]["probability"], abs=1e-7)


def test_unknown_car_models_get_an_answer(client):
    photo = next(require(SF_TEST).glob("*.jpg"))
    answer = post_photo(client, photo)
    assert answer.status_code == 200 and len(answer.json["predictions"]) == 3


def test_page_lists_the_models_and_loads_its_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and b"Car model classifier" in page.data
    assert b"Kia Rio" in page.data and b"Lada Kalina" in page.data
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200


def png(mode="RGB", size=(50, 40)):
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", "empty_file"),
        (b"hello, I am text", "not_an_image"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "not_an_image"),
        (png()[:60], "corrupt_image"),
    ],
)
def test_bad_uploads_are_400_json(client, data, code):
    answer = post_bytes(client, data)
    assert answer.status_code == 400 and answer.json["error"]["code"] == code
    assert answer.json["error"]["message"]


def test_odd_but_valid_images_are_classified(client):
    for data in (png("RGBA"), png("L"), png("P"), png("RGB", (1, 1))):
        assert post_bytes(client, data, "odd.png").status_code == 200


def test_request_errors_are_json(client):
    cases = [
        (client.post("/predict", data={"other": "x"}, content_type="multipart/form-data"), 400, "missing_file"),
        (client.post("/predict", json={"instances": []}), 415, "unsupported_media_type"),
        (client.get("/predict"), 405, "method_not_allowed"),
        (client.get("/nowhere"), 404, "not_found"),
    ]
    for answer, status, code in cases:
        assert (answer.status_code, answer.json["error"]["code"]) == (status, code)


@pytest.mark.parametrize("field, value", [("top_k", "0"), ("top_k", "11"), ("top_k", "three"), ("tta", "maybe")])
def test_bad_parameters_are_400(client, field, value):
    answer = client.post("/predict", data={"file": (io.BytesIO(png()), "car.png"), field: value})
    assert answer.status_code == 400 and answer.json["error"]["code"] == "invalid_parameter"
    assert field in answer.json["error"]["message"]


def test_too_large_upload_is_413_json():
    from app import create_app

    small = create_app({"MODEL_DIR": str(SHIPPED_MODEL), "MAX_UPLOAD_MB": 0.01}).test_client()
    answer = post_bytes(small, b"\xff" * 20_000)
    assert answer.status_code == 413 and answer.json["error"]["code"] == "request_entity_too_large"


def test_healthz(client):
    assert client.get("/healthz").json == {"status": "ok"}
