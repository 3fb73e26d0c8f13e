"""The ``carclf`` command: one entry point, a subcommand per task, and the one place that parses arguments.

    carclf train --data DIR --out DIR [--config FILE] [options]
    carclf evaluate --model DIR --data DIR [options]
    carclf predict --model DIR --images DIR --out submission.csv [options]
    carclf calibrate --model DIR --data DIR [options]
    carclf suspects --data DIR --out DIR [--folds 5] [any train option]
    carclf experiment --data DIR --variants FILE --out DIR [options]
    carclf report --model DIR
    carclf convert MODEL_DIR --data DIR [--limit N]
    carclf quantize MODEL_DIR --data DIR [--other-models DIR ...]
    carclf serve [GUNICORN OPTIONS]

Every subcommand imports what it runs inside its function, so that ``carclf
--help`` and each ``--help`` answer without importing TensorFlow, and
``carclf serve`` runs with the service's packages alone. TensorFlow's own log
lines (C++ and absl) are hidden unless ``--verbose``: the output is the
project's own lines.
"""

import contextlib
import dataclasses
import io
import logging
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import click
from click.core import ParameterSource

from inference import DEFAULT_PRECISION, PRECISIONS, RUNTIMES
from training.config import TrainConfig

# The C++ lines TensorFlow prints below error level: absl's records (severity I or W, e.g. "I0000
# 00:00:1796689813.546405 6592 port.cc:153] oneDNN custom operations are on...") and absl's notice
# that it was not initialised, and LiteRT's "INFO: " lines (its XNNPACK delegate, in the parity
# check). TF_CPP_MIN_LOG_LEVEL hides most, but not those printed before absl is initialised
# (TensorFlow 2.21: the oneDNN line, on every import), nor LiteRT's.
NATIVE_LOG_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] .*"
    r"|INFO: .*"
)
# The packages whose Python loggers print TensorFlow's notices (tf.get_logger(), absl).
NATIVE_LOGGERS = ("tensorflow", "absl", "h5py")


class _NativeLogFilter(io.TextIOBase):
    """A text stream that writes the lines it is given to ``out``, less ``NATIVE_LOG_LINE``'s."""

    def __init__(self, out: TextIO) -> None:
        self._out, self._partial = out, ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        kept = [line for line in lines if not NATIVE_LOG_LINE.fullmatch(line)]
        if kept:
            self._out.write("\n".join(kept) + "\n")
            self._out.flush()
        return len(text)

    def close(self) -> None:
        if self._partial and not NATIVE_LOG_LINE.fullmatch(self._partial):
            self._out.write(self._partial)
        self._partial = ""
        self._out.flush()
        super().close()


@contextlib.contextmanager
def native_logs_hidden() -> Iterator[None]:
    """Within the block, what C++ code and Python write to the process's stderr (file
    descriptor 2) passes through ``_NativeLogFilter`` (wurlitzer reads the pipe)."""
    from wurlitzer import pipes

    with os.fdopen(os.dup(2), "w") as original:
        sink = _NativeLogFilter(original)
        try:
            with pipes(stdout=None, stderr=sink):
                yield
        finally:
            sink.close()


def _quiet(verbose: bool) -> None:
    """Hide TensorFlow's own notices (before it is imported), unless ``verbose``."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else "3"
    for name in NATIVE_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.ERROR)


def _hide_native_logs() -> None:
    """For the rest of the running subcommand (one that imports TensorFlow, called before it does so),
    ``_quiet`` and ``native_logs_hidden``, unless ``--verbose``."""
    ctx = click.get_current_context()
    verbose = ctx.find_root().params["verbose"]
    _quiet(verbose)
    if not verbose:
        ctx.with_resource(native_logs_hidden())


def _fail(error: Exception) -> NoReturn:
    """End the command with a one-line message on stderr and exit status 1."""
    raise click.ClickException(str(error).strip())


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--verbose", is_flag=True, help="also show TensorFlow's own log lines (C++ and absl), hidden by default")
def cli(verbose: bool) -> None:
    """Train, evaluate and serve the car-model classifier.

    Each subcommand has its own --help."""


# --- training ---------------------------------------------------------------------------------------------------


class _Parsed(click.ParamType):
    """A click type from a parsing function: its ``ValueError`` message becomes click's."""

    def __init__(self, parse: Callable[[str], Any], name: str) -> None:
        self.parse, self.name = parse, name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


