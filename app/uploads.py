"""Reading a /predict request: the images (multipart, JSON base64 or a raw image body) and the options.

Uploads never touch the disk: ``InMemoryRequest`` keeps every multipart
file in memory (the body is capped by ``MAX_CONTENT_LENGTH`` before parsing).
"""

import base64
import binascii
import io
import json
from dataclasses import dataclass
from typing import Any

from flask import Request, current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from app.config import BOOLEANS
from app.errors import ApiError

_URLSAFE = str.maketrans("-_", "+/")


class InMemoryRequest(Request):
    """A Flask request whose multipart files are ``io.BytesIO``, never temporary files.

    Werkzeug's default stream factory spools files over 500 kB to a temporary
    file on disk; the body size limit (413) already bounds the memory used.
    """

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None, filename: str | None = None,
                         content_length: int | None = None) -> io.BytesIO:
        return io.BytesIO()


@dataclass(frozen=True)
class Upload:
    """One image of a request.

    Attributes:
        name: the client's file name, or ``instances[i]`` for JSON; shown in
            error messages (as text: the page never renders it as HTML).
        data: the encoded image, ``bytes``.
    """

    name: str
    data: bytes


def read_uploads(max_files: int) -> tuple[list[Upload], bool]:
    """The images of the current request, in order.

    Accepts ``multipart/form-data`` with one or more ``file`` fields,
    ``application/json`` ``{"instances": [{"b64": "..."}]}`` (TF Serving's
    shape for binary inputs), or one image as the whole body with an
    ``image/*`` content type (``curl --data-binary @car.jpg -H 'Content-Type:
    image/jpeg'``); the body's bytes decide the format, not the type named.

    Args:
        max_files: most images accepted in one request.

    Returns:
        ``(uploads, as_list)``: ``list[Upload]`` and whether the answer is a
        list (several files, or any JSON request) rather than one result.

    Raises:
        app.errors.ApiError: 415 ``unsupported_media_type``; 400
            ``missing_file``, ``too_many_files``, ``invalid_json``,
            ``invalid_base64``.
    """
    if request.mimetype == "multipart/form-data":
        uploads = [Upload(f.filename or "file", f.read()) for f in request.files.getlist("file")]
        if not uploads:
            raise ApiError(400, "missing_file", "No file: send the photo in the multipart field 'file'.")
        as_list = len(uploads) > 1
    elif request.is_json:
        uploads, as_list = _json_instances(), True
    elif request.mimetype.startswith("image/"):
        uploads, as_list = [Upload("request body", request.get_data())], False
    else:
        raise ApiError(415, "unsupported_media_type",
                       "Send multipart/form-data with the photo in the field 'file', JSON "
                       '{"instances": [{"b64": "..."}]}, or the photo itself as the body with Content-Type image/*.')
    if len(uploads) > max_files:
        raise ApiError(400, "too_many_files", f"{len(uploads)} images in one request; the limit is {max_files}.")
    return uploads, as_list


def _json_instances() -> list[Upload]:
    body = json_body()
    instances = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(instances, list) or not instances:
        raise ApiError(400, "invalid_json", 'The JSON body must be {"instances": [{"b64": "<base64 image>"}, ...]}.')
    uploads = []
    for index, instance in enumerate(instances):
        name = f"instances[{index}]"
        if not isinstance(instance, dict) or not isinstance(instance.get("b64"), str):
            raise ApiError(400, "invalid_json", f'{name} must be {{"b64": "<base64 image>"}}.')
        text = "".join(instance["b64"].split()).translate(_URLSAFE)  # line breaks and URL-safe letters allowed
        try:
            uploads.append(Upload(name, base64.b64decode(text, validate=True)))
        except (binascii.Error, ValueError):
            raise ApiError(400, "invalid_base64", f"{name}: 'b64' is not valid base64.") from None
    return uploads


# JSON outside its strings: a valid request is {"instances": [{"b64": ...}, ...]}
# plus a few options, so its structure is tiny. These bounds are checked on the
# raw bytes (C-speed bytes methods) before json.loads builds any object: a
# 10 MiB body of 800,000 empty instances costs milliseconds, not seconds.
JSON_MAX_DEPTH = 8
_JSON_SLACK = 16  # strings allowed beyond those of max_files instances (option keys and values)


