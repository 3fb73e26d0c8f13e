"""The upload page."""

from flask import Blueprint, current_app, render_template

blueprint = Blueprint("pages", __name__)


@blueprint.get("/")
def index():
    """The page: choose or drop a photo, see the top-k models (``templates/index.html``)."""
    classifier = current_app.extensions["classifier"]
    return render_template(
        "index.html",
        labels=classifier.labels,
        top_k=current_app.config["DEFAULT_TOP_K"],
        model_version=classifier.metadata.get("version", "unknown"),
    )