def _train_option(item: dataclasses.Field) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The click option of a ``training.config.TrainConfig`` field, from its ``metadata``:
    help, choices and, in ``flag``, the flag's name, repetition, type and metavar."""
    flag = dict(item.metadata["flag"])
    name = flag.get("flag_name", "--" + item.name.replace("_", "-"))
    # Every knob has a default or a default_factory (mypy sees the factory as possibly MISSING).
    default = item.default if item.default is not dataclasses.MISSING else item.default_factory()  # type: ignore[operator]
    shown = " ".join(map(str, default)) if isinstance(default, list) else default
    options: dict[str, Any] = {
        "help": f"{item.metadata['help']} ({f'default: {shown}' if shown != '' else 'required'})",
        "metavar": flag.get("metavar"),
        "multiple": flag.get("action") == "append",
        "default": None,
    }
    if isinstance(default, bool):
        return click.option(f"{name}/--no-{name[2:]}", item.name, **options)
    if isinstance(item.metadata["choices"], tuple):  # not the backbones: read late, TrainConfig checks them
        options["type"] = click.Choice(item.metadata["choices"])
    elif "type" in flag and isinstance(flag["type"], type):
        options["type"] = flag["type"]
    elif "type" in flag:
        options["type"] = _Parsed(flag["type"], options["metavar"] or "TEXT")
    elif not isinstance(default, list):
        options["type"] = type(default)
    if options["multiple"]:
        options["default"] = ()
    return click.option(name, item.name, **options)


