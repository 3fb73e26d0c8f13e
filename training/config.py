"""The training configuration: every knob with its default, in one place.

A ``TrainConfig`` is built from command-line flags and/or a config file
(``--config``, JSON or YAML, possibly partial: flags override it), and saved
as ``training_config.json`` next to every exported model so that a run can be
repeated. Each field's ``metadata["help"]`` is its documentation and its
``--help`` text (``training.cli`` makes the options of ``carclf train`` from
these fields); ``metadata["choices"]`` lists the accepted values, and
``metadata["flag"]`` how the option differs from what the field's type implies
(``flag_name``, ``action="append"`` for a repeatable option, ``type``, ``metavar``).
"""

import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar, final

CONFIG_SUFFIXES = (".json", ".yaml", ".yml")

# Accepted values of knobs implemented in modules that import TensorFlow, Keras
# or albumentations (seconds): named here, so that reading a config, and
# `carclf train --help`, import none of them.
OPTIMIZER_NAMES = ("adam", "adamw", "sgd", "nadam")  # training.fitting.optimization.OPTIMIZERS
LOSSES = ("crossentropy", "focal")  # training/fitting/optimization.py
SCHEDULES = ("onecycle", "cosine", "exponential", "cyclic", "plateau")  # training/fitting/optimization.py
POLICIES = ("light", "strong", "none")  # training/data/augment.py
STRATEGIES = ("default", "mirrored", "multiworker")  # training/fitting/distribute.py
PRECISIONS = ("auto", "on", "off", "bfloat16")  # training/fitting/distribute.py

T = TypeVar("T")


class BackboneNames:
    """The names of ``training.backbones.catalog.BACKBONES``, read on first use (that module imports Keras)."""

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    @staticmethod
    def _names() -> tuple[str, ...]:
        from training.backbones.catalog import BACKBONES

        return tuple(BACKBONES)


