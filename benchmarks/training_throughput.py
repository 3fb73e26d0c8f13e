"""Training throughput: the input pipeline alone and each fine-tuning stage, in images/s.

    python -m benchmarks.training_throughput [--config model/training_config.json] [--epochs 3] [--data DIR]

Re-creates the shipped model's training set (its ``training_config.json``:
backbone, weights, split, batch size, augmentation, stages; the photos of
``--data``, default ``../shared/data/cars-ru10``) and measures, in one run:

- the input pipeline alone (``training.data.dataset.make_dataset``, iterated without
  a model): the first epoch decodes and resizes every photo (then cached),
  the following ones only augment (albumentations) the cached pixels;
- each stage (head only, then fine-tuning the top of the backbone), trained
  by ``model.fit`` on that real pipeline, and on the same images held in
  memory (the model alone, no decoding or augmentation).

Figures are of the last of ``--epochs`` epochs (the first pays tracing).
Where the pipeline alone is faster than a stage, the model is the bottleneck.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.harness import ROOT, machine_summary, require_photos, table  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data.augment import build_augmentation  # noqa: E402
from training.data.dataset import load_samples, make_dataset, split_by_group  # noqa: E402
from training.model import build_classifier, set_trainable  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    """Records the wall time of each training epoch, in seconds."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._started)


def epoch_seconds(dataset, epochs):
    """Wall time of each full pass over ``dataset`` (no model)."""
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        for _ in dataset:
            pass
        times.append(time.perf_counter() - started)
    return times


def fit_seconds(model, dataset, epochs):
    """Wall time of each training epoch of ``model.fit`` on ``dataset``."""
    timer = EpochTimer()
    model.fit(dataset, epochs=epochs, callbacks=[timer], shuffle=False, verbose=0)  # the pipeline shuffles
    return timer.seconds


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.training_throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--config", default=str(ROOT / "model" / "training_config.json"),
                        help="a training_config.json (default: the shipped model's)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement; the last one is reported")
    parser.add_argument("--data", help="dataset root (default: cars-ru10 in ../shared)")
    args = parser.parse_args(argv)
    config = TrainConfig.from_dict(json.loads(Path(args.config).read_text()))
    weights = Path(config.weights)
    if not weights.is_absolute() and config.weights not in ("imagenet", "none"):
        config.weights = str((ROOT / weights).resolve())  # paths in the config are relative to the repository
    samples, labels = load_samples(args.data or require_photos())
    train_samples, _ = split_by_group(samples, config.val_fraction, config.seed)
    size = config.export_image_size()  # the exported size, as carclf train exports
    count = len(train_samples)
    print(machine_summary())
    print(f"{count} training photos, {config.backbone} alpha {config.alpha} at {size}px, batch {config.batch_size}, "
          f"augmentation '{config.augment}'")
    rows = []

    def report(name, seconds):
        rows.append([name, f"{seconds:.1f}", f"{count / seconds:.0f}"])
        print(f"  {name}: {count / seconds:.0f} images/s", file=sys.stderr, flush=True)

    augment = build_augmentation(config.augment, config.seed)
    pipeline = make_dataset(train_samples, labels, size, config.batch_size, augment, config.seed)
    times = epoch_seconds(pipeline, args.epochs)
    report("pipeline: decode + resize + augment (first epoch, fills the cache)", times[0])
    report("pipeline: augment from the cache (later epochs)", times[-1])
    in_memory = tf.data.Dataset.from_tensor_slices(next(iter(pipeline.unbatch().batch(count))))
    in_memory = in_memory.batch(config.batch_size).cache().prefetch(tf.data.AUTOTUNE)
    model, backbone = build_classifier(config, len(labels))  # any input size: the pipeline resizes
    for stage in config.stages:
        trained = set_trainable(backbone, stage.unfreeze, config.train_bn)
        # compiled as training.fitting.stages.fit_stages does, at the stage's peak learning rate
        model.compile(
            optimizer=keras.optimizers.Adam(stage.learning_rate),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing),
            metrics=["accuracy"],
        )
        name = f"stage '{stage.name}' ({trained}/{len(backbone.layers)} backbone layers trained)"
        report(f"{name}: model.fit on the pipeline", fit_seconds(model, pipeline, args.epochs)[-1])
        report(f"{name}: model alone (images in memory)", fit_seconds(model, in_memory, args.epochs)[-1])
    print(table(["what", "s/epoch", "images/s"], rows))


if __name__ == "__main__":
    main()
