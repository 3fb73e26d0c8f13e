"""float32 ONNX beside the LiteRT model, refused unless it answers as the SavedModel does.

``write_onnx`` converts ``model.tflite`` (written by
``training.export.litert.write_litert``, the SavedModel's frozen
``serving_default`` signature without its resize) to ``model.onnx`` with
tf2onnx, under the ``.tflite`` signature's names (``images`` ->
``logits``, ``probabilities``, ``features``), which
``inference.ort.OnnxRuntimeClassifier`` serves with no TensorFlow.
The same parity check as LiteRT's (``training.export.parity``)
refuses it unless it gives the SavedModel's answers; its figures go to
``onnx_parity.json``.
"""

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inference.model_folder import ONNX_FILENAME, TFLITE_FILENAME
from inference.predictor import Predictor
from training.export.parity import BATCH, write_checked

OPSET = 17  # ONNX operator set of the conversion (the one measured and shipped)
PARITY_FILENAME = "onnx_parity.json"


def convert_tflite(tflite_path: Path) -> bytes:
    """The float32 ONNX model of a ``.tflite`` file's ``serving_default`` signature.

    tf2onnx names the graph's inputs and outputs after the ``.tflite``'s
    tensors (``serving_default_images:0``, ``PartitionedCall:1``...); they
    are renamed to the signature's names, the model contract's.

    Args:
        tflite_path: a ``.tflite`` of ``training.export.litert.convert_savedmodel``.

    Returns:
        ``bytes`` of the ONNX ``ModelProto``: ``images`` ``uint8 (batch,
        height, width, 3)`` -> ``logits``, ``probabilities``, ``features`` (``float32``).

    Raises:
        ValueError: the ``.tflite`` has no ``serving_default`` signature.
    """
    import tf2onnx
    from ai_edge_litert.interpreter import Interpreter

    signature = Interpreter(model_path=str(tflite_path)).get_signature_runner("serving_default")
    names = {details["name"]: name for name, details in
             {**signature.get_input_details(), **signature.get_output_details()}.items()}
    with warnings.catch_warnings():  # tf2onnx reads the .tflite with tf.lite.Interpreter, which warns of its removal
        warnings.filterwarnings("ignore", "\\s*Warning: tf.lite.Interpreter is deprecated", UserWarning)
        model, _ = tf2onnx.convert.from_tflite(str(tflite_path), opset=OPSET)
    graph = model.graph
    for value in (*graph.input, *graph.output):
        value.name = names.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [names.get(name, name) for name in node.input]
        node.output[:] = [names.get(name, name) for name in node.output]
    return model.SerializeToString()


def write_onnx(model_dir: Path | str, photos: Sequence[Path | str],
               reference: Predictor | None = None, batch_size: int = BATCH) -> dict[str, Any]:
    """Convert ``model_dir``'s ``model.tflite`` to ONNX, check parity with the SavedModel on
    ``photos``, and write ``model.onnx``, ``metadata.json`` and ``onnx_parity.json`` there.

    Args:
        model_dir: an export of ``training.export.savedmodel`` with its ``model.tflite``.
        photos, reference, batch_size: as ``training.export.litert.write_litert``'s.

    Returns:
        the parity figures (``training.export.parity.parity``).

    Raises:
        FileNotFoundError: no ``model.tflite`` there.
        inference.model_folder.ModelNotFoundError, inference.model_folder.ModelLoadError: no usable SavedModel.
        training.export.parity.ParityError: the two disagree; nothing is written.
        ValueError: no photos.
    """
    from inference.ort import OnnxRuntimeClassifier
    from inference.savedmodel import TensorFlowClassifier

    model_dir = Path(model_dir)
    tflite = model_dir / TFLITE_FILENAME
    if not tflite.is_file():
        raise FileNotFoundError(f"No {TFLITE_FILENAME} in '{model_dir}' to convert to ONNX")
    reference = reference or TensorFlowClassifier(model_dir)
    onnx = convert_tflite(tflite)
    return write_checked(model_dir, {ONNX_FILENAME: onnx}, lambda folder: OnnxRuntimeClassifier(folder, passes=2),
                         reference, photos, "onnxruntime", PARITY_FILENAME, batch_size)
