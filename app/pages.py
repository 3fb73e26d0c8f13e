"""The upload page, the API page and the optional example photos."""

from pathlib import Path

from flask import Blueprint, abort, current_app, render_template, send_from_directory

from inference.images import FORMAT_NAMES

blueprint = Blueprint("pages", __name__)

EXAMPLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
MAX_EXAMPLES = 8


def example_names():
    """File names of the example photos in ``CARCLF_EXAMPLES_DIR`` (sorted, at most
    :data:`MAX_EXAMPLES`); none when it is unset or not a directory."""
    folder = current_app.config["EXAMPLES_DIR"]
    if not folder or not Path(folder).is_dir():
        return []
    names = sorted(p.name for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in EXAMPLE_SUFFIXES)
    return names[:MAX_EXAMPLES]


@blueprint.get("/")
def index():
    """The page: choose, drop or pick an example photo, see the top-k models (``templates/index.html``)."""
    config = current_app.config
    classifier = current_app.extensions["model"].classifier  # None for the first seconds after start
    return render_template(
        "index.html",
        labels=classifier.labels if classifier else [],
        model_version=classifier.metadata.get("version", "unknown") if classifier else "loading",
        top_k=config["DEFAULT_TOP_K"],
        tta=config["DEFAULT_TTA"],
        max_upload_mb=config["MAX_UPLOAD_MB"],
        formats=FORMAT_NAMES,
        examples=example_names(),
    )


@blueprint.get("/docs")
def docs():
    """The API reference, rendered in the browser from ``/openapi.json`` (``templates/docs.html``)."""
    return render_template("docs.html")


@blueprint.get("/examples/<name>")
def example(name):
    """One example photo; 404 for anything not listed by :func:`example_names`."""
    if name not in example_names():
        abort(404)
    return send_from_directory(current_app.config["EXAMPLES_DIR"], name)
