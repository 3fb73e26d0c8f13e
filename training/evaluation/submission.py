"""A Kaggle submission: the predicted class of every photo of a folder, as Id,Category rows."""

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from inference.predictor import Predictor
from inference.tta import DEFAULT_VIEWS
from training.data.dataset import IMAGE_SUFFIXES
from training.evaluation.predictions import tta_outputs


def submission_ids(images_dir: Path | str, sample_submission: Path | str | None = None) -> list[str]:
    """The file names to predict, in submission order.

    Args:
        images_dir: folder of photos (not searched recursively).
        sample_submission: optional CSV with an ``Id`` column of file names.

    Returns:
        ``list[str]``: the sample's Ids in its order, else the image files of
        ``images_dir`` (by suffix, ``training.data.dataset.IMAGE_SUFFIXES``)
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


def predict_categories(
    predictor: Predictor,
    images_dir: Path | str,
    ids: Iterable[str],
    views: Sequence[str] = DEFAULT_VIEWS,
    skip_unreadable: bool = False,
) -> tuple[dict[str, int], list[str]]:
    """The predicted class index of every image, averaged over TTA ``views``.

    Args:
        predictor: an ``inference.predictor.Predictor``.
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
    skipped: list[str] = []
    paths = [Path(images_dir) / name for name in ids]
    outputs = tta_outputs(predictor, paths, views, skipped if skip_unreadable else None)
    categories = {path.name: int(np.argmax(probabilities.mean(axis=0))) for path, _, (_, probabilities, _) in outputs}
    return categories, skipped


def write_submission(path: Path | str, categories: Mapping[str, int]) -> None:
    """Write ``Id,Category`` rows, in the order of ``categories``, to ``path``
    (parent folders created)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Id", "Category"])
        writer.writerows(categories.items())
