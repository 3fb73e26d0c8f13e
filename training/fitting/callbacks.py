"""The Keras callbacks of a fine-tuning stage, and how Keras shows its progress."""

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import keras

from training.config import TrainConfig

if TYPE_CHECKING:
    from training.fitting.checkpoints import RunState


def progress_verbosity() -> int:
    """Keras progress display: ``1``, a live progress bar, on a terminal; ``2``, one plain
    line per epoch (or per run), when stdout is a file or a pipe, which would otherwise
    fill with the bar's control characters."""
    return 1 if sys.stdout.isatty() else 2


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's learning rate to every epoch's logs, as
    ``learning_rate``, so that the Keras ``History`` (and ``history.json``)
    holds it for the learning curves.

    Keras 3 logs it only under ReduceLROnPlateau; with a schedule the
    optimizer's ``learning_rate`` is the schedule's value at the current step,
    i.e. here the rate after the epoch's last step.
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if logs is not None and "learning_rate" not in logs:
            optimizer = getattr(self.model.optimizer, "inner_optimizer", self.model.optimizer)  # mixed precision
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class EpochProgress(keras.callbacks.Callback):
    """After each epoch: records it in the run's state (``training.fitting.checkpoints.RunState``,
    for resuming) and prints its time, its training throughput and the time left.

    The time left is the mean epoch time of the current stage times the epochs
    left in the run: an upper bound where a stage stops early, an estimate
    where later stages train more (or fewer) layers.

    Args:
        run: the ``training.fitting.checkpoints.RunState``.
        images_per_epoch: training images per epoch.
        total_epochs: the run's last epoch (counted across stages, 1-based).
    """

    def __init__(self, run: "RunState", images_per_epoch: int, total_epochs: int) -> None:
        super().__init__()
        self.run, self.images_per_epoch, self.total_epochs = run, images_per_epoch, total_epochs
        self._started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        seconds = time.perf_counter() - self._started
        self.run.record_epoch(epoch, {**(logs or {}), "epoch_seconds": seconds})
        times = [entry["epoch_seconds"] for entry in self.run.epochs()]
        left = (self.total_epochs - epoch - 1) * sum(times) / len(times)
        print(f"Epoch {epoch + 1}/{self.total_epochs}: {seconds:.0f} s, "
              f"{self.images_per_epoch / seconds:.1f} training images/s; about {left / 60:.0f} min left", flush=True)


def stage_callbacks(
    config: TrainConfig, checkpoint_path: Path | str | None, best_so_far: float | None, logs: Path,
    after_logger: Sequence[keras.callbacks.Callback] = (),
) -> list[keras.callbacks.Callback]:
    """The callbacks of one stage.

    Learning-rate logging (first, so that the logs written below have it);
    ``after_logger`` (the run's progress and backup, in that order); the
    best-validation-accuracy checkpoint (only when
    ``checkpoint_path`` is given; ``best_so_far`` carries the best value over
    from earlier stages); early stopping; a CSV log in ``logs`` appended across
    stages; ReduceLROnPlateau for the ``plateau`` schedule; TensorBoard (in
    ``logs/tensorboard``) on request.
    """
    callbacks = [LearningRateLogger(), *after_logger]
    if checkpoint_path is not None:
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                checkpoint_path,
                monitor="val_accuracy",
                save_best_only=True,
                save_weights_only=True,
                initial_value_threshold=best_so_far,
            )
        )
    callbacks += [
        keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=config.patience, restore_best_weights=True),
        keras.callbacks.CSVLogger(str(logs / "training_log.csv"), append=True),
    ]
    if config.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=2, min_lr=1e-7))
    if config.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(logs / "tensorboard")))
    return callbacks
