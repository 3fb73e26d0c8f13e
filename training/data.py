"""Dataset discovery, the group-aware split and the tf.data input pipeline."""

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from sklearn.model_selection import StratifiedGroupKFold

from inference.images import decode_image, resize

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


@dataclass(frozen=True)
class Sample:
    """One labelled photo.

    Attributes:
        path: absolute path of the image file.
        label: class name.
        group: near-duplicate group id; photos sharing it never straddle the
            train/validation split. Defaults to the path (every photo alone).
    """

    path: str
    label: str
    group: str


def load_samples(root):
    """Read a dataset: ``labels.csv`` (``path,label[,group]``) when present,
    else the ImageFolder layout ``<root>/<label>/<file>``.

    Args:
        root: dataset directory.

    Returns:
        ``(samples, labels)``: ``list[Sample]`` and the sorted class names.

    Raises:
        FileNotFoundError: ``root`` is missing or a listed file is.
        ValueError: fewer than two classes or no images.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"Dataset directory '{root}' does not exist.")
    csv_path = root / "labels.csv"
    samples = _from_csv(root, csv_path) if csv_path.is_file() else _from_folders(root)
    labels = sorted({sample.label for sample in samples})
    if len(labels) < 2:
        raise ValueError(f"'{root}' holds {len(samples)} images in {len(labels)} class(es); at least 2 are needed.")
    return samples, labels


def _from_csv(root, csv_path):
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    samples = [Sample(str(root / row["path"]), row["label"], row.get("group") or row["path"]) for row in rows]
    missing = [sample.path for sample in samples if not Path(sample.path).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} file(s) listed in {csv_path} are missing, e.g. {missing[0]}")
    return samples


def _from_folders(root):
    return [
        Sample(str(path), folder.name, str(path))
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]


def split_by_group(samples, val_fraction, seed):
    """Hold out whole near-duplicate groups for validation, stratified by label.

    Uses scikit-learn's ``StratifiedGroupKFold`` with ``round(1 / val_fraction)``
    folds and takes the first fold as validation.

    Args:
        samples: ``list[Sample]``.
        val_fraction: share of samples to hold out, in ``(0, 0.5]``.
        seed: shuffles the groups before folding.

    Returns:
        ``(train, validation)``, two ``list[Sample]`` with no group in common.

    Raises:
        ValueError: ``val_fraction`` out of range, or fewer groups than folds.
    """
    if not 0 < val_fraction <= 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5], got {val_fraction}")
    folds = StratifiedGroupKFold(n_splits=round(1 / val_fraction), shuffle=True, random_state=seed)
    labels = [sample.label for sample in samples]
    groups = [sample.group for sample in samples]
    try:
        train_index, val_index = next(folds.split(np.zeros(len(samples)), labels, groups))
    except ValueError as error:
        raise ValueError(f"cannot hold out {val_fraction:g} of the groups of every class: {error}") from None
    return [samples[i] for i in train_index], [samples[i] for i in val_index]


def load_image(path, image_size):
    """Decode and resize a file exactly as the service does an upload
    (:meth:`inference.classifier.Classifier.decode`).

    Returns:
        ``uint8`` array ``(image_size, image_size, 3)``.
    """
    size = (image_size, image_size)
    return resize(decode_image(Path(path).read_bytes(), min_size=size), size)


def make_dataset(samples, labels, image_size, batch_size, augment=None, shuffle_seed=None):
    """A batched ``tf.data.Dataset`` of ``(pixels, one_hot)``.

    Images are decoded once in parallel and cached in memory at
    ``image_size``; augmentation (albumentations, in a ``tf.numpy_function``)
    runs per epoch on both cores; batches are prefetched.

    Args:
        samples: ``list[Sample]``.
        labels: class names; a sample's class index is its position here.
        image_size: square side in pixels.
        batch_size: images per batch.
        augment: ``uint8`` image -> ``uint8`` image callable, or ``None``.
        shuffle_seed: shuffle every epoch with this seed; ``None`` keeps order.

    Returns:
        dataset of ``float32 (batch, image_size, image_size, 3)`` pixels in
        ``[0, 255]`` and ``float32 (batch, len(labels))`` one-hot targets.
    """
    index = {label: i for i, label in enumerate(labels)}
    paths = [sample.path for sample in samples]
    targets = [index[sample.label] for sample in samples]
    shape = (image_size, image_size, 3)

    def decode(path):
        pixels = tf.numpy_function(lambda p: load_image(p.decode(), image_size), [path], tf.uint8)
        return tf.ensure_shape(pixels, shape)

    dataset = tf.data.Dataset.from_tensor_slices((paths, targets))
    dataset = dataset.map(lambda p, y: (decode(p), y), num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(samples), seed=shuffle_seed, reshuffle_each_iteration=True)
    if augment is not None:
        augmented = lambda x: tf.ensure_shape(tf.numpy_function(augment, [x], tf.uint8), shape)
        dataset = dataset.map(lambda x, y: (augmented(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size).map(
        lambda x, y: (tf.cast(x, tf.float32), tf.one_hot(y, len(labels))), num_parallel_calls=tf.data.AUTOTUNE
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
