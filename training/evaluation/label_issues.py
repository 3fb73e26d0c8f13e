"""Suspect labels: out-of-fold probabilities of every photo and confident learning on them."""

import csv
import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from cleanlab.filter import find_label_issues

from inference.loading import load_predictor
from inference.tta import VIEW_SETS
from training.config import TrainConfig
from training.data.dataset import Sample, group_folds, load_samples
from training.evaluation.predictions import view_probabilities
from training.evaluation.reports import plot_gallery
from training.fitting.run import train


def assign_folds(samples: Sequence[Sample], folds: int, seed: int) -> np.ndarray:
    """The fold of every sample: whole near-duplicate groups per fold,
    stratified by label (``training.data.dataset.group_folds``).

    Returns:
        ``int`` array ``(len(samples),)`` of fold indices in ``[0, folds)``.

    Raises:
        ValueError: fewer groups than folds, or ``folds < 2``.
    """
    if folds < 2:
        raise ValueError(f"--folds must be at least 2, got {folds}")
    position = {sample: index for index, sample in enumerate(samples)}
    fold_of = np.zeros(len(samples), dtype=int)
    for fold, (_, held_out) in enumerate(group_folds(samples, folds, seed)):
        fold_of[[position[sample] for sample in held_out]] = fold
    return fold_of


def write_labels_csv(samples: Iterable[Sample], root: Path | str) -> Path:
    """Write ``root/labels.csv`` (``path,label,group``, absolute paths) so that
    ``root`` is a dataset ``training.data.dataset.load_samples`` reads.

    Returns:
        ``root`` as a ``Path``.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "group"])
        writer.writerows([str(Path(s.path).resolve()), s.label, s.group] for s in samples)
    return root


def out_of_fold_probabilities(
    samples: list[Sample], labels: list[str], config: TrainConfig, folds: int, work_dir: Path | str
) -> tuple[np.ndarray, np.ndarray]:
    """Train one model per fold on the other folds and predict the held-out fold.

    Args:
        samples: ``list[training.data.dataset.Sample]``; labels: all class names.
        config: ``training.config.TrainConfig`` for every fold model
            (its ``data`` and ``out`` are replaced per fold).
        folds: number of folds.
        work_dir: the fold datasets and models go to ``work_dir/fold<k>/``.

    Returns:
        ``(probabilities, fold_of)``: ``float32 (len(samples), len(labels))``
        out-of-fold probabilities without TTA (a class missing from a fold's
        training photos gets 0), and the ``int`` fold of every sample.
    """
    fold_of = assign_folds(samples, folds, config.seed)
    probabilities = np.zeros((len(samples), len(labels)), dtype=np.float32)
    for fold in range(folds):
        print(f"\n==== Fold {fold + 1}/{folds}: train on the other folds, predict this one")
        root = Path(work_dir) / f"fold{fold}"
        data = write_labels_csv([s for s, k in zip(samples, fold_of) if k != fold], root / "data")
        train(dataclasses.replace(config, data=[str(data)], out=str(root / "model")))
        predictor = load_predictor(root / "model", "tensorflow")
        held_out = np.flatnonzero(fold_of == fold)
        predicted, _ = view_probabilities(predictor, [samples[i].path for i in held_out], VIEW_SETS["none"])
        columns = [labels.index(label) for label in predictor.labels]
        # numpy's stubs take arguments of one kind only (here an index array and a list).
        probabilities[np.ix_(held_out, columns)] = predicted[:, 0]  # type: ignore[arg-type]
    return probabilities, fold_of


def find_suspects(
    samples: Sequence[Sample], labels: list[str], probabilities: np.ndarray, root: Path | str
) -> list[dict[str, Any]]:
    """Suspect labels by confident learning, worst (lowest self-confidence) first.

    Args:
        samples: ``list[training.data.dataset.Sample]``; labels: class names.
        probabilities: out-of-fold ``(len(samples), len(labels))``.
        root: data root the ``path`` of a row is made relative to.

    Returns:
        ``list[dict]`` with ``path``, ``given_label``, ``suggested_label``
        (the most probable class) and ``self_confidence``.
    """
    given = np.array([labels.index(s.label) for s in samples])
    ranked = find_label_issues(given, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1)
    return [
        {
            "path": os.path.relpath(samples[i].path, root),
            "given_label": samples[i].label,
            "suggested_label": labels[int(np.argmax(probabilities[i]))],
            "self_confidence": round(float(probabilities[i, given[i]]), 4),
        }
        for i in ranked
    ]


def _write_csv(path: Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def without(samples: Sequence[Sample], root: Path | str, paths: Iterable[Path | str]) -> list[Sample]:
    """``samples`` minus those whose path (relative to ``root``, or absolute) is in ``paths``.

    Raises:
        ValueError: a path that is no sample of the dataset (wrong ``--data``?).
    """
    drop = {os.path.normpath(Path(root) / path) for path in paths}
    unknown = drop - {os.path.normpath(s.path) for s in samples}
    if unknown:
        raise ValueError(f"{len(unknown)} path(s) to drop are not in the dataset '{root}', e.g. {min(unknown)}")
    return [s for s in samples if os.path.normpath(s.path) not in drop]


def run(config: TrainConfig, folds: int, out: Path | str) -> list[dict[str, Any]]:
    """Out-of-fold probabilities, suspects and their files in ``out``; returns the suspects."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(config.data[0]).resolve()  # the one --data root of this command
    samples, labels = load_samples(root)
    probabilities, fold_of = out_of_fold_probabilities(samples, labels, config, folds, out / "folds")
    rows = [{"path": os.path.relpath(s.path, root), "label": s.label, "fold": int(fold),
             **dict(zip(labels, np.round(p.astype(float), 5).tolist()))}
            for s, fold, p in zip(samples, fold_of, probabilities)]
    _write_csv(out / "out_of_fold.csv", rows, ["path", "label", "fold", *labels])
    suspects = find_suspects(samples, labels, probabilities, root)
    _write_csv(out / "suspects.csv", suspects, ["path", "given_label", "suggested_label", "self_confidence"])
    captions = [f"{Path(s['path']).name}\ngiven: {s['given_label']}\nsuggested: {s['suggested_label']}\n"
                f"self-confidence {s['self_confidence']:.2f}" for s in suspects]
    plot_gallery(
        [(root / s["path"], caption) for s, caption in zip(suspects, captions)],
        out / "suspects.png",
        f"Suspect labels: {len(suspects)} of {len(samples)} photos ({folds}-fold out-of-fold, cleanlab)",
    )
    write_labels_csv(without(samples, root, [s["path"] for s in suspects]), out / "cleaned")
    return suspects


def drop_reviewed(root: Path | str, suspects_csv: Path | str, out: Path | str) -> str:
    """Write ``out/labels.csv``: the dataset at ``root`` without the photos ``suspects_csv`` still lists
    (its rows left after a review deleted those whose label is right).

    Returns:
        a one-line summary: the file written, the photos kept and dropped.

    Raises:
        FileNotFoundError: no such CSV or dataset.
        ValueError: the CSV has no ``path`` column, or lists a path that is not in the dataset.
    """
    samples, _ = load_samples(root)
    with open(suspects_csv, newline="") as handle:
        reader = csv.DictReader(handle)
        if "path" not in (reader.fieldnames or []):
            raise ValueError(f"'{suspects_csv}' has no 'path' column (columns: {reader.fieldnames})")
        paths = [row["path"] for row in reader]
    kept = without(samples, Path(root).resolve(), paths)
    return f"{write_labels_csv(kept, out) / 'labels.csv'}: {len(kept)} photos ({len(paths)} dropped)"
