"""JSON errors: every failure answers ``{"error": {"code", "message"}}``."""

from flask import jsonify
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    """A client error with an HTTP status, a stable ``code`` and a message."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status, code, message):
    """A JSON error response ``(body, status)``."""
    return jsonify(error={"code": code, "message": message}), status


def register(app):
    """Install handlers so no error (4xx or 5xx) is ever an HTML page or a trace."""

    @app.errorhandler(ApiError)
    def _api_error(error):
        return error_response(error.status, error.code, error.message)

    @app.errorhandler(HTTPException)
    def _http_error(error):
        code = error.name.lower().replace(" ", "_")
        return error_response(error.code, code, error.description)

    @app.errorhandler(Exception)
    def _unexpected(error):
        app.logger.exception("Unhandled error")
        return error_response(500, "internal_error", "The server failed to handle this request.")
