"""float32 LiteRT beside an exported SavedModel, refused unless it answers as the SavedModel does.

:func:`write_litert` writes ``model.tflite`` (the ``serving_default``
signature, frozen, without its resize: the service resizes before the model)
and ``metadata.json`` (the ``metadata`` signature's labels, input size and
training facts), which :class:`inference.litert.LiteRTClassifier` serves with
no TensorFlow. ``python -m training.convert`` runs it on an existing model,
:func:`training.fit.fit_and_export` at the end of every export.

The parity check runs both runtimes on the same decoded photos and refuses
the conversion (nothing written, :class:`ParityError`) unless every photo gets
the same top class and the same known-model answer, and no probability
differs by more than :data:`MAX_PROBABILITY_DIFFERENCE`. Its figures go to
``litert_parity.json`` beside the model.
"""

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.runtime import METADATA_FILENAME, RUNTIME_NAMES, TFLITE_FILENAME, ServedModel, write_metadata

MAX_PROBABILITY_DIFFERENCE = 1e-4  # float32 LiteRT measured 7.5e-6 from TensorFlow on 1,181 photos (issue 12)
PARITY_FILENAME = "litert_parity.json"
BATCH = 32  # photos per forward pass in the parity check


class ParityError(ValueError):
    """The LiteRT model answers differently from the SavedModel on real photos."""


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
        model_dir: an export of :mod:`training.export`.

    Returns:
        ``bytes`` of the ``.tflite`` flatbuffer: signature ``serving_default``,
        ``images`` ``uint8 (batch, height, width, 3)`` -> ``logits``,
        ``probabilities``, ``features`` (``float32``).

    Raises:
        inference.runtime.ModelNotFoundError, inference.runtime.ModelLoadError:
            no usable SavedModel (:func:`inference.classifier.load_savedmodel`).
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from inference.classifier import load_savedmodel

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


def parity(reference: ServedModel, candidate: ServedModel, photos: Sequence[str]) -> dict[str, Any]:
    """Both models' answers on ``photos``, compared.

    Args:
        reference, candidate: :class:`inference.runtime.ServedModel` objects
            (the SavedModel's and the ``.tflite``'s) of the same labels and size.
        photos: paths of real photos.

    Returns:
        ``dict``: ``photos``, ``max_probability_difference``,
        ``max_feature_difference`` (relative to the largest feature),
        ``top1_agreement`` and ``known_model_agreement`` (shares of photos;
        ``None`` without a calibration), ``top1_disagreements`` (paths).
    """
    differences, feature_differences, disagreements, known_same = [], [], [], []
    test = reference.calibration.test(("original",)) if reference.calibration else None
    for start in range(0, len(photos), BATCH):
        paths = photos[start : start + BATCH]
        images = np.stack([reference.decode(Path(path).read_bytes(), max_pixels=40_000_000) for path in paths])
        _, expected, expected_features = reference.predict(images)
        _, probabilities, features = candidate.predict(images)
        differences.append(np.abs(probabilities - expected).max())
        feature_differences.append(np.abs(features - expected_features).max() / np.abs(expected_features).max())
        disagreements += [str(path) for path, a, b in zip(paths, expected.argmax(1), probabilities.argmax(1)) if a != b]
        if test is not None:
            known_same += list((test.distances(expected_features) <= test.threshold)
                               == (test.distances(features) <= test.threshold))
    return {
        "photos": len(photos),
        "max_probability_difference": float(max(differences)),
        "max_feature_difference": float(max(feature_differences)),
        "top1_agreement": 1 - len(disagreements) / len(photos),
        "known_model_agreement": float(np.mean(known_same)) if known_same else None,
        "top1_disagreements": disagreements,
    }


