"""The served model, loaded in a background thread so the process answers at once.

``/healthz`` answers while the runtime (ONNX Runtime, LiteRT or TensorFlow,
``inference.loading.load_predictor``) loads and warms up the model; ``/readyz`` and
``/predict`` answer 503 until it is ready.
"""

import logging
import threading
import time

from app.errors import ApiError
from inference import DEFAULT_PRECISION, DEFAULT_RUNTIME
from inference.loading import load_predictor
from inference.model_folder import ModelLoadError
from inference.predictor import Predictor

log = logging.getLogger("carclf.model")

LOADING, READY, FAILED = "loading", "ready", "failed"

class ModelLoader:
    """Loads and warms up the served model off the request path (``inference.loading.load_predictor``):
    one model on the chosen runtime, or an ``inference.ensemble.Ensemble`` for several directories.

    Call ``start`` after the process forked (gunicorn imports ``wsgi.py``
    in each worker, without ``preload_app``): a thread does not survive a fork.

    Args:
        model_dir: the model folder, or several joined by ``os.pathsep`` (an ensemble).
        runtime: ``"onnxruntime"``, ``"litert"`` or ``"tensorflow"``.
        passes, threads: ONNX Runtime and LiteRT: forward passes side by side and CPU threads of
            each (``inference.loading.load_predictor``).
        precision: ``"float32"`` or ``"int8"`` (ONNX Runtime only).

    Attributes:
        model_dir: the model folder, or several joined by ``os.pathsep``.
        precision: as given.
        state: ``"loading"``, ``"ready"`` or ``"failed"``.
    """

    def __init__(self, model_dir: str, runtime: str = DEFAULT_RUNTIME, passes: int = 1, threads: int = 1,
                 precision: str = DEFAULT_PRECISION) -> None:
        self.model_dir = model_dir
        self.runtime = runtime
        self.precision = precision
        self._passes, self._threads = passes, threads
        self.state = LOADING
        self._classifier: Predictor | None = None
        self._error: Exception | None = None
        self._done = threading.Event()

    def start(self) -> "ModelLoader":
        """Start loading in a daemon thread; returns ``self``."""
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        return self

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            classifier = load_predictor(self.model_dir, self.runtime, self._passes, self._threads, self.precision)
            classifier.warm_up()
        except Exception as error:  # any failure must reach /readyz, not vanish with the thread
            self._error, self.state = error, FAILED
            # A broken model folder's message names the file and the fix; anything else needs the trace.
            log.error(f"model failed to load: {error}", exc_info=not isinstance(error, ModelLoadError),
                      extra={"fields": {"model_dir": str(self.model_dir)}})
        else:
            self._classifier, self.state = classifier, READY
            seconds = round(time.perf_counter() - started, 2)
            log.info("model ready", extra={"fields": {"model_dir": str(self.model_dir), "seconds": seconds,
                                                       "runtime": self.runtime, "precision": self.precision,
                                                       "version": classifier.metadata.get("version")}})
        finally:
            self._done.set()

    def wait(self, timeout: float | None = None) -> str:
        """Block until loading ended (or ``timeout`` seconds passed); returns ``state``."""
        self._done.wait(timeout)
        return self.state

    @property
    def classifier(self) -> Predictor | None:
        """The classifier once ready, else ``None``."""
        return self._classifier if self.state == READY else None

    def get(self, wait: float = 0.0) -> Predictor:
        """The ready classifier.

        Args:
            wait: seconds to wait for a model still loading (a worker that
                was just started or restarted) before answering 503.

        Raises:
            app.errors.ApiError: 503 ``model_loading`` (with ``Retry-After``)
                or 503 ``model_failed``.
        """
        if self.state == LOADING and wait > 0:
            self.wait(wait)
        if self.state == READY and self._classifier is not None:
            return self._classifier
        if self.state == FAILED:
            raise ApiError(503, "model_failed", "The model could not be loaded; the server log says why.")
        raise ApiError(503, "model_loading", "The model is still loading; retry in a few seconds.",
                       {"Retry-After": "5"})