def train_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--config`` and one option per ``training.config.TrainConfig`` field."""
    for item in reversed(dataclasses.fields(TrainConfig)):
        command = _train_option(item)(command)
    return click.option("--config", "config_file", metavar="FILE",
                        help="JSON or YAML file of config fields (e.g. configs/*.yaml or a saved "
                             "training_config.json); options override it")(command)


def train_config(ctx: click.Context) -> TrainConfig:
    """The ``training.config.TrainConfig`` of the options given (they override ``--config``).

    Raises:
        click.UsageError: a bad config file or value, or no ``--data``/``--out``.
    """
    from training.config import read_config_file

    fields = {item.name for item in dataclasses.fields(TrainConfig)}
    given = {name: list(value) if isinstance(value, tuple) else value for name, value in ctx.params.items()
             if name in fields and ctx.get_parameter_source(name) is not ParameterSource.DEFAULT}
    try:
        values = read_config_file(ctx.params["config_file"]) if ctx.params["config_file"] else {}
        config = TrainConfig.from_dict({**values, **given})
    except (FileNotFoundError, ValueError) as error:
        raise click.UsageError(str(error)) from None
    for required in ("data", "out"):
        if not getattr(config, required):
            raise click.UsageError(f"--{required} is required (or give it in --config)")
    return config


WEIGHTS_HINT = ("The shipped model's preset, --config configs/shipped.yaml, trains EfficientNet-Lite0 with its "
                "installed ImageNet weights, offline; or give --weights PATH to a local weights file (--weights "
                "none: random initial weights).")


@cli.command()
@train_options
@click.pass_context
def train(ctx: click.Context, **_: Any) -> None:
    """Train a car-model classifier and export it as a SavedModel.

    Transfer learning then staged fine-tuning (--stage); writes to --out:
    saved_model.pb + variables/, model.tflite, model.onnx and metadata.json
    (the same model on LiteRT and ONNX Runtime, each checked against the
    SavedModel on the validation photos), training_config.json, history.json
    (per stage: epochs, learning rate, loss and accuracy curves),
    training_log.csv (one row per epoch), metrics.json (validation accuracy
    with and without TTA, measured on the exported SavedModel),
    calibration.json (the known-model threshold), model.int8.onnx with
    int8_parity.json and calibration.int8.json (see carclf quantize; a warning
    instead when its check refuses it), report/ (learning curves) and, with
    --tensorboard, tensorboard/.
    """
    _hide_native_logs()
    config = train_config(ctx)
    from training.backbones.catalog import WeightsUnavailableError
    from training.fitting.run import train as run

    try:
        run(config)
    except WeightsUnavailableError as error:
        _fail(ValueError(f"{error} {WEIGHTS_HINT}"))
    except (FileNotFoundError, ValueError) as error:
        _fail(error)


@cli.command()
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="out-of-fold folds, by group")
@click.option("--drop", metavar="SUSPECTS_CSV",
              help="no training: write OUT/labels.csv, the dataset without the paths of this CSV")
@train_options
@click.pass_context
def suspects(ctx: click.Context, folds: int, drop: str | None, **_: Any) -> None:
    """Suspect labels: training photos whose given label the model, out of fold, strongly disagrees with.

    The photos are split into --folds folds by near-duplicate group. For every
    fold a model is trained (with the train options given, e.g. --stage
    head:3:1e-3:0 for a fast run) on the other folds and predicts the held-out
    fold, so every photo gets probabilities from a model that never saw it or
    its near-duplicates; cleanlab's confident learning (Northcutt et al. 2021)
    flags the suspects. Writes to --out: suspects.csv (worst first),
    suspects.png, out_of_fold.csv, cleaned/labels.csv (the dataset without the
    suspects) and folds/ (the fold models).

    --drop: after reviewing, delete from suspects.csv the rows of photos whose
    label is right, then write OUT/labels.csv, the dataset without the rows
    left (no training).
    """
    _hide_native_logs()
    config = train_config(ctx)
    from training.backbones.catalog import WeightsUnavailableError
    from training.evaluation.label_issues import drop_reviewed, run

    try:
        if drop:
            print(drop_reviewed(config.data[0], drop, config.out))
            return
        found = run(config, folds, config.out)
    except (FileNotFoundError, ValueError, WeightsUnavailableError) as error:
        _fail(error)
    out = Path(config.out)
    print(f"\n{len(found)} suspect label(s): {out / 'suspects.csv'}, {out / 'suspects.png'}; "
          f"dataset without them: {out / 'cleaned'}")


@cli.command()
@click.option("--data", multiple=True, required=True, help="dataset root, repeatable")
@click.option("--variants", required=True, help="variants file, YAML or JSON (e.g. configs/experiments.yaml)")
@click.option("--out", required=True, help="output directory (models, results.jsonl)")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="group folds")
@click.option("--seed", type=int, default=42, show_default=True, help="seed of the fold split")
@click.option("--only", metavar="NAME,NAME", help="comma-separated variants to run")
@click.option("--table", help="Markdown file for the results (default: OUT/experiments.md)")
@click.option("--views", default="", metavar="SET,SET",
              help="TTA view sets to measure besides flip (inference.tta.VIEW_SETS; runs already trained are "
                   "measured from their saved models)")
@click.option("--classes", type=int, metavar="N",
              help="only the first N classes (in label order) and their photos: a quicker comparison (default: all)")
@click.pass_context
def experiment(ctx: click.Context, data: tuple[str, ...], variants: str, out: str, folds: int, seed: int,
               only: str | None, table: str | None, views: str, classes: int | None) -> None:
    """Measure training variants on a fixed group-aware K-fold split.

    The photos are split once into --folds group-aware, label-stratified folds
    (seeded: every variant sees the same folds). For each fold and variant the
    model is trained on the other folds and its exported SavedModel evaluated
    on the held-out fold, without TTA, with the flip views and with the
    --views sets. The variants file holds base (a config file, or TrainConfig
    fields shared by all variants) and variants (name -> the fields it
    changes); the first variant is the reference of the paired differences; a
    variant with method: linear-probe trains no network. Writes
    OUT/<variant>/fold<k>/, appends one JSON line per run to
    OUT/results.jsonl (runs already there are skipped: an interrupted
    experiment resumes) and writes the Markdown tables to --table.
    """
    _hide_native_logs()
    from training.backbones.catalog import WeightsUnavailableError
    from training.experiments.variants import run_experiment

    # The command printed with the table rebuilds all of it: every option given but --only.
    command = shlex.join(["carclf", "experiment", *_given(ctx, leave_out=("only",))])
    try:
        run_experiment(list(data), variants, out, folds, seed, only.split(",") if only else None, table, command,
                       views.split(",") if views else [], classes)
    except (FileNotFoundError, ValueError, WeightsUnavailableError) as error:
        _fail(error)


def _given(ctx: click.Context, leave_out: Sequence[str] = ()) -> list[str]:
    """The options of ``ctx`` given on the command line, as command-line words."""
    words = []
    for param in ctx.command.params:
        if param.name in leave_out or ctx.get_parameter_source(param.name or "") is not ParameterSource.COMMANDLINE:
            continue
        values = ctx.params[param.name or ""]
        for value in values if isinstance(values, tuple) else (values,):
            words += [param.opts[0], str(value)]
    return words


# --- evaluation --------------------------------------------------------------------------------------------------

DEFAULT_VIEW_SETS = ("flip", "crops", "scales", "all")


@cli.command()
@click.option("--model", multiple=True, required=True,
              help="SavedModel directory; repeat for an ensemble (probabilities averaged)")
@click.option("--data", required=True, help="dataset root (ImageFolder, optional labels.csv)")
@click.option("--split", type=click.Choice(("all", "validation")), default="all", show_default=True,
              help="validation: the group-aware validation split of the first model's training_config.json; "
                   "all: every photo (a held-out dataset)")
@click.option("--tta-views", multiple=True, metavar="SET",
              help="a TTA view set, repeatable: a name of inference.tta.VIEW_SETS or view names joined by commas "
                   f"(e.g. original,hflip,zoom_out); default: {' '.join(DEFAULT_VIEW_SETS)}")
@click.option("--out", default="runs/evaluation.json", show_default=True, help="where all figures go, as JSON")
@click.option("--report", metavar="DIR", help="write PNG plots and report.md to DIR")
@click.option("--runtime", type=click.Choice(RUNTIMES), default="tensorflow", show_default=True,
              help="what runs the model: the SavedModel on TensorFlow, or a conversion")
@click.option("--precision", type=click.Choice(PRECISIONS), default=DEFAULT_PRECISION, show_default=True,
              help="int8: model.int8.onnx (with --runtime onnxruntime)")
def evaluate(model: tuple[str, ...], data: str, split: str, tta_views: tuple[str, ...], out: str,
             report: str | None, runtime: str, precision: str) -> None:
    """Evaluate exported SavedModels (one, or an ensemble) on labelled photos, without and with TTA.

    Prints a Markdown table of the key figures and writes all of them as JSON
    to --out: accuracy, top-2 accuracy, macro-F1, expected calibration error,
    per-class precision and recall, the most confident mistakes and the
    latency per image, for no TTA and for each TTA view set. Paths in it are
    relative to the current directory. --runtime and --precision measure a
    conversion instead of the SavedModel (e.g. --runtime onnxruntime
    --precision int8: model.int8.onnx).
    """
    _hide_native_logs()
    import json

    from inference.model_folder import ModelNotFoundError
    from inference.tta import parse_views
    from training.data.dataset import load_samples, model_split
    from training.evaluation.predictions import evaluate as run
    from training.evaluation.predictions import shown_path
    from training.evaluation.reports import summary_table, write_evaluation_report

    try:
        view_sets = {text: parse_views(text) for text in tta_views or DEFAULT_VIEW_SETS}
        samples = model_split(model[0], data)[1] if split == "validation" else load_samples(data)[0]
        evaluation = run(list(model), samples, view_sets, runtime, precision)
        evaluation.metrics.update(data=shown_path(data), split=split)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(evaluation.metrics, indent=2) + "\n")
        if report:
            print(f"report: {write_evaluation_report(evaluation, report)}")
        print(summary_table(evaluation.metrics))
        print(f"All figures (per class, mistakes): {out}")
    except (FileNotFoundError, ModelNotFoundError, ValueError) as error:
        _fail(error)


@cli.command()
@click.option("--model", multiple=True, required=True,
              help="SavedModel directory; repeat for an ensemble (probabilities averaged, same labels required)")
@click.option("--images", required=True, help="folder of photos to classify")
@click.option("--out", required=True, help="submission CSV to write")
@click.option("--sample-submission", help="CSV whose Id column gives the rows and their order (only its Ids)")
@click.option("--tta/--no-tta", default=True, show_default=True, help="average over TTA views")
@click.option("--tta-views", default="flip", show_default=True, metavar="SET",
              help="views with --tta: a name of inference.tta.VIEW_SETS or view names joined by commas")
@click.option("--skip-unreadable", is_flag=True,
              help="leave unreadable images out (listed on stderr; their rows are then missing) instead of stopping")
def predict(model: tuple[str, ...], images: str, out: str, sample_submission: str | None, tta: bool, tta_views: str,
            skip_unreadable: bool) -> None:
    """Write a Kaggle submission (Id,Category) for a folder of photos.

    Id is the file name, Category the index of the predicted class in the
    model's label order (for sf-dl-car-classification, whose classes are
    folders 0 to 9, index and class name coincide).
    """
    _hide_native_logs()
    from inference.loading import load_predictor
    from inference.model_folder import ModelNotFoundError
    from inference.tta import VIEW_SETS, parse_views
    from training.evaluation.submission import predict_categories, submission_ids, write_submission

    try:
        views = parse_views(tta_views) if tta else VIEW_SETS["none"]
        ids = submission_ids(images, sample_submission)
        predictor = load_predictor(model, "tensorflow")
        categories, skipped = predict_categories(predictor, images, ids, views, skip_unreadable)
    except (FileNotFoundError, ModelNotFoundError, ValueError) as error:
        _fail(error)
    write_submission(out, categories)
    for reason in skipped:
        print(f"skipped {reason}", file=sys.stderr)
    print(f"{len(categories)} rows written to {out} (TTA views: {', '.join(views)}; "
          f"labels: {', '.join(f'{i}={label}' for i, label in enumerate(predictor.labels))})")


def _folder_label(text: str) -> tuple[str, str]:
    """``FOLDER=LABEL`` as ``(folder, label)``.

    Raises:
        ValueError: no ``=`` or an empty side.
    """
    folder, separator, label = text.partition("=")
    if not separator or not folder or not label:
        raise ValueError(f"expected FOLDER=LABEL, got {text!r}")
    return folder, label


@cli.command()
@click.option("--model", required=True, help="SavedModel directory (with its training_config.json)")
@click.option("--data", required=True, help="the dataset the model was trained on")
@click.option("--unknown", multiple=True,
              help="folder of photos of car models the model does not know, searched recursively; repeatable "
                   "(measured only)")
@click.option("--other-models", multiple=True,
              help="folder of photos of other car models, one sub-folder per model: every other model (sorted) fits "
                   "the background of a compared score (relative Mahalanobis), the rest are measured; repeatable")
@click.option("--other-angle", multiple=True, type=_Parsed(_folder_label, "FOLDER=LABEL"), metavar="FOLDER=LABEL",
              help="sub-folder of an --unknown or --other-models root whose photos show the known model LABEL from "
                   "other angles; repeatable (measured apart, never fitted)")
@click.option("--quantile", type=float, help="share of validation photos kept as known "
                                              "(default: training.evaluation.known_model.DEFAULT_QUANTILE)")
@click.option("--int8-only", is_flag=True,
              help="fit model.int8.onnx's test alone (calibration.int8.json), keeping calibration.json")
def calibrate(model: str, data: str, unknown: tuple[str, ...], other_models: tuple[str, ...],
              other_angle: tuple[tuple[str, str], ...], quantile: float | None, int8_only: bool) -> None:
    """Calibrate the known-model test of an exported SavedModel: calibration.json.

    Re-creates the model's own group-aware train/validation split from its
    training_config.json, keeps the pooled features of the training split as
    the test's neighbours and sets the threshold at the --quantile of the
    validation scores, for each TTA setting the service offers. --unknown and
    --other-models photos are measured (how many the threshold turns away),
    beside other scores chosen by the same rule: the Mahalanobis distance to
    the class centres, the maximum softmax probability, the energy score and,
    with --other-models, the relative Mahalanobis distance. Nothing but the
    training and validation photos changes the test; carclf train runs it
    after every export. With model.int8.onnx in the folder, the validation
    and measured photos also go through it, for its own threshold
    (calibration.int8.json, docs/int8.md); --int8-only does that alone,
    keeping calibration.json (its neighbours and quantile).
    """
    _hide_native_logs()
    from inference.calibration import Calibration, calibration_filename
    from inference.model_folder import ModelNotFoundError
    from training.data.dataset import model_split
    from training.evaluation.known_model import (
        DEFAULT_QUANTILE,
        MeasuredPhotos,
        calibrate_int8,
        read_other_models,
        read_unknown,
        summary,
    )
    from training.evaluation.known_model import calibrate as run

    try:
        train_samples, val_samples = model_split(model, data)
        unknown_photos, other_angle_photos = read_unknown(unknown, dict(other_angle))
        background, measured, more_angles = read_other_models(other_models, dict(other_angle))
        if int8_only:
            calibrate_int8(model, MeasuredPhotos(val_samples, unknown_photos + measured, [*unknown, *other_models],
                                                 other_angle_photos + more_angles))
        else:
            calibration = run(model, train_samples, val_samples, unknown_photos + measured,
                              DEFAULT_QUANTILE if quantile is None else quantile, other_angle_photos + more_angles,
                              [*unknown, *other_models], background)
            print(f"{Path(model) / 'calibration.json'} written\n{summary(calibration)}")
        int8 = Calibration.load(model, "int8")
    except (FileNotFoundError, ModelNotFoundError, ValueError) as error:
        _fail(error)
    if int8 is not None:
        print(f"{Path(model) / calibration_filename('int8')} (model.int8.onnx)\n{summary(int8)}")


@cli.command()
@click.option("--model", required=True, help="a training run's output directory (with history.json)")
def report(model: str) -> None:
    """(Re)write a trained model's report/ from its history.json."""
    from training.evaluation.reports import write_training_report

    try:
        print(f"report: {write_training_report(model)}")
    except FileNotFoundError as error:
        _fail(error)


