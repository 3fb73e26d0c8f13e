"""Train a car-model classifier and export it as a SavedModel.

    python -m training.train --data DIR [--data DIR ...] --out DIR [--config FILE] [options]

Transfer learning then staged fine-tuning (see :class:`training.config.Stage`);
writes to ``--out``: ``saved_model.pb`` + ``variables/``, ``model.tflite``
and ``metadata.json`` (the same model on LiteRT, checked against the
SavedModel on the validation photos: :mod:`training.convert`),
``training_config.json``, ``history.json`` (per stage: epochs, learning rate,
loss and accuracy curves), ``training_log.csv`` (one row per epoch, epochs
numbered across stages), ``metrics.json`` (validation accuracy with and without
TTA, measured on the exported SavedModel), ``calibration.json`` (the
known-model threshold, :mod:`training.calibrate`), ``report/`` (learning
curves, :mod:`training.report`) and, with ``--tensorboard``, ``tensorboard/``.
"""

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

from training.config import TrainConfig, read_config_file

# TensorFlow, Keras and albumentations (seconds to import) are imported by the
# functions that use them, so that --help and flag errors answer at once.


def build_parser():
    """The ``argparse`` parser: ``--config`` plus one flag per :class:`TrainConfig` field.

    Flags that are not given are absent from the parsed namespace, so that they
    do not override the config file.
    """
    parser = argparse.ArgumentParser(
        prog="python -m training.train", description=__doc__.split("\n\n")[0], argument_default=argparse.SUPPRESS
    )
    parser.add_argument("--config", help="JSON or YAML file of config fields (e.g. configs/*.yaml or a saved "
                                         "training_config.json); flags override it")
    for item in dataclasses.fields(TrainConfig):
        options = dict(item.metadata["flag"])
        name = options.pop("flag_name", "--" + item.name.replace("_", "-"))
        default = item.default if item.default is not dataclasses.MISSING else item.default_factory()
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        options["help"] = f"{item.metadata['help']} ({f'default: {shown}' if shown != '' else 'required'})"
        if isinstance(item.metadata["choices"], tuple):  # not the backbones: read late, TrainConfig checks them
            options["choices"] = item.metadata["choices"]
        if isinstance(default, bool):
            options["action"] = argparse.BooleanOptionalAction
        elif "type" not in options and not isinstance(default, list):
            options["type"] = type(default)
        elif not isinstance(options.get("type", int), type):
            options["type"] = _explained(options["type"])
        parser.add_argument(name, **options)
    return parser


def _explained(parse):
    """``parse`` with its ValueError message shown by argparse (instead of "invalid value")."""

    def checked(text):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return checked


def parse_args(argv=None):
    """Build a :class:`TrainConfig` from the command line (flags override ``--config``).

    Exits with status 2 and a one-line message on a bad flag, config file or value.
    """
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    try:
        values = read_config_file(args.pop("config")) if "config" in args else {}
        values.update(args)
        config = TrainConfig.from_dict(values)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    for required in ("data", "out"):
        if not getattr(config, required):
            parser.error(f"--{required} is required (or give it in --config)")
    return config


def stage_callbacks(config, checkpoint_path, best_so_far, logs):
    """The callbacks of one stage.

    Learning-rate logging (first, so that the logs written below have it); the
    best-validation-accuracy checkpoint (only when
    ``checkpoint_path`` is given; ``best_so_far`` carries the best value over
    from earlier stages); early stopping; a CSV log in ``logs`` appended across
    stages; ReduceLROnPlateau for the ``plateau`` schedule; TensorBoard (in
    ``logs/tensorboard``) on request.
    """
    import keras

    from training.report import LearningRateLogger

    callbacks = [LearningRateLogger()]
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


def checkpointed_stages(config):
    """Indices of the stages whose epochs compete for the best checkpoint: the
    trailing run of stages at the last stage's image size (the exported size),
    so that the kept weights were validated at the size the model is served at."""
    sizes = [config.stage_image_size(stage) for stage in config.stages]
    first = len(sizes) - 1
    while first > 0 and sizes[first - 1] == sizes[-1]:
        first -= 1
    return range(first, len(sizes))


