"""Evaluate exported SavedModels (one, or an ensemble) on labelled photos,
without and with TTA.

    python -m training.evaluate --model DIR [--model DIR2 ...] --data DIR
        [--split all|validation] [--tta-views SET ...] [--out metrics.json] [--report DIR]

Prints a Markdown table of the key figures and writes all of them as JSON to
``--out`` (default ``runs/evaluation.json``): accuracy, top-2 accuracy,
macro-F1, expected calibration error, per-class precision and recall, the most
confident mistakes and the latency per image, for no TTA and for each TTA view
set. Paths in it are relative to the current directory.
``--split validation`` re-creates the group-aware validation split of the
first model's ``training_config.json``; ``all`` (default) uses every photo
(for a held-out dataset). ``--report DIR`` adds PNG plots and ``report.md``.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from inference.model_folder import ModelNotFoundError
from inference.tta import VIEW_SETS, parse_views
from training.data.dataset import load_samples, model_split
from training.evaluation.predictions import evaluate, shown_path
from training.evaluation.reports import summary_table, write_evaluation_report

DEFAULT_VIEW_SETS = ("flip", "crops", "scales", "all")


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point; exits with status 1 and a one-line message on bad input."""
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True,
                        help="SavedModel directory; repeat for an ensemble (probabilities averaged)")
    parser.add_argument("--data", required=True, help="dataset root (ImageFolder, optional labels.csv)")
    parser.add_argument("--split", choices=("all", "validation"), default="all")
    parser.add_argument("--tta-views", action="append", metavar="SET",
                        help=f"a TTA view set, repeatable: one of {', '.join(VIEW_SETS)} or view names joined by "
                             f"commas (e.g. original,hflip,zoom_out); default: {' '.join(DEFAULT_VIEW_SETS)}")
    parser.add_argument("--out", default="runs/evaluation.json", help="where all figures go, as JSON "
                                                                     "(default: %(default)s)")
    parser.add_argument("--report", metavar="DIR", help="write PNG plots and report.md to DIR")
    args = parser.parse_args(argv)
    try:
        view_sets = {text: parse_views(text) for text in args.tta_views or DEFAULT_VIEW_SETS}
        samples = model_split(args.model[0], args.data)[1] if args.split == "validation" else load_samples(args.data)[0]
        evaluation = evaluate(args.model, samples, view_sets)
        evaluation.metrics.update(data=shown_path(args.data), split=args.split)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(evaluation.metrics, indent=2) + "\n")
        if args.report:
            print(f"report: {write_evaluation_report(evaluation, args.report)}")
        print(summary_table(evaluation.metrics))
        print(f"All figures (per class, mistakes): {args.out}")
    except (FileNotFoundError, ModelNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
