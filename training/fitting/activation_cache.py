"""Partial fine-tuning on cached activations: the frozen lower stages run once per photo and view.

When only the top block groups of the backbone train, everything below them
computes the same activations every epoch. With ``cache_cut: N`` the backbone
is cut after its block group ``N`` (EfficientNet's and EfficientNet-Lite's
``block{N}{a,b,...}``: whole blocks only, as for freezing): the part below (the
"lower" model, preprocessing included) runs once over every training photo in
each of ``cached_views`` (TTA views, ``inference.tta``) and over every
validation photo as it is, and its output is kept as ``float16`` in a file;
the stages then train the part above the cut and the head (the "upper" model,
which shares its layers, so its weights with the full model that is
exported) on those activations. Augmentation becomes which cached view a
photo is shown in each epoch (drawn anew every epoch); albumentations'
random changes are not applied.

The cache file is named by everything that makes its content (backbone and
weights, input size, cut, views, the photos and their sizes and times):
another setting never reads it, the same one reuses it across epochs, runs and
after an interruption (its writing goes on where it stopped). It is read into
memory when it fits the memory budget, else batch by batch from the disk.
"""

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from inference.tta import tta_batch
from training.backbones.efficientnet_lite import cache_dir
from training.config import TrainConfig
from training.data.dataset import Sample, load_image
from training.memory import feature_batch_size
from training.model import block_of

CACHE_DTYPE = np.float16


def cut_layer(backbone: keras.Model, group: int) -> str:
    """The name of the last layer of block group ``group`` (``block{group}*``) of ``backbone``.

    Raises:
        ValueError: the backbone has no such group, or no layer above it (the cut must leave
            something to train), or its layers are not named by EfficientNet's blocks.
    """
    groups = [block_of(layer.name)[len("block"):-1] if block_of(layer.name).startswith("block") else ""
              for layer in backbone.layers]
    known = sorted({int(g) for g in groups if g.isdigit()})
    if group not in known[:-1]:
        raise ValueError(f"cache_cut {group}: {backbone.name} has block groups {known or 'none'}; the cut must be one "
                         "of them but the last (cached fine-tuning needs EfficientNet's block names)")
    last = max(index for index, g in enumerate(groups) if g == str(group))
    return backbone.layers[last].name


@dataclass
class SplitClassifier:
    """The classifier cut in two at a block-group boundary of its backbone.

    Attributes:
        lower: float32 RGB pixels ``[0, 255]`` ``(batch, size, size, 3)`` -> activations
            ``(batch, h, w, c)`` at the cut (preprocessing and the frozen lower blocks).
        upper: activations ``(batch, h, w, c)`` -> logits ``(batch, num_classes)``, float32.
            It shares the backbone's layers with the full classifier; its head is a copy
            (``copy_head_back``), so that the head's named layers (``head_pool``...) give
            this model's tensors to the linear probe.
        upper_backbone: the backbone's part above the cut, for ``training.model.set_trainable``.
        heads: ``(full classifier's head layer, upper's copy)`` pairs.
    """

    lower: keras.Model
    upper: keras.Model
    upper_backbone: keras.Model
    heads: list[tuple[keras.Layer, keras.Layer]]

    def copy_head_back(self) -> None:
        """Set the full classifier's head to the upper model's (after fitting, before export)."""
        for original, copy in self.heads:
            original.set_weights(copy.get_weights())


def split_classifier(model: keras.Model, backbone: keras.Model, group: int) -> SplitClassifier:
    """Cut ``model`` (``training.model.build_classifier``, one scale: a chain of single-input layers
    before and after its backbone) after block group ``group``.

    ``upper(lower(pixels))`` computes ``model(pixels)`` (the same layers, the same weights).

    Raises:
        ValueError: a bad ``group`` (``cut_layer``).
    """
    cut = backbone.get_layer(cut_layer(backbone, group)).output
    lower_backbone = keras.Model(backbone.input, cut, name="lower_backbone")
    upper_backbone = keras.Model(cut, backbone.output, name="upper_backbone")
    pixels = keras.Input(model.input.shape[1:], name="pixels")
    after = model.layers.index(backbone)
    lower = keras.Model(pixels, lower_backbone(_chain(model.layers[1:after], pixels)), name="lower")
    activations = keras.Input(cut.shape[1:], name="activations")
    # Weightless Lambdas are shared; every other head layer is copied (from its config, then its weights).
    heads = [(layer, layer if isinstance(layer, keras.layers.Lambda) else type(layer).from_config(layer.get_config()))
             for layer in model.layers[after + 1:]]
    upper = keras.Model(activations, _chain([copy for _, copy in heads], upper_backbone(activations)), name="upper")
    for original, copy in heads:
        copy.set_weights(original.get_weights())
    return SplitClassifier(lower, upper, upper_backbone, heads)


