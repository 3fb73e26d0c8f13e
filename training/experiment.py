"""Measure training variants on a fixed group-aware K-fold split.

    python -m training.experiment --data DIR --variants configs/experiments.yaml --out runs/exp \\
        [--folds 5] [--seed 42] [--only NAME,NAME] [--views crops,scales,all] [--classes N]
        [--table docs/experiments.md]

The photos are split once into ``--folds`` group-aware, label-stratified folds
(:func:`training.data.dataset.group_folds`, seeded: every variant sees the same folds).
For each fold and each variant: the other folds are split again by group into
training and validation (the validation part picks the best epoch and stops
early), the model is trained and exported, and the exported SavedModel is
evaluated on the held-out fold without TTA, with the ``flip`` TTA views and
with the ``--views`` sets of :data:`inference.tta.VIEW_SETS`
(:func:`training.evaluation.predictions.evaluate`).

The variants file (YAML or JSON) holds ``base``, a config file path (relative
to the variants file) or a mapping of :class:`training.config.TrainConfig`
fields shared by all variants, and ``variants``, a mapping from variant name to
the fields it changes. The first variant is the reference of the paired
differences. A variant with ``method: linear-probe`` trains no network: it
fits logistic regression on the frozen backbone's features of all the other
folds (:mod:`training.fitting.probe`), the baseline fine-tuning has to beat.

Writes ``OUT/<variant>/fold<k>/`` (model, metrics), appends one JSON line per
run to ``OUT/results.jsonl`` (runs already there with the same settings are
skipped, so an interrupted experiment resumes; view sets they lack are
measured on their saved models) and writes the Markdown tables to
``--table`` (between ``<!-- experiment-results -->`` markers when the file
already has them, so the text around the table is kept).
"""

import argparse
import shlex
import sys
from collections.abc import Sequence

from inference.tta import VIEW_SETS
from training.backbones.catalog import WeightsUnavailableError
from training.experiments.variants import run_experiment


def without_only(argv: Sequence[str]) -> list[str]:
    """``argv`` less ``--only NAMES``: the table shows every recorded variant, and
    the command printed with it is the one that rebuilds all of it (runs
    already recorded are skipped)."""
    kept: list[str] = []
    skip = False
    for token in argv:
        if skip or token.startswith("--only="):
            skip = False
        elif token == "--only":
            skip = True
        else:
            kept.append(token)
    return kept


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point; exits with a one-line message on bad input."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m training.experiment", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="append", required=True, help="dataset root, repeatable")
    parser.add_argument("--variants", required=True, help="variants file, YAML or JSON (e.g. configs/experiments.yaml)")
    parser.add_argument("--out", required=True, help="output directory (models, results.jsonl)")
    parser.add_argument("--folds", type=int, default=5, help="group folds (default: 5)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the fold split (default: 42)")
    parser.add_argument("--only", type=lambda text: text.split(","), help="comma-separated variants to run")
    parser.add_argument("--table", help="Markdown file for the results (default: OUT/experiments.md)")
    parser.add_argument("--views", type=lambda text: text.split(","), default=[], metavar="SET,SET",
                        help=f"TTA view sets to measure besides flip, of: {', '.join(VIEW_SETS)} (runs already "
                             "trained are measured from their saved models)")
    parser.add_argument("--classes", type=int, metavar="N",
                        help="only the first N classes (in label order) and their photos: a quicker comparison "
                             "(default: all)")
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    command = "python -m training.experiment " + shlex.join(without_only(argv))
    try:
        run_experiment(args.data, args.variants, args.out, args.folds, args.seed, args.only, args.table, command,
                       args.views, args.classes)
    except (FileNotFoundError, ValueError, WeightsUnavailableError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
