"""Training variants compared on a fixed group-aware K-fold split, and their Markdown tables."""

import json
import os
import statistics
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras

from inference.tta import VIEW_SETS
from training.config import Stage, TrainConfig, read_config_file
from training.data.dataset import Sample, group_folds, load_samples, split_by_group
from training.evaluation.predictions import evaluate
from training.fitting.probe import run_probe
from training.fitting.run import fit_and_export

BEGIN, END = "<!-- experiment-results -->", "<!-- /experiment-results -->"
# A variant's "method": what it runs on a fold (the default fine-tunes).
METHODS = ("fine-tune", "linear-probe")


def load_variants(path: Path | str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Read a variants file.

    Returns:
        ``(base, variants)``: the shared config fields (``dict``) and
        ``{name: dict of changed fields}``, in file order.

    Raises:
        FileNotFoundError: the file, or its base config file, is missing.
        ValueError: no ``variants`` mapping, or a variant that is no valid config.
    """
    path = Path(path)
    spec = read_config_file(path)
    base = spec.get("base", {})
    if isinstance(base, str):
        base = read_config_file(path.parent / base)
    variants = spec.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise ValueError(f"'{path}' needs a non-empty 'variants' mapping of name -> changed config fields")
    for name, changes in variants.items():
        if not isinstance(changes, dict):
            raise ValueError(f"variant '{name}' must be a mapping of config fields (use {{}} for none)")
        if changes.get("method", METHODS[0]) not in METHODS:
            raise ValueError(f"variant '{name}': method must be one of {', '.join(METHODS)}")
        TrainConfig.from_dict({**base, **config_fields(changes)})  # fail now, not after an hour of training
    return base, variants


def config_fields(changes: Mapping[str, Any]) -> dict[str, Any]:
    """A variant's changes without its ``method``: the ``TrainConfig`` fields."""
    return {key: value for key, value in changes.items() if key != "method"}


def describe(changes: Mapping[str, Any]) -> str:
    """A short text of a variant's changed fields, e.g. ``schedule=cosine``."""
    if not changes:
        return "(base config)"
    shown = {
        key: " ".join(str(Stage.coerce(stage)) for stage in value) if key == "stages" else value
        for key, value in changes.items()
    }
    return ", ".join(f"{key}={value}" for key, value in shown.items())


def changed_fields(config: TrainConfig) -> dict[str, Any]:
    """The fields of ``config`` that differ from ``TrainConfig``'s defaults,
    except ``out``: what identifies a run (knobs added later keep old runs valid)."""
    defaults = TrainConfig().to_dict()
    return {key: value for key, value in config.to_dict().items() if key != "out" and value != defaults[key]}


def read_results(path: Path) -> list[dict[str, Any]]:
    """The runs recorded in ``results.jsonl`` (``list`` of ``dict``), ``[]`` when absent."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def measure(model_dir: Path | str, held_out: Sequence[Sample], view_sets: Iterable[str]) -> dict[str, Any]:
    """Held-out accuracy of a fold's SavedModel without TTA and with TTA view sets
    (``training.evaluation.predictions.evaluate``, one pass over the union of the views).

    Args:
        model_dir: the fold's SavedModel.
        held_out: the fold's ``list[training.data.dataset.Sample]``.
        view_sets: names from ``inference.tta.VIEW_SETS``; ``flip`` (the
            table's TTA column) is always measured.

    Returns:
        ``dict``: ``accuracy`` (no TTA), ``accuracy_tta`` (``flip``) and
        ``tta_sets``, ``{set name or "none": {"accuracy", "latency_ms"}}``
        (latency: median milliseconds per image on this machine).
    """
    sets = {name: VIEW_SETS[name] for name in dict.fromkeys(("flip", *view_sets))}
    metrics = evaluate([model_dir], held_out, sets).metrics
    blocks = {"none": metrics["no_tta"], **metrics["tta"]}
    tta_sets = {name: {"accuracy": block["accuracy"], "latency_ms": block["latency_ms"]}
                for name, block in blocks.items()}
    return {"accuracy": blocks["none"]["accuracy"], "accuracy_tta": blocks["flip"]["accuracy"], "tta_sets": tta_sets}


def run_fold(
    config: TrainConfig, rest: Sequence[Sample], held_out: Sequence[Sample], labels: list[str],
    view_sets: Iterable[str],
) -> dict[str, Any]:
    """Train ``config`` on ``rest`` (split again by group for validation) and
    ``measure`` the exported model on ``held_out``.

    Returns:
        ``dict``: ``measure``'s, ``val_accuracy`` (inner validation),
        ``train_seconds``, ``epochs`` (trained) and ``kept_epoch`` (the one
        exported, counted over all stages; 0: the linear probe).
    """
    train_samples, val_samples = split_by_group(rest, config.val_fraction, config.seed)
    metrics = fit_and_export(config, train_samples, val_samples, labels, verbose=2)
    epochs = sum(len(stage["val_accuracy"]) for stage in json.loads((Path(config.out) / "history.json").read_text()))
    keras.backend.clear_session()  # free the graph before the next run
    return {
        **measure(config.out, held_out, view_sets),
        "val_accuracy": metrics["accuracy"],
        "train_seconds": metrics["train_seconds"],
        "epochs": epochs,
        "kept_epoch": metrics["kept_epoch"]["epoch"],
    }


def run_experiment(
    data: list[str],
    variants_path: Path | str,
    out: Path | str,
    folds: int = 5,
    seed: int = 42,
    only: Collection[str] | None = None,
    table: Path | str | None = None,
    command: str | None = None,
    view_sets: Collection[str] = (),
    classes: int | None = None,
) -> str:
    """Run every (fold, variant) pair not yet in ``OUT/results.jsonl``, fold by
    fold; measure the ``view_sets`` that recorded runs lack on their saved
    models (no training); then write the table.

    Args:
        data: dataset root(s), as for ``training.data.dataset.load_samples``.
        variants_path: the variants file.
        out: output directory.
        folds: number of group folds, >= 2.
        seed: seeds the fold split (each variant's own ``seed`` seeds its training).
        only: variant names to run (``None``: all); the table shows all recorded.
        table: Markdown file for the table; ``None``: ``OUT/experiments.md``.
        command: the command line to print in the table's notes.
        view_sets: TTA view sets (``inference.tta.VIEW_SETS``) measured
            on each held-out fold besides ``flip``.
        classes: only the first ``classes`` labels (in the data's label
            order) and their photos, for a quicker comparison; ``None``: all.

    Returns:
        the Markdown text of the results block.

    Raises:
        FileNotFoundError, ValueError: bad data or variants file, or an unknown
            name in ``only`` or ``view_sets``.
        training.backbones.catalog.WeightsUnavailableError: see ``--weights``.
    """
    base, variants = load_variants(variants_path)
    unknown = set(only or ()) - set(variants)
    if unknown:
        raise ValueError(f"unknown variant(s) {sorted(unknown)}; the file has {', '.join(variants)}")
    if set(view_sets) - set(VIEW_SETS):
        raise ValueError(f"unknown TTA view set(s) {sorted(set(view_sets) - set(VIEW_SETS))}; "
                         f"known: {', '.join(VIEW_SETS)}")
    if classes is not None and classes < 2:
        raise ValueError(f"--classes must be at least 2, got {classes}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    samples, labels = load_samples(data, base.get("class_names"))
    if classes is not None:
        labels = labels[:classes]
        known = set(labels)
        samples = [sample for sample in samples if sample.label in known]
    splits = list(group_folds(samples, folds, seed))
    results_path = out / "results.jsonl"
    records = read_results(results_path)
    done = {(r["variant"], r["fold"], json.dumps(r["config"], sort_keys=True)): r for r in records}
    todo, to_measure = [], []
    for fold, (rest, held_out) in enumerate(splits):
        for name, changes in variants.items():
            config = TrainConfig.from_dict({**base, **config_fields(changes), "data": data,
                                            "out": str(out / name / f"fold{fold}")})
            recorded = {**changed_fields(config), **({"method": changes["method"]} if "method" in changes else {})}
            record = done.get((name, fold, json.dumps(recorded, sort_keys=True)))
            if only and name not in only:
                continue
            if record is None:
                todo.append((fold, name, config, recorded, rest, held_out))
            elif not {"flip", *view_sets} <= set(record.get("tta_sets", {})) and \
                    (Path(config.out) / "saved_model.pb").is_file():
                to_measure.append((record, config.out, held_out))
    for number, (record, model_dir, held_out) in enumerate(to_measure):
        print(f"\n##### measuring {number + 1}/{len(to_measure)}: {model_dir}", flush=True)
        measured = measure(model_dir, held_out, view_sets)
        record.update(measured, tta_sets={**record.get("tta_sets", {}), **measured["tta_sets"]})
        results_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    started = time.perf_counter()
    for number, (fold, name, config, recorded, rest, held_out) in enumerate(todo):
        elapsed = time.perf_counter() - started
        eta = f", about {elapsed / number * (len(todo) - number) / 60:.0f} min left" if number else ""
        print(f"\n##### run {number + 1}/{len(todo)}: variant '{name}', fold {fold + 1}/{folds}{eta}", flush=True)
        outcome = run_probe(config, rest, held_out, labels) if recorded.get("method") == "linear-probe" else \
            run_fold(config, rest, held_out, labels, view_sets)
        result = {"variant": name, "fold": fold, "held_out": len(held_out), **outcome, "config": recorded}
        with open(results_path, "a") as handle:
            handle.write(json.dumps(result) + "\n")
        print(f"##### {name} fold {fold + 1}: held-out accuracy {result['accuracy']:.3f}, "
              f"with TTA {result['accuracy_tta']:.3f}, {result['train_seconds'] / 60:.1f} min", flush=True)
    block = results_markdown(read_results(results_path), variants, len(samples), len(labels), folds, seed, command)
    write_block(Path(table) if table else out / "experiments.md", block)
    return block


def _mean_std(values: Sequence[float], signed: bool = False) -> str:
    """``mean ± sample standard deviation`` to 3 decimals (``+`` shown when ``signed``)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{'+' if signed else ''}.3f} ± {spread:.3f}"


def results_markdown(
    results: Iterable[Mapping[str, Any]],
    variants: Mapping[str, Mapping[str, Any]],
    n_photos: int,
    n_classes: int,
    folds: int,
    seed: int,
    command: str | None,
) -> str:
    """The Markdown results block: the setup, the command, a summary table
    (mean ± sample standard deviation over folds) and a per-fold table.

    The paired difference is, per fold, the variant's held-out accuracy minus
    the first variant's, averaged over the folds both have finished (same
    folds, so fold difficulty cancels out).
    """
    latest = {}
    for result in results:  # a rerun of a (variant, fold) replaces the earlier one
        if result["variant"] in variants:
            latest[result["variant"], result["fold"]] = result
    reference = next(iter(variants))
    rows = [
        "| variant | changes | folds | accuracy | accuracy, TTA | paired Δ vs "
        f"`{reference}` | train min/fold | epochs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    per_fold = ["| variant | " + " | ".join(f"fold {k + 1}" for k in range(folds)) + " |",
                "|---|" + "---|" * folds]
    for name, changes in variants.items():
        runs = [latest[name, k] for k in range(folds) if (name, k) in latest]
        if not runs:
            continue
        paired = [r["accuracy"] - latest[reference, r["fold"]]["accuracy"] for r in runs
                  if (reference, r["fold"]) in latest]
        delta = "" if name == reference or not paired else _mean_std(paired, signed=True)
        rows.append(
            f"| `{name}` | {describe(changes)} | {len(runs)} | {_mean_std([r['accuracy'] for r in runs])} "
            f"| {_mean_std([r['accuracy_tta'] for r in runs])} | {delta} "
            f"| {statistics.mean(r['train_seconds'] for r in runs) / 60:.1f} "
            f"| {statistics.mean(r['epochs'] for r in runs):.0f} |"
        )
        cells = [_fold_cell(latest[name, k]) if (name, k) in latest else "" for k in range(folds)]
        per_fold.append(f"| `{name}` | " + " | ".join(cells) + " |")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    # One table per variant: pooling the fold models of different recipes would hide which one a view set helps.
    tta: list[str] = []
    for name in variants:
        table = tta_markdown([result for (variant, _), result in latest.items() if variant == name])
        if table:
            tta += ["", f"TTA view sets (`inference/tta.py`), over the `{name}` fold models measured with them; "
                        "gain: per model, accuracy with the set minus without TTA:", "", *table]
    return "\n".join([
        f"{n_photos} photos, {n_classes} classes, {folds} group-aware stratified folds (seed {seed}); each "
        "model is trained on the other folds (themselves split by group into training and validation for "
        "checkpoint selection and early stopping) and scored on its held-out fold. Accuracy: held-out "
        "fold, mean ± standard deviation over folds; TTA: original + horizontal flip. Training minutes: "
        f"fitting only, on this machine ({os.cpu_count()} CPU cores). Updated {stamp}.",
        "",
        "```bash",
        command or "carclf experiment ...",
        "```",
        "",
        *rows,
        "",
        "Per fold, held-out accuracy without / with TTA (and the epoch kept, where recorded: the "
        "best-validated over all stages; 0 is the linear probe the head started from):",
        "",
        *per_fold,
        *tta,
    ])


def _fold_cell(result: Mapping[str, Any]) -> str:
    """One per-fold cell: accuracy without / with TTA, then the kept epoch when recorded."""
    kept = f" (epoch {result['kept_epoch']})" if "kept_epoch" in result else ""
    return f"{result['accuracy']:.3f} / {result['accuracy_tta']:.3f}{kept}"


def tta_markdown(results: Iterable[Mapping[str, Any]]) -> list[str]:
    """Rows of the TTA table: per view set, over the runs that measured it,
    accuracy, paired gain over no TTA, runs better/worse, median latency;
    ``[]`` when no run measured a set besides ``none``."""
    measured = [r for r in results if "tta_sets" in r]
    names = [name for name in VIEW_SETS if any(name in r["tta_sets"] for r in measured)]
    if not set(names) - {"none"}:
        return []
    rows = ["| TTA views | views | runs | accuracy | gain | better / worse | ms per image |",
            "|---|---|---|---|---|---|---|"]
    for name in names:
        runs = [r["tta_sets"] for r in measured if name in r["tta_sets"]]
        gains = [run[name]["accuracy"] - run["none"]["accuracy"] for run in runs]
        gain, counts = ("", "") if name == "none" else \
            (_mean_std(gains, signed=True), f"{sum(g > 0 for g in gains)} / {sum(g < 0 for g in gains)}")
        rows.append(
            f"| `{name}` | {', '.join(VIEW_SETS[name])} | {len(runs)} "
            f"| {_mean_std([run[name]['accuracy'] for run in runs])} | {gain} | {counts} "
            f"| {statistics.median(run[name]['latency_ms'] for run in runs):.0f} |"
        )
    return rows


def write_block(path: Path, block: str) -> None:
    """Put ``block`` between the result markers of ``path`` (created with a title when absent)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.is_file() else f"# Experiments\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = f"{text.rstrip()}\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    path.write_text(f"{head}{BEGIN}\n{block}\n{END}{rest.split(END, 1)[1]}")
