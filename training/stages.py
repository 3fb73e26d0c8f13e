"""The stage loop: each fine-tuning stage compiled and fitted in turn, the best epoch kept."""

import dataclasses
import time
import warnings
from collections.abc import Callable, Container, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # heavy imports, made inside the functions that need them
    import keras
    import tensorflow as tf

    from training.config import Stage, TrainConfig


def checkpointed_stages(config: "TrainConfig") -> range:
    """Indices of the stages whose epochs compete for the best checkpoint: the
    trailing run of stages at the last stage's image size (the exported size),
    so that the kept weights were validated at the size the model is served at."""
    sizes = [config.stage_image_size(stage) for stage in config.stages]
    first = len(sizes) - 1
    while first > 0 and sizes[first - 1] == sizes[-1]:
        first -= 1
    return range(first, len(sizes))


def fit_stages(
    config: "TrainConfig",
    model: "keras.Model",
    datasets: "Callable[[Stage], tuple[tf.data.Dataset, tf.data.Dataset, dict[int, float] | None]]",
    backbone: "keras.Model",
    strategy: "tf.distribute.Strategy",
    scratch: Path | str,
    logs: Path,
    verbose: int | str = "auto",
) -> list[dict[str, Any]]:
    """Run every stage; return the per-stage histories and leave the best weights loaded.

    Args:
        config: :class:`TrainConfig`.
        model, backbone: from :func:`training.model.build_classifier`, built in
            ``strategy.scope()``.
        datasets: ``callable(stage) -> (train_data, val_data, class_weight)``.
        strategy: the ``tf.distribute.Strategy`` the model was built under.
        scratch: a directory for the best-weights checkpoint.
        logs: the directory of ``training_log.csv`` and ``tensorboard/``.
        verbose: Keras ``fit`` verbosity (0, 1 progress bar, 2 one line per epoch; ``"auto"``:
            :func:`training.callbacks.progress_verbosity`).

    Returns:
        ``list`` of ``dict`` per stage: the stage's fields (batch and image
        size resolved), ``seconds``, ``first_epoch`` and the per-epoch Keras
        history (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``,
        ``learning_rate``).
    """
    from training.callbacks import progress_verbosity, stage_callbacks
    from training.model import set_trainable
    from training.optimization import build_loss, build_optimizer, build_schedule

    checkpoint_path = f"{scratch}/best.weights.h5"
    histories, best, epoch = [], None, 0
    checkpointed = checkpointed_stages(config)
    if config.head_init == "probe" and 0 in checkpointed:
        # The linear probe competes as epoch 0: LP-FT keeps it unless a fine-tuned epoch validates better.
        with strategy.scope():
            model.compile(loss=build_loss(config), metrics=["accuracy"])
        best = model.evaluate(datasets(config.stages[0])[1], verbose=0, return_dict=True)["accuracy"]
        model.save_weights(checkpoint_path)
        print(f"Linear probe (epoch 0): val_accuracy {best:.4f}")
    start_accuracy = best
    for index, stage in enumerate(config.stages):
        train_data, val_data, weights = datasets(stage)
        trained = set_trainable(backbone, stage.unfreeze, config.train_bn)
        size, batch = config.stage_image_size(stage), config.stage_batch_size(stage)
        print(f"\n== Stage '{stage.name}': {stage.epochs} epochs, lr {stage.learning_rate:g}, {size}px, "
              f"batch {batch}, {trained}/{len(backbone.layers)} backbone layers trained")
        with strategy.scope():
            model.compile(
                optimizer=build_optimizer(config, build_schedule(config, stage, len(train_data))),
                loss=build_loss(config),
                metrics=["accuracy"],
            )
        started = time.perf_counter()
        history = model.fit(
            train_data,
            validation_data=val_data,
            initial_epoch=epoch,
            epochs=epoch + stage.epochs,
            shuffle=False,  # the tf.data pipeline shuffles
            class_weight=weights,
            callbacks=stage_callbacks(config, checkpoint_path if index in checkpointed else None, best, logs),
            verbose=progress_verbosity() if verbose == "auto" else verbose,
        )
        if index in checkpointed:
            best = max(history.history["val_accuracy"] + ([best] if best is not None else []))
        histories.append({
            "stage": {**dataclasses.asdict(stage), "batch_size": batch, "image_size": size},
            "seconds": round(time.perf_counter() - started, 1),
            "first_epoch": epoch,
            "stopped_early": _stopped_early(history, epoch, stage),
            **({"start_val_accuracy": start_accuracy} if index == 0 and start_accuracy is not None else {}),
            **history.history,
        })
        epoch += len(history.history["val_accuracy"])
    with warnings.catch_warnings():  # the checkpoint's optimizer state is not needed
        warnings.simplefilter("ignore")
        model.load_weights(checkpoint_path)
    kept = kept_epoch(histories, checkpointed)
    print(f"Kept epoch {kept['epoch']} (stage '{kept['stage']}', val_accuracy {kept['val_accuracy']:.4f})")
    return histories


def _stopped_early(history: "keras.callbacks.History", first_epoch: int, stage: "Stage") -> dict[str, int] | None:
    """``{"epoch", "best_epoch"}`` (1-based, counted across stages) when early
    stopping ended the stage before its last epoch, else ``None``; printed too."""
    ran = len(history.history["val_accuracy"])
    if ran >= stage.epochs:
        return None
    best = first_epoch + 1 + max(range(ran), key=history.history["val_accuracy"].__getitem__)
    print(f"Stage '{stage.name}' stopped early at epoch {first_epoch + ran} of {first_epoch + stage.epochs} "
          f"(no val_accuracy gain in {ran - (best - first_epoch)} epochs); its best epoch was {best}")
    return {"epoch": first_epoch + ran, "best_epoch": best}


def kept_epoch(histories: Sequence[dict[str, Any]], checkpointed: Container[int]) -> dict[str, int | str | float]:
    """The epoch whose weights the best checkpoint holds: the first epoch of
    highest validation accuracy among the ``checkpointed`` stages, epoch 0
    being the linear probe before the first stage (``start_val_accuracy``).

    Returns:
        ``{"epoch", "stage", "val_accuracy"}`` (epoch 1-based, counted across
        stages; 0 and stage ``linear-probe``: no fine-tuned epoch did better).
    """
    candidates = [(accuracy, -(stage["first_epoch"] + i + 1), stage["stage"]["name"])
                  for index, stage in enumerate(histories) if index in checkpointed
                  for i, accuracy in enumerate(stage["val_accuracy"])]
    if "start_val_accuracy" in histories[0]:
        candidates.append((histories[0]["start_val_accuracy"], 0, "linear-probe"))
    accuracy, negative_epoch, name = max(candidates)
    return {"epoch": -negative_epoch, "stage": name, "val_accuracy": round(float(accuracy), 4)}
