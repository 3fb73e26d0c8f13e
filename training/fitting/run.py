"""A training run: fit, export the SavedModel with its files, measure it, calibrate it, report it."""

import json
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.fitting.checkpoints import RunState
from training.fitting.stages import checkpointed_stages, fit_stages, kept_epoch

if TYPE_CHECKING:  # heavy imports, made inside the functions that need them
    import keras
    import tensorflow as tf

    from training.config import Stage, TrainConfig
    from training.data.dataset import Sample


def fit_and_export(
    config: "TrainConfig",
    train_samples: "list[Sample]",
    val_samples: "list[Sample]",
    labels: list[str],
    strategy: "tf.distribute.Strategy | None" = None,
    verbose: int | str = "auto",
) -> dict[str, Any]:
    """Train on ``train_samples``, select on ``val_samples``, export to
    ``config.out`` and measure the exported SavedModel on ``val_samples``.

    Args:
        config: :class:`TrainConfig` (``data`` is only recorded).
        train_samples, val_samples: ``list[training.data.dataset.Sample]``, disjoint groups.
        labels: class names in output order.
        strategy: a ``tf.distribute.Strategy``; ``None``: from ``config.strategy``.
        verbose: Keras ``fit`` verbosity.

    Returns:
        the metrics ``dict`` written to ``metrics.json``.

    Raises:
        ValueError: bad config (e.g. a class with no training photo under
            ``class_weight balanced``).
        training.backbones.catalog.WeightsUnavailableError: see ``--weights``.
    """
    import keras
    import tensorflow as tf

    from training.data.augment import build_augmentation
    from training.data.dataset import class_weights, make_dataset
    from training.fitting.distribute import is_chief, make_strategy, precision
    from training.fitting.probe import init_head_from_probe
    from training.model import build_classifier

    strategy = strategy or make_strategy(config.strategy)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    augment = build_augmentation(config.augment, config.seed)
    weights = class_weights(train_samples, labels, config.class_weight)
    cache = {}

    def datasets(stage: "Stage") -> "tuple[tf.data.Dataset, tf.data.Dataset, dict[int, float] | None]":
        # One decoded, in-memory cache per (size, batch): stages that share them reuse it.
        key = config.stage_image_size(stage), config.stage_batch_size(stage)
        if key not in cache:
            cache[key] = (make_dataset(train_samples, labels, *key, augment, config.seed),
                          make_dataset(val_samples, labels, *key), weights)
        return cache[key]

    with precision(config.mixed_precision) as policy, tempfile.TemporaryDirectory() as scratch:
        # Non-chief workers log and checkpoint to scratch: the outputs are the chief's.
        logs = Path(config.out) if is_chief(strategy) else Path(scratch)
        logs.mkdir(parents=True, exist_ok=True)
        run = RunState(logs / "checkpoints", config.to_dict(), config.resume)
        if not run.started:
            (logs / "training_log.csv").unlink(missing_ok=True)  # CSVLogger appends across stages
        print(f"{config.backbone}: {strategy.num_replicas_in_sync} replica(s), {policy} compute")
        with strategy.scope():
            model, backbone = build_classifier(config, len(labels))
        probe_seconds = 0.0
        if config.head_init == "probe" and not run.started:
            started = time.perf_counter()
            first = config.stages[0] if config.stages else None
            plain = make_dataset(train_samples, labels, config.stage_image_size(first), config.stage_batch_size(first))
            init_head_from_probe(model, plain, len(labels), config.probe_c)
            probe_seconds = time.perf_counter() - started
        if config.stages:
            histories = fit_stages(config, model, datasets, backbone, strategy, run, logs, len(train_samples), verbose)
        else:
            histories = []
            print("No fine-tuning stage: the model is the linear probe")
        metrics = _export(config, model, labels, val_samples, train_samples, histories, strategy, probe_seconds)
        run.remove()
        return metrics


