"""/predict with the shipped model, on real photos: the JSON contract (checked
against app/openapi.json), several files, base64 JSON, options, the known-model
answer, and bad input answered with 4xx JSON errors."""

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import SF_TEST, SHIPPED_MODEL, assert_matches_schema, ready_app, require, shipped_validation_samples
from tests.helpers import first_per_class


@pytest.fixture(scope="module")
def validation_photos():
    """One held-out validation photo per class (never trained on by model/)."""
    return first_per_class(shipped_validation_samples())


def post_photo(client, path, **fields):
    with open(path, "rb") as handle:
        return client.post("/predict", data={"file": (handle, path.name), **fields})


def post_bytes(client, data, name="car.jpg"):
    return client.post("/predict", data={"file": (io.BytesIO(data), name)})


@pytest.fixture(scope="module", params=["onnxruntime", "litert", "tensorflow"])
def runtime_client(request):
    """A test client of the shipped model on each runtime (CARCLF_RUNTIME)."""
    return ready_app({"MODEL_DIR": str(SHIPPED_MODEL), "RUNTIME": request.param}).test_client()


@pytest.mark.shared
def test_shipped_model_classifies_held_out_real_photos(runtime_client, validation_photos):
    assert len(validation_photos) == 10
    correct = known = 0
    for sample in validation_photos:
        answer = post_photo(runtime_client, Path(sample.path))
        assert answer.status_code == 200
        correct += answer.json["predictions"][0]["label"] == sample.label
        known += answer.json["known_model"] is True
    assert correct >= 9 and known >= 9


@pytest.mark.shared
def test_both_runtimes_answer_the_same(runtime_client, client, validation_photos):
    """Each runtime against the default (LiteRT): same labels, probabilities within 1e-4, same known-model answer."""
    for sample in validation_photos[:4]:
        for tta in ("0", "1"):
            answer, expected = (post_photo(c, Path(sample.path), tta=tta).json for c in (runtime_client, client))
            assert [p["label"] for p in answer["predictions"]] == [p["label"] for p in expected["predictions"]]
            assert [p["probability"] for p in answer["predictions"]] == pytest.approx(
                [p["probability"] for p in expected["predictions"]], abs=1e-4)
            assert answer["known_model"] == expected["known_model"]


@pytest.mark.shared
def test_json_contract(client, validation_photos):
    answer = post_photo(client, Path(validation_photos[0].path))
    body = answer.json
    assert answer.content_type == "application/json"
    assert set(body) == {"predictions", "known_model", "distance", "tta_views", "model", "time_ms"}
    assert_matches_schema(body, "PredictResponse")
    predictions = body["predictions"]
    assert len(predictions) == 3 and all(set(p) == {"label", "probability"} for p in predictions)
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
    assert body["tta_views"] == 2 and body["model"]["version"] and body["time_ms"] > 0  # the flip by default
    assert body["known_model"] is True and body["distance"] >= 0


@pytest.mark.shared
def test_top_k_and_tta_switch(client, validation_photos):
    path = Path(validation_photos[1].path)
    everything = post_photo(client, path, top_k="10").json
    assert len(everything["predictions"]) == 10
    assert abs(sum(p["probability"] for p in everything["predictions"]) - 1) < 1e-4
    plain = post_photo(client, path, tta="0", top_k="1").json
    assert plain["tta_views"] == 1 and len(plain["predictions"]) == 1
    flipped = post_photo(client, path, tta="1", top_k="1").json
    assert flipped["tta_views"] == 2
    assert flipped["predictions"][0] == everything["predictions"][0]  # TTA is on by default
    assert flipped["predictions"][0]["probability"] != pytest.approx(plain["predictions"][0]["probability"], abs=1e-7)


@pytest.mark.shared
def test_tta_default_follows_the_setting(validation_photos):
    app = ready_app({"MODEL_DIR": str(SHIPPED_MODEL), "DEFAULT_TTA": False})
    answer = post_photo(app.test_client(), Path(validation_photos[1].path)).json
    assert answer["tta_views"] == 1
    metadata = app.test_client().get("/v1/models/car-model-classifier").json
    assert metadata["default_tta_views"] == ["original"]


@pytest.mark.shared
def test_several_files_answer_one_result_each_in_order(client, validation_photos):
    photos = [Path(sample.path) for sample in validation_photos[:3]]
    files = [(open(path, "rb"), path.name) for path in photos]
    try:
        answer = client.post("/predict", data={"file": files, "top_k": "2"})
    finally:
        for handle, _ in files:
            handle.close()
    assert answer.status_code == 200
    assert_matches_schema(answer.json, "BatchPredictResponse")
    results = answer.json["results"]
    assert [r["predictions"][0]["label"] for r in results] == [s.label for s in validation_photos[:3]]
    alone = post_photo(client, photos[2], top_k="2").json
    assert results[2]["predictions"] == alone["predictions"] and results[2]["distance"] == alone["distance"]


@pytest.mark.shared
def test_json_base64_instances_match_multipart(client, validation_photos):
    path = Path(validation_photos[4].path)
    encoded = base64.b64encode(path.read_bytes()).decode()
    wrapped = base64.encodebytes(path.read_bytes()).decode()  # 76-column lines, as `base64 car.jpg` writes
    urlsafe = base64.urlsafe_b64encode(path.read_bytes()).decode()
    answer = client.post("/predict", json={"instances": [{"b64": encoded}, {"b64": wrapped}, {"b64": urlsafe}],
                                           "top_k": 4, "tta": False})
    assert answer.status_code == 200
    assert_matches_schema(answer.json, "BatchPredictResponse")
    multipart = post_photo(client, path, top_k="4", tta="0").json
    assert answer.json["tta_views"] == 1
    assert all(result["predictions"] == multipart["predictions"] for result in answer.json["results"])


