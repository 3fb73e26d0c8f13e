"""Observability: request ids, JSON request logs and Prometheus metrics (``GET /metrics``).

Every request gets an id (the client's ``X-Request-ID`` when it is a sane
token, else a new one), returned in the ``X-Request-ID`` header and written
in its log line. Logs are one JSON object per line on stderr (``app.logs``).

Under gunicorn with several workers, each worker counts for itself: set
``PROMETHEUS_MULTIPROC_DIR`` to an empty, writable directory (wiped before
gunicorn starts) and prometheus_client's multiprocess mode adds them up.
"""

import logging
import os
import re
import time
import uuid

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

blueprint = Blueprint("monitoring", __name__)
request_log = logging.getLogger("carclf.request")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

REQUESTS = Counter("carclf_http_requests", "HTTP requests answered, by route, method and status.",
                   ["endpoint", "method", "status"])
LATENCY = Histogram("carclf_http_request_duration_seconds", "Time to answer a request, by route.", ["endpoint"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
IN_FLIGHT = Gauge("carclf_http_requests_in_flight", "Requests being answered now.", multiprocess_mode="livesum")
INFERENCE_SECONDS = Histogram("carclf_model_inference_seconds", "Model time per image (all its TTA views, one batch).",
                              buckets=(0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56))
IMAGES = Counter("carclf_images_classified", "Images classified, by whether the top class is a known model.",
                 ["known_model"])


def count_image(known: bool | None) -> None:
    """Count one classified image by its known-model answer (``true``, ``false`` or ``none``)."""
    IMAGES.labels(known_model=str(known).lower()).inc()


def register(app: Flask) -> None:
    """Install the request hooks (id, in-flight gauge, metrics, log line) and ``/metrics``."""
    app.register_blueprint(blueprint)

    @app.before_request
    def _start() -> None:
        supplied = request.headers.get("X-Request-ID", "")
        g.request_id = supplied if _REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex
        g.started = time.perf_counter()
        IN_FLIGHT.inc()

    @app.after_request
    def _finish(response: Response) -> Response:
        seconds = time.perf_counter() - g.started
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        REQUESTS.labels(endpoint=endpoint, method=request.method, status=str(response.status_code)).inc()
        LATENCY.labels(endpoint=endpoint).observe(seconds)
        response.headers["X-Request-ID"] = g.request_id
        request_log.info("request", extra={"fields": {
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(seconds * 1000, 1),
            "bytes_in": request.content_length,
            "remote_addr": request.remote_addr,
            **g.get("log_fields", {}),
        }})
        return response

    @app.teardown_request
    def _leave(error: BaseException | None = None) -> None:
        if "started" in g:
            IN_FLIGHT.dec()


@blueprint.get("/metrics")
def metrics() -> Response:
    """Prometheus text format: this process's metrics, or all workers' in multiprocess mode."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
