"""The upload page, the API page and the optional example photos."""

import json
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, render_template, send_from_directory

from app.api import OPENAPI
from inference.images import FORMAT_NAMES
from inference.predictor import Predictor

blueprint = Blueprint("pages", __name__)

EXAMPLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
MAX_EXAMPLES = 8
# Shown when the model's metadata has no "photo_hint"; from the model card's "Limits" (model/README.md).
DEFAULT_PHOTO_HINT = ("Works best with the car seen from the front and filling most of the photo, as in used-car "
                      "listings; rear or side views and whole street scenes are often misread.")


def example_names() -> list[str]:
    """File names of the example photos in ``CARCLF_EXAMPLES_DIR`` (sorted, at most
    ``MAX_EXAMPLES``); none when it is unset or not a directory."""
    folder = current_app.config["EXAMPLES_DIR"]
    if not folder or not Path(folder).is_dir():
        return []
    names = sorted(p.name for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in EXAMPLE_SUFFIXES)
    return names[:MAX_EXAMPLES]


def photo_hint(classifier: Predictor | None) -> str:
    """Which photos the model reads best: its metadata's ``photo_hint`` (a sentence written at
    training time), else ``DEFAULT_PHOTO_HINT`` (also while the model loads)."""
    hint = classifier.metadata.get("photo_hint") if classifier else None
    return hint if isinstance(hint, str) and hint.strip() else DEFAULT_PHOTO_HINT


@blueprint.get("/")
def index() -> str:
    """The page: choose, drop or pick an example photo, see the top-k models (``templates/index.html``)."""
    config = current_app.config
    classifier = current_app.extensions["model"].classifier  # None for the first seconds after start
    return render_template(
        "index.html",
        labels=classifier.labels if classifier else [],
        model_version=classifier.metadata.get("version", "unknown") if classifier else "loading",
        photo_hint=photo_hint(classifier),
        top_k=config["DEFAULT_TOP_K"],
        tta=config["DEFAULT_TTA"],
        max_top_k=len(classifier.labels) if classifier else 10,
        max_upload_mb=config["MAX_UPLOAD_MB"],
        formats=FORMAT_NAMES,
        examples=example_names(),
    )


def schema_type(schema: dict) -> str:
    """A schema in a few words: ``"integer, at least 1"``, ``"array of Prediction"``,
    ``"one of: loading, ready, failed"``, ``"Error"`` (a ``$ref``)."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    for key, joiner in (("oneOf", " or "), ("anyOf", " or "), ("allOf", " + ")):
        if key in schema:
            return joiner.join(schema_type(part) for part in schema[key])
    if "enum" in schema:
        return "one of: " + ", ".join(map(str, schema["enum"]))
    if "const" in schema:
        return f"always {schema['const']}"
    kind = schema.get("type", "any")
    text = " or ".join(kind) if isinstance(kind, list) else kind
    if "items" in schema:
        text += " of " + schema_type(schema["items"])
    if "minimum" in schema:
        text += f", at least {schema['minimum']}"
    if "maximum" in schema:
        text += f", at most {schema['maximum']}"
    return text


def schema_fields(schema: dict) -> list[dict]:
    """The properties of an object schema (those of ``allOf`` parts too) as
    ``[{"name", "type", "required", "description"}]``."""
    fields = [field for part in schema.get("allOf", []) if "$ref" not in part for field in schema_fields(part)]
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        fields.append({"name": name, "type": schema_type(prop), "required": name in required,
                       "description": prop.get("description", "")})
    return fields


def api_reference(spec: dict) -> dict:
    """The OpenAPI document, flattened for ``templates/docs.html``: ``{"description",
    "operations": [{"method", "path", "summary", "description", "parameters", "bodies",
    "responses"}], "schemas": [{"name", "type", "description", "fields"}]}``."""
    operations = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            operations.append({
                "id": f"{method}{path}".replace("/", "-").replace("{", "").replace("}", ""),
                "method": method.upper(), "path": path,
                "summary": op.get("summary", ""), "description": op.get("description", ""),
                "parameters": [{"name": p["name"], "where": p["in"], "required": p.get("required", False),
                                "description": p.get("description", "")} for p in op.get("parameters", [])],
                "bodies": [{"type": media_type, "schema": schema_type(media.get("schema", {})),
                            "description": media.get("schema", {}).get("description", "")}
                           for media_type, media in op.get("requestBody", {}).get("content", {}).items()],
                "responses": [{"status": status, "description": answer.get("description", ""),
                               "schemas": [schema_type(m.get("schema", {}))
                                           for m in answer.get("content", {}).values()]}
                              for status, answer in op.get("responses", {}).items()],
            })
    schemas = [{"name": name, "type": schema_type(schema), "description": schema.get("description", ""),
                "fields": schema_fields(schema)}
               for name, schema in spec.get("components", {}).get("schemas", {}).items()]
    return {"description": spec["info"].get("description", ""), "operations": operations, "schemas": schemas}


@blueprint.get("/docs")
def docs() -> str:
    """The API reference: ``app/openapi.json`` as a list of operations and schemas (``templates/docs.html``)."""
    return render_template("docs.html", api=api_reference(json.loads(Path(OPENAPI).read_text())))


@blueprint.get("/examples/<name>")
def example(name: str) -> Response:
    """One example photo; 404 for anything not listed by ``example_names``."""
    if name not in example_names():
        abort(404)
    return send_from_directory(current_app.config["EXAMPLES_DIR"], name)
