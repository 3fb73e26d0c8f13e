"""Service settings, read from environment variables with documented defaults.

| variable                | default      | meaning                                             |
|-------------------------|--------------|-----------------------------------------------------|
| CARCLF_MODEL_DIR        | <repo>/model | model directory to serve (relative: to the current directory); several joined by ':' serve their ensemble |
| CARCLF_TOP_K            | 3            | predictions returned when top_k is absent           |
| CARCLF_TTA              | 1            | TTA (original + mirrored view) when a request has no tta; on: measured best (docs/experiments.md) |
| CARCLF_MAX_UPLOAD_MB    | 10           | largest request body, in MiB (else 413)             |
| CARCLF_MAX_PIXELS       | 40000000     | largest width*height accepted, checked before decoding |
| CARCLF_MAX_PIXELS_FULL  | 16000000     | the same for images decoded at full size (all but JPEG) |
| CARCLF_MAX_FILES        | 8            | most images in one request                          |
| CARCLF_EXAMPLES_DIR     | (unset)      | folder of example photos offered on the page (relative: to the current directory) |
| CARCLF_TRUSTED_PROXIES  | 0            | reverse proxies in front whose X-Forwarded-* to trust |
| CARCLF_LOG_LEVEL        | INFO         | level of the JSON logs on stderr                    |
| CARCLF_LOAD_WAIT_S      | 30           | how long /predict waits for a model still loading before 503 |
| CARCLF_RUNTIME | onnxruntime | onnxruntime: model.onnx on ONNX Runtime; litert: model.tflite on LiteRT (neither imports TensorFlow); tensorflow: the SavedModel |
| CARCLF_PRECISION | float32 | float32, or int8: model.int8.onnx (ONNX Runtime only) with its own known-model threshold (docs/int8.md; float32 until measured) |
| CARCLF_INTERPRETERS | 1 | ONNX Runtime, LiteRT: passes side by side (LiteRT: one interpreter each; gunicorn.conf.py: ONNX Runtime cores per worker, LiteRT 1) |
| CARCLF_INTERPRETER_THREADS | 1 | ONNX Runtime, LiteRT: CPU threads of each pass (gunicorn.conf.py: ONNX Runtime 1, LiteRT cores per worker) |

``PROMETHEUS_MULTIPROC_DIR`` is read by prometheus_client itself (see docs/api.md).
"""

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from inference import DEFAULT_PRECISION, DEFAULT_RUNTIME, PRECISIONS, RUNTIMES

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "model"

# Spellings of a yes/no setting or request option.
BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _boolean(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case) as a ``bool``."""
    value = BOOLEANS.get(text.strip().lower())
    if value is None:
        raise ValueError(text)
    return value


_boolean.__name__ = "boolean (1/0, true/false)"


def one_of(names: Sequence[str], what: str) -> Callable[[str], str]:
    """A parser of one of ``names`` (any case), named ``what (a or b)`` in the error messages."""

    def parse(raw: str) -> str:
        name = raw.strip().lower()
        if name not in names:
            raise ValueError(raw)
        return name

    parse.__name__ = f"{what} ({' or '.join(names)})"
    return parse


runtime = one_of(RUNTIMES, "runtime")  # inference.RUNTIMES
precision = one_of(PRECISIONS, "precision")  # inference.PRECISIONS


def directory(raw: str) -> str:
    """An absolute directory path from ``raw`` (relative: to the current directory), or ``""`` when empty.

    Resolved once here, so that every part of the app (listing and serving the
    example photos, loading the model) reads the same folder whatever Flask's
    root path is.
    """
    return str(Path(raw).resolve()) if raw else ""


def directories(raw: str) -> str:
    """One or more directories joined by ``os.pathsep`` (an ensemble of models), each made
    absolute by ``directory``, joined again."""
    return os.pathsep.join(directory(part) for part in raw.split(os.pathsep))


# Flask config key -> (environment variable, default, parser)
SETTINGS: dict[str, tuple[str, Any, Callable[[str], Any]]] = {
    "MODEL_DIR": ("CARCLF_MODEL_DIR", str(DEFAULT_MODEL_DIR), directories),
    "DEFAULT_TOP_K": ("CARCLF_TOP_K", 3, int),
    "DEFAULT_TTA": ("CARCLF_TTA", True, _boolean),
    "MAX_UPLOAD_MB": ("CARCLF_MAX_UPLOAD_MB", 10, float),
    "MAX_PIXELS": ("CARCLF_MAX_PIXELS", 40_000_000, int),
    "MAX_PIXELS_FULL": ("CARCLF_MAX_PIXELS_FULL", 16_000_000, int),
    "MAX_FILES": ("CARCLF_MAX_FILES", 8, int),
    "EXAMPLES_DIR": ("CARCLF_EXAMPLES_DIR", "", directory),
    "TRUSTED_PROXIES": ("CARCLF_TRUSTED_PROXIES", 0, int),
    "LOG_LEVEL": ("CARCLF_LOG_LEVEL", "INFO", str),
    "LOAD_WAIT_S": ("CARCLF_LOAD_WAIT_S", 30.0, float),
    "RUNTIME": ("CARCLF_RUNTIME", DEFAULT_RUNTIME, runtime),
    "PRECISION": ("CARCLF_PRECISION", DEFAULT_PRECISION, precision),
    "INTERPRETERS": ("CARCLF_INTERPRETERS", 1, int),
    "INTERPRETER_THREADS": ("CARCLF_INTERPRETER_THREADS", 1, int),
}


def settings_from_env(environ: Mapping[str, str] = os.environ) -> dict:
    """The Flask config ``dict`` from ``environ`` (defaults where unset).

    Raises:
        ValueError: a variable that does not parse, named in the message.
    """
    config = {}
    for key, (variable, default, parse) in SETTINGS.items():
        raw = environ.get(variable)
        try:
            config[key] = default if raw is None else parse(raw)
        except ValueError:
            raise ValueError(f"{variable}={raw!r} is not a valid {parse.__name__}") from None
    return config