def check_parity(figures: Mapping[str, Any], runtime: str = "litert") -> None:
    """Raise :class:`ParityError` unless ``figures`` (:func:`parity`) show the same answers
    (``runtime``: the candidate's, a key of :data:`inference.runtime.RUNTIME_NAMES`)."""
    problems = []
    if figures["max_probability_difference"] > MAX_PROBABILITY_DIFFERENCE:
        problems.append(f"probabilities differ by up to {figures['max_probability_difference']:.2e} "
                        f"(limit {MAX_PROBABILITY_DIFFERENCE:.0e})")
    if figures["top1_disagreements"]:
        problems.append(f"the top class differs on {len(figures['top1_disagreements'])} photo(s), e.g. "
                        f"{figures['top1_disagreements'][0]}")
    if figures["known_model_agreement"] not in (None, 1.0):
        problems.append(f"the known-model answer agrees on only {figures['known_model_agreement']:.2%} of photos")
    if problems:
        raise ParityError(f"{RUNTIME_NAMES[runtime]} does not answer as the SavedModel on {figures['photos']} real "
                          "photos: " + "; ".join(problems) + ". Nothing was written.")


def write_checked(model_dir: Path, files: Mapping[str, bytes], load: Callable[[Path], ServedModel],
                  reference: ServedModel, photos: Sequence[Path | str], runtime: str,
                  parity_filename: str) -> dict[str, Any]:
    """Write ``files`` (name -> contents) into ``model_dir`` if the model they make answers as
    ``reference`` on ``photos``, and the figures into ``parity_filename``.

    Args:
        model_dir: the model folder.
        files: what the candidate runtime loads, beside ``metadata.json`` (written too).
        load: the candidate runtime's class, called with a folder holding ``files``.
        reference: the SavedModel's :class:`inference.runtime.ServedModel`.
        photos: paths of real photos (at least one).
        runtime: the candidate's, ``litert`` or ``onnxruntime`` (named in the messages).
        parity_filename: where the figures go, in ``model_dir``.

    Returns:
        the parity figures (:func:`parity`).

    Raises:
        ParityError: the two disagree; nothing is written.
        ValueError: no photos.
    """
    if not photos:
        raise ValueError("the parity check needs real photos; none given")
    # Written to a scratch folder first: a model folder never holds a file that failed the check.
    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".convert-") as scratch:
        for name, contents in files.items():
            (Path(scratch) / name).write_bytes(contents)
        write_metadata(scratch, reference.labels, reference.image_size, reference.metadata)
        figures = parity(reference, load(Path(scratch)), [str(path) for path in photos])
        check_parity(figures, runtime)
        for name in (*files, METADATA_FILENAME):
            os.replace(Path(scratch) / name, model_dir / name)
    (model_dir / parity_filename).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def write_litert(model_dir: Path | str, photos: Sequence[Path | str],
                 reference: ServedModel | None = None) -> dict[str, Any]:
    """Convert the SavedModel in ``model_dir``, check parity on ``photos``, and
    write ``model.tflite``, ``metadata.json`` and ``litert_parity.json`` there.

    Args:
        model_dir: an export of :mod:`training.export`.
        photos: paths of real photos (at least one), e.g. the validation split.
        reference: the SavedModel loaded (:class:`inference.classifier.Classifier`),
            if the caller has it; loaded from ``model_dir`` otherwise.

    Returns:
        the parity figures (:func:`parity`).

    Raises:
        inference.runtime.ModelNotFoundError, inference.runtime.ModelLoadError: no usable SavedModel.
        ParityError: the two runtimes disagree; nothing is written.
        ValueError: no photos.
    """
    from inference.classifier import Classifier
    from inference.litert import LiteRTClassifier

    model_dir = Path(model_dir)
    reference = reference or Classifier(model_dir)
    tflite = convert_savedmodel(model_dir)
    return write_checked(model_dir, {TFLITE_FILENAME: tflite}, LiteRTClassifier, reference, photos, "litert",
                         PARITY_FILENAME)


def summary(figures: Mapping[str, Any], model_file: Path) -> str:
    """One line: ``model_file`` (``model.tflite`` or ``model.onnx``), its size and the parity figures."""
    known = figures["known_model_agreement"]
    return (f"{model_file} ({model_file.stat().st_size / 1e6:.1f} MB): on {figures['photos']} real photos, "
            f"probabilities within {figures['max_probability_difference']:.1e} of the SavedModel's, top class "
            f"{figures['top1_agreement']:.2%} identical" + (f", known-model answer {known:.2%}" if known else ""))
