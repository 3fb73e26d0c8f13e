"""Is the top class trustworthy? The known-model test stored with a model.

``calibration.json`` and ``calibration.npz``, next to the SavedModel, are
written by ``python -m training.calibrate`` (which fits them) and read here by
the service. The score is the squared Mahalanobis distance of an image's
pooled backbone features (the SavedModel's ``features`` output) to the
nearest class centre, with one covariance shared by all classes: Lee et al.
2018, "A Simple Unified Framework for Detecting Out-of-Distribution Samples
and Adversarial Attacks". The shared covariance of the features around their
class centres is stored in the probabilistic-PCA form (Tipping & Bishop
1999, "Probabilistic Principal Component Analysis"):
``U diag(variances) U^T + noise_variance (I - U U^T)``, its ``k`` leading
eigenvectors ``U`` kept apart and the other eigenvalues replaced by their mean:
full rank, and ``F x k`` numbers instead of ``F x F`` (the fit:
:func:`training.known_model.fit_test`). Centres and covariance come from the training split; the threshold
is a high quantile of the distances on held-out photos of the known models,
so that almost no photo of a known model lies beyond it. Photos further away
than the threshold are "not one of the known models".
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FILENAME = "calibration.json"
ARRAYS_FILENAME = "calibration.npz"
METHOD = "mahalanobis_features"


def mode_key(views: Sequence[str]) -> str:
    """The key of a TTA setting in :attr:`Calibration.modes`, e.g. ``original+hflip``."""
    return "+".join(views)


@dataclass
class KnownModelTest:
    """The known-model test for one TTA setting (features averaged over its views).

    Attributes:
        class_means: ``float32 (num_classes, F)``: the mean features of each
            class's training photos, in label order.
        components: ``float32 (k, F)``: orthonormal leading eigenvectors of
            the shared within-class covariance.
        variances: ``float32 (k,)``: its eigenvalues along them.
        noise_variance: its mean eigenvalue in the other ``F - k`` directions.
        threshold: largest squared distance still called a known model.
        report: what the threshold turns away on validation (and on photos of
            unknown models, when given) and how other scores compare; for people.
    """

    class_means: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    noise_variance: float
    threshold: float
    report: dict = field(default_factory=dict)

    ARRAYS = ("class_means", "components", "variances")

    def __post_init__(self) -> None:
        # float64 once here, not on every request's distance.
        for name in self.ARRAYS:
            setattr(self, name, np.asarray(getattr(self, name), np.float64))

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance to the nearest class centre, under the
        stored covariance (see the module docstring).

        Args:
            features: ``float`` array ``(F,)`` or ``(batch, F)``.

        Returns:
            ``float64`` array ``(batch,)`` (a scalar array for one image).
        """
        residuals = np.asarray(features, np.float64)[..., None, :] - self.class_means  # (..., classes, F)
        projected = residuals @ self.components.T  # (..., classes, k)
        inside = np.sum(projected**2 / self.variances, axis=-1)
        outside = (np.sum(residuals**2, axis=-1) - np.sum(projected**2, axis=-1)) / self.noise_variance
        return (inside + outside).min(axis=-1)


@dataclass
class Calibration:
    """The contents of ``calibration.json``.

    Attributes:
        method: :data:`METHOD`.
        quantile: share of validation photos inside the threshold (e.g. 0.99).
        labels: class names in output order (checked against the model's).
        modes: :func:`mode_key` of a TTA setting -> :class:`KnownModelTest`.
    """

    method: str
    quantile: float
    labels: list
    modes: dict

    def test(self, views: Sequence[str]) -> KnownModelTest | None:
        """The :class:`KnownModelTest` for these TTA views, or ``None`` if not calibrated."""
        return self.modes.get(mode_key(views))

    def known_model(self, features: np.ndarray, views: Sequence[str]) -> tuple[bool | None, float | None]:
        """Whether the top class is trustworthy: the image's features within the threshold of these TTA views.

        Args:
            features: ``float32 (F,)``, averaged over ``views``.
            views: the TTA views the features came from.

        Returns:
            ``(known, distance)``: ``bool`` and the squared Mahalanobis distance
            as ``float``; ``(None, None)`` when these views are not calibrated.
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

    def save(self, model_dir: Path | str) -> None:
        """Write ``calibration.json`` (readable facts) and ``calibration.npz`` (the arrays) into ``model_dir``."""
        modes: dict[str, dict] = {}
        arrays: dict[str, Any] = {}
        for key, test in self.modes.items():
            modes[key] = {"threshold": test.threshold, "noise_variance": test.noise_variance, "report": test.report}
            arrays.update({f"{key}/{name}": np.asarray(getattr(test, name), np.float32) for name in test.ARRAYS})
        data = {"method": self.method, "quantile": self.quantile, "labels": self.labels, "modes": modes}
        (Path(model_dir) / FILENAME).write_text(json.dumps(data, indent=2) + "\n")
        np.savez(Path(model_dir) / ARRAYS_FILENAME, **arrays)

    @classmethod
    def load(cls, model_dir: Path | str) -> "Calibration | None":
        """Read ``calibration.json`` and ``calibration.npz`` from ``model_dir``; ``None`` if there is none.

        Raises:
            ValueError: a file is malformed or missing, or uses another method
                (e.g. a calibration of the logits from an older release).
        """
        path = Path(model_dir) / FILENAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            if data.get("method") != METHOD:
                raise ValueError(f"{path}: method {data.get('method')!r} is not {METHOD!r}; "
                                 "rerun python -m training.calibrate")
            with np.load(Path(model_dir) / ARRAYS_FILENAME) as arrays:
                data["modes"] = {
                    key: KnownModelTest(**{name: arrays[f"{key}/{name}"] for name in KnownModelTest.ARRAYS}, **test)
                    for key, test in data["modes"].items()
                }
            return cls(**data)
        except (KeyError, TypeError, OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} or {ARRAYS_FILENAME} beside it is malformed: {error}") from None
