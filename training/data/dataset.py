"""Dataset discovery, the group-aware split and the tf.data input pipeline."""

import csv
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils.class_weight import compute_class_weight

from inference.contract import model_input
from training.config import TrainConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


@dataclass(frozen=True)
class Sample:
    """One labelled photo.

    Attributes:
        path: absolute path of the image file.
        label: class name.
        group: near-duplicate group id; photos sharing it never straddle the
            train/validation split. Without group data, the file itself (every
            photo alone); with several roots, prefixed by the root's position.
    """

    path: str
    label: str
    group: str


def load_samples(
    roots: Path | str | Iterable[Path | str], class_names: Sequence[str] | None = None
) -> tuple[list[Sample], list[str]]:
    """Read one dataset root or merge several (e.g. external datasets).

    Each root is read in the first layout that fits:

    - Kaggle (sf-dl-car-classification): ``train.csv`` with columns
      ``Id,Category`` (optionally ``group``) and the files at
      ``train/<Category>/<Id>`` (``<Id>.jpg`` when the Id has no suffix).
      The label is ``class_names[Category]`` when ``class_names`` is given,
      else the Category index as a string (``"0"``, ``"1"``...), which keeps
      the Kaggle numbering for a submission file.
    - ``labels.csv`` (``path,label[,group]``, paths relative to the root).
    - ImageFolder: ``<root>/<label>/<file>``, one group per photo.

    Groups of different roots never mix (they are prefixed with the root's
    position when there are several), so a split holds out whole groups
    across all roots.

    Args:
        roots: a directory, or a list of directories.
        class_names: names of the Kaggle Category indices, in order; ignored
            by the other layouts.

    Returns:
        ``(samples, labels)``: ``list[Sample]`` and the class names, sorted
        (numerically when all are integers, so Kaggle indices keep their order).

    Raises:
        FileNotFoundError: a root is missing or a listed file is.
        ValueError: fewer than two classes over all roots, a Category outside
            ``class_names``, or a ``train.csv`` without ``Id,Category``.
    """
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    samples = []
    for position, root in enumerate(roots):
        prefix = f"{position}:" if len(roots) > 1 else ""
        samples += [Sample(s.path, s.label, prefix + s.group) for s in _read_root(Path(root).resolve(), class_names)]
    found = {sample.label for sample in samples}
    labels = sorted(found, key=int) if all(label.isdigit() for label in found) else sorted(found)
    if len(labels) < 2:
        where = ", ".join(str(root) for root in roots)
        raise ValueError(f"'{where}' holds {len(samples)} images in {len(labels)} class(es); at least 2 are needed.")
    return samples, labels


def _read_root(root: Path, class_names: Sequence[str] | None) -> list[Sample]:
    if not root.is_dir():
        raise FileNotFoundError(f"Dataset directory '{root}' does not exist.")
    if (root / "train.csv").is_file() and (root / "train").is_dir():
        samples = _from_kaggle(root, class_names)
        source = root / "train.csv"
    elif (root / "labels.csv").is_file():
        samples = _from_labels_csv(root)
        source = root / "labels.csv"
    else:
        return _from_folders(root)
    missing = [sample.path for sample in samples if not Path(sample.path).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} file(s) listed in {source} are missing, e.g. {missing[0]}")
    return samples


def _read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not set(required) <= set(rows[0]):
        raise ValueError(f"{path} needs the columns {','.join(required)}; it has {','.join(rows[0])}")
    return rows


def _from_labels_csv(root: Path) -> list[Sample]:
    rows = _read_csv(root / "labels.csv", ("path", "label"))
    return [Sample(str(root / row["path"]), row["label"], row.get("group") or row["path"]) for row in rows]


