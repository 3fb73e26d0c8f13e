"""The service as deployed: `gunicorn wsgi:app` on a loopback port. A real photo
is classified; a battery of bad uploads gets only 4xx JSON errors with stable
codes while the same worker stays alive; metrics (multiprocess mode) work there
too, and every line the service writes is one JSON object."""

import base64
import http.client
import json
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from PIL import Image

from tests.conftest import CARS, OPENAPI, curl, require
from tests.helpers import encode, multipart_form

pytestmark = [pytest.mark.server, pytest.mark.shared]

BOUNDARY = "carclf-test-boundary"


def multipart(*parts):
    """A multipart/form-data body of ``(name, filename or None, bytes)`` parts, boundary ``BOUNDARY``."""
    return multipart_form(*parts, boundary=BOUNDARY)[0]


MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def send(server, method, path, body=None, headers=None, chunked=False):
    """One HTTP/1.1 request of exact bytes (chunked if asked): ``(status, headers, body bytes)``.

    A raw socket rather than http.client: when the server answers early (413)
    and closes, the rest of the upload meets a broken pipe, and the answer must
    still be read.
    """
    url = urlsplit(server)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {url.netloc}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    payload = body or b""
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        chunks = [payload[i:i + 65536] for i in range(0, len(payload), 65536)]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
    elif body is not None and "Transfer-Encoding" not in (headers or {}):  # else the body is chunked by hand
        lines.append(f"Content-Length: {len(payload)}")
    with socket.create_connection((url.hostname, url.port), timeout=60) as sock:
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before the whole body was sent: read the answer
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def gif_claiming(width, height):
    """A tiny GIF whose header claims ``width x height`` pixels."""
    data = bytearray(encode(Image.new("P", (1, 1)), "GIF"))
    data[6:10] = width.to_bytes(2, "little") + height.to_bytes(2, "little")
    return bytes(data)


NOISY_PNG = encode(Image.effect_noise((64, 64), 40).convert("RGB"), "PNG")


