"""Suspect labels: training photos whose given label the model, out of fold,
strongly disagrees with.

    python -m training.suspects --data DIR --out DIR [--folds 5] [any training.train flag ...]
    python -m training.suspects --data DIR --drop SUSPECTS.csv --out DIR

The photos are split into ``--folds`` folds by near-duplicate group
(scikit-learn ``StratifiedGroupKFold``, seeded with the training seed). For
every fold a model is trained with :func:`training.fitting.run.train` on the other
folds (which hold out their own validation split for checkpointing) and
predicts the held-out fold, so every photo gets probabilities from a model
that never saw it or its near-duplicates. cleanlab's ``find_label_issues``
(confident learning, Northcutt et al. 2021, "Confident Learning: Estimating
Uncertainty in Dataset Labels") flags the suspects from these out-of-fold
probabilities. A fast setting: ``--stage head:3:1e-3:0`` (head only).

Writes to ``--out``: ``suspects.csv`` (``path`` relative to the data root as
in ``labels.csv``, ``given_label``, ``suggested_label``, ``self_confidence``:
the out-of-fold probability of the given label; worst first),
``suspects.png`` (gallery), ``out_of_fold.csv`` (every photo's fold and
probabilities), ``cleaned/labels.csv`` (the dataset without the suspects:
train on it with ``--data OUT/cleaned``) and ``folds/`` (the fold models, with
their training reports).

``--drop``: after reviewing, delete from ``suspects.csv`` the rows of photos
whose label is right, then write ``OUT/labels.csv``, the dataset without the
rows left (no training); ``--data OUT`` then trains on it.
"""

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

from training.backbones.catalog import WeightsUnavailableError
from training.config import parse_args
from training.data.dataset import load_samples
from training.evaluation.label_issues import run, without, write_labels_csv


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point; exits with status 1 and a one-line message on bad input."""
    parser = argparse.ArgumentParser(
        prog="python -m training.suspects", description=__doc__.split("\n\n")[0],
        epilog="Other flags go to training.train for the fold models (e.g. --backbone, --weights, --stage).",
    )
    parser.add_argument("--data", required=True, help="dataset root (ImageFolder, optional labels.csv)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--folds", type=int, default=5, help="out-of-fold folds, by group; default 5")
    parser.add_argument("--drop", metavar="SUSPECTS_CSV",
                        help="no training: write OUT/labels.csv, the dataset without the paths of this CSV")
    args, training_flags = parser.parse_known_args(argv)
    try:
        if args.drop:
            samples, _ = load_samples(args.data)
            with open(args.drop, newline="") as handle:
                reader = csv.DictReader(handle)
                if "path" not in (reader.fieldnames or []):
                    raise ValueError(f"'{args.drop}' has no 'path' column (columns: {reader.fieldnames})")
                paths = [row["path"] for row in reader]
            kept = without(samples, Path(args.data).resolve(), paths)
            print(f"{write_labels_csv(kept, args.out) / 'labels.csv'}: {len(kept)} photos ({len(paths)} dropped)")
            return
        config = parse_args(["--data", args.data, "--out", args.out, *training_flags])
        suspects = run(config, args.folds, args.out)
    except (FileNotFoundError, ValueError, WeightsUnavailableError) as error:
        sys.exit(f"error: {error}")
    print(f"\n{len(suspects)} suspect label(s): {Path(args.out) / 'suspects.csv'}, {Path(args.out) / 'suspects.png'}; "
          f"dataset without them: {Path(args.out) / 'cleaned'}")


if __name__ == "__main__":
    main()
