"""Reading a /predict request: the images (multipart, JSON base64 or a raw image body) and the options.

Uploads never touch the disk: :class:`InMemoryRequest` keeps every multipart
file in memory (the body is capped by ``MAX_CONTENT_LENGTH`` before parsing).
"""

import base64
import binascii
import io
from dataclasses import dataclass

from flask import Request, request

from app.config import BOOLEANS
from app.errors import ApiError

_URLSAFE = str.maketrans("-_", "+/")


class InMemoryRequest(Request):
    """A Flask request whose multipart files are ``io.BytesIO``, never temporary files.

    Werkzeug's default stream factory spools files over 500 kB to a temporary
    file on disk; the body size limit (413) already bounds the memory used.
    """

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
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


def read_uploads(max_files):
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


def _json_instances():
    body = request.get_json(silent=True)
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


def param(name):
    """A request option from the query string, a form field or a JSON key (``None`` if absent)."""
    value = request.args.get(name)
    if value is None and request.mimetype == "multipart/form-data":
        value = request.form.get(name)
    if value is None and request.is_json:
        body = request.get_json(silent=True)
        value = body.get(name) if isinstance(body, dict) else None
    return None if value is None else str(value)


def int_param(name, default, low, high):
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


def bool_param(name, default):
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
