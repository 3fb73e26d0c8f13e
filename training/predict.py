"""Write a Kaggle submission (``Id,Category``) for a folder of photos.

    python -m training.predict --model DIR [--model DIR2 ...] --images DIR --out submission.csv
        [--sample-submission FILE] [--tta | --no-tta] [--tta-views SET] [--skip-unreadable]

``Id`` is the file name, ``Category`` the index of the predicted class in the
model's label order (for the sf-dl-car-classification competition, whose
classes are folders ``0`` to ``9``, index and class name coincide). Several
``--model`` are an ensemble (probabilities averaged, same labels required).
With ``--sample-submission`` the rows follow that file's ``Id`` order and only
its Ids are predicted. An unreadable image stops the run with its name unless
``--skip-unreadable`` leaves it out (its row is then missing: Kaggle rejects a
submission without every Id).
"""

import argparse
import sys
from collections.abc import Sequence

from inference.loading import load_predictor
from inference.model_folder import ModelNotFoundError
from inference.tta import VIEW_SETS, parse_views
from training.evaluation.submission import predict_categories, submission_ids, write_submission


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point; exits with status 1 and a one-line message on bad input."""
    parser = argparse.ArgumentParser(prog="python -m training.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True,
                        help="SavedModel directory; repeat for an ensemble (probabilities averaged)")
    parser.add_argument("--images", required=True, help="folder of photos to classify")
    parser.add_argument("--out", required=True, help="submission CSV to write")
    parser.add_argument("--sample-submission", help="CSV whose Id column gives the rows and their order")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                        help="average over TTA views (default: on)")
    parser.add_argument("--tta-views", default="flip", metavar="SET",
                        help=f"views with --tta: one of {', '.join(VIEW_SETS)} or view names joined by commas; "
                             "default flip")
    parser.add_argument("--skip-unreadable", action="store_true",
                        help="leave unreadable images out (listed on stderr) instead of stopping")
    args = parser.parse_args(argv)
    try:
        views = parse_views(args.tta_views) if args.tta else VIEW_SETS["none"]
        ids = submission_ids(args.images, args.sample_submission)
        predictor = load_predictor(args.model, "tensorflow")
        categories, skipped = predict_categories(predictor, args.images, ids, views, args.skip_unreadable)
    except (FileNotFoundError, ModelNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    write_submission(args.out, categories)
    for reason in skipped:
        print(f"skipped {reason}", file=sys.stderr)
    print(f"{len(categories)} rows written to {args.out} (TTA views: {', '.join(views)}; "
          f"labels: {', '.join(f'{i}={label}' for i, label in enumerate(predictor.labels))})")


if __name__ == "__main__":
    main()
