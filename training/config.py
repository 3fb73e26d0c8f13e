"""The training configuration: every knob with its default, in one place.

A :class:`TrainConfig` is built from command-line flags and/or a JSON file
(``--config``), and saved as ``training_config.json`` next to every exported
model so that a run can be repeated.
"""

import dataclasses
import json
from dataclasses import dataclass, field


@dataclass
class Stage:
    """One stage of transfer learning / fine-tuning.

    Attributes:
        name: shown in logs and the history (e.g. ``head``, ``finetune``).
        epochs: maximum epochs (early stopping may end the stage sooner).
        learning_rate: peak learning rate of the stage's schedule.
        unfreeze: fraction in ``[0, 1]`` of the backbone's layers, counted from
            the top, that are trained; ``0`` trains the head alone.
    """

    name: str
    epochs: int
    learning_rate: float
    unfreeze: float

    @classmethod
    def parse(cls, text):
        """Parse ``NAME:EPOCHS:LEARNING_RATE:UNFREEZE``, e.g. ``finetune:12:1e-4:0.3``.

        Raises:
            ValueError: wrong number of fields or values out of range.
        """
        parts = text.split(":")
        if len(parts) != 4:
            raise ValueError(f"stage '{text}' is not NAME:EPOCHS:LEARNING_RATE:UNFREEZE")
        stage = cls(parts[0], int(parts[1]), float(parts[2]), float(parts[3]))
        if stage.epochs < 1 or stage.learning_rate <= 0 or not 0 <= stage.unfreeze <= 1:
            raise ValueError(f"stage '{text}': epochs >= 1, learning rate > 0, 0 <= unfreeze <= 1")
        return stage


def default_stages():
    """Head only, then the top 30% of the backbone at a tenth of the learning rate."""
    return [Stage("head", 8, 1e-3, 0.0), Stage("finetune", 12, 1e-4, 0.3)]


@dataclass
class TrainConfig:
    """Every knob of ``python -m training.train``, with its default.

    Attributes:
        data: dataset root: ImageFolder (``<label>/<file>``), optionally with
            ``labels.csv`` (``path,label,group``).
        out: directory the SavedModel, config and metrics are written to.
        backbone: a name from :data:`training.backbones.BACKBONES`.
        alpha: MobileNetV2 width multiplier (ignored by other backbones).
        weights: ``imagenet`` (downloaded by Keras), ``none`` (random init) or
            a path to a local ``.weights.h5``/``.h5`` file of the backbone.
        image_size: input side in pixels; ``None`` uses the backbone's own.
        batch_size: images per training step.
        val_fraction: share of groups held out for validation.
        seed: seeds the split, weights init, shuffling and augmentation.
        dropout: dropout rate before the dense head.
        label_smoothing: of the categorical cross-entropy (Szegedy et al.
            2016, "Rethinking the Inception Architecture", sec. 7).
        augment: albumentations policy for training images: ``light`` or
            ``none`` (see :mod:`training.augment`).
        schedule: learning-rate policy within each stage: ``onecycle`` or
            ``plateau`` (ReduceLROnPlateau on validation loss).
        patience: epochs without validation-accuracy gain before a stage stops.
        train_bn: also train BatchNormalization layers when unfreezing.
        stages: the fine-tuning stages, run in order.
    """

    data: str
    out: str
    backbone: str = "EfficientNetB0"
    alpha: float = 1.0
    weights: str = "imagenet"
    image_size: int | None = None
    batch_size: int = 32
    val_fraction: float = 0.2
    seed: int = 42
    dropout: float = 0.3
    label_smoothing: float = 0.1
    augment: str = "light"
    schedule: str = "onecycle"
    patience: int = 4
    train_bn: bool = False
    stages: list[Stage] = field(default_factory=default_stages)

    def to_json(self):
        """The config as indented JSON text."""
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, values):
        """Build from a dict such as a parsed ``training_config.json``.

        Raises:
            TypeError: an unknown key.
        """
        values = dict(values)
        if "stages" in values:
            values["stages"] = [Stage(**stage) for stage in values["stages"]]
        return cls(**values)
