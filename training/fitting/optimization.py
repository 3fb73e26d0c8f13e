"""Optimizers, losses and learning-rate schedules, chosen by name in the config.

Every builder takes a ``training.config.TrainConfig``; the names here are
the accepted values of its ``optimizer``, ``loss`` and ``schedule`` fields.
"""

from typing import TYPE_CHECKING

import keras
from keras import ops

from training.config import LOSSES, SCHEDULES, Stage, TrainConfig  # noqa: F401 (the accepted names, kept in the light config module)

if TYPE_CHECKING:  # the schedule's step and rate: tensors of the backend, TensorFlow
    import tensorflow as tf

# Builders by name; the names are training.config.OPTIMIZER_NAMES.
OPTIMIZERS = {
    "adam": lambda config, lr: keras.optimizers.Adam(lr),
    # Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization".
    "adamw": lambda config, lr: keras.optimizers.AdamW(lr, weight_decay=config.weight_decay),
    "sgd": lambda config, lr: keras.optimizers.SGD(lr, momentum=config.momentum),
    # Dozat 2016, "Incorporating Nesterov Momentum into Adam".
    "nadam": lambda config, lr: keras.optimizers.Nadam(lr),
}


def build_optimizer(
    config: TrainConfig, learning_rate: float | keras.optimizers.schedules.LearningRateSchedule
) -> keras.optimizers.Optimizer:
    """A fresh Keras optimizer named by ``config.optimizer``.

    Args:
        config: ``training.config.TrainConfig`` (``optimizer``,
            ``weight_decay``, ``momentum``).
        learning_rate: a float or a ``LearningRateSchedule`` (see
            ``build_schedule``).
    """
    return OPTIMIZERS[config.optimizer](config, learning_rate)


def build_loss(config: TrainConfig) -> keras.losses.Loss:
    """The loss on logits named by ``config.loss``, with ``config.label_smoothing``.

    ``crossentropy``: ``keras.losses.CategoricalCrossentropy``; ``focal``:
    ``keras.losses.CategoricalFocalCrossentropy`` with ``gamma =
    config.focal_gamma`` (Lin et al. 2017, "Focal Loss for Dense Object
    Detection"), which down-weights the examples the model already gets right.
    Both take one-hot ``float32 (batch, num_classes)`` targets and logits of the
    same shape.
    """
    if config.loss == "focal":
        return keras.losses.CategoricalFocalCrossentropy(
            gamma=config.focal_gamma, from_logits=True, label_smoothing=config.label_smoothing
        )
    return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing)


def build_schedule(
    config: TrainConfig, stage: Stage, steps_per_epoch: int
) -> keras.optimizers.schedules.LearningRateSchedule | float:
    """The learning rate of one stage, as a function of the optimizer step.

    The stage's ``learning_rate`` is the peak; the policies, by
    ``config.schedule``:

    - ``onecycle``: fastai's ``fit_one_cycle`` (Smith 2018, "A disciplined
      approach to neural network hyper-parameters"): linear warm-up over the
      first 30% of steps from ``lr / 25`` to ``lr``, then cosine annealing to
      ``lr / 1e4``.
    - ``cosine``: linear warm-up from 0 over ``config.warmup_fraction`` of the
      steps (Goyal et al. 2017), then cosine decay to 0 (Loshchilov & Hutter
      2017, "SGDR", without restarts).
    - ``exponential``: ``lr * config.decay_rate ** (step / steps_per_epoch)``.
    - ``cyclic``: ``TriangularCyclicalLearningRate`` between ``lr / 10``
      and ``lr``, ``config.cycle_epochs`` epochs per cycle.
    - ``plateau``: constant ``lr``; ReduceLROnPlateau (a callback) lowers it.

    Args:
        config: ``training.config.TrainConfig``.
        stage: ``training.config.Stage`` (``epochs``, ``learning_rate``).
        steps_per_epoch: optimizer steps (batches) per epoch, >= 1.

    Returns:
        a ``keras.optimizers.schedules.LearningRateSchedule``, or a float for
        ``plateau``.
    """
    lr = stage.learning_rate
    total = stage.epochs * steps_per_epoch
    if config.schedule in ("onecycle", "cosine"):
        onecycle = config.schedule == "onecycle"
        warmup = max(1, round((0.3 if onecycle else config.warmup_fraction) * total))
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=lr / 25 if onecycle else 0.0,
            warmup_target=lr,
            warmup_steps=warmup,
            decay_steps=max(1, total - warmup),
            alpha=1e-4 if onecycle else 0.0,
        )
    if config.schedule == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(lr, steps_per_epoch, config.decay_rate)
    if config.schedule == "cyclic":
        half_cycle = max(1, round(config.cycle_epochs * steps_per_epoch / 2))
        return TriangularCyclicalLearningRate(lr / 10, lr, half_cycle)
    return lr


class TriangularCyclicalLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """The ``triangular`` cyclical learning rate of Smith 2017, "Cyclical
    Learning Rates for Training Neural Networks" (sec. 3.1): linear from
    ``base`` up to ``peak`` over ``step_size`` steps, back down over as many,
    repeated.

    Args:
        base: lowest learning rate (cycle start and end).
        peak: highest learning rate (mid-cycle).
        step_size: optimizer steps per half cycle, >= 1.
    """

    def __init__(self, base: float, peak: float, step_size: int) -> None:
        self.base, self.peak, self.step_size = base, peak, step_size

    def __call__(self, step: "int | tf.Tensor") -> "tf.Tensor":
        position = ops.cast(step, "float32") / self.step_size  # half cycles done
        distance = ops.abs(position - 2 * ops.floor(position / 2) - 1)  # 1 at a cycle's ends, 0 mid-cycle
        return self.base + (self.peak - self.base) * (1 - distance)

    def get_config(self) -> dict[str, float]:
        return {"base": self.base, "peak": self.peak, "step_size": self.step_size}
