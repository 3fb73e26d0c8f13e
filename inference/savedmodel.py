"""The served model on TensorFlow: a SavedModel of ``inference.contract`` (exported by
``training.export.savedmodel``) as an ``inference.predictor.Predictor``."""

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import saved_model_pb2

from inference.contract import INPUT, OUTPUTS, SERVING_SIGNATURE, SIGNATURES, ModelFacts
from inference.model_folder import FIX, ModelLoadError, read_beside, require_savedmodel
from inference.tta import SERVED_VIEWS


def load_savedmodel(model_dir: Path | str) -> Any:
    """``tf.saved_model.load`` with an error that says which file is broken and what to do.

    Args:
        model_dir: the SavedModel directory (``pathlib.Path`` or ``str``).

    Returns:
        the loaded module, with the signatures of ``inference.contract``.

    Raises:
        inference.model_folder.ModelNotFoundError: no ``saved_model.pb`` (e.g. an empty folder).
        inference.model_folder.ModelLoadError: ``saved_model.pb`` empty or truncated, the weights in
            ``variables/`` missing, truncated or damaged, or signatures other
            than those of ``inference.contract``.
    """
    model_dir = Path(model_dir)
    require_savedmodel(model_dir)
    graph = model_dir / "saved_model.pb"
    try:
        meta_graphs = saved_model_pb2.SavedModel.FromString(graph.read_bytes()).meta_graphs
    except DecodeError:
        meta_graphs = None
    if not meta_graphs:
        raise ModelLoadError(f"{graph} is empty or truncated ({graph.stat().st_size} bytes). {FIX}")
    try:
        module = tf.saved_model.load(str(model_dir))
    except (IndexError, OSError, tf.errors.OpError) as error:  # what TensorFlow raises on bad checkpoint files
        raise ModelLoadError(f"The weights in {model_dir / 'variables'} could not be read "
                             f"({str(error).splitlines()[0]}): {_weight_files(model_dir)}. {FIX}") from error
    _check_signatures(module, graph)
    return module


def _weight_files(model_dir: Path) -> str:
    """``variables/`` as text: each file with its size, for the error message."""
    files = sorted((model_dir / "variables").glob("variables.*"))
    if not files:
        return "no variables.index and variables.data-* files there"
    return "files " + ", ".join(f"{path.name} ({path.stat().st_size} bytes)" for path in files) + \
        ", one of them missing, truncated or damaged"


def _check_signatures(module: Any, graph: Path) -> None:
    problems = []
    for name, outputs in SIGNATURES.items():
        function = module.signatures.get(name)
        if function is None:
            problems.append(f"no '{name}' signature")
        elif not outputs <= set(function.structured_outputs):
            problems.append(f"'{name}' lacks the outputs {sorted(outputs - set(function.structured_outputs))}")
    serving = module.signatures.get(SERVING_SIGNATURE)
    images = serving.structured_input_signature[1].get(INPUT) if serving is not None else None
    if serving is not None and (images is None or images.dtype != tf.uint8 or images.shape.rank != 4):
        problems.append(f"'{SERVING_SIGNATURE}' does not take uint8 '{INPUT}' of shape (batch, height, width, 3)")
    if problems:
        raise ModelLoadError(f"{graph} is not a model of this project ({'; '.join(problems)}): export one with "
                             "'carclf train' (docs/runtimes.md). " + FIX)


class TensorFlowClassifier:
    """A car-model classifier backed by an exported SavedModel: an
    ``inference.predictor.Predictor``, its signatures those of ``inference.contract``.

    The signature is a concrete function (fixed input signature), so no call
    traces or retraces a graph; TensorFlow's kernels (oneDNN) are still built
    the first time each batch size is seen, which ``warm_up`` pays.

    Args:
        model_dir: the SavedModel directory.

    Attributes:
        labels: class names, ``list[str]``, in the order of the outputs.
        image_size: ``(height, width)`` in pixels the model resizes to.
        metadata: ``dict`` read from the SavedModel (name, version, backbone...).
        metrics: ``dict`` from ``metrics.json`` beside it (validation accuracy),
            empty when absent.
        calibration: ``inference.calibration.Calibration`` from
            ``calibration.json`` beside it, or ``None`` when absent.
        resizes_input: ``True``: the SavedModel resizes its input.

    Raises:
        inference.model_folder.ModelNotFoundError: ``model_dir`` has no ``saved_model.pb``.
        inference.model_folder.ModelLoadError: a broken SavedModel (``load_savedmodel``).
        ValueError: ``calibration.json`` is malformed or names other labels.
    """

    resizes_input = True

    def __init__(self, model_dir: Path | str) -> None:
        self._module = load_savedmodel(model_dir)
        self._serve = self._module.signatures[SERVING_SIGNATURE]
        facts = ModelFacts.from_savedmodel(self._module)
        self.labels, self.image_size, self.metadata = facts.labels, facts.image_size, facts.metadata
        self.metrics, self.calibration = read_beside(model_dir, self.labels)

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the model on a batch.

        Args:
            images: ``uint8`` array ``(batch, height, width, 3)``, RGB, of any size.

        Returns:
            ``(logits, probabilities, features)``: ``float32`` arrays
            ``(batch, num_classes)``, ``(batch, num_classes)`` and
            ``(batch, F)`` (pooled backbone features, ``inference.calibration``).
        """
        outputs = self._serve(**{INPUT: tf.convert_to_tensor(images, dtype=tf.uint8)})
        logits, probabilities, features = (outputs[name].numpy() for name in OUTPUTS)
        return logits, probabilities, features

    def warm_up(self, image_size: tuple[int, int] | None = None) -> None:
        """Run the model once at every batch size a service request can meet
        (the views of a TTA mode, ``inference.tta.SERVED_VIEWS``), so that
        none pays the first call's cost (the oneDNN kernels of a new batch size).
        Each size also keeps some memory: other view sets, used offline, pay
        their first call instead.

        Args:
            image_size: ``(height, width)`` of the images it will be given; default
                ``image_size`` (an ensemble's members get the ensemble's).
        """
        blank = np.zeros((1, *(image_size or self.image_size), 3), dtype=np.uint8)
        for rows in range(1, max(map(len, SERVED_VIEWS.values())) + 1):
            self.predict(np.repeat(blank, rows, axis=0))