def _chain(layers: Sequence[keras.Layer], x: keras.KerasTensor) -> keras.KerasTensor:
    """Apply single-input ``layers`` in turn (the classifier's preprocessing before its backbone, its head after)."""
    for layer in layers:
        x = layer(x)
    return x


def cache_key(config_key: dict[str, object], paths: Sequence[str]) -> str:
    """A name for the cache of ``paths`` under the settings ``config_key``: the first 20 hex digits of the
    SHA-256 of both, each photo counted with its size and modification time (a changed photo is a new cache)."""
    digest = hashlib.sha256(json.dumps(config_key, sort_keys=True).encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


class ActivationCache:
    """The activations of ``lower`` for every photo of ``paths`` in each of ``views``, in one file.

    The file ``<folder>/<key>.f16`` holds ``float16 (len(paths), len(views), h, w, c)`` in C
    order; ``<key>.json`` records the shape and how many photos are written, so that an
    interrupted build goes on where it stopped.

    Args:
        folder: where the cache lives (made if missing).
        key: its name (``cache_key``).
        paths: the photos, in row order.
        views: TTA view names (``inference.tta.VIEWS``), in column order.
        image_size: the side the photos are decoded to, in pixels, as the service does.
    """

    def __init__(self, folder: Path | str, key: str, paths: Sequence[str], views: Sequence[str],
                 image_size: int) -> None:
        self.folder, self.paths, self.views, self.image_size = Path(folder), list(paths), tuple(views), image_size
        self.data_path, self.meta_path = self.folder / f"{key}.f16", self.folder / f"{key}.json"
        self.array: np.ndarray | None = None

    def written(self) -> int:
        """How many photos' rows the file holds (0 when there is no cache yet)."""
        return json.loads(self.meta_path.read_text())["written"] if self.meta_path.is_file() else 0

    @property
    def shape(self) -> tuple[int, ...]:
        """``(photos, views, h, w, c)``; only once ``build`` has run."""
        return tuple(json.loads(self.meta_path.read_text())["shape"])

    @property
    def row_bytes(self) -> int:
        """Bytes of one photo's row (all its views)."""
        return int(np.prod(self.shape[1:])) * np.dtype(CACHE_DTYPE).itemsize

    def build(self, lower: keras.Model, batch_size: int, log: Callable[[str], None] = print) -> None:
        """Compute and write the rows not written yet, ``batch_size`` views per pass of ``lower``
        (rounded down to whole photos, at least one), printing progress about every 10%.

        Raises:
            inference.images.ImageDecodeError: a photo is no usable image.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        done, total = self.written(), len(self.paths)
        if done == total and self.data_path.is_file():
            log(f"Activation cache: {self.data_path} ({self.size_text()}), reused")
            return
        photos_per_pass = max(1, batch_size // len(self.views))
        started, step = time.perf_counter(), max(1, total // 10)
        with open(self.data_path, "r+b" if done else "wb") as handle:
            handle.truncate(done * self.row_bytes if done else 0)
            handle.seek(0, os.SEEK_END)
            for start in range(done, total, photos_per_pass):
                chunk = self.paths[start:start + photos_per_pass]
                pixels = np.concatenate([tta_batch(load_image(path, self.image_size), self.views) for path in chunk])
                maps = np.asarray(lower.predict_on_batch(pixels.astype(np.float32)), CACHE_DTYPE)
                if not done and start == 0:
                    self._write_meta(0, (total, len(self.views), *maps.shape[1:]))
                handle.write(maps.tobytes())
                handle.flush()
                written = start + len(chunk)
                self._write_meta(written, self.shape)
                if written // step != start // step or written == total:
                    rate = (written - done) * len(self.views) / (time.perf_counter() - started)
                    log(f"Activation cache: {written}/{total} photos x {len(self.views)} views, {rate:.1f} views/s")
        log(f"Activation cache: {self.data_path} ({self.size_text()}) written")

    def _write_meta(self, written: int, shape: tuple[int, ...]) -> None:
        temporary = self.meta_path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"written": written, "shape": list(shape), "views": list(self.views),
                                         "image_size": self.image_size}))
        temporary.replace(self.meta_path)  # atomic: an interruption leaves the old count or the new one

    def size_text(self) -> str:
        """The cache's size, e.g. ``"1.0 GB, 5851 photos x 2 views of 28x28x112 float16"``."""
        photos, views, *activation = self.shape
        return (f"{photos * self.row_bytes / 1e9:.2f} GB, {photos} photos x {views} views of "
                f"{'x'.join(map(str, activation))} {np.dtype(CACHE_DTYPE).name}")

    def load(self, budget: int) -> bool:
        """Read the whole file into memory when it takes at most ``budget`` bytes; else rows are read
        from the disk as batches ask for them. Returns whether it is in memory."""
        if len(self.paths) * self.row_bytes <= budget:
            self.array = np.fromfile(self.data_path, CACHE_DTYPE).reshape(self.shape)
        return self.array is not None

    def rows(self, photos: np.ndarray, views: np.ndarray) -> np.ndarray:
        """The activations of photo ``photos[i]`` in view ``views[i]``: ``float16 (len(photos), h, w, c)``."""
        if self.array is not None:
            return self.array[photos, views]
        # The shape is read from the metadata file once per batch, not once per row.
        shape, row_bytes = self.shape, self.row_bytes
        view_bytes = row_bytes // len(self.views)
        with open(self.data_path, "rb") as handle:
            return np.stack([np.frombuffer(os.pread(handle.fileno(), view_bytes, int(p) * row_bytes
                                                    + int(v) * view_bytes), CACHE_DTYPE).reshape(shape[2:])
                             for p, v in zip(photos, views)])


def cached_dataset(
    cache: ActivationCache,
    targets: Sequence[int],
    num_classes: int,
    batch_size: int,
    shuffle_seed: int | None = None,
) -> tf.data.Dataset:
    """Batches of ``(activations, one_hot)`` from ``cache``.

    With ``shuffle_seed`` (training): photos shuffled every epoch and each shown in one of the
    cache's views drawn at random every epoch (seeded: the same run draws the same views);
    without: every photo in order, in the cache's first view.

    Returns:
        dataset of ``float32 (batch, h, w, c)`` activations and ``float32 (batch, num_classes)`` one-hot targets.
    """
    shape = cache.shape[2:]
    photos = tf.data.Dataset.range(len(cache.paths))
    if shuffle_seed is None:
        pairs = photos.map(lambda photo: (photo, tf.constant(0, tf.int64)))
    else:
        # Dataset.random restarts its stream each epoch while the shuffle's order changes: new view per photo.
        views = tf.data.Dataset.random(seed=shuffle_seed).map(lambda draw: draw % len(cache.views))
        pairs = tf.data.Dataset.zip(photos.shuffle(len(cache.paths), seed=shuffle_seed,
                                                   reshuffle_each_iteration=True), views)
    labels = tf.constant(np.asarray(targets, np.int64))

    def read(photo: tf.Tensor, view: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        maps = tf.numpy_function(lambda p, v: cache.rows(p, v).astype(np.float32), [photo, view], tf.float32)
        return tf.ensure_shape(maps, (None, *shape)), tf.one_hot(tf.gather(labels, photo), num_classes)

    return pairs.batch(batch_size).map(read).prefetch(tf.data.AUTOTUNE)


def build_caches(
    config: TrainConfig, lower: keras.Model, train_samples: Sequence[Sample], val_samples: Sequence[Sample],
    budget: int, log: Callable[[str], None] = print,
) -> tuple[ActivationCache, ActivationCache]:
    """The activation caches of a run: the training photos in each of ``config.cached_views``, the
    validation photos as they are; built (or reused) in ``config.activation_cache_dir``, batched to
    fit ``budget`` bytes of activations per pass, then read into memory while they fit ``budget``
    together (the validation cache first), else left on the disk.

    Returns:
        ``(train_cache, val_cache)``.

    Raises:
        inference.images.ImageDecodeError: a photo is no usable image.
    """
    folder = Path(config.activation_cache_dir) if config.activation_cache_dir else cache_dir() / "activations"
    size = config.export_image_size()
    settings = {"backbone": config.backbone, "weights": config.weights, "alpha": config.alpha,
                "image_size": size, "cut": config.cache_cut}
    if Path(config.weights).is_file():  # a weights file is named by its content's size and time too
        settings["weights_file"] = cache_key({}, [config.weights])
    caches = []
    for samples, views in ((val_samples, ["original"]), (train_samples, config.cached_views)):
        paths = [sample.path for sample in samples]
        cache = ActivationCache(folder, cache_key({**settings, "views": list(views)}, paths), paths, views, size)
        cache.build(lower, feature_batch_size(budget, [size]), log)
        in_memory = cache.load(budget)
        budget -= len(paths) * cache.row_bytes if in_memory else 0
        log(f"Activation cache of {len(paths)} photos: {'in memory' if in_memory else 'read from the disk'}")
        caches.append(cache)
    val_cache, train_cache = caches
    return train_cache, val_cache
