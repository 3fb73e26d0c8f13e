"""Security headers on every response (page, API, static files, errors).

The page loads only its own script, style and images (plus ``blob:`` for the
preview of the chosen photo), so a file name or label that slipped into the
HTML could not run as script; framing is refused (clickjacking).
"""

from flask import Flask, Response

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def register(app: Flask) -> None:
    """Add ``HEADERS`` to every response of ``app``."""

    @app.after_request
    def _secure(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response
