"""A model folder's files: which each runtime loads, their errors, ``metadata.json`` and what lies beside the model.

A model folder holds the SavedModel (TensorFlow, ``inference.savedmodel``)
and, beside it, its float32 conversions ``model.onnx`` (ONNX Runtime,
``inference.ort``) and ``model.tflite`` (LiteRT, ``inference.litert``)
with ``metadata.json``, written by ``carclf convert``, and the int8
conversion of ``model.onnx``, ``model.int8.onnx`` (ONNX Runtime at
``precision="int8"``, written by ``carclf quantize``: docs/int8.md); optionally
``metrics.json`` (training's validation figures) and the calibration of the
known-model test (``inference.calibration``). Imports no runtime.
"""

import json
from pathlib import Path

from inference import DEFAULT_PRECISION, PRECISIONS, RUNTIMES
from inference.calibration import Calibration, calibration_filename
from inference.contract import ModelFacts

METADATA_FILENAME = "metadata.json"
TFLITE_FILENAME = "model.tflite"
ONNX_FILENAME = "model.onnx"
INT8_ONNX_FILENAME = "model.int8.onnx"
# What each runtime loads from a model folder, beside the SavedModel (written by carclf convert).
RUNTIME_FILES = {"litert": (TFLITE_FILENAME, METADATA_FILENAME), "onnxruntime": (ONNX_FILENAME, METADATA_FILENAME)}
# The same at int8 (written by carclf quantize): ONNX Runtime only (docs/int8.md). Its
# known-model test has its own threshold, calibration.int8.json.
INT8_FILES = {"onnxruntime": (INT8_ONNX_FILENAME, METADATA_FILENAME)}
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


def model_files(runtime: str, precision: str = DEFAULT_PRECISION) -> tuple[str, ...]:
    """The files beside the SavedModel that ``runtime`` loads at ``precision``, the model file
    first: ``RUNTIME_FILES`` (float32) or ``INT8_FILES``; none for TensorFlow (the SavedModel).

    Raises:
        ValueError: an unknown runtime or precision, or int8 on a runtime without it (LiteRT, TensorFlow).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"Unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "int8" and runtime not in INT8_FILES:
        raise ValueError(f"The {runtime} runtime serves float32 only; int8 (CARCLF_PRECISION=int8) is served by "
                         f"{' and '.join(RUNTIME_NAMES[name] for name in INT8_FILES)} "
                         f"(CARCLF_RUNTIME={' or '.join(INT8_FILES)}): docs/int8.md")
    return (INT8_FILES if precision == "int8" else RUNTIME_FILES).get(runtime, ())


INT8_FIX = ("Write it from the model.onnx there with 'carclf quantize {model_dir} --data DIR' (DIR: the photos "
            "it was trained on; docs/int8.md), or serve float32 with CARCLF_PRECISION=float32.")


def require_model(model_dir: Path | str, runtime: str, precision: str = DEFAULT_PRECISION) -> None:
    """Check that ``model_dir`` holds what ``runtime`` serves at ``precision``, cheaply (nothing imported
    or read): ``require_files`` and, at int8 in a folder with a known-model test, its int8 threshold.

    Raises:
        ModelNotFoundError: see ``require_files``; at int8, a known-model test for float32 only
            (``calibration.json`` without ``calibration.int8.json``). The message gives the command
            that writes what is absent.
        ValueError: see ``model_files``.
    """
    require_files(model_dir, runtime, precision)
    folder = Path(model_dir)
    if precision == "int8" and (folder / calibration_filename()).is_file() and \
            not (folder / calibration_filename("int8")).is_file():
        raise ModelNotFoundError(
            f"No {calibration_filename('int8')} in '{model_dir}': the known-model test's threshold for the int8 "
            f"model, which CARCLF_PRECISION=int8 needs beside {calibration_filename()}. "
            + INT8_FIX.format(model_dir=model_dir))


def require_files(model_dir: Path | str, runtime: str, precision: str = DEFAULT_PRECISION) -> None:
    """Check that ``model_dir`` holds the files ``runtime`` loads at ``precision`` (``model_files``,
    or the SavedModel), cheaply: what the runtimes' classes check (the training tools open an int8
    model before its known-model threshold exists).

    Raises:
        ModelNotFoundError: no ``saved_model.pb`` (``tensorflow``), or no
            ``model.tflite`` (``litert``) or ``model.onnx`` (``onnxruntime``; at int8
            ``model.int8.onnx``) or ``metadata.json`` (the message gives the command that writes them).
        ValueError: see ``model_files``.
    """
    files = model_files(runtime, precision)
    if runtime == "tensorflow":
        require_savedmodel(model_dir)
        return
    missing = [name for name in files if not (Path(model_dir) / name).is_file()]
    if missing and precision == "int8":
        raise ModelNotFoundError(f"No {' or '.join(missing)} in '{model_dir}', which CARCLF_PRECISION=int8 loads. "
                                 + INT8_FIX.format(model_dir=model_dir))
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


def read_beside(model_dir: Path | str, labels: list[str],
                precision: str = DEFAULT_PRECISION) -> tuple[dict, Calibration | None]:
    """What lies beside the model in ``model_dir``: its training metrics and its calibration.

    Args:
        labels: the model's class names, which the calibration must have been fitted for.
        precision: whose calibration: ``calibration.json`` (float32) or ``calibration.int8.json``.

    Returns:
        ``(metrics, calibration)``: the ``dict`` of ``metrics.json`` (validation
        accuracy; empty when absent) and the ``inference.calibration.Calibration``
        of ``precision`` (``None`` when absent).

    Raises:
        ValueError: the calibration is malformed or names other labels.
    """
    metrics_path = Path(model_dir) / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    calibration = Calibration.load(model_dir, precision)
    if calibration is not None and calibration.labels != labels:
        raise ValueError(f"{model_dir}/{calibration_filename(precision)} was fitted for other labels; "
                         "rerun carclf calibrate")
    return metrics, calibration
