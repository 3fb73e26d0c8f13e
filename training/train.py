"""Train a car-model classifier and export it as a SavedModel.

    python -m training.train --data DIR --out DIR [options]

Transfer learning then staged fine-tuning (see :class:`training.config.Stage`);
writes ``saved_model.pb`` + ``variables/``, ``training_config.json``,
``history.json``, ``metrics.json`` (validation accuracy with and without
TTA, measured on the exported SavedModel) and ``calibration.json`` (the
known-model threshold, :mod:`training.calibrate`) to ``--out``.
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

import keras

from training.augment import POLICIES, build_augmentation
from training.backbones import BACKBONES, WeightsUnavailableError, get_spec
from training.calibrate import calibrate
from training.config import Stage, TrainConfig
from training.data import load_samples, make_dataset, split_by_group
from training.evaluate import evaluate_savedmodel
from training.export import export_savedmodel
from training.model import build_classifier, set_trainable
from training.report import LearningRateLogger, write_training_report

SCHEDULES = ("onecycle", "plateau")


def parse_args(argv=None):
    """Build a :class:`TrainConfig` from the command line (flags override ``--config``)."""
    defaults = TrainConfig(data="", out="")
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="JSON file of TrainConfig fields (e.g. a saved training_config.json)")
    parser.add_argument("--data", help="dataset root: <label>/<file> folders, optional labels.csv (path,label,group)")
    parser.add_argument("--out", help="output directory for the SavedModel, config and metrics")
    parser.add_argument("--backbone", choices=list(BACKBONES), help=f"default {defaults.backbone}")
    parser.add_argument("--alpha", type=float, help=f"MobileNetV2 width multiplier, default {defaults.alpha}")
    parser.add_argument("--weights", help="imagenet (download), none, or PATH to a local weights file; default imagenet")
    parser.add_argument("--image-size", type=int, help="input side in pixels; default: the backbone's own")
    parser.add_argument("--batch-size", type=int, help=f"default {defaults.batch_size}")
    parser.add_argument("--val-fraction", type=float, help=f"share held out, by group; default {defaults.val_fraction}")
    parser.add_argument("--seed", type=int, help=f"default {defaults.seed}")
    parser.add_argument("--dropout", type=float, help=f"default {defaults.dropout}")
    parser.add_argument("--label-smoothing", type=float, help=f"default {defaults.label_smoothing}")
    parser.add_argument("--augment", choices=POLICIES, help=f"default {defaults.augment}")
    parser.add_argument("--schedule", choices=SCHEDULES, help=f"learning-rate policy per stage; default {defaults.schedule}")
    parser.add_argument("--patience", type=int, help=f"early-stopping patience in epochs; default {defaults.patience}")
    parser.add_argument("--train-bn", action="store_true", default=None, help="also train BatchNormalization layers")
    default_stages = " ".join(f"{s.name}:{s.epochs}:{s.learning_rate:g}:{s.unfreeze:g}" for s in defaults.stages)
    parser.add_argument(
        "--stage",
        dest="stages",
        action="append",
        type=Stage.parse,
        metavar="NAME:EPOCHS:LR:UNFREEZE",
        help=f"a fine-tuning stage, repeatable, run in order; default {default_stages}",
    )
    args = vars(parser.parse_args(argv))
    values = json.loads(Path(args.pop("config")).read_text()) if args.get("config") else {}
    values.update({key: value for key, value in args.items() if value is not None})
    if "stages" in values:
        values["stages"] = [s if isinstance(s, Stage) else Stage(**s) for s in values["stages"]]
    for required in ("data", "out"):
        if not values.get(required):
            parser.error(f"--{required} is required (or give it in --config)")
    return TrainConfig(**values)


def learning_rate(stage, steps_per_epoch, schedule):
    """The stage's learning rate: a one-cycle schedule or a constant.

    ``onecycle`` follows fastai's ``fit_one_cycle`` (Smith 2018, "A disciplined
    approach to neural network hyper-parameters"): linear warm-up over the
    first 30% of steps from ``lr / 25`` to ``lr``, then cosine annealing to
    ``lr / 1e4``. ``plateau`` starts constant; ReduceLROnPlateau lowers it.
    """
    if schedule == "plateau":
        return stage.learning_rate
    total = stage.epochs * steps_per_epoch
    warmup = max(1, round(0.3 * total))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=stage.learning_rate / 25,
        warmup_target=stage.learning_rate,
        warmup_steps=warmup,
        decay_steps=max(1, total - warmup),
        alpha=1e-4,
    )


def stage_callbacks(config, checkpoint_path, best_so_far):
    """Best-checkpoint (across stages), early stopping and, for ``plateau``, LR reduction."""
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            checkpoint_path,
            monitor="val_accuracy",
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=best_so_far,
        ),
        keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=config.patience, restore_best_weights=True),
    ]
    if config.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=2, min_lr=1e-7))
    return callbacks


def fit_stages(config, model, backbone, train_data, val_data, checkpoint_path):
    """Run every stage; return the per-stage histories and leave the best weights loaded."""
    histories = []
    best = None
    for stage in config.stages:
        trained = set_trainable(backbone, stage.unfreeze, config.train_bn)
        print(f"\n== Stage '{stage.name}': {stage.epochs} epochs, lr {stage.learning_rate:g}, "
              f"{trained}/{len(backbone.layers)} backbone layers trained")
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate(stage, len(train_data), config.schedule)),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing),
            metrics=["accuracy"],
        )
        started = time.perf_counter()
        history = model.fit(
            train_data,
            validation_data=val_data,
            epochs=stage.epochs,
            shuffle=False,  # the tf.data pipeline shuffles
            callbacks=[*stage_callbacks(config, checkpoint_path, best), LearningRateLogger()],
        )
        val_accuracy = history.history["val_accuracy"]
        best = max(val_accuracy + ([best] if best is not None else []))
        histories.append(
            {"stage": dataclasses.asdict(stage), "seconds": round(time.perf_counter() - started, 1), **history.history}
        )
    with warnings.catch_warnings():  # the checkpoint's optimizer state is not needed
        warnings.simplefilter("ignore")
        model.load_weights(checkpoint_path)
    return histories


def train(config):
    """Train, export and measure; returns the metrics ``dict`` written to ``metrics.json``.

    Raises:
        FileNotFoundError, ValueError: bad dataset or config.
        training.backbones.WeightsUnavailableError: see ``--weights``.
    """
    keras.utils.set_random_seed(config.seed)
    samples, labels = load_samples(config.data)
    train_samples, val_samples = split_by_group(samples, config.val_fraction, config.seed)
    image_size = config.image_size or get_spec(config.backbone).input_size
    print(f"{len(samples)} images, {len(labels)} classes: {len(train_samples)} train / {len(val_samples)} validation "
          f"(split by group); {config.backbone} at {image_size}px")
    model, backbone = build_classifier(config, len(labels), image_size)
    augment = build_augmentation(config.augment, config.seed)
    train_data = make_dataset(train_samples, labels, image_size, config.batch_size, augment, config.seed)
    val_data = make_dataset(val_samples, labels, image_size, config.batch_size)
    out = Path(config.out)
    with tempfile.TemporaryDirectory() as scratch:
        histories = fit_stages(config, model, backbone, train_data, val_data, f"{scratch}/best.weights.h5")
    metadata = {
        "name": "car-model-classifier",
        "version": datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S"),
        "backbone": config.backbone,
        "weights": Path(config.weights).name,
    }
    export_savedmodel(model, labels, image_size, metadata, out)
    metrics = {
        "validation_images": len(val_samples),
        "train_images": len(train_samples),
        **evaluate_savedmodel(out, val_samples),
    }
    (out / "training_config.json").write_text(config.to_json() + "\n")
    (out / "history.json").write_text(json.dumps(histories, indent=2) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    calibrate(out, train_samples, val_samples)
    write_training_report(out)
    print(f"\nSavedModel written to {out}\n{json.dumps(metrics, indent=2)}")
    return metrics


def main(argv=None):
    """Command-line entry point; exits with status 1 and a one-line message on bad input."""
    config = parse_args(argv)
    try:
        train(config)
    except (FileNotFoundError, ValueError, WeightsUnavailableError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
