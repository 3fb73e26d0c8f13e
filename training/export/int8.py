"""int8 ONNX beside ``model.onnx``, refused unless it agrees with the SavedModel (docs/int8.md).

``write_int8`` quantizes ``model.onnx`` (``training.export.onnx``)
with ONNX Runtime's own tools (``quantize``), calibrated on photos of the
training split only; sets the known-model test's own int8 threshold on the
validation photos (``training.evaluation.known_model.int8_calibration``); and
writes ``model.int8.onnx``, ``calibration.int8.json`` and
``int8_parity.json`` only if, on every photo of the known models (training and
validation), it agrees with the SavedModel within ``INT8_TOLERANCE``
(``training.export.parity``), which ``inference.ort.OnnxRuntimeClassifier``
then serves at ``precision="int8"``. ``carclf quantize`` runs it on an
existing model folder, ``training.fitting.run.train`` after every calibration.

Why every photo and not the validation photos alone: on the shipped model's
172, 99.5% would allow not one photo to differ, and the float32 model answers
a few of them by a narrow margin, which int8 rounding may tip (docs/int8.md).
"""

import json
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inference.calibration import Calibration, calibration_filename
from inference.contract import INPUT
from inference.loading import load_predictor
from inference.model_folder import INT8_ONNX_FILENAME, ONNX_FILENAME
from inference.predictor import Predictor
from training.export.parity import BATCH, ParityError, Tolerance, parity, write_checked

if TYPE_CHECKING:
    import onnx

    from training.data.dataset import Sample

PARITY_FILENAME = "int8_parity.json"
# The bar (issue 29): the top class of 99.5% of the photos and the known-model answer of
# 99% as the SavedModel's; the probabilities move by up to about 0.2 (docs/int8.md), reported only.
INT8_TOLERANCE = Tolerance(max_probability_difference=None, min_top1_agreement=0.995, min_known_model_agreement=0.99)
# Training photos whose activations set the int8 ranges, evenly spread over the split (sorted by class).
CALIBRATION_PHOTOS = 100
# Photos whose every intermediate tensor ONNX Runtime keeps at once while calibrating (by default all
# of them): memory grows with it; the ranges do not depend on it.
PHOTOS_IN_MEMORY = 8
POOLING = ("GlobalAveragePool", "ReduceMean")  # how the exported graphs pool the backbone's feature maps
# Everything written: a stale copy of one of them would serve an older model.
WRITTEN = (INT8_ONNX_FILENAME, calibration_filename("int8"), PARITY_FILENAME)


def float_nodes(model: "onnx.ModelProto") -> list[str]:
    """The nodes kept in float32: the pooling of the feature maps and every node after it (the
    features, the head's logits and probabilities). Quantized, the features (3,840 for the shipped
    model) would be rounded to 256 levels on their way to the known-model test and the head.

    Args:
        model: the float32 ``ModelProto`` of ``training.export.onnx``.

    Returns:
        node names, for ``quantize_static``'s ``nodes_to_exclude``.
    """
    after = {output for node in model.graph.node if node.op_type in POOLING for output in node.output}
    kept = []
    for node in model.graph.node:  # in topological order, as ONNX requires
        if node.op_type in POOLING or after.intersection(node.input):
            kept.append(node.name)
            after.update(node.output)
    return kept