# --- export ----------------------------------------------------------------------------------------------------


@cli.command()
@click.argument("model")
@click.option("--data", multiple=True, required=True, help="dataset root of real photos for the parity check "
                                                           "(repeatable)")
@click.option("--limit", type=int, default=0, help="check on the first N photos only (default: all)")
def convert(model: str, data: tuple[str, ...], limit: int) -> None:
    """Convert the SavedModel in MODEL to float32 LiteRT and ONNX, each checked on real photos.

    Writes beside the SavedModel model.tflite (its serving signature, frozen,
    without its resize), model.onnx (converted from it) and metadata.json,
    which the service's LiteRT and ONNX Runtime runtimes serve without
    TensorFlow; carclf train runs the same conversions at the end of the
    export. The parity check refuses a conversion (not written, exit status 1)
    unless every photo gets the same top class and known-model answer and no
    probability differs by more than training.export.parity's bound; its
    figures go to litert_parity.json and onnx_parity.json beside the model.
    """
    _hide_native_logs()
    from inference.model_folder import ONNX_FILENAME, TFLITE_FILENAME, ModelNotFoundError
    from inference.savedmodel import TensorFlowClassifier
    from training.data.dataset import load_samples
    from training.export.litert import write_litert
    from training.export.onnx import write_onnx
    from training.export.parity import summary

    try:
        samples, _ = load_samples(list(data))
        photos = [sample.path for sample in samples][: limit or None]
        reference = TensorFlowClassifier(model)
        print(summary(write_litert(model, photos, reference), Path(model) / TFLITE_FILENAME), flush=True)
        print(summary(write_onnx(model, photos, reference), Path(model) / ONNX_FILENAME))
    except (FileNotFoundError, ModelNotFoundError, ValueError) as error:
        _fail(error)


