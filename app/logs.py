"""One log stream: every line the service writes is one JSON object, on stderr.

The app's own records, gunicorn's (``gunicorn.error``; its access log is off,
as the app logs a JSON line per request: ``app.monitoring``), and those of
the libraries (TensorFlow's Python side, Python warnings) all go to one
handler on the root logger with ``JsonFormatter``. TensorFlow's C++ side
prints text of its own, so ``TF_CPP_MIN_LOG_LEVEL`` is set to ``2`` (errors
only) before TensorFlow is imported (``app/__init__.py``).

This module imports nothing heavy: gunicorn's master process reads
``GUNICORN_LOGCONFIG`` (``gunicorn.conf.py``), and TensorFlow must load
only in the workers, after the fork.
"""

import json
import logging
import sys
from datetime import datetime, timezone

from flask import g, has_request_context

HANDLER_NAME = "carclf-json"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the request id and ``extra={"fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if has_request_context() and "request_id" in g:
            entry["request_id"] = g.request_id
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# logging.config.dictConfig for gunicorn's logconfig_dict (merged over gunicorn's
# defaults, whose text handlers these replace).
GUNICORN_LOGCONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": JsonFormatter}},
    "handlers": {HANDLER_NAME: {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": [HANDLER_NAME]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        # Off (records are INFO): the app logs a JSON line per request, with its request id.
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
    },
}


def configure_logging(level: str) -> None:
    """Send every logger's records to stderr as JSON lines, the ``carclf`` ones at ``level``.

    Adds the JSON handler to the root logger unless it is there already
    (under gunicorn, from ``GUNICORN_LOGCONFIG``), and routes Python
    warnings through logging. Call it before importing TensorFlow: TensorFlow
    adds a text handler of its own when the root logger has none.
    """
    root = logging.getLogger()
    if not any(handler.name == HANDLER_NAME for handler in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(HANDLER_NAME)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    logging.captureWarnings(True)
    logging.getLogger("carclf").setLevel(level.upper())
