"""The Flask web service: upload page and JSON prediction API.

``create_app()`` is the application factory; ``wsgi.py`` calls it once per
gunicorn worker, so each worker loads and warms up the model once, outside
the request path.
"""

from pathlib import Path

from flask import Flask

from app import api, errors, pages
from app.config import settings_from_env
from inference.classifier import Classifier

ROOT = Path(__file__).resolve().parent.parent


def create_app(overrides=None):
    """Build the app: config from the environment, model loaded and warmed up.

    Args:
        overrides: optional ``dict`` of config keys (see :mod:`app.config`)
            applied over the environment, e.g. ``{"MODEL_DIR": "..."}`` in tests.

    Returns:
        a ready ``flask.Flask`` app; the classifier is ``app.extensions["classifier"]``.

    Raises:
        ValueError: a malformed environment variable.
        inference.classifier.ModelNotFoundError: no SavedModel at ``MODEL_DIR``.
    """
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.config.from_mapping(settings_from_env())
    app.config.update(overrides or {})
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_UPLOAD_MB"] * 1024 * 1024)
    classifier = Classifier(
        app.config["MODEL_DIR"], app.config["BATCH_SIZE"], app.config["BATCH_WAIT_MS"], app.config["BATCH_THREADS"]
    )
    classifier.warm_up()
    app.extensions["classifier"] = classifier
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(api.blueprint)
    errors.register(app)
    return app
