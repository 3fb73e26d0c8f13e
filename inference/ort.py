"""The served model on ONNX Runtime (``onnxruntime``): its float32 ``model.onnx``, or its int8
conversion ``model.int8.onnx``, no TensorFlow.

``carclf convert`` writes ``model.onnx`` from ``model.tflite``
(tf2onnx) and checks on real photos that it gives the SavedModel's answers;
``carclf quantize`` writes ``model.int8.onnx`` from ``model.onnx`` (ONNX
Runtime's static quantization: docs/int8.md) and checks that it agrees.
Both have the ``.tflite``'s inputs and outputs: ``images`` ``uint8 (batch,
height, width, 3)`` at the model's input size (the service resizes before the
model) -> ``logits``, ``probabilities`` ``float32 (batch, num_classes)`` and
``features`` ``float32 (batch, F)``.

One ``InferenceSession`` serves every pass: its ``run`` may be called by
several threads at once and releases the GIL, and the session holds the
weights once (prepacked for the CPU's kernels, NCHWc blocks on AVX-512),
where each LiteRT interpreter packs its own copy. Passes that run side by
side share them and differ only in their activations.
"""

import os
from pathlib import Path
from typing import Any

import numpy as np

# ONNX Runtime's telemetry (1.32 on Linux) writes a device id and a database under
# $HOME/.cache/Microsoft at import, and warns in text where $HOME is read-only; the variable,
# read at import, turns it off whole (README "Docker": nothing written outside /tmp).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
import onnxruntime
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, InvalidGraph, InvalidProtobuf

from inference import DEFAULT_PRECISION
from inference.contract import INPUT, OUTPUTS
from inference.passes import PooledPasses

LOG_ERRORS_ONLY = 3  # onnxruntime's severity levels: 0 verbose ... 3 error, 4 fatal


def load_session(path: Path, threads: int = 1) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session of the ``.onnx`` file at ``path`` on the CPU, its inputs and outputs checked.

    Args:
        path: the ``.onnx`` file.
        threads: CPU threads of each pass (``intra_op_num_threads``; one runs
            the pass on the calling thread).

    Returns:
        the ``onnxruntime.InferenceSession``.

    Raises:
        ValueError: not an ONNX model ONNX Runtime can run, or other inputs
            or outputs (the message says which).
    """
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # Memory patterns plan each input shape's activations in one block: measured no faster and more
    # resident on the shipped model (docs/performance.md, "Settings chosen by measurement").
    options.enable_mem_pattern = False
    options.log_severity_level = LOG_ERRORS_ONLY
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf) as error:
        raise ValueError(str(error).strip().splitlines()[0][:300]) from None
    inputs = [tensor.name for tensor in session.get_inputs()]
    outputs = [tensor.name for tensor in session.get_outputs()]
    if inputs != [INPUT] or set(outputs) != set(OUTPUTS):
        raise ValueError(f"it takes {inputs} and gives {outputs}, not {INPUT!r} to {list(OUTPUTS)}")
    return session


class OnnxRuntimeClassifier(PooledPasses):
    """A car-model classifier backed by ``model.onnx`` (see the module docstring): an
    ``inference.predictor.Predictor``.

    One session runs up to ``passes`` forward passes at a time, lent to the
    serving threads first come, first served, and a request's TTA views are
    split across them (``inference.passes.PooledPasses``): more passes at
    once would only add activations, not speed, on the worker's cores.

    Args:
        model_dir: the model folder: ``model.onnx`` (``model.int8.onnx`` at int8),
            ``metadata.json`` and, optional, ``metrics.json`` and the calibration.
        passes: forward passes that may run side by side (each on its calling
            thread with ``threads=1``).
        threads: CPU threads of each pass.
        precision: ``"float32"`` (``model.onnx``) or ``"int8"`` (``model.int8.onnx``,
            with the known-model test's int8 threshold, ``calibration.int8.json``).

    Attributes and errors are ``inference.passes.PooledPasses``' (its
    ``_open``), of the folder's model file.
    """

    def __init__(self, model_dir: Path | str, passes: int = 1, threads: int = 1,
                 precision: str = DEFAULT_PRECISION) -> None:
        self._open(Path(model_dir), "onnxruntime", lambda path: [load_session(path, threads)] * passes, precision)

    def _run(self, runner: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits, probabilities, features = runner.run(list(OUTPUTS), {INPUT: images})
        return logits, probabilities, features
