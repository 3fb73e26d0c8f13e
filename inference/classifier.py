"""Load a SavedModel of :mod:`inference.contract` (exported by :mod:`training.export`): a
:class:`inference.predictor.Predictor` on TensorFlow."""

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import saved_model_pb2

from inference.batching import Batcher
from inference.contract import INPUT, OUTPUTS, SERVING_SIGNATURE, SIGNATURES, read_metadata
from inference.runtime import FIX as _FIX
from inference.runtime import ModelLoadError, ModelNotFoundError, ServedModel, require_savedmodel  # noqa: F401
from inference.tta import SERVED_VIEWS


def load_savedmodel(model_dir: Path | str) -> Any:
    """``tf.saved_model.load`` with an error that says which file is broken and what to do.

    Args:
        model_dir: the SavedModel directory (``pathlib.Path`` or ``str``).

    Returns:
        the loaded module, with the signatures of :class:`Classifier`.

    Raises:
        ModelNotFoundError: no ``saved_model.pb`` (e.g. an empty folder).
        ModelLoadError: ``saved_model.pb`` empty or truncated, the weights in
            ``variables/`` missing, truncated or damaged, or signatures other
            than those of :mod:`inference.contract`.
    """
    model_dir = Path(model_dir)
    require_savedmodel(model_dir)
    graph = model_dir / "saved_model.pb"
    try:
        meta_graphs = saved_model_pb2.SavedModel.FromString(graph.read_bytes()).meta_graphs
    except DecodeError:
        meta_graphs = None
    if not meta_graphs:
        raise ModelLoadError(f"{graph} is empty or truncated ({graph.stat().st_size} bytes). {_FIX}")
    try:
        module = tf.saved_model.load(str(model_dir))
    except (IndexError, OSError, tf.errors.OpError) as error:  # what TensorFlow raises on bad checkpoint files
        raise ModelLoadError(f"The weights in {model_dir / 'variables'} could not be read "
                             f"({str(error).splitlines()[0]}): {_weight_files(model_dir)}. {_FIX}") from error
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
                             "'python -m training.train' (docs/runtimes.md). " + _FIX)


class Classifier(ServedModel):
    """A car-model classifier backed by an exported SavedModel: an
    :class:`inference.predictor.Predictor` (through :class:`inference.runtime.ServedModel`),
    its signatures those of :mod:`inference.contract`.

    The signature is a concrete function (fixed input signature), so no call
    traces or retraces a graph; TensorFlow's kernels (oneDNN) are still built
    the first time each batch size is seen, which :meth:`warm_up` pays.

    Args:
        model_dir: the SavedModel directory.
        batch_size: dynamic batching (:class:`inference.batching.Batcher`):
            calls from concurrent threads are run together in forward passes
            of at most this many rows (images x TTA views); ``0`` runs each
            call on its own.
        batch_wait_ms: how long a call may wait for others to join its batch,
            in milliseconds (with batching).
        batch_threads: batches run side by side (with batching).

    Attributes:
        labels: class names, ``list[str]``, in the order of the outputs.
        image_size: ``(height, width)`` in pixels the model resizes to.
        metadata: ``dict`` read from the SavedModel (name, version, backbone...).
        metrics: ``dict`` from ``metrics.json`` beside it (validation accuracy),
            empty when absent.
        calibration: :class:`inference.calibration.Calibration` from
            ``calibration.json`` beside it, or ``None`` when absent.

    Raises:
        ModelNotFoundError: ``model_dir`` has no ``saved_model.pb``.
        ModelLoadError: a broken SavedModel (:func:`load_savedmodel`).
        ValueError: ``calibration.json`` is malformed or names other labels.
    """

    resizes_input = True  # the SavedModel resizes its input

    def __init__(self, model_dir: Path | str, batch_size: int = 0, batch_wait_ms: float = 0.0,
                 batch_threads: int = 1) -> None:
        model_dir = Path(model_dir)
        self._module = load_savedmodel(model_dir)
        self._serve = self._module.signatures[SERVING_SIGNATURE]
        facts = read_metadata(self._module)
        self.labels, self.image_size, self.metadata = facts.labels, facts.image_size, facts.metadata
        self._load_beside(model_dir)
        # In rows, for warm_up: what the service sends (the views of a TTA mode, or a batch).
        self._largest_batch = max(batch_size, *map(len, SERVED_VIEWS.values()))
        self._batcher = Batcher(self._forward, batch_size, batch_wait_ms / 1000, batch_threads) if batch_size else None

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the model on a batch (sharing a forward pass with concurrent calls when batching).

        Args:
            images: ``uint8`` array ``(batch, height, width, 3)``, RGB.

        Returns:
            ``(logits, probabilities, features)``: ``float32`` arrays
            ``(batch, num_classes)``, ``(batch, num_classes)`` and
            ``(batch, F)`` (pooled backbone features, :mod:`inference.calibration`).
        """
        rows = self._batcher(images) if self._batcher else self._forward(images)
        classes = len(self.labels)
        return rows[:, :classes], rows[:, classes : 2 * classes], rows[:, 2 * classes :]

    def _forward(self, images: np.ndarray) -> np.ndarray:
        """One forward pass: ``float32 (batch, 2 * num_classes + F)``, logits,
        probabilities and features side by side per row, so a
        :class:`inference.batching.Batcher` can split the rows of one array
        among its callers."""
        outputs = self._serve(**{INPUT: tf.convert_to_tensor(images, dtype=tf.uint8)})
        return np.concatenate([outputs[name].numpy() for name in OUTPUTS], axis=1)

    def warm_up(self, image_size: tuple[int, int] | None = None) -> None:
        """Run the model once at every batch size a service request can meet
        (the views of a TTA mode, :data:`inference.tta.SERVED_VIEWS`, or any
        batch up to ``batch_size``), so that none pays the first call's cost
        (10-230 ms per new size on 2 cores, ``benchmarks/bare_model.py``
        column "first ms"). Each size also keeps some memory (oneDNN
        kernels): other view sets, used offline, pay their first call instead.

        Args:
            image_size: ``(height, width)`` of the images it will be given; default
                :attr:`image_size` (an ensemble's members get the ensemble's).
        """
        blank = np.zeros((1, *(image_size or self.image_size), 3), dtype=np.uint8)
        for rows in range(1, self._largest_batch + 1):
            self._forward(np.repeat(blank, rows, axis=0))
