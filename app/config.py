"""Service settings, read from environment variables with documented defaults.

| variable                | default      | meaning                                             |
|-------------------------|--------------|-----------------------------------------------------|
| CARCLF_MODEL_DIR        | <repo>/model | SavedModel directory to serve                       |
| CARCLF_TOP_K            | 3            | predictions returned when top_k is absent           |
| CARCLF_MAX_UPLOAD_MB    | 10           | largest request body, in MiB (else 413)             |
| CARCLF_MAX_PIXELS       | 40000000     | largest width*height accepted, checked before decoding |
| CARCLF_MAX_PIXELS_FULL  | 16000000     | the same for images decoded at full size (all but JPEG) |
| CARCLF_MAX_FILES        | 8            | most images in one request                          |
| CARCLF_EXAMPLES_DIR     | (unset)      | folder of example photos offered on the page        |
| CARCLF_TRUSTED_PROXIES  | 0            | reverse proxies in front whose X-Forwarded-* to trust |
| CARCLF_LOG_LEVEL        | INFO         | level of the JSON logs on stderr                    |
| CARCLF_LOAD_WAIT_S      | 30           | how long /predict waits for a model still loading before 503 |
| CARCLF_BATCH_SIZE | 0 | dynamic batching: largest forward pass, in rows (images x TTA views); 0: off |
| CARCLF_BATCH_WAIT_MS | 0 | longest wait for other requests to join a batch |
| CARCLF_BATCH_THREADS | 1 | batches run side by side (gunicorn.conf.py: cores per worker) |

``PROMETHEUS_MULTIPROC_DIR`` is read by prometheus_client itself (see README).
"""

import os
from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "model"

# Flask config key -> (environment variable, default, parser)
SETTINGS = {
    "MODEL_DIR": ("CARCLF_MODEL_DIR", str(DEFAULT_MODEL_DIR), str),
    "DEFAULT_TOP_K": ("CARCLF_TOP_K", 3, int),
    "MAX_UPLOAD_MB": ("CARCLF_MAX_UPLOAD_MB", 10, float),
    "MAX_PIXELS": ("CARCLF_MAX_PIXELS", 40_000_000, int),
    "MAX_PIXELS_FULL": ("CARCLF_MAX_PIXELS_FULL", 16_000_000, int),
    "MAX_FILES": ("CARCLF_MAX_FILES", 8, int),
    "EXAMPLES_DIR": ("CARCLF_EXAMPLES_DIR", "", str),
    "TRUSTED_PROXIES": ("CARCLF_TRUSTED_PROXIES", 0, int),
    "LOG_LEVEL": ("CARCLF_LOG_LEVEL", "INFO", str),
    "LOAD_WAIT_S": ("CARCLF_LOAD_WAIT_S", 30.0, float),
    "BATCH_SIZE": ("CARCLF_BATCH_SIZE", 0, int),
    "BATCH_WAIT_MS": ("CARCLF_BATCH_WAIT_MS", 0.0, float),
    "BATCH_THREADS": ("CARCLF_BATCH_THREADS", 1, int),
}


def settings_from_env(environ=os.environ):
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
