"""JSON errors: every failure answers ``{"error": {"code", "message"}}``.

The codes are stable (clients branch on them) and listed in
``app/openapi.json`` (``ErrorCode``) and docs/api.md.
"""

import logging

from flask import Flask, Response, current_app, jsonify
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import HTTPException

log = logging.getLogger("carclf.error")


class ApiError(Exception):
    """A client error (or 503) with an HTTP status, a stable ``code`` and a message.

    Attributes:
        status: HTTP status, ``int``.
        code: stable machine-readable reason, e.g. ``not_an_image``.
        message: one human-readable sentence.
        headers: extra response headers, e.g. ``{"Retry-After": "5"}``.
    """

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> tuple[Response, int, dict]:
    """A JSON error response ``(body, status, headers)``."""
    return jsonify(error={"code": code, "message": message}), status, headers or {}


def register(app: Flask) -> None:
    """Install handlers so no error (4xx or 5xx) is ever an HTML page or a trace."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> tuple[Response, int, dict]:
        return error_response(error.status, error.code, error.message, error.headers)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> tuple[Response, int, dict]:
        code = error.name.lower().replace(" ", "_")
        message = error.description
        if error.code == 413:  # the body, or one text field (Flask's MAX_FORM_MEMORY_SIZE), is over its limit
            limit = current_app.config["MAX_UPLOAD_MB"]
            message = (f"The request is too large: at most {limit:g} MiB in all, 500 kB per text field and "
                       f"{current_app.config['MAX_FORM_PARTS']} multipart parts.")
        # Keep headers such as Allow (405), not Werkzeug's HTML content type.
        headers = {key: value for key, value in error.get_headers() if key.lower() != "content-type"}
        return error_response(error.code or 500, code, message or "", headers)

    @app.errorhandler(ParseException)
    @app.errorhandler(NoMoreData)
    def _malformed_body(error: Exception) -> tuple[Response, int, dict]:
        # gunicorn, reading the body as the app asks for it: a bad chunk, a short body
        return error_response(400, "malformed_request", f"The request body is not valid HTTP: {error}.")

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> tuple[Response, int, dict]:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "The server failed to handle this request.")
