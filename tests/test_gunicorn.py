"""The service as deployed: `gunicorn wsgi:app` on a loopback port, driven with curl."""

from tests.conftest import CARS, curl, require


def test_curl_predict_on_a_real_photo(server):
    photo = sorted(require(CARS / "toyota_camry").glob("*.jpg"))[0]
    status, body = curl("-F", f"file=@{photo}", f"{server}/predict")
    assert status == 200 and len(body["predictions"]) == 3 and body["tta_views"] == 2


def test_oversized_upload_is_413_json_under_gunicorn(server, tmp_path):
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * 2_000_000)
    status, body = curl("-F", f"file=@{big}", f"{server}/predict")
    assert status == 413 and body["error"]["code"] == "request_entity_too_large"
    assert curl(f"{server}/healthz")[0] == 200  # the worker survived


def test_not_an_image_is_400_json_under_gunicorn(server, tmp_path):
    fake = tmp_path / "car.jpg"
    fake.write_text("not a photo")
    status, body = curl("-F", f"file=@{fake}", f"{server}/predict")
    assert status == 400 and body["error"]["code"] == "not_an_image"