@pytest.mark.shared
@pytest.mark.parametrize("content_type", ["image/jpeg", "image/png", "image/webp"])
def test_a_raw_image_body_matches_multipart(client, validation_photos, content_type):
    path = Path(validation_photos[5].path)
    answer = client.post("/predict?top_k=2&tta=0", data=path.read_bytes(), content_type=content_type)
    assert answer.status_code == 200
    assert_matches_schema(answer.json, "PredictResponse")  # one result, as for one multipart file
    multipart = post_photo(client, path, top_k="2", tta="0").json
    assert answer.json["predictions"] == multipart["predictions"] and answer.json["distance"] == multipart["distance"]
    assert answer.json["predictions"][0]["label"] == validation_photos[5].label


def test_a_raw_body_that_is_no_image_is_named_in_the_error(client):
    answer = client.post("/predict", data=b"%PDF-1.7 not a photo", content_type="image/jpeg")
    assert answer.status_code == 400 and answer.json["error"]["code"] == "not_an_image"
    assert answer.json["error"]["message"].startswith("request body: ")
    other = client.post("/predict", data=b"just text", content_type="text/plain")
    assert other.status_code == 415 and "image/*" in other.json["error"]["message"]


@pytest.mark.shared
def test_photos_of_other_car_models_are_mostly_not_known(client):
    photos = sorted(require(SF_TEST).glob("*.jpg"))
    answers = [post_photo(client, photo).json for photo in photos]
    assert all(len(a["predictions"]) == 3 for a in answers)  # the guesses are still given
    unknown = sum(a["known_model"] is False for a in answers)
    assert unknown >= 2 * len(photos) // 3, f"only {unknown}/{len(photos)} photos of other models turned away"


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
def test_bad_uploads_are_400_json_naming_the_file(client, data, code):
    answer = post_bytes(client, data, "holiday.jpg")
    assert answer.status_code == 400 and answer.json["error"]["code"] == code
    assert answer.json["error"]["message"].startswith("holiday.jpg: ")
    assert_matches_schema(answer.json, "Error")


def test_one_bad_file_among_several_fails_the_request_and_names_it(client):
    answer = client.post("/predict", data={"file": [(io.BytesIO(png()), "good.png"), (io.BytesIO(b"text"), "bad.jpg")]})
    assert answer.status_code == 400 and answer.json["error"]["code"] == "not_an_image"
    assert "bad.jpg" in answer.json["error"]["message"]


def test_odd_but_valid_images_are_classified(client):
    for data in (png("RGBA"), png("L"), png("P"), png("RGB", (1, 1))):
        assert post_bytes(client, data, "odd.png").status_code == 200


def test_request_errors_are_json(client):
    cases = [
        (client.post("/predict", data={"other": "x"}, content_type="multipart/form-data"), 400, "missing_file"),
        (client.post("/predict", data="file=x", content_type="application/x-www-form-urlencoded"), 415,
         "unsupported_media_type"),
        (client.post("/predict", json={"instances": []}), 400, "invalid_json"),
        (client.post("/predict", json={"instances": [{"b64": "@@@"}]}), 400, "invalid_base64"),
        (client.post("/predict", json={"instances": [{"b64": base64.b64encode(png()).decode()}] * 9}), 400,
         "too_many_files"),
        (client.get("/predict"), 405, "method_not_allowed"),
        (client.get("/nowhere"), 404, "not_found"),
    ]
    for answer, status, code in cases:
        assert (answer.status_code, answer.json["error"]["code"]) == (status, code)
        assert_matches_schema(answer.json, "Error")
    assert "POST" in client.get("/predict").headers["Allow"]


@pytest.mark.parametrize("field, value", [("top_k", "0"), ("top_k", "11"), ("top_k", "three"), ("tta", "maybe")])
def test_bad_parameters_are_400(client, field, value):
    answer = client.post("/predict", data={"file": (io.BytesIO(png()), "car.png"), field: value})
    assert answer.status_code == 400 and answer.json["error"]["code"] == "invalid_parameter"
    assert field in answer.json["error"]["message"]


def test_too_large_upload_is_413_json(shipped_app, client, monkeypatch):
    monkeypatch.setitem(shipped_app.config, "MAX_CONTENT_LENGTH", 10_000)
    answer = post_bytes(client, b"\xff" * 20_000)
    assert answer.status_code == 413 and answer.json["error"]["code"] == "request_entity_too_large"


@pytest.mark.parametrize("raw, expected", [("1", True), ("On", True), ("false", False), (None, True)])
def test_tta_setting_parses_yes_and_no(raw, expected):
    from app.config import settings_from_env

    assert settings_from_env({} if raw is None else {"CARCLF_TTA": raw})["DEFAULT_TTA"] is expected


@pytest.mark.parametrize("raw, expected", [(None, "onnxruntime"), ("TensorFlow", "tensorflow"), (" litert", "litert")])
def test_runtime_setting_parses(raw, expected):
    from app.config import settings_from_env

    assert settings_from_env({} if raw is None else {"CARCLF_RUNTIME": raw})["RUNTIME"] == expected


def test_a_bad_runtime_setting_is_named():
    from app.config import settings_from_env

    with pytest.raises(ValueError, match="CARCLF_RUNTIME='onnx' is not a valid runtime"):
        settings_from_env({"CARCLF_RUNTIME": "onnx"})


def test_a_bad_tta_setting_is_named():
    from app.config import settings_from_env

    with pytest.raises(ValueError, match="CARCLF_TTA='maybe'"):
        settings_from_env({"CARCLF_TTA": "maybe"})