@cli.command()
@click.argument("model")
@click.option("--data", required=True, help="the dataset the model was trained on (every photo is checked)")
@click.option("--other-models", multiple=True,
              help="folder of photos of car models the model does not know, searched recursively; repeatable "
                   "(measured, not checked)")
def quantize(model: str, data: str, other_models: tuple[str, ...]) -> None:
    """Add the int8 model to the model folder MODEL, checked on real photos: model.int8.onnx.

    Quantizes model.onnx with ONNX Runtime's static quantization, its
    activation ranges taken on photos of the model's own training split
    (re-created from training_config.json and --data, the dataset it was
    trained on), and sets the known-model test's int8 threshold on its
    validation photos (calibration.int8.json). The parity check runs the
    SavedModel and the int8 model on every photo of both splits and refuses
    the int8 model (not written, exit status 1) unless they agree within
    training.export.int8.INT8_TOLERANCE; its figures go to int8_parity.json,
    with those of the photos of --other-models (measured, not checked: photos
    of car models it does not know, whose top class means nothing). Serve it
    with CARCLF_PRECISION=int8 (docs/int8.md); carclf train runs the same
    conversion after every export.
    """
    _hide_native_logs()
    from inference.model_folder import INT8_ONNX_FILENAME, ModelNotFoundError
    from training.data.dataset import model_split
    from training.evaluation.known_model import read_unknown
    from training.export.int8 import write_int8
    from training.export.parity import summary

    try:
        train_samples, val_samples = model_split(model, data)
        figures = write_int8(model, train_samples, val_samples, read_unknown(other_models, {})[0])
    except (FileNotFoundError, ModelNotFoundError, ValueError) as error:
        _fail(error)
    print(summary(figures, Path(model) / INT8_ONNX_FILENAME))
    if "other_models" in figures:
        print(f"other car models: {summary(figures['other_models'], Path(model) / INT8_ONNX_FILENAME)}")


