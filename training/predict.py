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
import csv
import sys
from pathlib import Path

import keras
import numpy as np

from inference.classifier import ModelNotFoundError
from inference.ensemble import Ensemble
from inference.images import ImageDecodeError
from inference.tta import DEFAULT_VIEWS, VIEW_SETS, parse_views, predict_views
from training.data import IMAGE_SUFFIXES
from training.evaluate import read_image
from training.report import progress_verbosity


def submission_ids(images_dir, sample_submission=None):
    """The file names to predict, in submission order.

    Args:
        images_dir: folder of photos (not searched recursively).
        sample_submission: optional CSV with an ``Id`` column of file names.

    Returns:
        ``list[str]``: the sample's Ids in its order, else the image files of
        ``images_dir`` (by suffix, :data:`training.data.IMAGE_SUFFIXES`)
        sorted by name.

    Raises:
        FileNotFoundError: a missing folder or CSV, or an Id with no file.
        ValueError: no ``Id`` column, or no images.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"Image folder '{images_dir}' does not exist.")
    if sample_submission is None:
        ids = sorted(path.name for path in images_dir.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    else:
        with open(sample_submission, newline="") as handle:
            reader = csv.DictReader(handle)
            if "Id" not in (reader.fieldnames or []):
                raise ValueError(f"'{sample_submission}' has no 'Id' column (columns: {reader.fieldnames})")
            ids = [row["Id"] for row in reader]
        missing = [name for name in ids if not (images_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} Id(s) of '{sample_submission}' have no file in '{images_dir}', "
                                    f"e.g. '{missing[0]}'")
    if not ids:
        raise ValueError(f"no images to predict in '{images_dir}'")
    return ids


def predict_categories(predictor, images_dir, ids, views=DEFAULT_VIEWS, skip_unreadable=False):
    """The predicted class index of every image, averaged over TTA ``views``.

    Args:
        predictor: an :class:`inference.ensemble.Ensemble`.
        images_dir: folder holding the files ``ids``.
        ids: file names.
        views: TTA view names; ``("original",)`` for none.
        skip_unreadable: leave unreadable images out instead of failing.

    Returns:
        ``(categories, skipped)``: ``{id: int class index}`` and the
        ``list[str]`` of skipped ``"id: reason"``.

    Raises:
        inference.images.ImageDecodeError: an unreadable image, unless
            ``skip_unreadable``; the message names the file.
    """
    categories, skipped = {}, []
    progress = keras.utils.Progbar(len(ids), unit_name="image", verbose=progress_verbosity())
    for name in ids:
        try:
            image = read_image(predictor, Path(images_dir) / name)
        except ImageDecodeError as error:
            if not skip_unreadable:
                raise
            skipped.append(str(error))
        else:
            categories[name] = int(np.argmax(predict_views(predictor, image, views)[1]))
        progress.add(1)
    return categories, skipped


def write_submission(path, categories):
    """Write ``Id,Category`` rows, in the order of ``categories``, to ``path``
    (parent folders created)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Id", "Category"])
        writer.writerows(categories.items())


def main(argv=None):
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
        predictor = Ensemble(args.model)
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