def _export(
    config: "TrainConfig",
    model: "keras.Model",
    labels: list[str],
    val_samples: "list[Sample]",
    train_samples: "list[Sample]",
    histories: list[dict[str, Any]],
    strategy: "tf.distribute.Strategy",
    probe_seconds: float,
) -> dict[str, Any]:
    """Write the SavedModel and its files (on the chief; other workers write to a
    scratch directory, as every worker must take part in saving) and measure it;
    ``train_seconds`` counts the linear probe's features and fit (``probe_seconds``) and the stages."""
    from tensorflow.lite.python.convert_phase import ConverterError  # what TFLiteConverter raises

    from inference.model_folder import ONNX_FILENAME, TFLITE_FILENAME, ModelLoadError
    from inference.savedmodel import TensorFlowClassifier
    from training.evaluation.predictions import evaluate_savedmodel
    from training.export.litert import write_litert
    from training.export.onnx import write_onnx
    from training.export.parity import summary
    from training.export.savedmodel import export_savedmodel
    from training.fitting.distribute import is_chief

    metadata = {
        "name": "car-model-classifier",
        "version": datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S"),
        "backbone": config.backbone,
        "weights": Path(config.weights).name,
        "photo_hint": config.photo_hint,
    }
    image_size = config.export_image_size()
    if not is_chief(strategy):
        with tempfile.TemporaryDirectory() as scratch:
            export_savedmodel(model, labels, image_size, metadata, scratch)
        return {}
    out = Path(config.out)
    export_savedmodel(model, labels, image_size, metadata, out)
    photos = [sample.path for sample in val_samples]
    try:  # each conversion fails the export on disagreement (ParityError)
        reference = TensorFlowClassifier(out)
        print(summary(write_litert(out, photos, reference), out / TFLITE_FILENAME))
        print(summary(write_onnx(out, photos, reference), out / ONNX_FILENAME))
    except (ModelLoadError, ConverterError) as error:
        # The converter gave no usable graph (float16 ops of mixed precision, some randomly initialised
        # EfficientNet builds): the SavedModel stands; serving it on LiteRT or ONNX Runtime is refused.
        print(f"warning: no LiteRT or ONNX copy written ({error}); serve this model with CARCLF_RUNTIME=tensorflow")
    metrics = {
        "validation_images": len(val_samples),
        "train_images": len(train_samples),
        "train_seconds": round(probe_seconds + sum(stage["seconds"] for stage in histories), 1),
        "kept_epoch": kept_epoch(histories, checkpointed_stages(config)),
        **evaluate_savedmodel(out, val_samples),
    }
    (out / "training_config.json").write_text(config.to_json() + "\n")
    (out / "history.json").write_text(json.dumps(histories, indent=2) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"\nSavedModel written to {out}: validation accuracy {metrics['accuracy']:.3f}, with TTA "
          f"{metrics['accuracy_tta']:.3f} (all figures: {out / 'metrics.json'})")
    return metrics


def train(config: "TrainConfig") -> dict[str, Any]:
    """Load the data roots, split by group, train, export and measure, then
    write the known-model calibration and the training report.

    Returns:
        the metrics ``dict`` written to ``metrics.json``.

    Raises:
        FileNotFoundError, ValueError: bad dataset or config.
        training.backbones.catalog.WeightsUnavailableError: see ``--weights``.
    """
    from training.data.dataset import load_samples, split_by_group
    from training.evaluation.known_model import calibrate
    from training.evaluation.reports import write_training_report
    from training.fitting.distribute import is_chief, make_strategy

    strategy = make_strategy(config.strategy)  # first: MultiWorkerMirroredStrategy must precede other TF ops
    samples, labels = load_samples(config.data, config.class_names)
    train_samples, val_samples = split_by_group(samples, config.val_fraction, config.seed)
    print(f"{len(samples)} images, {len(labels)} classes: {len(train_samples)} train / {len(val_samples)} validation "
          f"(split by group); stages: {' '.join(map(str, config.stages)) or 'none (the linear probe)'}")
    metrics = fit_and_export(config, train_samples, val_samples, labels, strategy)
    if is_chief(strategy):
        calibrate(config.out, train_samples, val_samples)
        print(f"Report: {write_training_report(config.out)}")
    return metrics
