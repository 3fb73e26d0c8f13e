"""Opening a model: the predictor of one model folder on a runtime, or the ensemble of several.

Nothing in ``inference`` imports this module, and it imports the chosen
runtime only (importing it imports none): the service on ONNX Runtime or
LiteRT never imports TensorFlow.
"""

import os
from collections.abc import Sequence
from pathlib import Path

from inference import DEFAULT_PRECISION, DEFAULT_RUNTIME
from inference.ensemble import Ensemble
from inference.model_folder import require_model
from inference.predictor import Predictor


def load_predictor(model_dirs: Path | str | Sequence[Path | str], runtime: str = DEFAULT_RUNTIME,
                   passes: int = 1, threads: int = 1, precision: str = DEFAULT_PRECISION) -> Predictor:
    """The model of a folder on ``runtime``, or the ``inference.ensemble.Ensemble`` of several.

    Args:
        model_dirs: the model folder, several joined by ``os.pathsep`` (as in
            ``CARCLF_MODEL_DIR``), or a list of folders: their ensemble, each member on ``runtime``.
        runtime: ``"onnxruntime"`` (``inference.ort.OnnxRuntimeClassifier``),
            ``"litert"`` (``inference.litert.LiteRTClassifier``) or
            ``"tensorflow"`` (``inference.savedmodel.TensorFlowClassifier``).
        passes: ONNX Runtime and LiteRT: forward passes that may run side by side
            (LiteRT: one interpreter each); ignored by TensorFlow.
        threads: ONNX Runtime and LiteRT: CPU threads of each pass; ignored by TensorFlow.
        precision: ``"float32"``, or ``"int8"`` (``model.int8.onnx`` with its own known-model
            threshold, ONNX Runtime only: docs/int8.md).

    Raises:
        inference.model_folder.ModelNotFoundError, inference.model_folder.ModelLoadError:
            a folder lacks what ``runtime`` loads, or holds it broken (the message names the file and the fix).
        ValueError: an unknown runtime or precision, or int8 on a runtime without it; the calibration
            malformed or fitted for other labels.
        inference.ensemble.LabelMismatchError: an ensemble's members have other labels.
    """
    folders = str(model_dirs).split(os.pathsep) if isinstance(model_dirs, (str, Path)) else list(model_dirs)
    if len(folders) > 1:
        return Ensemble([(str(folder), load_predictor(folder, runtime, passes, threads, precision))
                         for folder in folders])
    (folder,) = folders
    require_model(folder, runtime, precision)
    if runtime == "onnxruntime":
        from inference.ort import OnnxRuntimeClassifier

        return OnnxRuntimeClassifier(folder, passes, threads, precision)
    if runtime == "litert":
        from inference.litert import LiteRTClassifier

        return LiteRTClassifier(folder, passes, threads)
    from inference.savedmodel import TensorFlowClassifier

    return TensorFlowClassifier(folder)