@final
@dataclass
class Stage:
    """One stage of transfer learning / fine-tuning.

    Attributes:
        name: shown in logs and the history (e.g. ``head``, ``finetune``).
        epochs: maximum epochs (early stopping may end the stage sooner).
        learning_rate: peak learning rate of the stage's schedule.
        unfreeze: fraction in ``[0, 1]`` of the backbone's layers, counted from
            the top, that are trained; ``0`` trains the head alone.
        batch_size: images per step in this stage; ``None``: the config's.
        image_size: input side in pixels in this stage; ``None``: the
            config's. A larger size in a later stage is progressive resizing;
            the exported model uses the last stage's size.

    Raises:
        ValueError: a value out of range.
    """

    name: str
    epochs: int
    learning_rate: float
    unfreeze: float
    batch_size: int | None = None
    image_size: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.learning_rate <= 0 or not 0 <= self.unfreeze <= 1:
            raise ValueError(f"stage '{self}': epochs >= 1, learning rate > 0 and 0 <= unfreeze <= 1 are needed")
        if any(value is not None and value < 1 for value in (self.batch_size, self.image_size)):
            raise ValueError(f"stage '{self}': batch size and image size must be positive")

    def __str__(self) -> str:
        text = f"{self.name}:{self.epochs}:{self.learning_rate:g}:{self.unfreeze:g}"
        if self.image_size is not None:
            return f"{text}:{self.batch_size or ''}:{self.image_size}"
        return text if self.batch_size is None else f"{text}:{self.batch_size}"

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``NAME:EPOCHS:LR:UNFREEZE[:BATCH[:SIZE]]``, e.g. ``finetune:12:1e-4:0.3``
        or ``large:4:1e-4:1::288`` (an empty field keeps the config's value).

        Raises:
            ValueError: wrong number of fields, not numbers, or values out of range.
        """
        parts = text.split(":")
        if not 4 <= len(parts) <= 6:
            raise ValueError(f"stage '{text}' is not NAME:EPOCHS:LR:UNFREEZE[:BATCH[:SIZE]]")
        try:
            numbers: tuple[int, float, float, *tuple[int | None, ...]] = (
                int(parts[1]), float(parts[2]), float(parts[3]), *(int(p) if p else None for p in parts[4:])
            )
        except ValueError as error:
            raise ValueError(f"stage '{text}': {error}") from None
        return cls(parts[0], *numbers)

    @classmethod
    def coerce(cls, value: "Stage | str | dict[str, Any]") -> "Stage":
        """A ``Stage`` from a Stage, a ``NAME:EPOCHS:...`` string or a dict of its fields."""
        if isinstance(value, cls):
            return value
        return cls.parse(value) if isinstance(value, str) else cls(**value)


def default_stages() -> list[Stage]:
    """Head only, then the top 30% of the backbone at a tenth of the learning rate."""
    return [Stage("head", 8, 1e-3, 0.0), Stage("finetune", 12, 1e-4, 0.3)]


def knob(default: T | Callable[[], T], help: str, choices: Iterable[str] | None = None, **flag: Any) -> T:
    """A config field: its default (a callable makes a ``default_factory``, for
    lists), help text, accepted values and, in ``flag``, how its command-line
    option (``training.cli``) differs from what its type implies."""
    metadata = {"help": help, "choices": choices, "flag": flag}
    if callable(default):
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Every knob of ``carclf train``, with its default.

    Each field is documented by its ``help`` metadata (see the module
    docstring and ``carclf train --help``).

    Raises:
        ValueError: a value not among a field's choices, a bad stage, or no stage
            without ``head_init: probe``.
    """

    data: list[str] = knob(
        list,
        "dataset root, repeatable (several roots are merged): ImageFolder <label>/<file> with optional labels.csv "
        "(path,label,group), or the Kaggle layout train.csv (Id,Category) + train/<Category>/<Id>",
        action="append",
    )
    out: str = knob("", "output directory for the SavedModel, config, history, log and metrics")
    class_names: list[str] | None = knob(
        None,
        "names of the Kaggle Category indices 0, 1, ... in order (comma-separated); without it Kaggle-layout "
        "labels are the indices as strings",
        type=lambda text: text.split(","),
        metavar="NAME,NAME,...",
    )
    backbone: str = knob("EfficientNetLite0", "backbone: EfficientNetLite0..2 (ImageNet weights installed with "
                         "the training requirements), or keras.applications EfficientNetB0..B7, EfficientNetV2B0..B3, "
                         "EfficientNetV2S/M/L, MobileNetV2 (ImageNet weights downloaded)", choices=BackboneNames(),
                         metavar="NAME")
    alpha: float = knob(1.0, "MobileNetV2 width multiplier (other backbones: 1.0)")
    weights: str = knob("imagenet", "imagenet (installed for EfficientNetLite*, downloaded by Keras for the others), "
                        "none (random init) or PATH to a weights file")
    image_size: int | None = knob(None, "input side in pixels for stages without their own; default: the backbone's",
                                  type=int)
    multiscale_sides: list[int] = knob(
        list,
        "multi-scale features: the backbone also sees the photo downscaled inside the graph to this side in pixels "
        "(bilinear), repeatable, and the pooled features of every scale are concatenated for the head and the "
        "known-model test; none: one scale",
        flag_name="--multiscale-side",
        dest="multiscale_sides",
        action="append",
        type=int,
        metavar="PIXELS",
    )
    pooling: str = knob("average", "how the backbone's feature map becomes the head's features: average (global "
                        "average pooling) or bilinear (second-order pooling of the map projected to bilinear_dim "
                        "channels, for fine-grained classes: training/model.py; one scale only)",
                        choices=("average", "bilinear"))
    bilinear_dim: int = knob(128, "bilinear pooling: channels the map is projected to (its PCA) before the outer "
                             "product; the features have dim * (dim + 1) / 2 entries")
    probe_c: float = knob(1.0, "inverse L2 strength of the linear probe's logistic regression (scikit-learn's C); "
                          "average-pooled features are standardised first, bilinear ones are already normalised")
    batch_size: int = knob(32, "images per step (global, over all replicas) for stages without their own")
    memory_budget_gb: float = knob(0.0, "memory in GB (10^9 bytes) the decoded photos and the activations of a "
                                   "feature pass may take: photos are cached in memory while they fit half of it, "
                                   "on disk otherwise, and feature passes are batched to fit the other half; 0: an "
                                   "eighth of the machine's memory, from 0.5 to 1 GB (training/memory.py)")
    val_fraction: float = knob(0.2, "share of near-duplicate groups held out for validation")
    seed: int = knob(42, "seeds the split, weights init, shuffling and augmentation")
    deterministic: bool = knob(True, "deterministic TensorFlow ops (tf.config.experimental.enable_op_determinism): "
                               "the same command and seed give the same model on the same machine and versions")
    dropout: float = knob(0.3, "dropout rate before the dense head")
    head_init: str = knob("probe", "probe: start the head from logistic regression on the frozen features, then "
                          "fine-tune (LP-FT, Kumar et al. 2022); random: Keras' initialisation",
                          choices=("probe", "random"))
    optimizer: str = knob("adam", "optimizer (training/fitting/optimization.py)", choices=OPTIMIZER_NAMES)
    weight_decay: float = knob(0.004, "AdamW decoupled weight decay (Loshchilov & Hutter 2019)")
    momentum: float = knob(0.9, "SGD momentum")
    loss: str = knob("crossentropy", "categorical cross-entropy or focal loss (Lin et al. 2017)", choices=LOSSES)
    label_smoothing: float = knob(0.1, "label smoothing of either loss (Szegedy et al. 2016, sec. 7)")
    focal_gamma: float = knob(2.0, "focusing parameter gamma of the focal loss")
    schedule: str = knob("onecycle", "learning-rate policy within each stage (training/fitting/optimization.py)",
                         choices=SCHEDULES)
    warmup_fraction: float = knob(0.1, "cosine: share of the stage's steps spent warming up linearly")
    decay_rate: float = knob(0.8, "exponential: learning-rate factor per epoch")
    cycle_epochs: float = knob(4.0, "cyclic: epochs per triangular cycle (lr/10 -> lr -> lr/10)")
    patience: int = knob(4, "epochs without validation-accuracy gain before a stage stops early")
    train_bn: bool = knob(False, "also train BatchNormalization layers when unfreezing")
    cache_cut: int = knob(0, "fine-tune on cached activations: the backbone's block groups up to this one (1-6 for "
                          "EfficientNet-Lite0) run once per photo and view and their output is cached; the stages "
                          "train only what is above (a stage's unfreeze counts those layers); 0: every layer runs "
                          "every step (training/fitting/activation_cache.py)")
    cached_views: list[str] = knob(
        lambda: ["original", "hflip"],
        "with cache_cut: the TTA views (inference/tta.py) each training photo is cached in; every epoch shows each "
        "photo in one of them, drawn at random (albumentations is not applied), repeatable",
        flag_name="--cached-view",
        dest="cached_views",
        action="append",
        metavar="VIEW",
    )
    activation_cache_dir: str = knob("", "with cache_cut: where the activation caches are kept and reused by runs of "
                                     "the same backbone, size, cut, views and photos; default: "
                                     "$CARCLF_CACHE_DIR/activations, else ~/.cache/car-model-classifier/activations")
    class_weight: str = knob("none", "balanced: weight classes by n_samples / (n_classes * class count)",
                             choices=("none", "balanced"))
    augment: str = knob("light", "albumentations policy for training images (training/data/augment.py)",
                        choices=POLICIES)
    mixed_precision: str = knob("auto", "mixed precision: auto (mixed_float16 when a GPU is present, else float32), "
                                "on (mixed_float16), off (float32), bfloat16 (mixed_bfloat16: oneDNN on CPUs with "
                                "AVX-512 BF16 or AMX; benchmarks/finetune_throughput.py measures it)",
                                choices=PRECISIONS)
    strategy: str = knob("default", "tf.distribute strategy: default (one device), mirrored (all local GPUs), "
                         "multiworker (several machines, TF_CONFIG)", choices=STRATEGIES)
    tensorboard: bool = knob(False, "also write TensorBoard logs to OUT/tensorboard")
    resume: bool = knob(True, "go on from OUT/checkpoints where an interrupted run of the same settings left off "
                        "(training/fitting/checkpoints.py); --no-resume starts over")
    photo_hint: str = knob("A front or three-quarter view of one car, filling most of the photo, works best.",
                           "which photos the model answers best, stored in its metadata and shown on the page")
    stages: list[Stage] = knob(
        default_stages,
        "a fine-tuning stage, repeatable, run in order; none (stages: [] in a config file): the model is the "
        "linear probe alone (head_init probe)",
        flag_name="--stage",
        dest="stages",
        action="append",
        type=Stage.parse,
        metavar="NAME:EPOCHS:LR:UNFREEZE[:BATCH[:SIZE]]",
    )

    def __post_init__(self) -> None:
        if isinstance(self.data, (str, Path)):  # training_config.json of the first release
            self.data = [str(self.data)]
        self.stages = [Stage.coerce(stage) for stage in self.stages]
        if not self.stages and self.head_init != "probe":
            raise ValueError("without a stage the model is the linear probe: that needs head_init probe")
        if self.pooling == "bilinear" and self.multiscale_sides:
            raise ValueError("bilinear pooling works at one scale: drop multiscale_sides")
        if any(side < 1 for side in self.multiscale_sides):
            raise ValueError(f"multiscale sides must be positive, got {self.multiscale_sides}")
        self._check_cache()
        for item in dataclasses.fields(self):
            choices = item.metadata.get("choices")
            if choices and getattr(self, item.name) not in choices:
                raise ValueError(f"{item.name} '{getattr(self, item.name)}' is not one of: {', '.join(choices)}")

    def _check_cache(self) -> None:
        from inference.tta import VIEWS  # NumPy and Pillow only

        if self.cache_cut < 0:
            raise ValueError(f"cache_cut must be 0 (no cache) or a block group, got {self.cache_cut}")
        unknown = [view for view in self.cached_views if view not in VIEWS]
        if unknown or not self.cached_views:
            raise ValueError(f"cached views {unknown or 'none'}: give one or more of {', '.join(VIEWS)}")
        if self.cache_cut and self.multiscale_sides:
            raise ValueError("cached fine-tuning works at one scale: drop multiscale_sides or cache_cut")
        if self.cache_cut and any(stage.image_size not in (None, self.image_size) for stage in self.stages):
            raise ValueError("cached fine-tuning works at one image size: stages cannot have their own")

    def stage_image_size(self, stage: Stage | None) -> int:
        """Input side in pixels of ``stage``: its own, else the config's, else the backbone's native size
        (``None``: the config's, else the backbone's)."""
        from training.backbones.catalog import get_spec

        return (stage and stage.image_size) or self.image_size or get_spec(self.backbone).input_size

    def export_image_size(self) -> int:
        """Input side in pixels of the exported model: the last stage's (progressive resizing), or the config's
        when there is no stage (the linear probe alone)."""
        return self.stage_image_size(self.stages[-1] if self.stages else None)

    def stage_batch_size(self, stage: Stage | None) -> int:
        """Images per step of ``stage``: its own, else the config's (``None``: the config's)."""
        return (stage and stage.batch_size) or self.batch_size

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of JSON/YAML types."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The config as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: Path | str) -> None:
        """Write the config to ``path``: YAML for ``.yaml``/``.yml``, else JSON."""
        import yaml  # pyyaml: the training requirements (the service reads no config file)

        path = Path(path)
        text = yaml.safe_dump(self.to_dict(), sort_keys=False) if path.suffix in (".yaml", ".yml") else self.to_json()
        path.write_text(text + ("" if text.endswith("\n") else "\n"))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        """Build from a dict such as a parsed ``training_config.json``; stages may
        be dicts of ``Stage`` fields or ``NAME:EPOCHS:...`` strings.

        Raises:
            ValueError: an unknown key or a bad value.
        """
        unknown = set(values) - {item.name for item in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown config key(s) {', '.join(sorted(unknown))}")
        try:
            return cls(**values)
        except TypeError as error:
            raise ValueError(f"bad config: {error}") from None


def read_config_file(path: Path | str) -> dict[str, Any]:
    """Read a (possibly partial) config file: JSON, or YAML for ``.yaml``/``.yml``.

    Returns:
        ``dict`` of ``TrainConfig`` fields (not yet validated).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown suffix, unparsable text, or not a mapping.
    """
    import yaml  # pyyaml: the training requirements (the service reads no config file)

    path = Path(path)
    if path.suffix not in CONFIG_SUFFIXES:
        raise ValueError(f"config file '{path}' must end in {', '.join(CONFIG_SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"config file '{path}' does not exist")
    try:
        values = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"cannot parse '{path}': {str(error).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file '{path}' must hold a mapping of config fields")
    return values
