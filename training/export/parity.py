"""The parity check: a conversion of the SavedModel is written only if it answers as the SavedModel does.

``write_checked`` writes a conversion's files into the model folder only
if, on the same decoded real photos, the two models answer within a
``Tolerance``; otherwise nothing is written (``ParityError``). A
float32 conversion must give every photo the same top class and the same
known-model answer, and no probability may differ by more than
``MAX_PROBABILITY_DIFFERENCE``; the int8 one (``training.export.int8``)
must agree on shares of the photos. The figures (``parity``) go to a JSON
file beside the model. ``training.export.litert``,
``training.export.onnx`` and ``training.export.int8`` run it.
"""

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference import DEFAULT_PRECISION
from inference.calibration import calibration_filename
from inference.contract import model_input
from inference.model_folder import METADATA_FILENAME, RUNTIME_NAMES, write_metadata
from inference.predictor import Predictor

MAX_PROBABILITY_DIFFERENCE = 1e-4  # float32 LiteRT measured 7.5e-6 from TensorFlow on 1,181 photos (issue 12)
# Photos per forward pass of the parity check, where no memory budget says (training.memory.feature_batch_size):
# the shipped model at batch 32 took its runtime to 2.4-3.0 GB, at 8 to 1.3-1.5 GB.
BATCH = 8


class ParityError(ValueError):
    """A conversion answers differently from the SavedModel on real photos."""


@dataclass(frozen=True)
class Tolerance:
    """How far a conversion may answer from the SavedModel on the parity photos.

    Attributes:
        max_probability_difference: the largest difference of any probability; ``None``: reported only.
        min_top1_agreement: the least share of photos with the same top class, in ``[0, 1]``.
        min_known_model_agreement: the least share of photos with the same known-model answer
            (each model's own test: the candidate's calibration when it has one).
    """

    max_probability_difference: float | None
    min_top1_agreement: float = 1.0
    min_known_model_agreement: float = 1.0


def parity(reference: Predictor, candidate: Predictor, photos: Sequence[str], batch_size: int = BATCH
           ) -> dict[str, Any]:
    """Both models' answers on ``photos``, compared.

    Args:
        reference, candidate: ``inference.predictor.Predictor`` objects
            (the SavedModel's and a conversion's) of the same labels and size;
            the candidate's known-model answers come from its own calibration
            when it has one (the int8 threshold), else from the reference's.
        photos: paths of real photos.
        batch_size: photos per forward pass.

    Returns:
        ``dict``: ``photos``, ``max_probability_difference``,
        ``max_feature_difference`` (relative to the largest feature),
        ``top1_agreement`` and ``known_model_agreement`` (shares of photos;
        ``None`` without a calibration), ``top1_disagreements`` (paths, relative
        to the current directory).
    """
    from training.evaluation.predictions import shown_path

    differences, feature_differences, disagreements, known_same = [], [], [], []
    test = reference.calibration.test(("original",)) if reference.calibration else None
    own = candidate.calibration.test(("original",)) if candidate.calibration else None
    candidate_test = own or test
    for start in range(0, len(photos), batch_size):
        paths = photos[start : start + batch_size]
        images = np.stack([model_input(Path(path).read_bytes(), reference.image_size, max_pixels=40_000_000)
                           for path in paths])
        _, expected, expected_features = reference.predict(images)
        _, probabilities, features = candidate.predict(images)
        differences.append(np.abs(probabilities - expected).max())
        feature_differences.append(np.abs(features - expected_features).max() / np.abs(expected_features).max())
        disagreements += [shown_path(path) for path, a, b in zip(paths, expected.argmax(1), probabilities.argmax(1))
                          if a != b]
        if test is not None and candidate_test is not None:
            known_same += list((test.distances(expected_features) <= test.threshold)
                               == (candidate_test.distances(features) <= candidate_test.threshold))
    return {
        "photos": len(photos),
        "max_probability_difference": float(max(differences)),
        "max_feature_difference": float(max(feature_differences)),
        "top1_agreement": 1 - len(disagreements) / len(photos),
        "known_model_agreement": float(np.mean(known_same)) if known_same else None,
        "top1_disagreements": disagreements,
    }


