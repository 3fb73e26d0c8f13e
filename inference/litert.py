"""The served model on LiteRT (``ai-edge-litert``): its float32 ``model.tflite``, no TensorFlow.

``carclf convert`` writes ``model.tflite`` and ``metadata.json``
beside the SavedModel and checks on real photos that both give the same
answers. The ``.tflite`` has the SavedModel's ``serving_default`` signature
less the resize: ``images`` ``uint8 (batch, height, width, 3)`` at the model's
input size (the service resizes before the model) -> ``logits``,
``probabilities`` ``float32 (batch, num_classes)`` and ``features``
``float32 (batch, F)``. LiteRT runs it on XNNPACK, one core per interpreter,
and releases the GIL while it runs.
"""

import io
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from wurlitzer import pipes

from inference.contract import OUTPUTS
from inference.passes import PooledPasses

log = logging.getLogger("carclf.litert")


def load_interpreter(model: bytes, threads: int = 1) -> Any:
    """A LiteRT interpreter of the ``.tflite`` bytes ``model``, its signature checked.

    Args:
        model: the ``.tflite`` file's contents, ``bytes`` (shared by every
            interpreter of a process: read once).
        threads: CPU threads per forward pass.

    Returns:
        the ``serving_default`` signature runner.

    Raises:
        ValueError: not a ``.tflite`` flatbuffer, or another signature (the
            message says which).
    """
    interpreter = Interpreter(model_content=model, num_threads=threads)
    signature = interpreter.get_signature_list().get("serving_default", {})
    if signature.get("inputs") != ["images"] or set(signature.get("outputs", ())) != set(OUTPUTS):
        raise ValueError(f"its signatures are {interpreter.get_signature_list()}, not 'serving_default' from "
                         f"'images' to {list(OUTPUTS)}")
    return interpreter.get_signature_runner("serving_default")


class LiteRTClassifier(PooledPasses):
    """A car-model classifier backed by ``model.tflite`` (see the module docstring): an
    ``inference.predictor.Predictor``.

    LiteRT's interpreters may not be called by two threads at once, and each
    holds its own copy of the packed weights and activations: the classifier keeps ``interpreters`` of
    them, lent to one serving thread at a time, and splits a request's TTA
    views across them (``inference.passes.PooledPasses``).

    Args:
        model_dir: the model folder: ``model.tflite``, ``metadata.json`` and,
            optional, ``metrics.json`` and the calibration.
        interpreters: forward passes that may run side by side.
        threads: CPU threads of each pass (XNNPACK splits one pass's work). For
            the shipped multi-scale model, two single-threaded interpreters
            serve 8 clients faster than one of two threads but hold more
            memory (its three backbone passes pack the weights three times per
            interpreter): with LiteRT, the service runs one interpreter
            (``gunicorn.conf.py``; docs/performance.md, "Settings chosen by
            measurement").

    Attributes and errors are ``inference.passes.PooledPasses``' (its
    ``_open``), of the folder's ``model.tflite``.
    """

    def __init__(self, model_dir: Path | str, interpreters: int = 1, threads: int = 1) -> None:
        def load(path: Path) -> list[Any]:
            model = path.read_bytes()
            return [load_interpreter(model, threads) for _ in range(interpreters)]

        self._open(Path(model_dir), "litert", load)

    def _run(self, runner: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        outputs = runner(images=images)
        logits, probabilities, features = (outputs[name] for name in OUTPUTS)
        return logits, probabilities, features

    def warm_up(self, image_size: tuple[int, int] | None = None) -> None:
        """``inference.passes.PooledPasses.warm_up``, XNNPACK's line to stderr logged."""
        # A process's first forward pass prints "INFO: Created TensorFlow Lite XNNPACK delegate for
        # CPU." from C++ straight to stderr, which no setting turns off: captured at the file
        # descriptor and logged, so that the service's log stays one JSON object per line. The
        # capture also takes what other threads log meanwhile (a request's JSON line): written back as it was.
        printed = io.StringIO()
        try:
            with pipes(stdout=None, stderr=printed):
                super().warm_up(image_size)
        finally:
            for line in printed.getvalue().splitlines():
                if line.startswith("{"):
                    sys.stderr.write(line + "\n")  # one write, as logging's handler: whole lines between threads
                else:
                    log.info(line)
