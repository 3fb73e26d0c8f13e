"""float32 LiteRT beside an exported SavedModel, refused unless it answers as the SavedModel does.

``write_litert`` writes ``model.tflite`` (the ``serving_default``
signature, frozen, without its resize: the service resizes before the model)
and ``metadata.json`` (the ``metadata`` signature's labels, input size and
training facts), which ``inference.litert.LiteRTClassifier`` serves with
no TensorFlow. ``carclf convert`` runs it on an existing model,
``training.fitting.run.fit_and_export`` at the end of every export.

The parity check (``training.export.parity``) refuses the conversion unless it
gives the SavedModel's answers on real photos; its figures go to
``litert_parity.json`` beside the model.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inference.model_folder import TFLITE_FILENAME
from inference.predictor import Predictor
from training.export.parity import BATCH, write_checked

PARITY_FILENAME = "litert_parity.json"


def convert_savedmodel(model_dir: Path | str) -> bytes:
    """The float32 ``.tflite`` of a SavedModel's ``serving_default`` signature.

    The signature resizes with ``tf.image.resize(antialias=True)``
    (``ScaleAndTranslate``), which LiteRT has no kernel for, so the variables
    are frozen into constants, the resize is replaced by the identity and the
    input is fixed to the model's input size, at which that resize is the
    identity (a triangle filter at scale 1 weighs each pixel alone).
    ``TFLiteConverter.from_saved_model`` is not used: on this export (a Keras
    3 model inside a ``tf.Module``) it writes a file whose outputs are all NaN,
    without a warning.

    Args:
        model_dir: an export of ``training.export.savedmodel``.

    Returns:
        ``bytes`` of the ``.tflite`` flatbuffer: signature ``serving_default``,
        ``images`` ``uint8 (batch, height, width, 3)`` -> ``logits``,
        ``probabilities``, ``features`` (``float32``).

    Raises:
        inference.model_folder.ModelNotFoundError, inference.model_folder.ModelLoadError:
            no usable SavedModel (``inference.savedmodel.load_savedmodel``).
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from inference.savedmodel import load_savedmodel

    module = load_savedmodel(model_dir)
    serving = module.signatures["serving_default"]
    height, width = (int(side) for side in module.signatures["metadata"]()["image_size"].numpy())
    frozen = convert_variables_to_constants_v2(serving)
    graph = frozen.graph.as_graph_def()
    for node in graph.node:
        if node.op == "ScaleAndTranslate":  # inputs: images, size, scale, translation
            node.op = "Identity"
            del node.input[1:]
            for attribute in ("antialias", "kernel_type"):
                del node.attr[attribute]
    outputs = tf.nest.pack_sequence_as(serving.structured_outputs, [tensor.name for tensor in frozen.outputs])

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8, name="images")])
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        names = sorted(outputs)
        tensors = tf.graph_util.import_graph_def(graph, input_map={frozen.inputs[0].name: images},
                                                 return_elements=[outputs[name] for name in names])
        return dict(zip(names, tensors))

    holder = tf.Module()  # the converter takes the signature's name and names from a trackable object
    holder.serve = serve
    return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], holder).convert()


def write_litert(model_dir: Path | str, photos: Sequence[Path | str],
                 reference: Predictor | None = None, batch_size: int = BATCH) -> dict[str, Any]:
    """Convert the SavedModel in ``model_dir``, check parity on ``photos``, and
    write ``model.tflite``, ``metadata.json`` and ``litert_parity.json`` there.

    Args:
        model_dir: an export of ``training.export.savedmodel``.
        photos: paths of real photos (at least one), e.g. the validation split.
        reference: the SavedModel loaded (``inference.savedmodel.TensorFlowClassifier``),
            if the caller has it; loaded from ``model_dir`` otherwise.
        batch_size: photos per forward pass of the parity check.

    Returns:
        the parity figures (``training.export.parity.parity``).

    Raises:
        inference.model_folder.ModelNotFoundError, inference.model_folder.ModelLoadError: no usable SavedModel.
        training.export.parity.ParityError: the two runtimes disagree; nothing is written.
        ValueError: no photos.
    """
    from inference.litert import LiteRTClassifier
    from inference.savedmodel import TensorFlowClassifier

    model_dir = Path(model_dir)
    reference = reference or TensorFlowClassifier(model_dir)
    tflite = convert_savedmodel(model_dir)
    return write_checked(model_dir, {TFLITE_FILENAME: tflite}, LiteRTClassifier, reference, photos, "litert",
                         PARITY_FILENAME, batch_size)