def damaged_png():
    data = bytearray(NOISY_PNG)
    data[len(data) // 2: len(data) // 2 + 64] = b"\0" * 64  # zeroes in the middle of the compressed pixels
    return bytes(data)


@pytest.fixture(scope="module")
def photo():
    return sorted(require(CARS / "toyota_camry").glob("*.jpg"))[0].read_bytes()


def one_file(data, name="car.jpg"):
    return multipart(("file", name, data))


@dataclass(frozen=True)
class Case:
    """One kind of bad request: the body is built from a real photo when the test runs."""

    body: Callable[[bytes], bytes | None]
    status: int
    code: str
    method: str = "POST"
    path: str = "/predict"
    headers: dict = field(default_factory=lambda: MULTIPART)
    chunked: bool = False


TEXT = b"just some text, renamed car.jpg\n" * 4
NOISE = random.Random(0).randbytes(3000)
JSON = {"Content-Type": "application/json"}
TINY_PNG = encode(Image.new("RGB", (8, 8)), "PNG")


def b64_instances(data):
    return json.dumps({"instances": [{"b64": base64.b64encode(data).decode()}]}).encode()


JSON_CHUNKED = {**JSON, "Transfer-Encoding": "chunked"}
MULTIPART_CHUNKED = {**MULTIPART, "Transfer-Encoding": "chunked"}
FLOOD = b'{"instances": [' + b",".join([b"{}"] * 100_000) + b"]}"  # 0.3 MB: over the limit in count, not size


BATTERY = {
    "empty file": Case(lambda p: one_file(b""), 400, "empty_file"),
    "text renamed .jpg": Case(lambda p: one_file(TEXT), 400, "not_an_image"),
    "PDF renamed .jpg": Case(lambda p: one_file(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"), 400,
                             "not_an_image"),
    "HTML renamed .png": Case(lambda p: one_file(b"<html><script>alert(1)</script></html>", "x.png"), 400,
                              "not_an_image"),
    "SVG renamed .jpg": Case(lambda p: one_file(b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>'),
                             400, "not_an_image"),
    "random bytes": Case(lambda p: one_file(NOISE), 400, "not_an_image"),
    "ZIP renamed .jpg": Case(lambda p: one_file(b"PK\x03\x04" + NOISE[:200]), 400, "not_an_image"),
    "PostScript (EPS)": Case(lambda p: one_file(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"),
                             400, "not_an_image"),
    "TIFF (not allowed)": Case(lambda p: one_file(encode(Image.new("RGB", (20, 20)), "TIFF"), "a.tiff"), 400,
                               "not_an_image"),
    "truncated JPEG": Case(lambda p: one_file(p[: len(p) // 3]), 400, "corrupt_image"),
    "JPEG header only": Case(lambda p: one_file(p[:300]), 400, "corrupt_image"),
    "truncated PNG": Case(lambda p: one_file(NOISY_PNG[: len(NOISY_PNG) // 2], "a.png"), 400, "corrupt_image"),
    "damaged PNG pixels": Case(lambda p: one_file(damaged_png(), "a.png"), 400, "corrupt_image"),
    "PNG decompression bomb": Case(lambda p: one_file(encode(Image.new("1", (12000, 12000)), "PNG"), "bomb.png"),
                                   400, "too_many_pixels"),
    "GIF header bomb": Case(lambda p: one_file(gif_claiming(65535, 65535), "bomb.gif"), 400, "too_many_pixels"),
    "body over the limit": Case(lambda p: one_file(b"\xff" * 2_000_000), 413, "request_entity_too_large"),
    "chunked body over the limit": Case(lambda p: one_file(b"\xff" * 2_000_000), 413, "request_entity_too_large",
                                        chunked=True),
    "missing file field": Case(lambda p: multipart(("photo", "car.jpg", p)), 400, "missing_file"),
    "file sent as a text field": Case(lambda p: multipart(("file", None, b"car.jpg")), 400, "missing_file"),
    "multipart without parts": Case(lambda p: f"--{BOUNDARY}--\r\n".encode(), 400, "missing_file"),
    "multipart without boundary": Case(lambda p: b"garbage", 400, "missing_file",
                                       headers={"Content-Type": "multipart/form-data"}),
    "too many files": Case(lambda p: multipart(*[("file", f"{i}.png", TINY_PNG) for i in range(9)]), 400,
                           "too_many_files"),
    "text/plain body": Case(lambda p: p, 415, "unsupported_media_type", headers={"Content-Type": "text/plain"}),
    "form-urlencoded body": Case(lambda p: b"file=car.jpg", 415, "unsupported_media_type",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"}),
    "raw image/jpeg body of text": Case(lambda p: TEXT, 400, "not_an_image", headers={"Content-Type": "image/jpeg"}),
    "raw image/png body, empty": Case(lambda p: b"", 400, "empty_file", headers={"Content-Type": "image/png"}),
    "raw image body over the limit": Case(lambda p: b"\xff" * 2_000_000, 413, "request_entity_too_large",
                                          headers={"Content-Type": "image/jpeg"}),
    "malformed JSON": Case(lambda p: b'{"instances": [', 400, "invalid_json", headers=JSON),
    "JSON without instances": Case(lambda p: b'{"inputs": []}', 400, "invalid_json", headers=JSON),
    "JSON bad base64": Case(lambda p: b'{"instances": [{"b64": "not*base64"}]}', 400, "invalid_base64", headers=JSON),
    "JSON base64 of text": Case(lambda p: b64_instances(TEXT), 400, "not_an_image", headers=JSON),
    "chunked JSON over the limit": Case(lambda p: b64_instances(b"\xff" * 900_000), 413, "request_entity_too_large",
                                        headers=JSON, chunked=True),
    "chunk size not hexadecimal (JSON)": Case(lambda p: b"zz\r\n{}\r\n0\r\n\r\n", 400, "malformed_request",
                                              headers=JSON_CHUNKED),
    "chunk without its CRLF (JSON)": Case(lambda p: b"2\r\n{}XX0\r\n\r\n", 400, "malformed_request",
                                          headers=JSON_CHUNKED),
    "chunk size not hexadecimal (multipart)": Case(lambda p: b"zz\r\n" + one_file(p)[:100] + b"\r\n0\r\n\r\n", 400,
                                                   "malformed_request", headers=MULTIPART_CHUNKED),
    "JSON nested 10,000 deep": Case(lambda p: b"[" * 10_000 + b"]" * 10_000, 400, "invalid_json", headers=JSON),
    "JSON instances nested deep": Case(lambda p: b'{"instances": ' + b"[" * 50 + b"]" * 50 + b"}", 400,
                                       "invalid_json", headers=JSON),
    "JSON with 100,000 instances": Case(lambda p: FLOOD, 400, "too_many_files", headers=JSON),
    "JSON with 100,000 numbers": Case(lambda p: b'{"instances": [' + b"1," * 100_000 + b"1]}", 400, "invalid_json",
                                      headers=JSON),
    "multipart with 1,000 parts": Case(lambda p: multipart(*[("x", None, b"1")] * 1000), 413,
                                       "request_entity_too_large"),
    "top_k out of range": Case(one_file, 400, "invalid_parameter", path="/predict?top_k=99"),
    "tta not a boolean": Case(one_file, 400, "invalid_parameter", path="/predict?tta=maybe"),
    "script in the file name": Case(lambda p: one_file(TEXT, '"><img src=x onerror=alert(1)>.jpg'), 400,
                                    "not_an_image"),
    "path in the file name": Case(lambda p: one_file(TEXT, "../../../../etc/passwd"), 400, "not_an_image"),
    "GET /predict": Case(lambda p: None, 405, "method_not_allowed", method="GET", headers={}),
    "PUT /predict": Case(one_file, 405, "method_not_allowed", method="PUT"),
    "DELETE /predict": Case(lambda p: None, 405, "method_not_allowed", method="DELETE", headers={}),
    "unknown path": Case(one_file, 404, "not_found", path="/predict/../../admin"),
}


def health(server):
    status, body = curl(f"{server}/healthz")
    assert status == 200 and body["status"] == "ready"
    return body["pid"]


@pytest.fixture(scope="module")
def worker_pid(server):
    """The pid of the (single) worker before the battery; it must still answer after it."""
    return health(server)


@pytest.mark.parametrize("kind", list(BATTERY))
def test_bad_upload_gets_a_4xx_json_error_and_the_worker_lives(server, photo, worker_pid, kind):
    case = BATTERY[kind]
    status, headers, answer = send(server, case.method, case.path, case.body(photo), case.headers, case.chunked)
    assert (status, headers["Content-Type"]) == (case.status, "application/json"), answer[:300]
    error = json.loads(answer)["error"]
    assert error["code"] == case.code and error["message"]
    assert health(server) == worker_pid  # same worker: nothing crashed or was restarted


def test_the_battery_is_broad_and_its_codes_are_documented():
    assert len(BATTERY) >= 20
    assert {case.code for case in BATTERY.values()} <= set(OPENAPI["components"]["schemas"]["ErrorCode"]["enum"])


def test_curl_predict_on_a_real_photo_after_the_battery(server, photo, worker_pid, tmp_path):
    path = tmp_path / "camry.jpg"
    path.write_bytes(photo)
    status, body = curl("-F", f"file=@{path}", "-F", "file=@" + str(path), f"{server}/predict")
    assert status == 200 and len(body["results"]) == 2 and body["tta_views"] == 2  # CARCLF_TTA=1 by default
    assert body["results"][0]["predictions"][0]["label"] == "toyota_camry" and body["results"][0]["known_model"]
    assert health(server) == worker_pid


def test_metrics_and_json_request_logs_under_gunicorn(server, server_log, photo):
    status, headers, _ = send(server, "POST", "/predict", one_file(photo),
                              {**MULTIPART, "X-Request-ID": "gunicorn-log-check"})
    assert status == 200 and headers["X-Request-ID"] == "gunicorn-log-check"
    _, _, metrics = send(server, "GET", "/metrics")
    assert 'carclf_http_requests_total{endpoint="/predict",method="POST",status="200"}' in metrics.decode()
    assert "carclf_model_inference_seconds_count" in metrics.decode()
    entries = [json.loads(line) for line in server_log.read_text().splitlines()]
    mine = [e for e in entries if e.get("request_id") == "gunicorn-log-check"]
    assert len(mine) == 1 and mine[0]["status"] == 200 and mine[0]["path"] == "/predict"
    assert mine[0]["top"] == ["toyota_camry"]


def test_every_line_of_the_log_is_one_json_object(server, server_log, photo):
    for path in ("/", "/docs", "/nowhere", "/readyz"):
        send(server, "GET", path)
    send(server, "POST", "/predict", one_file(TEXT))
    lines = server_log.read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # fails on any text line (TensorFlow, gunicorn, warnings)
    assert all(isinstance(entry, dict) and {"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    loggers = {entry["logger"] for entry in entries}
    assert {"gunicorn.error", "carclf.model", "carclf.request"} <= loggers  # gunicorn's own lines are JSON too
    assert "gunicorn.access" not in loggers  # one line per request: the app's
    assert any(e.get("path") == "/nowhere" and e.get("status") == 404 for e in entries)
    # gunicorn 27's control socket is off: no error although the server's HOME does not exist
    assert not [entry for entry in entries if "control" in entry["message"].lower()]
