"""The JSON API: ``/predict``, model metadata, health and readiness (see ``app/openapi.json``)."""

import os
import time
from collections.abc import Sequence

import numpy as np
from flask import Blueprint, Response, current_app, g, jsonify, send_file

from app import monitoring
from app.errors import ApiError
from app.model import ModelLoader
from app.uploads import Upload, bool_param, int_param, read_uploads
from inference.contract import model_input
from inference.images import ImageDecodeError
from inference.predictor import Predictor
from inference.tta import SERVED_VIEWS, predict_views

blueprint = Blueprint("api", __name__)

OPENAPI = os.path.join(os.path.dirname(__file__), "openapi.json")


def loader() -> ModelLoader:
    """The app's ``app.model.ModelLoader``."""
    return current_app.extensions["model"]


@blueprint.post("/predict")
def predict() -> Response:
    """Classify the images of the request (see ``app/openapi.json`` and docs/api.md).

    One multipart ``file`` answers ``{"predictions", "known_model", "distance",
    "tta_views", "model", "time_ms"}``; several files or a JSON body answer
    ``{"results": [{"predictions", "known_model", "distance"}, ...],
    "tta_views", "model", "time_ms"}``, one result per image in order.
    Options ``top_k`` and ``tta`` come from the query string, the form or the JSON body.

    Returns:
        200 JSON; 4xx ``{"error": {"code", "message"}}`` on bad input (the
        message names the file); 503 while the model loads.
    """
    started = time.perf_counter()
    classifier = loader().get(wait=current_app.config["LOAD_WAIT_S"])  # a restarted worker: wait, not 503
    uploads, as_list = read_uploads(current_app.config["MAX_FILES"])
    top_k = int_param("top_k", current_app.config["DEFAULT_TOP_K"], 1, len(classifier.labels))
    views = SERVED_VIEWS[bool_param("tta", current_app.config["DEFAULT_TTA"])]
    results = [_classify_upload(classifier, upload, views, top_k) for upload in uploads]
    g.log_fields = {"images": len(results), "top": [r["predictions"][0]["label"] for r in results],
                    "known_model": [r["known_model"] for r in results]}
    common = {
        "tta_views": len(views),
        "model": {"name": classifier.metadata.get("name"), "version": classifier.metadata.get("version")},
        "time_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    return jsonify({"results": results, **common} if as_list else {**results[0], **common})


def _classify_upload(classifier: Predictor, upload: Upload, views: Sequence[str], top_k: int) -> dict:
    """Decode one upload and answer for it: ``{"predictions", "known_model", "distance"}``.

    Raises:
        app.errors.ApiError: 400 with the decoding error's code, naming the file.
    """
    try:
        image = model_input(upload.data, classifier.image_size, current_app.config["MAX_PIXELS"],
                            current_app.config["MAX_PIXELS_FULL"])
    except ImageDecodeError as error:
        raise ApiError(400, error.code, f"{upload.name}: {error}") from None
    _, probabilities, features = run_model(classifier, image, views)
    calibration = classifier.calibration
    known, distance = calibration.known_model(features, views) if calibration else (None, None)
    monitoring.count_image(known)
    predictions = top_predictions(classifier.labels, probabilities, top_k)
    return {"predictions": predictions, "known_model": known, "distance": distance}


def run_model(classifier: Predictor, image: np.ndarray,
              views: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one call from ``/predict`` into the model (timed for ``/metrics``).

    Args:
        classifier: the served ``inference.predictor.Predictor``.
        image: ``uint8 (height, width, 3)`` RGB.
        views: TTA view names, run as one batch.

    Returns:
        ``(logits, probabilities, features)``, ``float32`` ``(num_classes,)``,
        ``(num_classes,)`` and ``(F,)``, averaged over ``views``
        (``inference.tta.predict_views``).
    """
    with monitoring.INFERENCE_SECONDS.time():
        return predict_views(classifier, image, views)


def top_predictions(labels: list[str], probabilities: np.ndarray, k: int) -> list[dict]:
    """The ``k`` most probable of ``labels`` as ``[{"label", "probability"}]``, best first.

    Args:
        labels: class names; probabilities: ``float (num_classes,)`` in their order.
    """
    order = np.argsort(probabilities)[::-1][:k]
    return [{"label": labels[i], "probability": float(probabilities[i])} for i in order]


@blueprint.get("/v1/models/<name>")
def model_metadata(name: str) -> Response:
    """What the served model is: labels, input size, version, precision (float32 or int8), training
    metrics, known-model thresholds (those of its precision).

    Returns:
        200 JSON; 404 ``model_not_found`` for another name; 503 while loading.
    """
    classifier = loader().get()
    if name != classifier.metadata.get("name"):
        raise ApiError(404, "model_not_found", f"No model named {name!r}; this server serves "
                                               f"{classifier.metadata.get('name')!r}.")
    height, width = classifier.image_size
    return jsonify(
        **classifier.metadata,
        labels=classifier.labels,
        input_size={"height": height, "width": width},
        precision=loader().precision,
        default_tta_views=list(SERVED_VIEWS[current_app.config["DEFAULT_TTA"]]),
        training_metrics={key: value for key, value in classifier.metrics.items() if key != "errors_tta"},
        known_model_test=classifier.calibration.summary() if classifier.calibration else None,
    )


@blueprint.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Liveness: 200 while the model is ``loading`` or ``ready``; 503 once it ``failed``.

    The body names this worker's ``pid``, so a client can tell that a worker was not restarted.
    """
    state = loader().state
    return jsonify(status=state, pid=os.getpid()), 503 if state == "failed" else 200


@blueprint.get("/readyz")
def readyz() -> Response:
    """Readiness: 200 once the model is loaded and warmed up; 503 ``model_loading`` before."""
    loader().get()
    return jsonify(status="ready")


@blueprint.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 description of this API (``app/openapi.json``)."""
    return send_file(OPENAPI, mimetype="application/json")