def quantize(onnx_path: Path, images: Iterable[np.ndarray]) -> bytes:
    """The int8 ONNX model of a float32 one: ONNX Runtime's static post-training quantization.

    QDQ format (``QuantizeLinear``/``DequantizeLinear`` pairs that ONNX Runtime fuses into
    integer kernels), int8 weights per output channel, uint8 activations whose ranges are the
    smallest and largest values met on ``images`` (MinMax), the nodes of ``float_nodes`` left
    in float32. The graph is first prepared as ONNX Runtime recommends (``quant_pre_process``:
    ONNX shape inference and graph optimisation; its symbolic shape inference, for transformers,
    would need SymPy).

    Args:
        onnx_path: a ``model.onnx`` of ``training.export.onnx``.
        images: ``uint8 (height, width, 3)`` model inputs (of photos of the training split).

    Returns:
        ``bytes`` of the ONNX ``ModelProto``, with the same inputs and outputs.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class Photos(CalibrationDataReader):  # ONNX Runtime's calibration input: one photo a batch
        def __init__(self, inputs: Iterator[np.ndarray]) -> None:
            self.inputs = inputs

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self.inputs, None)
            return None if image is None else {INPUT: image[None]}

    with tempfile.TemporaryDirectory() as scratch:
        prepared, output = Path(scratch) / "prepared.onnx", Path(scratch) / INT8_ONNX_FILENAME
        quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(output), Photos(iter(images)), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=float_nodes(onnx.load(str(prepared))),
                        extra_options={"CalibMaxIntermediateOutputs": PHOTOS_IN_MEMORY})
        return output.read_bytes()


def calibration_photos(samples: Sequence["Sample"], count: int = CALIBRATION_PHOTOS) -> list[str]:
    """``count`` paths of ``samples`` (all of them when fewer), evenly spaced in their order."""
    picked = np.unique(np.linspace(0, len(samples) - 1, min(count, len(samples))).round().astype(int))
    return [samples[index].path for index in picked]


def write_int8(model_dir: Path | str, train_samples: Sequence["Sample"], val_samples: Sequence["Sample"],
               other_models: Sequence[Path | str] = (), reference: Predictor | None = None,
               batch_size: int = BATCH) -> dict[str, Any]:
    """Quantize ``model_dir``'s ``model.onnx``, check parity with the SavedModel, and write
    ``model.int8.onnx``, its known-model test ``calibration.int8.json`` (when the folder has a
    calibration) and ``int8_parity.json`` there.

    Args:
        model_dir: an export of ``training.export.savedmodel`` with its ``model.onnx``.
        train_samples, val_samples: the model's own split (``training.data.dataset.Sample`` lists,
            ``training.data.dataset.model_split``): ``CALIBRATION_PHOTOS`` training photos set
            the int8 ranges; the validation photos set the int8 threshold of the known-model test;
            the parity check runs on both.
        other_models: paths of photos of car models the model does not know, measured once the
            int8 model is written (``other_models`` in the figures, without the paths), not checked.
        reference: the SavedModel loaded (``inference.savedmodel.TensorFlowClassifier``),
            if the caller has it; loaded from ``model_dir`` otherwise.
        batch_size: photos per forward pass of the parity check.

    Returns:
        the parity figures (``training.export.parity.parity``), as written.

    Raises:
        FileNotFoundError: no ``model.onnx`` there.
        inference.model_folder.ModelNotFoundError, inference.model_folder.ModelLoadError: no usable SavedModel.
        training.export.parity.ParityError: the two disagree beyond ``INT8_TOLERANCE``; nothing is written.
        ValueError: no photos, or a malformed calibration.
    """
    from inference.ort import OnnxRuntimeClassifier
    from inference.savedmodel import TensorFlowClassifier
    from training.evaluation.known_model import MeasuredPhotos, int8_calibration
    from training.evaluation.predictions import read_image

    model_dir = Path(model_dir)
    source = model_dir / ONNX_FILENAME
    if not source.is_file():
        raise FileNotFoundError(f"No {ONNX_FILENAME} in '{model_dir}' to quantize; write it with "
                                f"'carclf convert {model_dir} --data DIR'")
    reference = reference or TensorFlowClassifier(model_dir)
    calibration = Calibration.load(model_dir)
    model = quantize(source, (read_image(reference, path) for path in calibration_photos(train_samples)))

    def load(folder: Path) -> Predictor:
        candidate = OnnxRuntimeClassifier(folder, passes=2, precision="int8")
        if calibration is not None:
            candidate.calibration = int8_calibration(calibration, candidate, MeasuredPhotos(val_samples))
        return candidate

    try:
        figures = write_checked(model_dir, {INT8_ONNX_FILENAME: model}, load, reference,
                                [sample.path for sample in [*train_samples, *val_samples]], "onnxruntime",
                                PARITY_FILENAME, batch_size, INT8_TOLERANCE, "int8")
    except ParityError as error:
        raise ParityError(f"{INT8_ONNX_FILENAME}: {error}") from None
    if other_models:
        served = load_predictor(model_dir, "onnxruntime", passes=2, precision="int8")
        measured = parity(reference, served, [str(path) for path in other_models], batch_size)
        figures["other_models"] = {key: value for key, value in measured.items() if key != "top1_disagreements"}
        (model_dir / PARITY_FILENAME).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def remove_int8(model_dir: Path | str) -> None:
    """Delete what ``write_int8`` writes from ``model_dir`` (a conversion of an older model)."""
    for name in WRITTEN:
        (Path(model_dir) / name).unlink(missing_ok=True)