def fit_stages(config, model, datasets, backbone, strategy, scratch, logs, verbose="auto"):
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
            :func:`training.report.progress_verbosity`).

    Returns:
        ``list`` of ``dict`` per stage: the stage's fields (batch and image
        size resolved), ``seconds``, ``first_epoch`` and the per-epoch Keras
        history (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``,
        ``learning_rate``).
    """
    from training.model import set_trainable
    from training.optimization import build_loss, build_optimizer, build_schedule
    from training.report import progress_verbosity

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


def _stopped_early(history, first_epoch, stage):
    """``{"epoch", "best_epoch"}`` (1-based, counted across stages) when early
    stopping ended the stage before its last epoch, else ``None``; printed too."""
    ran = len(history.history["val_accuracy"])
    if ran >= stage.epochs:
        return None
    best = first_epoch + 1 + max(range(ran), key=history.history["val_accuracy"].__getitem__)
    print(f"Stage '{stage.name}' stopped early at epoch {first_epoch + ran} of {first_epoch + stage.epochs} "
          f"(no val_accuracy gain in {ran - (best - first_epoch)} epochs); its best epoch was {best}")
    return {"epoch": first_epoch + ran, "best_epoch": best}


def kept_epoch(histories, checkpointed):
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


def fit_and_export(config, train_samples, val_samples, labels, strategy=None, verbose="auto"):
    """Train on ``train_samples``, select on ``val_samples``, export to
    ``config.out`` and measure the exported SavedModel on ``val_samples``.

    Args:
        config: :class:`TrainConfig` (``data`` is only recorded).
        train_samples, val_samples: ``list[training.data.Sample]``, disjoint groups.
        labels: class names in output order.
        strategy: a ``tf.distribute.Strategy``; ``None``: from ``config.strategy``.
        verbose: Keras ``fit`` verbosity.

    Returns:
        the metrics ``dict`` written to ``metrics.json``.

    Raises:
        ValueError: bad config (e.g. a class with no training photo under
            ``class_weight balanced``).
        training.backbones.WeightsUnavailableError: see ``--weights``.
    """
    import keras
    import tensorflow as tf

    from training.augment import build_augmentation
    from training.data import class_weights, make_dataset
    from training.distribute import is_chief, make_strategy, precision
    from training.model import build_classifier

    strategy = strategy or make_strategy(config.strategy)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    augment = build_augmentation(config.augment, config.seed)
    weights = class_weights(train_samples, labels, config.class_weight)
    cache = {}

    def datasets(stage):
        # One decoded, in-memory cache per (size, batch): stages that share them reuse it.
        key = config.stage_image_size(stage), config.stage_batch_size(stage)
        if key not in cache:
            cache[key] = (make_dataset(train_samples, labels, *key, augment, config.seed),
                          make_dataset(val_samples, labels, *key), weights)
        return cache[key]

    with precision(config.mixed_precision) as policy, tempfile.TemporaryDirectory() as scratch:
        # Non-chief workers log to scratch: the outputs are the chief's.
        logs = Path(config.out) if is_chief(strategy) else Path(scratch)
        logs.mkdir(parents=True, exist_ok=True)
        (logs / "training_log.csv").unlink(missing_ok=True)  # CSVLogger appends across stages
        print(f"{config.backbone}: {strategy.num_replicas_in_sync} replica(s), {policy} compute")
        with strategy.scope():
            model, backbone = build_classifier(config, len(labels))
        if config.head_init == "probe":
            first = config.stages[0]
            plain = make_dataset(train_samples, labels, config.stage_image_size(first), config.stage_batch_size(first))
            init_head_from_probe(model, plain, len(labels))
        histories = fit_stages(config, model, datasets, backbone, strategy, scratch, logs, verbose)
        return _export(config, model, labels, val_samples, train_samples, histories, strategy)


def init_head_from_probe(model, dataset, num_classes):
    """LP-FT's first half: fit the linear probe on the frozen backbone's
    features of ``dataset`` (no augmentation) and start the head from it
    (:mod:`training.probe`, :func:`training.model.set_head`).

    Args:
        model: from :func:`training.model.build_classifier`, backbone frozen.
        dataset: ``(pixels, one_hot)`` batches of the training photos.
        num_classes: number of classes.

    Raises:
        ValueError: a class without a training photo.
    """
    import keras
    import numpy as np

    from training.model import FEATURES_LAYER, set_head
    from training.probe import fit_linear_probe, head_weights

    extractor = keras.Model(model.inputs, model.get_layer(FEATURES_LAYER).output)
    features, targets = [], []
    for pixels, one_hot in dataset:
        features.append(np.asarray(extractor(pixels, training=False), np.float32))
        targets.append(np.argmax(one_hot, axis=1))
    features, targets = np.concatenate(features), np.concatenate(targets)
    probe = fit_linear_probe(features, targets, num_classes)
    set_head(model, *head_weights(probe))
    print(f"Head initialised from a linear probe on {len(targets)} training photos "
          f"(training accuracy {probe.score(features, targets):.3f})")


def _export(config, model, labels, val_samples, train_samples, histories, strategy):
    """Write the SavedModel and its files (on the chief; other workers write to a
    scratch directory, as every worker must take part in saving) and measure it."""
    from training.convert import summary, write_litert
    from training.distribute import is_chief
    from training.evaluate import evaluate_savedmodel
    from training.export import export_savedmodel

    metadata = {
        "name": "car-model-classifier",
        "version": datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S"),
        "backbone": config.backbone,
        "weights": Path(config.weights).name,
        "photo_hint": config.photo_hint,
    }
    image_size = config.stage_image_size(config.stages[-1])
    if not is_chief(strategy):
        with tempfile.TemporaryDirectory() as scratch:
            export_savedmodel(model, labels, image_size, metadata, scratch)
        return {}
    out = Path(config.out)
    export_savedmodel(model, labels, image_size, metadata, out)
    parity = write_litert(out, [sample.path for sample in val_samples])  # fails the export on disagreement
    print(summary(parity, out))
    metrics = {
        "validation_images": len(val_samples),
        "train_images": len(train_samples),
        "train_seconds": round(sum(stage["seconds"] for stage in histories), 1),
        "kept_epoch": kept_epoch(histories, checkpointed_stages(config)),
        **evaluate_savedmodel(out, val_samples),
    }
    (out / "training_config.json").write_text(config.to_json() + "\n")
    (out / "history.json").write_text(json.dumps(histories, indent=2) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"\nSavedModel written to {out}: validation accuracy {metrics['accuracy']:.3f}, with TTA "
          f"{metrics['accuracy_tta']:.3f} (all figures: {out / 'metrics.json'})")
    return metrics


def train(config):
    """Load the data roots, split by group, train, export and measure, then
    write the known-model calibration and the training report.

    Returns:
        the metrics ``dict`` written to ``metrics.json``.

    Raises:
        FileNotFoundError, ValueError: bad dataset or config.
        training.backbones.WeightsUnavailableError: see ``--weights``.
    """
    from training.calibrate import calibrate
    from training.data import load_samples, split_by_group
    from training.distribute import is_chief, make_strategy
    from training.report import write_training_report

    strategy = make_strategy(config.strategy)  # first: MultiWorkerMirroredStrategy must precede other TF ops
    samples, labels = load_samples(config.data, config.class_names)
    train_samples, val_samples = split_by_group(samples, config.val_fraction, config.seed)
    print(f"{len(samples)} images, {len(labels)} classes: {len(train_samples)} train / {len(val_samples)} validation "
          f"(split by group); stages: {' '.join(map(str, config.stages))}")
    metrics = fit_and_export(config, train_samples, val_samples, labels, strategy)
    if is_chief(strategy):
        calibrate(config.out, train_samples, val_samples)
        print(f"Report: {write_training_report(config.out)}")
    return metrics


def main(argv=None):
    """Command-line entry point; exits with status 1 and a one-line message on bad input."""
    config = parse_args(argv)
    from training.backbones import WeightsUnavailableError

    try:
        train(config)
    except WeightsUnavailableError as error:
        sys.exit(f"error: {error} The shipped model's preset, --config configs/shipped.yaml, trains "
                 "EfficientNet-Lite0 with its installed ImageNet weights, offline; or give --weights PATH to a local "
                 "weights file (--weights none: random initial weights).")
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
