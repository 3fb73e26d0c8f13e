"""Is the top class trustworthy? The known-model test stored with a model.

``calibration.json`` and ``calibration.npz``, next to the SavedModel, are
written by ``carclf calibrate`` (which fits them) and read here by
the service. The score is the cosine distance from an image's pooled backbone
features (the SavedModel's ``features`` output) to the nearest of the
training photos' features: one minus the largest cosine similarity, ``[0, 2]``
(deep nearest neighbours, Sun et al. 2022, "Out-of-Distribution Detection
with Deep Nearest Neighbors", k = 1). A photo of another car model finds no
close neighbour among the photos of the known models even where it lies near
their class centre, which the Mahalanobis distance to the centres (Lee et al.
2018, kept by the calibration as a comparison) lets pass. The threshold is a
high quantile of the scores of held-out photos of the known models, so that
almost no photo of a known model lies beyond it; photos further away are "not
one of the known models". The training features are stored as ``float16``
unit vectors (5.3 MB per TTA setting for 686 photos of 3,840 features, about a
third less compressed), used in float32; the threshold is
computed from the stored vectors, so the service scores exactly as the
calibration did.

The int8 model (``model.int8.onnx``, docs/int8.md) gives features a little
off the float32 model's, so its distances run a little longer: its test
keeps the same neighbours (the float32 features in ``calibration.npz``) with
a threshold of its own, set by the same rule on its features of the same
validation photos, in ``calibration.int8.json``.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inference import DEFAULT_PRECISION

FILENAME = "calibration.json"
ARRAYS_FILENAME = "calibration.npz"
METHOD = "nearest_neighbour_features"


def calibration_filename(precision: str = DEFAULT_PRECISION) -> str:
    """The readable facts of the test of a precision (``inference.PRECISIONS``): ``calibration.json``
    (float32) or ``calibration.int8.json``; both share the neighbours of ``ARRAYS_FILENAME``."""
    return FILENAME if precision == DEFAULT_PRECISION else f"calibration.{precision}.json"


def mode_key(views: Sequence[str]) -> str:
    """The key of a TTA setting in ``Calibration.modes``, e.g. ``original+hflip``."""
    return "+".join(views)


def unit_vectors(features: np.ndarray) -> np.ndarray:
    """``features`` scaled to unit L2 norm along the last axis, ``float32`` (zero rows stay zero)."""
    features = np.asarray(features, np.float32)
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    return features / np.maximum(norms, np.finfo(np.float32).tiny)


@dataclass
class KnownModelTest:
    """The known-model test for one TTA setting (features averaged over its views).

    Attributes:
        neighbours: ``float32 (n_train, F)`` unit-norm features of the training photos,
            rounded to ``float16`` (as stored in ``calibration.npz``).
        threshold: largest cosine distance still called a known model.
        report: what the threshold turns away on validation (and on photos of
            unknown models, when given) and how other scores compare; for people.
    """

    neighbours: np.ndarray
    threshold: float
    report: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # float16 values (what the file holds, so a test answers the same before and after saving),
        # used in float32, converted once here rather than on every request; one copy in memory.
        self.neighbours = unit_vectors(self.neighbours).astype(np.float16).astype(np.float32)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Cosine distance to the nearest training photo.

        Args:
            features: ``float`` array ``(F,)`` or ``(batch, F)``.

        Returns:
            ``float64`` array ``(batch,)`` in ``[0, 2]`` (a scalar array for one image).
        """
        similarities = unit_vectors(features) @ self.neighbours.T  # (..., n_train)
        # Clipped: rounding can take a photo's similarity to its own copy just past 1.
        return np.clip(1.0 - similarities.max(axis=-1).astype(np.float64), 0.0, 2.0)


@dataclass
class Calibration:
    """The contents of ``calibration.json``.

    Attributes:
        method: ``METHOD``.
        quantile: share of validation photos inside the threshold (e.g. 0.99).
        labels: class names in output order (checked against the model's).
        modes: ``mode_key`` of a TTA setting -> ``KnownModelTest``.
    """

    method: str
    quantile: float
    labels: list
    modes: dict

    def test(self, views: Sequence[str]) -> KnownModelTest | None:
        """The ``KnownModelTest`` for these TTA views, or ``None`` if not calibrated."""
        return self.modes.get(mode_key(views))

    def known_model(self, features: np.ndarray, views: Sequence[str]) -> tuple[bool | None, float | None]:
        """Whether the top class is trustworthy: the image's features within the threshold of these TTA views.

        Args:
            features: ``float32 (F,)``, averaged over ``views``.
            views: the TTA views the features came from.

        Returns:
            ``(known, distance)``: ``bool`` and the cosine distance to the
            nearest training photo as ``float``; ``(None, None)`` when these
            views are not calibrated.
        """
        test = self.test(views)
        if test is None:
            return None, None
        distance = float(test.distances(features))
        return distance <= test.threshold, distance

    def summary(self) -> dict:
        """Method, quantile, and per TTA setting the threshold and what it turns away (a JSON-ready ``dict``)."""
        return {
            "method": self.method,
            "quantile": self.quantile,
            "modes": {
                key: {"threshold": test.threshold, "validation": test.report.get("validation"),
                      "unknown": test.report.get("unknown")}
                for key, test in self.modes.items()
            },
        }

    def save(self, model_dir: Path | str, precision: str = DEFAULT_PRECISION) -> None:
        """Write ``calibration.json`` (readable facts) and ``calibration.npz`` (the arrays) into ``model_dir``;
        at int8, ``calibration.int8.json`` only (its neighbours are those of ``calibration.npz``)."""
        modes = {key: {"threshold": test.threshold, "report": test.report} for key, test in self.modes.items()}
        data = {"method": self.method, "quantile": self.quantile, "labels": self.labels, "modes": modes}
        (Path(model_dir) / calibration_filename(precision)).write_text(json.dumps(data, indent=2) + "\n")
        if precision == DEFAULT_PRECISION:
            arrays = {key: test.neighbours.astype(np.float16) for key, test in self.modes.items()}
            # Compressed: a third smaller for the shipped model's 3,840 float16 features a photo.
            np.savez_compressed(Path(model_dir) / ARRAYS_FILENAME, **arrays)

    @classmethod
    def load(cls, model_dir: Path | str, precision: str = DEFAULT_PRECISION) -> "Calibration | None":
        """Read the test of ``precision`` from ``model_dir`` (``calibration_filename`` and
        ``calibration.npz``); ``None`` if there is none.

        Raises:
            ValueError: a file is malformed or missing, or uses another method
                (e.g. a calibration of the logits from an older release).
        """
        path = Path(model_dir) / calibration_filename(precision)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            if data.get("method") != METHOD:
                raise ValueError(f"{path}: method {data.get('method')!r} is not {METHOD!r}; "
                                 "rerun carclf calibrate")
            with np.load(Path(model_dir) / ARRAYS_FILENAME) as arrays:
                data["modes"] = {key: KnownModelTest(arrays[key], **facts) for key, facts in data["modes"].items()}
            return cls(**data)
        except (KeyError, TypeError, OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} or {ARRAYS_FILENAME} beside it is malformed or from an older release "
                             f"({error}); rerun carclf calibrate") from None