def _from_kaggle(root: Path, class_names: Sequence[str] | None) -> list[Sample]:
    samples = []
    for row in _read_csv(root / "train.csv", ("Id", "Category")):
        category = row["Category"]
        if class_names is not None and not (category.isdigit() and int(category) < len(class_names)):
            raise ValueError(f"{root / 'train.csv'}: Category '{category}' has no name among {len(class_names)} "
                             "class names")
        label = class_names[int(category)] if class_names is not None else category
        name = row["Id"] if Path(row["Id"]).suffix else f"{row['Id']}.jpg"  # Ids appear with and without .jpg
        path = root / "train" / category / name
        samples.append(Sample(str(path), label, row.get("group") or f"{category}/{row['Id']}"))
    return samples


def _from_folders(root: Path) -> list[Sample]:
    return [
        Sample(str(path), folder.name, str(path))
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]


def group_folds(samples: Sequence[Sample], n_folds: int, seed: int) -> Iterator[tuple[list[Sample], list[Sample]]]:
    """Group-aware, label-stratified K-fold split (scikit-learn
    ``StratifiedGroupKFold``, groups shuffled with ``seed``).

    Args:
        samples: ``list[Sample]``.
        n_folds: number of folds, >= 2.
        seed: shuffles the groups before folding; the same seed gives the same folds.

    Yields:
        ``(rest, held_out)`` per fold, two ``list[Sample]`` with no group in
        common; every sample is held out in exactly one fold.

    Raises:
        ValueError: fewer groups than folds.
    """
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    labels = [sample.label for sample in samples]
    groups = [sample.group for sample in samples]
    try:
        for rest, held_out in folds.split(np.zeros(len(samples)), labels, groups):
            yield [samples[i] for i in rest], [samples[i] for i in held_out]
    except ValueError as error:
        raise ValueError(f"cannot make {n_folds} group folds: {error}") from None