def json_body() -> Any:
    """The request's JSON body, parsed once (cached on ``flask.g``) after cheap bounds.

    Checked on the raw body first: at most ``MAX_FILES`` + 1 objects, at most
    4 strings per image plus 16, at most 64 bytes of structure (everything
    outside strings) per image plus 1 KiB, nesting at most
    ``JSON_MAX_DEPTH`` deep.

    Returns:
        the parsed JSON value (``dict`` for a valid request).

    Raises:
        werkzeug.exceptions.RequestEntityTooLarge: a streamed (chunked) body
            over ``MAX_CONTENT_LENGTH`` (413).
        app.errors.ApiError: 400 ``too_many_files`` or ``invalid_json``.
    """
    if "json_body" not in g:
        data = request.get_data(cache=True)
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is None and limit is not None and len(data) >= limit:
            raise RequestEntityTooLarge()  # Werkzeug stops reading a chunked body at the limit, silently
        _check_json_shape(data, current_app.config["MAX_FILES"])
        try:
            g.json_body = json.loads(data)
        except (ValueError, RecursionError):
            raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None
    return g.json_body


def _check_json_shape(data: bytes, max_files: int) -> None:
    """Raise ``ApiError`` 400 when the raw JSON ``data`` holds more than ``max_files`` images need."""
    text = data.replace(b"\\\\", b"").replace(b'\\"', b"")  # no escaped quotes: each '"' left delimits a string
    if text.count(b"{") > max_files + 1:  # base64 has no braces: these are objects
        raise ApiError(400, "too_many_files",
                       f"More than {max_files} instances in one request; the limit is {max_files}.")
    too_much = ApiError(400, "invalid_json", f"The JSON body holds more than {max_files} images need: "
                                             f'{{"instances": [{{"b64": "..."}}]}} and options, nested at most '
                                             f"{JSON_MAX_DEPTH} deep.")
    if text.count(b'"') > 2 * (4 * max_files + _JSON_SLACK):
        raise too_much
    structure = b"".join(text.split(b'"')[::2]).translate(None, b" \t\r\n")
    if len(structure) > 64 * max_files + 1024 or _depth(structure) > JSON_MAX_DEPTH:
        raise too_much


def _depth(structure: bytes) -> int:
    """The deepest nesting in ``structure`` (JSON without its strings, a few hundred bytes)."""
    depth = deepest = 0
    for byte in structure:
        depth += (byte in b"[{") - (byte in b"]}")
        deepest = max(deepest, depth)
    return deepest


def param(name: str) -> str | None:
    """A request option from the query string, a form field or a JSON key (``None`` if absent)."""
    value = request.args.get(name)
    if value is None and request.mimetype == "multipart/form-data":
        value = request.form.get(name)
    if value is None and request.is_json:
        body = json_body()
        value = body.get(name) if isinstance(body, dict) else None
    return None if value is None else str(value)


def int_param(name: str, default: int, low: int, high: int) -> int:
    """An integer option in ``[low, high]``; ``default`` (capped at ``high``) when absent.

    Raises:
        app.errors.ApiError: 400 ``invalid_parameter``.
    """
    raw = param(name)
    if raw is None or raw == "":
        return min(default, high)
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ApiError(400, "invalid_parameter", f"'{name}' must be an integer from {low} to {high}, got {raw!r}.")
    return value


def bool_param(name: str, default: bool) -> bool:
    """A yes/no option (``1/0``, ``true/false``, ``yes/no``, ``on/off``).

    Raises:
        app.errors.ApiError: 400 ``invalid_parameter``.
    """
    raw = param(name)
    if raw is None or raw == "":
        return default
    if raw.lower() not in BOOLEANS:
        raise ApiError(400, "invalid_parameter", f"'{name}' must be 1 or 0 (true/false), got {raw!r}.")
    return BOOLEANS[raw.lower()]
