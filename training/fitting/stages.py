"""The stage loop: each fine-tuning stage compiled and fitted in turn, the best epoch kept."""

import dataclasses
import warnings
from collections.abc import Callable, Container, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # heavy imports, made inside the functions that need them
    import keras
    import tensorflow as tf

    from training.config import Stage, TrainConfig
    from training.fitting.checkpoints import RunState


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
    run: "RunState",
    logs: Path,
    images_per_epoch: int,
    verbose: int | str = "auto",
) -> list[dict[str, Any]]:
    """Run every stage not finished yet; return the per-stage histories and leave the best weights loaded.

    Args:
        config: ``TrainConfig``.
        model, backbone: from ``training.model.build_classifier``, built in
            ``strategy.scope()``; the head already initialised (``head_init``)
            unless ``run`` has started.
        datasets: ``callable(stage) -> (train_data, val_data, class_weight)``.
        strategy: the ``tf.distribute.Strategy`` the model was built under.
        run: ``training.fitting.checkpoints.RunState``: what an interrupted run of
            this config finished (its stages are skipped, its weights loaded),
            and where this one records its epochs and best weights.
        logs: the directory of ``training_log.csv`` and ``tensorboard/``.
        images_per_epoch: training images per epoch, for the printed throughput.
        verbose: Keras ``fit`` verbosity (0, 1 progress bar, 2 one line per epoch; ``"auto"``:
            ``training.fitting.callbacks.progress_verbosity``).

    Returns:
        ``list`` of ``dict`` per stage: the stage's fields (batch and image
        size resolved), ``seconds``, ``first_epoch`` and the per-epoch Keras
        history (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``,
        ``learning_rate``, and ``epoch_seconds``).
    """
    import keras

    from training.fitting.callbacks import EpochProgress, progress_verbosity, stage_callbacks
    from training.fitting.optimization import build_loss, build_optimizer, build_schedule
    from training.model import set_trainable

    checkpointed = checkpointed_stages(config)
    if run.started:
        with warnings.catch_warnings():  # the optimizer state is not needed: each stage compiles anew
            warnings.simplefilter("ignore")
            model.load_weights(run.start_weights)
    elif config.head_init == "probe":
        accuracy = None
        if 0 in checkpointed:
            # The linear probe competes as epoch 0: LP-FT keeps it unless a fine-tuned epoch validates better.
            with strategy.scope():
                model.compile(loss=build_loss(config), metrics=["accuracy"])
            accuracy = model.evaluate(datasets(config.stages[0])[1], verbose=0, return_dict=True)["accuracy"]
            print(f"Linear probe (epoch 0): val_accuracy {accuracy:.4f}")
        run.record_probe(model, accuracy)
    histories = list(run.finished_stages)
    epoch = sum(len(history["val_accuracy"]) for history in histories)
    total_epochs = epoch + sum(stage.epochs for stage in config.stages[len(histories):])
    for index, stage in enumerate(config.stages[len(histories):], start=len(histories)):
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
        best = _best_so_far(run, histories, checkpointed, index)
        resumed = [
            EpochProgress(run, images_per_epoch, total_epochs),
            # after EpochProgress: a backup never runs ahead of the recorded epochs
            keras.callbacks.BackupAndRestore(run.backup_dir(index), delete_checkpoint=False),
        ]
        model.fit(
            train_data,
            validation_data=val_data,
            initial_epoch=epoch,
            epochs=epoch + stage.epochs,
            shuffle=False,  # the tf.data pipeline shuffles
            class_weight=weights,
            callbacks=stage_callbacks(config, str(run.best_weights) if index in checkpointed else None, best, logs,
                                      resumed),
            verbose=progress_verbosity() if verbose == "auto" else verbose,
        )
        epochs = run.epochs()
        history = {key: [entry[key] for entry in epochs] for key in epochs[0]}
        histories.append({
            "stage": {**dataclasses.asdict(stage), "batch_size": batch, "image_size": size},
            "seconds": round(sum(history["epoch_seconds"]), 1),
            "first_epoch": epoch,
            "stopped_early": _stopped_early(history, epoch, stage),
            **({"start_val_accuracy": run.probe_val_accuracy}
               if index == 0 and run.probe_val_accuracy is not None else {}),
            **history,
        })
        run.finish_stage(model, histories[-1], index)
        epoch += len(epochs)
        total_epochs = epoch + sum(stage.epochs for stage in config.stages[index + 1:])
    with warnings.catch_warnings():  # the checkpoint's optimizer state is not needed
        warnings.simplefilter("ignore")
        model.load_weights(run.best_weights)
    kept = kept_epoch(histories, checkpointed)
    print(f"Kept epoch {kept['epoch']} (stage '{kept['stage']}', val_accuracy {kept['val_accuracy']:.4f})")
    return histories


def _best_so_far(run: "RunState", histories: list[dict[str, Any]], checkpointed: range, index: int) -> float | None:
    """The best validation accuracy among the checkpointed epochs run before stage ``index``'s next
    epoch (the probe, finished stages, the stage's own epochs before an interruption), or ``None``."""
    scores = [run.probe_val_accuracy] if run.probe_val_accuracy is not None and 0 in checkpointed else []
    scores += [score for i, history in enumerate(histories) if i in checkpointed for score in history["val_accuracy"]]
    if index in checkpointed:
        scores += [entry["val_accuracy"] for entry in run.epochs()]
    return max(scores, default=None)


def _stopped_early(history: dict[str, list[float]], first_epoch: int, stage: "Stage") -> dict[str, int] | None:
    """``{"epoch", "best_epoch"}`` (1-based, counted across stages) when early
    stopping ended the stage before its last epoch, else ``None``; printed too.
    ``history``: the stage's per-epoch logs, ``{name: list}``."""
    ran = len(history["val_accuracy"])
    if ran >= stage.epochs:
        return None
    best = first_epoch + 1 + max(range(ran), key=history["val_accuracy"].__getitem__)
    print(f"Stage '{stage.name}' stopped early at epoch {first_epoch + ran} of {first_epoch + stage.epochs} "
          f"(no val_accuracy gain in {ran - (best - first_epoch)} epochs); its best epoch was {best}")
    return {"epoch": first_epoch + ran, "best_epoch": best}


def kept_epoch(
    histories: Sequence[dict[str, Any]], checkpointed: Container[int]
) -> dict[str, int | str | float | None]:
    """The epoch whose weights the best checkpoint holds: the first epoch of
    highest validation accuracy among the ``checkpointed`` stages, epoch 0
    being the linear probe before the first stage (``start_val_accuracy``).

    Returns:
        ``{"epoch", "stage", "val_accuracy"}`` (epoch 1-based, counted across
        stages; 0 and stage ``linear-probe``: no fine-tuned epoch did better,
        or there was no stage, ``val_accuracy`` then ``None``).
    """
    if not histories:
        return {"epoch": 0, "stage": "linear-probe", "val_accuracy": None}
    candidates = [(accuracy, -(stage["first_epoch"] + i + 1), stage["stage"]["name"])
                  for index, stage in enumerate(histories) if index in checkpointed
                  for i, accuracy in enumerate(stage["val_accuracy"])]
    if "start_val_accuracy" in histories[0]:
        candidates.append((histories[0]["start_val_accuracy"], 0, "linear-probe"))
    accuracy, negative_epoch, name = max(candidates)
    return {"epoch": -negative_epoch, "stage": name, "val_accuracy": round(float(accuracy), 4)}