# --- serving -----------------------------------------------------------------------------------------------------


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("gunicorn_args", nargs=-1, type=click.UNPROCESSED)
def serve(gunicorn_args: tuple[str, ...]) -> NoReturn:
    """Serve the model with gunicorn (the service's settings: environment variables, README).

    Runs gunicorn on app:create_app() with the checkout's gunicorn.conf.py
    (workers, threads, JSON logs; BIND, HOST and PORT choose the address,
    default 127.0.0.1:8000); without a checkout (an installed wheel),
    gunicorn's own defaults. GUNICORN_ARGS go to gunicorn as they are, e.g.
    carclf serve --bind 127.0.0.1:9000.
    """
    code = Path(__file__).resolve().parents[1]  # the folder that holds app/: a checkout, or site-packages
    config = code / "gunicorn.conf.py"
    command = [sys.executable, "-m", "gunicorn", "--pythonpath", str(code),
               *(["--config", str(config)] if config.is_file() else []), *gunicorn_args, "app:create_app()"]
    os.execv(sys.executable, command)


def main(args: Sequence[str] | None = None, **extra: Any) -> Any:
    """The ``carclf`` console script (``[project.scripts]``); ``args`` and ``extra`` as click's ``main``."""
    return cli.main(args, prog_name="carclf", **extra)


if __name__ == "__main__":
    main()
