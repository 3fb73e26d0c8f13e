"""A training run: fit, export the SavedModel with its files, measure it, calibrate it, report it."""

import json
import tempfile
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.fitting.checkpoints import RunState
from training.fitting.stages import checkpointed_stages, fit_stages, kept_epoch
from training.memory import MemoryLog

if TYPE_CHECKING:  # heavy imports, made inside the functions that need them
    from collections.abc import Callable

    import keras
    import tensorflow as tf

    from training.config import Stage, TrainConfig
    from training.data.dataset import Sample
    from training.fitting.activation_cache import SplitClassifier

    # A stage's (training data, validation data, class weights).
    StageData = Callable[[Stage], tuple[tf.data.Dataset, tf.data.Dataset, dict[int, float] | None]]


def fit_and_export(
    config: "TrainConfig",
    train_samples: "list[Sample]",
    val_samples: "list[Sample]",
    labels: list[str],
    strategy: "tf.distribute.Strategy | None" = None,
    verbose: int | str = "auto",
    memory: MemoryLog | None = None,
) -> dict[str, Any]:
    """Train on ``train_samples``, select on ``val_samples``, export to
    ``config.out`` and measure the exported SavedModel on ``val_samples``.

    The decoded photos are cached in memory while they fit half of
    ``config.memory_budget_gb``, else in files in a temporary folder; the
    linear probe's feature pass is batched to fit the other half.

    Args:
        config: ``TrainConfig`` (``data`` is only recorded).
        train_samples, val_samples: ``list[training.data.dataset.Sample]``, disjoint groups.
        labels: class names in output order.
        strategy: a ``tf.distribute.Strategy``; ``None``: from ``config.strategy``.
        verbose: Keras ``fit`` verbosity.
        memory: records the peak resident memory of each phase; ``None``: a new one.

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
    from training.data.dataset import cache_file, class_weights, make_dataset
    from training.fitting.distribute import is_chief, make_strategy, precision
    from training.fitting.probe import init_head_from_probe
    from training.memory import budget_bytes, feature_batch_size
    from training.model import build_classifier

    strategy = strategy or make_strategy(config.strategy)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    augment = build_augmentation(config.augment, config.seed)
    weights = class_weights(train_samples, labels, config.class_weight)
    memory = memory or MemoryLog()
    half_budget = budget_bytes(config.memory_budget_gb) // 2
    cache = {}

    def dataset(samples: "list[Sample]", size: int, batch: int, **shuffled: Any) -> "tf.data.Dataset":
        return make_dataset(samples, labels, size, batch, cache=cache_file(samples, size, half_budget, decoded),
                            **shuffled)

    def datasets(stage: "Stage") -> "tuple[tf.data.Dataset, tf.data.Dataset, dict[int, float] | None]":
        # One decoded cache per (size, batch): stages that share them reuse it.
        key = config.stage_image_size(stage), config.stage_batch_size(stage)
        if key not in cache:
            cache[key] = (dataset(train_samples, *key, augment=augment, shuffle_seed=config.seed),
                          dataset(val_samples, *key), weights)
        return cache[key]

    with (precision(config.mixed_precision) as policy, tempfile.TemporaryDirectory() as scratch,
          tempfile.TemporaryDirectory(prefix="carclf-decoded-") as decoded):
        # Non-chief workers log and checkpoint to scratch: the outputs are the chief's.
        logs = Path(config.out) if is_chief(strategy) else Path(scratch)
        logs.mkdir(parents=True, exist_ok=True)
        run = RunState(logs / "checkpoints", config.to_dict(), config.resume)
        if not run.started:
            (logs / "training_log.csv").unlink(missing_ok=True)  # CSVLogger appends across stages
        print(f"{config.backbone}: {strategy.num_replicas_in_sync} replica(s), {policy} compute")
        with strategy.scope():
            model, backbone = build_classifier(config, len(labels))
        # What the probe and the stages fit: the whole classifier on photos, or the part above the cut on
        # cached activations (training/fitting/activation_cache.py), which shares its backbone layers with the whole.
        stage_data: StageData
        if config.cache_cut:
            with memory.phase("activation cache"):
                split, stage_data, probe_data = _cached_inputs(config, model, backbone, train_samples, val_samples,
                                                             labels, 2 * half_budget, weights)
            fitted, fitted_backbone = split.upper, split.upper_backbone
        else:
            size = config.stage_image_size(config.stages[0] if config.stages else None)
            batch = feature_batch_size(half_budget, [size, *config.multiscale_sides])
            split, fitted, fitted_backbone, stage_data = None, model, backbone, datasets
            probe_data = partial(dataset, train_samples, size, batch)
        probe_seconds = 0.0
        if config.head_init == "probe" and not run.started:
            started = time.perf_counter()
            with memory.phase("decoding and the linear probe"):
                init_head_from_probe(fitted, probe_data(), len(labels), config.probe_c)
            probe_seconds = time.perf_counter() - started
        if config.stages:
            with memory.phase("fine-tuning"):
                histories = fit_stages(config, fitted, stage_data, fitted_backbone, strategy, run, logs,
                                       len(train_samples), verbose)
        else:
            histories = []
            print("No fine-tuning stage: the model is the linear probe")
        if split:
            split.copy_head_back()
        metrics = _export(config, model, labels, val_samples, train_samples, histories, strategy, probe_seconds,
                          memory)
        run.remove()
        return metrics


def _cached_inputs(
    config: "TrainConfig",
    model: "keras.Model",
    backbone: "keras.Model",
    train_samples: "list[Sample]",
    val_samples: "list[Sample]",
    labels: list[str],
    budget: int,
    weights: dict[int, float] | None,
) -> "tuple[SplitClassifier, StageData, Callable[[], tf.data.Dataset]]":
    """Cached fine-tuning's ``(split classifier, datasets(stage), probe dataset())``: the classifier
    cut after block group ``config.cache_cut``, the activation caches built or reused
    (``training.fitting.activation_cache.build_caches``, ``budget`` bytes) and datasets read from them."""
    from training.fitting.activation_cache import build_caches, cached_dataset, split_classifier
    from training.memory import feature_batch_size

    split = split_classifier(model, backbone, config.cache_cut)
    train_cache, val_cache = build_caches(config, split.lower, train_samples, val_samples, budget)
    train_targets = [labels.index(sample.label) for sample in train_samples]
    val_targets = [labels.index(sample.label) for sample in val_samples]

    def datasets(stage: "Stage") -> "tuple[tf.data.Dataset, tf.data.Dataset, dict[int, float] | None]":
        batch = config.stage_batch_size(stage)
        return (cached_dataset(train_cache, train_targets, len(labels), batch, config.seed),
                cached_dataset(val_cache, val_targets, len(labels), batch), weights)

    probe_batch = feature_batch_size(budget, [config.export_image_size()])
    return split, datasets, lambda: cached_dataset(train_cache, train_targets, len(labels), probe_batch)


def _export(
    config: "TrainConfig",
    model: "keras.Model",
    labels: list[str],
    val_samples: "list[Sample]",
    train_samples: "list[Sample]",
    histories: list[dict[str, Any]],
    strategy: "tf.distribute.Strategy",
    probe_seconds: float,
    memory: MemoryLog,
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
    with memory.phase("SavedModel export"):
        export_savedmodel(model, labels, image_size, metadata, out)
    photos = [sample.path for sample in val_samples]
    batch = _parity_batch(config)
    try:  # each conversion fails the export on disagreement (ParityError)
        reference = TensorFlowClassifier(out)
        with memory.phase("LiteRT conversion"):
            print(summary(write_litert(out, photos, reference, batch), out / TFLITE_FILENAME))
        with memory.phase("ONNX conversion"):
            print(summary(write_onnx(out, photos, reference, batch), out / ONNX_FILENAME))
    except (ModelLoadError, ConverterError) as error:
        # The converter gave no usable graph (float16 ops of mixed precision, some randomly initialised
        # EfficientNet builds): the SavedModel stands; serving it on LiteRT or ONNX Runtime is refused.
        print(f"warning: no LiteRT or ONNX copy written ({error}); serve this model with CARCLF_RUNTIME=tensorflow")
    with memory.phase("evaluation"):
        evaluation = evaluate_savedmodel(out, val_samples)
    metrics = {
        "validation_images": len(val_samples),
        "train_images": len(train_samples),
        "train_seconds": round(probe_seconds + sum(stage["seconds"] for stage in histories), 1),
        "kept_epoch": kept_epoch(histories, checkpointed_stages(config)),
        **evaluation,
    }
    (out / "training_config.json").write_text(config.to_json() + "\n")
    (out / "history.json").write_text(json.dumps(histories, indent=2) + "\n")
    write_metrics(out, metrics, memory)
    print(f"\nSavedModel written to {out}: validation accuracy {metrics['accuracy']:.3f}, with TTA "
          f"{metrics['accuracy_tta']:.3f} (all figures: {out / 'metrics.json'})")
    return metrics


def _parity_batch(config: "TrainConfig") -> int:
    """Photos per forward pass of the conversions' parity checks: half the memory budget's
    (``training.memory.feature_batch_size``)."""
    from training.memory import budget_bytes, feature_batch_size

    return feature_batch_size(budget_bytes(config.memory_budget_gb) // 2,
                              [config.export_image_size(), *config.multiscale_sides])


def _write_int8(config: "TrainConfig", train_samples: "list[Sample]", val_samples: "list[Sample]") -> None:
    """The int8 conversion of ``config.out``'s ``model.onnx`` (``training.export.int8.write_int8``);
    when refused, a warning: the float32 model stands."""
    from inference.model_folder import INT8_ONNX_FILENAME, ONNX_FILENAME
    from training.export.int8 import write_int8
    from training.export.parity import ParityError, summary

    out = Path(config.out)
    if not (out / ONNX_FILENAME).is_file():  # the export warned already
        return
    try:
        print(summary(write_int8(out, train_samples, val_samples, batch_size=_parity_batch(config)),
                      out / INT8_ONNX_FILENAME))
    except ParityError as error:
        print(f"warning: no int8 model written ({error}); serve the float32 model (CARCLF_PRECISION=float32)")


def train(config: "TrainConfig") -> dict[str, Any]:
    """Load the data roots, split by group, train, export and measure, then
    write the known-model calibration, the int8 model and the training report.

    Returns:
        the metrics ``dict`` written to ``metrics.json``.

    Raises:
        FileNotFoundError, ValueError: bad dataset or config.
        training.backbones.catalog.WeightsUnavailableError: see ``--weights``.
    """
    from training.data.dataset import load_samples, split_by_group
    from training.evaluation.known_model import calibrate
    from training.evaluation.reports import write_training_report
    from training.export.int8 import remove_int8
    from training.fitting.distribute import is_chief, make_strategy

    strategy = make_strategy(config.strategy)  # first: MultiWorkerMirroredStrategy must precede other TF ops
    samples, labels = load_samples(config.data, config.class_names)
    train_samples, val_samples = split_by_group(samples, config.val_fraction, config.seed)
    print(f"{len(samples)} images, {len(labels)} classes: {len(train_samples)} train / {len(val_samples)} validation "
          f"(split by group); stages: {' '.join(map(str, config.stages)) or 'none (the linear probe)'}")
    memory = MemoryLog()
    metrics = fit_and_export(config, train_samples, val_samples, labels, strategy, memory=memory)
    if is_chief(strategy):
        remove_int8(config.out)  # an older model's, which the calibration would measure
        with memory.phase("known-model calibration"):
            calibrate(config.out, train_samples, val_samples)
        with memory.phase("int8 conversion"):
            _write_int8(config, train_samples, val_samples)
        with memory.phase("report"):
            print(f"Report: {write_training_report(config.out)}")
        write_metrics(Path(config.out), metrics, memory)
        print(f"Peak resident memory of the run: {metrics['memory']['peak_gb']:.2f} GB")
    return metrics


def write_metrics(out: Path, metrics: dict[str, Any], memory: MemoryLog) -> None:
    """Write ``metrics`` to ``out/metrics.json`` with the run's memory so far as ``metrics["memory"]``
    (``training.memory.MemoryLog.summary``: peak resident GB overall and per phase)."""
    metrics["memory"] = memory.summary()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
