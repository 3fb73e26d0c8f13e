"""The JSON API: ``POST /predict`` and ``GET /healthz``."""

import time

from flask import Blueprint, current_app, jsonify, request

from app.errors import ApiError
from inference.images import ImageDecodeError
from inference.tta import DEFAULT_VIEWS

blueprint = Blueprint("api", __name__)

_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


@blueprint.post("/predict")
def predict():
    """Classify the photo in the multipart field ``file``.

    Optional fields (form or query string): ``top_k`` (1..number of classes,
    default ``CARCLF_TOP_K``) and ``tta`` (``1``/``0``, default on: original +
    horizontal flip, probabilities averaged).

    Returns:
        200 ``{"predictions": [{"label", "probability"}], "tta_views",
        "model": {"name", "version"}, "time_ms"}``, predictions sorted by
        probability; 4xx ``{"error": {"code", "message"}}`` on bad input.
    """
    started = time.perf_counter()
    classifier = current_app.extensions["classifier"]
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "Send the photo as multipart/form-data in the field 'file'.")
    top_k = _int_param("top_k", current_app.config["DEFAULT_TOP_K"], 1, len(classifier.labels))
    views = DEFAULT_VIEWS if _bool_param("tta", True) else DEFAULT_VIEWS[:1]
    upload = request.files.get("file")
    if upload is None:
        raise ApiError(400, "missing_file", "No file: send the photo in the multipart field 'file'.")
    try:
        image = classifier.decode(upload.read(), current_app.config["MAX_PIXELS"])
    except ImageDecodeError as error:
        raise ApiError(400, error.code, str(error)) from None
    probabilities = classifier.classify(image, views)
    return jsonify(
        predictions=classifier.top_k(probabilities, top_k),
        tta_views=len(views),
        model={"name": classifier.metadata.get("name"), "version": classifier.metadata.get("version")},
        time_ms=round((time.perf_counter() - started) * 1000, 1),
    )


@blueprint.get("/healthz")
def healthz():
    """Liveness: 200 once the process has loaded and warmed up its model."""
    return jsonify(status="ok")


def _param(name):
    return request.form.get(name, request.args.get(name))


def _int_param(name, default, low, high):
    raw = _param(name)
    if raw is None or raw == "":
        return min(default, high)
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ApiError(400, "invalid_parameter", f"'{name}' must be an integer from {low} to {high}, got {raw!r}.")
    return value


def _bool_param(name, default):
    raw = _param(name)
    if raw is None or raw == "":
        return default
    if raw.lower() not in _BOOLEANS:
        raise ApiError(400, "invalid_parameter", f"'{name}' must be 1 or 0 (true/false), got {raw!r}.")
    return _BOOLEANS[raw.lower()]
