"""The Flask web service: upload page, JSON prediction API, health, metrics.

``create_app()`` is the application factory; ``wsgi.py`` calls it once per
gunicorn worker, which then loads and warms up the model in a background
thread (``app.model``) while already answering ``/healthz``.

Importing this package is light (Flask only): gunicorn's master imports
``app.logs`` for its log format; the model's runtime (ONNX Runtime, LiteRT or
TensorFlow) loads in the workers.
"""

import os
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import settings_from_env
from app.logs import configure_logging

# TensorFlow's C++ logs are text: errors only. Read when TensorFlow is imported (create_app, below).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent


def page_folder(name: str) -> Path:
    """The page's ``templates`` or ``static`` folder: inside the app package in an installed wheel
    (package data, pyproject.toml), else at the top of the checkout."""
    packaged = Path(__file__).resolve().parent / name
    return packaged if packaged.is_dir() else ROOT / name


def create_app(overrides: dict | None = None) -> Flask:
    """Build the app from the environment and start loading the model.

    Args:
        overrides: optional ``dict`` of config keys (see ``app.config``)
            applied over the environment, e.g. ``{"MODEL_DIR": "..."}`` in tests
            (several directories joined by ``os.pathsep``: their ensemble).

    Returns:
        a ``flask.Flask`` app; its ``app.model.ModelLoader`` is
        ``app.extensions["model"]`` (``.wait()`` blocks until it is ready).

    Raises:
        ValueError: a malformed environment variable, or ``PRECISION`` int8 on a
            runtime that serves float32 only.
        inference.model_folder.ModelNotFoundError: ``MODEL_DIR`` lacks what
            ``RUNTIME`` loads at ``PRECISION`` (checked at once, so a wrong path
            fails the start, not later).
    """
    settings = {**settings_from_env(), **(overrides or {})}
    configure_logging(settings["LOG_LEVEL"])  # before TensorFlow's import, which adds a text handler otherwise
    from app import api, errors, monitoring, pages, security
    from app.model import ModelLoader
    from app.uploads import InMemoryRequest
    from inference.model_folder import require_model

    app = Flask(__name__, template_folder=page_folder("templates"), static_folder=page_folder("static"))
    app.request_class = InMemoryRequest
    app.config.from_mapping(settings)
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_UPLOAD_MB"] * 1024 * 1024)
    app.config["MAX_FORM_PARTS"] = app.config["MAX_FILES"] + 8  # the files and a few options; more: 413 at once
    if app.config["TRUSTED_PROXIES"]:
        proxies = app.config["TRUSTED_PROXIES"]
        # Flask's documented way to wrap its WSGI callable (mypy sees a method assigned).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)  # type: ignore[method-assign]
    for model_dir in app.config["MODEL_DIR"].split(os.pathsep):  # several: an ensemble
        require_model(model_dir, app.config["RUNTIME"], app.config["PRECISION"])
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(api.blueprint)
    monitoring.register(app)
    security.register(app)
    errors.register(app)
    app.extensions["model"] = ModelLoader(app.config["MODEL_DIR"], app.config["RUNTIME"], app.config["INTERPRETERS"],
                                          app.config["INTERPRETER_THREADS"], app.config["PRECISION"]).start()
    return app
