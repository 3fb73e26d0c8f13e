"""The production stack (deploy/start.sh: nginx in front of gunicorn, as `make serve-prod`
and the Docker image run it) on loopback: slow clients do not stop it, nginx's own
errors are JSON, one address is limited, a killed worker loses no request and leaves
no stale metric. Bounded versions of `python -m benchmarks.reliability`."""

import io
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time

import pytest
from PIL import Image

from benchmarks.harness import Server, load, multipart
from benchmarks.reliability import HOSTILE, MALFORMED, Tricklers, raw, request
from tests.conftest import absent

pytestmark = [pytest.mark.server, pytest.mark.shared]


@pytest.fixture(scope="module")
def front():
    """deploy/start.sh on a free loopback port, uploads capped at 1 MiB, once ready."""
    if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
        absent("nginx is absent (Debian: apt-get install nginx; .ci/run installs it)")
    with Server(env={"CARCLF_MAX_UPLOAD_MB": "1"}, front=True) as server:
        yield server


@pytest.fixture(scope="module")
def photo():
    """A 480x360 JPEG of noise: the model answers it like any photo."""
    buffer = io.BytesIO()
    Image.effect_noise((480, 360), 60).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


def error_code(body):
    return json.loads(body)["error"]["code"]


@pytest.mark.parametrize("name, status, code", [
    ("request line garbage", 400, "malformed_request"),
    ("chunk size not hexadecimal", 400, "malformed_request"),
    ("JSON nested 10,000 deep", 400, "invalid_json"),
    ("URL of 10,000 bytes", 414, "uri_too_long"),
    ("header of 10,000 bytes", 400, "request_header_too_large"),
])
def test_malformed_requests_get_4xx_json(front, name, status, code):
    answer_status, _, body = raw(front, MALFORMED[name])
    assert (answer_status, error_code(body)) == (status, code)


def test_a_body_over_the_limit_is_refused_by_nginx_as_json(front):
    status, _, body = request(front, "POST", "/predict", b"x" * 1_100_000, {"Content-Type": "application/json"})
    assert (status, error_code(body)) == (413, "request_entity_too_large")


def test_the_services_own_answers_pass_through(front, photo):
    body, content_type = multipart(b"not an image")
    status, _, answer = request(front, "POST", "/predict", body, {"Content-Type": content_type})
    assert (status, error_code(answer)) == (400, "not_an_image")
    body, content_type = multipart(photo)
    status, _, answer = request(front, "POST", "/predict", body, {"Content-Type": content_type})
    assert status == 200 and len(json.loads(answer)["predictions"]) == 3


def test_slow_clients_do_not_stop_the_service(front, photo):
    """32 connections trickling header bytes and 16 trickling a body: with gunicorn's 8
    threads in front, these stop the service; behind nginx every normal request is answered."""
    body, content_type = multipart(photo)
    answers = []
    with Tricklers(front, 32, "header", interval=0.5), Tricklers(front, 16, "body", interval=0.5):
        time.sleep(2)
        for _ in range(5):
            answers.append(request(front, "GET", "/healthz", timeout=10)[:2])
            answers.append(request(front, "POST", "/predict", body, {"Content-Type": content_type}, timeout=10)[:2])
    assert [status for status, _ in answers] == [200] * 10, answers


def test_one_address_gets_at_most_32_requests_at_once(front):
    """Requests whose body is still arriving count against their address (limit_conn):
    the 33rd from 127.0.0.2 is refused with 429; 127.0.0.1 is still served."""
    held = []
    try:
        for _ in range(32):
            sock = socket.create_connection((front.host, front.port), timeout=10, source_address=(HOSTILE, 0))
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{")
            held.append(sock)
        time.sleep(0.5)
        with socket.create_connection((front.host, front.port), timeout=10, source_address=(HOSTILE, 0)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = sock.makefile("rb").read()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split()[1] == b"429" and error_code(body) == "too_many_requests"
        assert request(front, "GET", "/healthz")[0] == 200
    finally:
        for sock in held:
            sock.close()


def in_flight_gauge(front):
    _, _, metrics = request(front, "GET", "/metrics")
    line = next(line for line in metrics.decode().splitlines() if line.startswith("carclf_http_requests_in_flight"))
    return float(line.split()[-1])


def test_a_killed_worker_loses_no_request_and_leaves_no_stale_gauge(front, photo):
    """SIGKILL the worker under 8 clients: nginx sends the cut requests again, the new
    worker's /predict waits for its model; gunicorn's child_exit hook drops the dead
    worker's in-flight gauge (8 requests were in flight when it died)."""
    result = {}
    clients = threading.Thread(target=lambda: result.update(
        load(front.host, front.port, "/predict", [multipart(photo)], 8, 400)))
    clients.start()
    time.sleep(1.5)
    (worker,) = front.workers()
    os.kill(worker.pid, signal.SIGKILL)
    clients.join()
    assert len(result["failures"]) <= 4, result["failures"]  # at most 1%; none expected
    assert [w.pid for w in front.workers()] != [worker.pid]
    assert in_flight_gauge(front) == 1  # this /metrics request alone


def test_the_output_is_json_lines_and_a_stop_exits_0_leaving_nothing_behind(tmp_path):
    """Start to stop, every line the stack writes is JSON: gunicorn's, the requests' (those during
    start-up too: nginx starts once gunicorn's socket exists), nginx's own (its 413 line). SIGTERM, as
    `docker stop` sends it, stops it with status 0 within 10 s and removes the run folder and the metrics
    folder (the image's PROMETHEUS_MULTIPROC_DIR)."""
    metrics = tmp_path / "metrics"
    # The run folder's parents must let nginx's workers through (user nobody when run as root).
    with tempfile.TemporaryDirectory() as run_dirs:
        os.chmod(run_dirs, 0o711)
        env = {"CARCLF_MAX_UPLOAD_MB": "1", "TMPDIR": run_dirs, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
        with Server(env=env, front=True) as server:
            status, _, _ = request(server, "POST", "/predict", b"x" * 1_100_000, {"Content-Type": "application/json"})
            assert status == 413 and metrics.is_dir() and len(os.listdir(run_dirs)) == 1
            server.process.terminate()
            assert server.process.wait(timeout=10) == 0
            records = [json.loads(line) for line in server.log_tail(None).splitlines()]
        assert not os.listdir(run_dirs) and not metrics.exists()
    assert any(record["logger"] == "nginx" and "too large body" in record["message"] for record in records)
    assert any(record.get("path") == "/readyz" for record in records)
