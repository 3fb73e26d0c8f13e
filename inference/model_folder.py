"""A model folder's files: which each runtime loads, their errors, ``metadata.json`` and what lies beside the model.

A model folder holds the SavedModel (TensorFlow, ``inference.savedmodel``)
and, beside it, its float32 conversions ``model.onnx`` (ONNX Runtime,
``inference.ort``) and ``model.tflite`` (LiteRT, ``inference.litert``)
with ``metadata.json``, written by ``carclf convert``; optionally
``metrics.json`` (training's validation figures) and the calibration of the
known-model test (``inference.calibration``). Imports no runtime.
"""

import json
from pathlib import Path

from inference import RUNTIMES
from inference.calibration import Calibration
from inference.contract import ModelFacts

METADATA_FILENAME = "metadata.json"
TFLITE_FILENAME = "model.tflite"
ONNX_FILENAME = "model.onnx"
# What each runtime loads from a model folder, beside the SavedModel (written by carclf convert).
RUNTIME_FILES = {"litert": (TFLITE_FILENAME, METADATA_FILENAME), "onnxruntime": (ONNX_FILENAME, METADATA_FILENAME)}
RUNTIME_NAMES = {"litert": "LiteRT", "onnxruntime": "ONNX Runtime"}
FIX = ("Copy the whole model folder again (the shipped model: 'git checkout -- model/'), or point "
       "CARCLF_MODEL_DIR at a model exported by 'carclf train'.")


class ModelNotFoundError(FileNotFoundError):
    """The model directory lacks the file the chosen runtime loads."""


class ModelLoadError(ValueError):
    """A model folder that cannot be served; the message names the file and the fix."""


def require_savedmodel(model_dir: Path | str) -> None:
    """Check that ``model_dir`` holds a SavedModel, cheaply (no TensorFlow load).

    Raises:
        ModelNotFoundError: no ``saved_model.pb`` there.
    """
    if not (Path(model_dir) / "saved_model.pb").is_file():
        raise ModelNotFoundError(
            f"No SavedModel in '{model_dir}' (no saved_model.pb). Train one with "
            "'carclf train --data DIR --out DIR' or point CARCLF_MODEL_DIR at one."
        )


def require_model(model_dir: Path | str, runtime: str) -> None:
    """Check that ``model_dir`` holds what ``runtime`` loads, cheaply (nothing imported or read).

    Raises:
        ModelNotFoundError: no ``saved_model.pb`` (``tensorflow``), or no
            ``model.tflite`` (``litert``) or ``model.onnx`` (``onnxruntime``)
            or ``metadata.json`` (the message gives the command that writes them).
        ValueError: ``runtime`` is not one of ``RUNTIMES``.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"Unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "tensorflow":
        require_savedmodel(model_dir)
        return
    missing = [name for name in RUNTIME_FILES[runtime] if not (Path(model_dir) / name).is_file()]
    if missing:
        raise ModelNotFoundError(
            f"No {' or '.join(missing)} in '{model_dir}', which the {RUNTIME_NAMES[runtime]} runtime loads. "
            "Write them from the "
            f"SavedModel there with 'carclf convert {model_dir}', or serve the SavedModel with "
            "CARCLF_RUNTIME=tensorflow."
        )


def read_metadata(model_dir: Path | str) -> ModelFacts:
    """``metadata.json`` of ``model_dir``: what the SavedModel's ``metadata`` signature returns
    (``inference.contract.ModelFacts.from_savedmodel``).

    Raises:
        ModelLoadError: the file is unreadable or lacks a field.
    """
    path = Path(model_dir) / METADATA_FILENAME
    try:
        facts = json.loads(path.read_text())
        height, width = (int(side) for side in facts["image_size"])
        return ModelFacts(list(facts["labels"]), (height, width), dict(facts["metadata"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(f"{path} could not be read ({error}). {FIX}") from None


def write_metadata(model_dir: Path | str, labels: list[str], image_size: tuple[int, int], metadata: dict) -> None:
    """Write ``metadata.json`` into ``model_dir`` (read by ``read_metadata``).

    Args:
        labels: class names in output order.
        image_size: ``(height, width)`` the model takes.
        metadata: JSON-ready ``dict`` of training facts.
    """
    facts = {"labels": list(labels), "image_size": [int(side) for side in image_size], "metadata": metadata}
    (Path(model_dir) / METADATA_FILENAME).write_text(json.dumps(facts, indent=2) + "\n")


def read_beside(model_dir: Path | str, labels: list[str]) -> tuple[dict, Calibration | None]:
    """What lies beside the model in ``model_dir``: its training metrics and its calibration.

    Args:
        labels: the model's class names, which the calibration must have been fitted for.

    Returns:
        ``(metrics, calibration)``: the ``dict`` of ``metrics.json`` (validation
        accuracy; empty when absent) and the ``inference.calibration.Calibration``
        of ``calibration.json`` (``None`` when absent).

    Raises:
        ValueError: ``calibration.json`` is malformed or names other labels.
    """
    metrics_path = Path(model_dir) / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    calibration = Calibration.load(model_dir)
    if calibration is not None and calibration.labels != labels:
        raise ValueError(f"{model_dir}/calibration.json was fitted for other labels; rerun carclf calibrate")
    return metrics, calibration