def check_parity(figures: Mapping[str, Any], runtime: str, tolerance: Tolerance | None = None) -> None:
    """Raise ``ParityError`` unless ``figures`` (``parity``) are within ``tolerance``
    (default: a float32 conversion's, the same answers; ``runtime``: the candidate's, a key of
    ``inference.model_folder.RUNTIME_NAMES``)."""
    limits = tolerance or Tolerance(MAX_PROBABILITY_DIFFERENCE)
    problems = []
    largest = limits.max_probability_difference
    if largest is not None and figures["max_probability_difference"] > largest:
        problems.append(f"probabilities differ by up to {figures['max_probability_difference']:.2e} "
                        f"(limit {largest:.0e})")
    if figures["top1_agreement"] < limits.min_top1_agreement:
        problems.append(f"the top class differs on {len(figures['top1_disagreements'])} photo(s) "
                        f"({figures['top1_agreement']:.2%} agree, at least {limits.min_top1_agreement:.1%} needed), "
                        f"e.g. {figures['top1_disagreements'][0]}")
    known = figures["known_model_agreement"]
    if known is not None and known < limits.min_known_model_agreement:
        problems.append(f"the known-model answer agrees on only {known:.2%} of photos "
                        f"(at least {limits.min_known_model_agreement:.1%} needed)")
    if problems:
        raise ParityError(f"{RUNTIME_NAMES[runtime]} does not answer as the SavedModel on {figures['photos']} real "
                          "photos: " + "; ".join(problems) + ". Nothing was written.")


def write_checked(model_dir: Path, files: Mapping[str, bytes], load: Callable[[Path], Predictor],
                  reference: Predictor, photos: Sequence[Path | str], runtime: str,
                  parity_filename: str, batch_size: int = BATCH, tolerance: Tolerance | None = None,
                  precision: str = DEFAULT_PRECISION) -> dict[str, Any]:
    """Write ``files`` (name -> contents) into ``model_dir`` if the model they make answers as
    ``reference`` on ``photos``, and the figures into ``parity_filename``.

    Args:
        model_dir: the model folder.
        files: what the candidate runtime loads, beside ``metadata.json`` (written too).
        load: the candidate runtime's class, called with a folder holding ``files``.
        reference: the SavedModel's ``inference.predictor.Predictor``.
        photos: paths of real photos (at least one).
        runtime: the candidate's, ``litert`` or ``onnxruntime`` (named in the messages).
        parity_filename: where the figures go, in ``model_dir``.
        batch_size: photos per forward pass of the check.
        tolerance: see ``check_parity``.
        precision: the candidate's; at another than float32 (int8), the candidate's own
            known-model test (its ``calibration``, when it has one) is written with it
            (``calibration.int8.json``).

    Returns:
        the parity figures (``parity``).

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
        candidate = load(Path(scratch))
        figures = parity(reference, candidate, [str(path) for path in photos], batch_size)
        check_parity(figures, runtime, tolerance)
        written = [*files, METADATA_FILENAME]
        if precision != DEFAULT_PRECISION and candidate.calibration is not None:
            candidate.calibration.save(scratch, precision)
            written.append(calibration_filename(precision))
        for name in written:
            os.replace(Path(scratch) / name, model_dir / name)
    (model_dir / parity_filename).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def summary(figures: Mapping[str, Any], model_file: Path) -> str:
    """One line: ``model_file`` (``model.tflite``, ``model.onnx`` or ``model.int8.onnx``), its size and the
    parity figures."""
    known = figures["known_model_agreement"]
    return (f"{model_file} ({model_file.stat().st_size / 1e6:.1f} MB): on {figures['photos']} real photos, "
            f"probabilities within {figures['max_probability_difference']:.1e} of the SavedModel's, top class "
            f"{figures['top1_agreement']:.2%} identical" + (f", known-model answer {known:.2%}" if known else ""))