def split_by_group(samples: Sequence[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Hold out whole near-duplicate groups for validation, stratified by label:
    the first of ``round(1 / val_fraction)`` ``group_folds``.

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
    try:
        return next(group_folds(samples, round(1 / val_fraction), seed))
    except ValueError as error:
        raise ValueError(f"cannot hold out {val_fraction:g} of the groups of every class ({error})") from None


def class_weights(samples: Iterable[Sample], labels: Sequence[str], mode: str) -> dict[int, float] | None:
    """Per-class loss weights against class imbalance.

    ``balanced`` is scikit-learn's ``compute_class_weight("balanced")``:
    ``n_samples / (n_classes * count(class))``, so every class contributes
    equally to the loss on average.

    Args:
        samples: the training ``list[Sample]``.
        labels: class names; the weights are keyed by position here.
        mode: ``none`` or ``balanced``.

    Returns:
        ``{class index: weight}`` for Keras ``fit(class_weight=...)``, or
        ``None`` for ``none``.

    Raises:
        ValueError: a class of ``labels`` has no training sample.
    """
    if mode == "none":
        return None
    index = {label: i for i, label in enumerate(labels)}
    targets = np.array([index[sample.label] for sample in samples])
    absent = [labels[i] for i in range(len(labels)) if i not in set(targets)]
    if absent:
        raise ValueError(f"no training photo of class(es) {absent}: cannot weight them")
    weights = compute_class_weight("balanced", classes=np.arange(len(labels)), y=targets)
    return {i: float(weight) for i, weight in enumerate(weights)}


def load_image(path: Path | str, image_size: int) -> np.ndarray:
    """A file as the model's input, exactly as the service turns an upload into it
    (``inference.contract.model_input``).

    Returns:
        ``uint8`` array ``(image_size, image_size, 3)``.

    Raises:
        inference.images.ImageDecodeError: the file is no usable image.
    """
    return model_input(Path(path).read_bytes(), (image_size, image_size))


def decoded_bytes(photos: int, image_size: int) -> int:
    """Bytes that ``photos`` decoded photos take in ``make_dataset``'s cache: ``uint8`` RGB at ``image_size``."""
    return photos * image_size * image_size * 3


def cache_file(samples: Sequence[Sample], image_size: int, budget: int, folder: Path | str) -> str:
    """Where ``make_dataset`` keeps ``samples`` decoded: ``""`` (in memory) while they take at most
    ``budget`` bytes (``decoded_bytes``), else a file prefix in ``folder`` (tf.data's file cache),
    named by the photos and the size: datasets of the same photos in the same order share it (the
    first full pass writes it, later ones read it), others never do."""
    if decoded_bytes(len(samples), image_size) <= budget:
        return ""
    photos = hashlib.sha256("\n".join(sample.path for sample in samples).encode()).hexdigest()[:16]
    return str(Path(folder) / f"decoded-{photos}-{image_size}px")


def make_dataset(
    samples: Sequence[Sample],
    labels: Sequence[str],
    image_size: int,
    batch_size: int,
    augment: Callable[[np.ndarray], np.ndarray] | None = None,
    shuffle_seed: int | None = None,
    cache: str = "",
) -> tf.data.Dataset:
    """A batched ``tf.data.Dataset`` of ``(pixels, one_hot)``.

    Images are decoded once in parallel and cached at ``image_size``, in
    memory or in a file (``cache``: ``cache_file``; the same pixels either
    way); augmentation (albumentations, in a ``tf.numpy_function``)
    runs per epoch, one image after the other so that its seeded random
    generator gives every image the same change on every run (parallel calls
    would draw in a different order each time); batches are prefetched.

    Args:
        samples: ``list[Sample]``.
        labels: class names; a sample's class index is its position here.
        image_size: square side in pixels.
        batch_size: images per batch.
        augment: ``uint8`` image -> ``uint8`` image callable, or ``None``.
        shuffle_seed: shuffle every epoch with this seed; ``None`` keeps order.
        cache: ``""``: the decoded photos stay in memory; else the prefix of tf.data's cache files
            (written by the first full pass, read by the next ones).

    Returns:
        dataset of ``float32 (batch, image_size, image_size, 3)`` pixels in
        ``[0, 255]`` and ``float32 (batch, len(labels))`` one-hot targets.
    """
    index = {label: i for i, label in enumerate(labels)}
    paths = [sample.path for sample in samples]
    targets = [index[sample.label] for sample in samples]
    shape = (image_size, image_size, 3)

    def decode(path: tf.Tensor) -> tf.Tensor:
        pixels = tf.numpy_function(lambda p: load_image(p.decode(), image_size), [path], tf.uint8)
        return tf.ensure_shape(pixels, shape)

    dataset = tf.data.Dataset.from_tensor_slices((paths, targets))
    dataset = dataset.map(lambda p, y: (decode(p), y), num_parallel_calls=tf.data.AUTOTUNE).cache(cache)
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(samples), seed=shuffle_seed, reshuffle_each_iteration=True)
    if augment is not None:
        def augmented(pixels: tf.Tensor, target: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return tf.ensure_shape(tf.numpy_function(augment, [pixels], tf.uint8), shape), target

        dataset = dataset.map(augmented)
    dataset = dataset.batch(batch_size).map(
        lambda x, y: (tf.cast(x, tf.float32), tf.one_hot(y, len(labels))), num_parallel_calls=tf.data.AUTOTUNE
    )
    options = tf.data.Options()
    # Under MultiWorkerMirroredStrategy each worker takes every n-th batch
    # (there are no files to shard by).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def model_split(
    model_dir: Path | str, data: Path | str | Iterable[Path | str]
) -> tuple[list[Sample], list[Sample]]:
    """The ``(train, validation)`` samples of ``data`` as split for the model in ``model_dir``,
    re-created from its ``training_config.json`` (validation share and seed): the photos it
    was selected and calibrated on, and those it never trained on.

    Raises:
        FileNotFoundError: no ``training_config.json`` in ``model_dir`` or no dataset.
    """
    config = TrainConfig.from_dict(json.loads((Path(model_dir) / "training_config.json").read_text()))
    samples, _ = load_samples(data)
    return split_by_group(samples, config.val_fraction, config.seed)
