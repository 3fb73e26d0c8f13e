"""Is the top class trustworthy? The known-model test stored with a model.

``calibration.json``, next to the SavedModel, is written by
``python -m training.calibrate`` (which fits it) and read here by the service.
The score is the squared Mahalanobis distance of an image's logits to the
nearest class centre, with one covariance shared by all classes: Lee et al.
2018, "A Simple Unified Framework for Detecting Out-of-Distribution Samples
and Adversarial Attacks" (there on hidden features; here on the logits, the
only features the SavedModel exposes). Centres and covariance come from the
training split; the threshold is a high quantile of the distances on the
validation split, so that almost no photo of a known model lies beyond it.
Photos further away than the threshold are "not one of the known models".
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

FILENAME = "calibration.json"
METHOD = "mahalanobis_logits"


def mode_key(views):
    """The key of a TTA setting in :attr:`Calibration.modes`, e.g. ``original+hflip``."""
    return "+".join(views)


@dataclass
class KnownModelTest:
    """The known-model test for one TTA setting (logits averaged over its views).

    Attributes:
        class_means: ``(num_classes, num_classes)`` nested lists: the mean
            logits of each class's training photos, in label order.
        precision: ``(num_classes, num_classes)`` nested lists: inverse of the
            shared within-class covariance of the logits.
        threshold: largest squared distance still called a known model.
        report: what the threshold turns away on validation (and on photos of
            unknown models, when given) and how other scores compare; for people.
    """

    class_means: list
    precision: list
    threshold: float
    report: dict = field(default_factory=dict)

    def distances(self, logits):
        """Squared Mahalanobis distance to the nearest class centre.

        Args:
            logits: ``float`` array ``(num_classes,)`` or ``(batch, num_classes)``.

        Returns:
            ``float64`` array ``(batch,)`` (a scalar array for one image).
        """
        diff = np.asarray(logits, np.float64)[..., None, :] - np.asarray(self.class_means)
        return np.einsum("...ci,ij,...cj->...c", diff, np.asarray(self.precision), diff).min(axis=-1)


@dataclass
class Calibration:
    """The contents of ``calibration.json``.

    Attributes:
        method: :data:`METHOD`.
        quantile: share of validation photos inside the threshold (e.g. 0.99).
        labels: class names in logit order (checked against the model's).
        modes: :func:`mode_key` of a TTA setting -> :class:`KnownModelTest`.
    """

    method: str
    quantile: float
    labels: list
    modes: dict

    def test(self, views):
        """The :class:`KnownModelTest` for these TTA views, or ``None`` if not calibrated."""
        return self.modes.get(mode_key(views))

    def summary(self):
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

    def save(self, model_dir):
        """Write ``calibration.json`` into ``model_dir``."""
        data = asdict(self)
        (Path(model_dir) / FILENAME).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, model_dir):
        """Read ``calibration.json`` from ``model_dir``; ``None`` if there is none.

        Raises:
            ValueError: the file is malformed or uses another method.
        """
        path = Path(model_dir) / FILENAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            data["modes"] = {key: KnownModelTest(**test) for key, test in data["modes"].items()}
            calibration = cls(**data)
        except (KeyError, TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is malformed: {error}") from None
        if calibration.method != METHOD:
            raise ValueError(f"{path}: unknown method {calibration.method!r} (expected {METHOD!r})")
        return calibration
