"""Cached partial fine-tuning (training/fitting/activation_cache.py): the cut, the cache, its datasets, a tiny run."""

import json
import os

import keras
import numpy as np
import pytest
from helpers import carclf, synthetic_dataset

from inference.tta import tta_batch
from training.config import TrainConfig
from training.data.dataset import load_image, load_samples
from training.fitting.activation_cache import (
    ActivationCache,
    cache_key,
    cached_dataset,
    cut_layer,
    split_classifier,
)
from training.model import build_classifier

SIZE = 64  # small photos keep the backbone quick; its block groups still stand


def tiny_classifier(**settings):
    config = TrainConfig(data=["unused"], out="unused", weights="none", image_size=SIZE, **{"stages": [], **settings})
    keras.utils.set_random_seed(0)
    return build_classifier(config, num_classes=3)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = synthetic_dataset(tmp_path_factory.mktemp("photos"), classes=("a", "b", "c"), per_class=3)
    samples, _ = load_samples(root)
    return [sample.path for sample in samples]


@pytest.mark.parametrize("pooling", ["average", "bilinear"])
def test_the_upper_part_on_the_lower_part_is_the_whole_classifier(pooling):
    model, backbone = tiny_classifier(pooling=pooling, bilinear_dim=8)
    split = split_classifier(model, backbone, 5)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    activations = split.lower.predict_on_batch(pixels)
    assert activations.shape == (2, SIZE // 16, SIZE // 16, 112)  # block group 5 of Lite0: stride 16, 112 channels
    np.testing.assert_allclose(split.upper.predict_on_batch(activations), model.predict_on_batch(pixels),
                               rtol=1e-5, atol=1e-5)


def test_training_the_upper_part_trains_the_exported_backbone_and_the_head_goes_back():
    model, backbone = tiny_classifier()
    split = split_classifier(model, backbone, 6)
    top = backbone.get_layer("top_conv")
    before = top.get_weights()[0].copy()
    split.upper_backbone.get_layer("top_conv").set_weights([before + 1])
    assert np.array_equal(top.get_weights()[0], before + 1)  # one layer, shared
    copy = split.upper.get_layer("logits")
    copy.set_weights([np.ones_like(w) for w in copy.get_weights()])
    assert not np.array_equal(model.get_layer("logits").get_weights()[0], copy.get_weights()[0])
    split.copy_head_back()
    assert np.array_equal(model.get_layer("logits").get_weights()[0], copy.get_weights()[0])


def test_the_cut_is_a_block_group_with_something_above_it():
    _, backbone = tiny_classifier()
    assert cut_layer(backbone, 5) == "block5c_add"
    assert cut_layer(backbone, 1) == "block1a_project_bn"
    for group in (0, 7, 9):
        with pytest.raises(ValueError, match="block groups"):
            cut_layer(backbone, group)


def test_cached_rows_give_the_uncached_logits(photos, tmp_path):
    model, backbone = tiny_classifier()
    split = split_classifier(model, backbone, 5)
    cache = ActivationCache(tmp_path, "key", photos, ["original", "hflip"], SIZE)
    cache.build(split.lower, batch_size=4, log=lambda _: None)
    assert cache.shape == (len(photos), 2, 4, 4, 112)
    assert cache.load(budget=0) is False  # read from the disk
    rows = cache.rows(np.arange(len(photos)), np.ones(len(photos), int))
    images = np.stack([tta_batch(load_image(path, SIZE), ["hflip"])[0] for path in photos]).astype(np.float32)
    expected = model.predict_on_batch(images)
    # float16 activations: the logits move by far less than the gaps between classes
    np.testing.assert_allclose(split.upper.predict_on_batch(rows.astype(np.float32)), expected, atol=2e-3)
    assert cache.load(budget=10**9) is True  # the same rows from memory
    assert np.array_equal(cache.rows(np.arange(len(photos)), np.ones(len(photos), int)), rows)


def test_an_interrupted_cache_goes_on_where_it_stopped(photos, tmp_path):
    model, backbone = tiny_classifier()
    lower = split_classifier(model, backbone, 4).lower

    class Interrupted:
        calls = 0

        def predict_on_batch(self, pixels):
            self.calls += 1
            if self.calls > 1:
                raise KeyboardInterrupt
            return lower.predict_on_batch(pixels)

    views = ["original", "crop_center"]
    broken = ActivationCache(tmp_path / "a", "key", photos, views, SIZE)
    with pytest.raises(KeyboardInterrupt):
        broken.build(Interrupted(), batch_size=4, log=lambda _: None)
    assert broken.written() == 2  # 4 views a pass: 2 photos
    messages = []
    broken.build(lower, batch_size=4, log=messages.append)
    whole = ActivationCache(tmp_path / "b", "key", photos, views, SIZE)
    whole.build(lower, batch_size=4, log=lambda _: None)
    assert broken.data_path.read_bytes() == whole.data_path.read_bytes()
    broken.build(lower, batch_size=4, log=messages.append)
    assert "reused" in messages[-1]


def test_the_cache_key_follows_settings_and_photos(photos):
    settings = {"backbone": "EfficientNetLite0", "image_size": 448, "cut": 5, "views": ["original", "hflip"]}
    key = cache_key(settings, photos)
    assert cache_key(dict(settings), list(photos)) == key
    for change in ({"cut": 4}, {"image_size": 380}, {"views": ["original"]}, {"backbone": "EfficientNetLite1"}):
        assert cache_key({**settings, **change}, photos) != key
    assert cache_key(settings, photos[:-1]) != key
    stat = os.stat(photos[0])
    os.utime(photos[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert cache_key(settings, photos) != key


def test_training_batches_draw_a_cached_view_per_photo_each_epoch_reproducibly(photos, tmp_path):
    # A "lower model" whose activations tell the view apart: the mean pixel of each half of the photo.
    lower = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.AveragePooling2D((SIZE, SIZE // 2))])
    cache = ActivationCache(tmp_path, "key", photos, ["original", "hflip"], SIZE)
    cache.build(lower, batch_size=8, log=lambda _: None)
    cache.load(budget=10**9)
    targets = list(range(len(photos)))

    def epochs(dataset, count=3):
        return [np.concatenate([x.numpy() for x, _ in dataset]) for _ in range(count)]

    def views_shown(epoch_batches, dataset):
        labels = np.concatenate([y.numpy().argmax(1) for _, y in dataset])
        return [int(np.allclose(row, cache.array[label, 1], atol=1e-2)) for row, label in zip(epoch_batches, labels)]

    train = cached_dataset(cache, targets, len(photos), 4, shuffle_seed=7)
    first, again = epochs(train), epochs(cached_dataset(cache, targets, len(photos), 4, shuffle_seed=7))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))  # the same seed, the same epochs
    assert not np.array_equal(first[0], first[1])
    labels = [np.concatenate([y.numpy().argmax(1) for _, y in train]) for _ in range(2)]
    assert sorted(labels[0]) == targets and not np.array_equal(labels[0], labels[1])  # each photo once, reshuffled
    shown = {tuple(views_shown(epoch, train)) for epoch in epochs(train, 4)}
    assert len(shown) > 1 and any(1 in views for views in shown) and any(0 in views for views in shown)
    validation = np.concatenate([x.numpy() for x, _ in cached_dataset(cache, targets, len(photos), 4)])
    np.testing.assert_array_equal(validation, cache.array[:, 0].astype(np.float32))  # in order, as they are


def test_a_tiny_cached_fine_tuning_run_exports_the_model_it_validated(tmp_path, capsys):
    data = synthetic_dataset(tmp_path / "data", classes=("a", "b", "c"), per_class=6)
    out, caches = tmp_path / "out", tmp_path / "caches"
    arguments = ["train", "--data", str(data), "--out", str(out), "--weights", "none", "--image-size", str(SIZE),
                 "--cache-cut", "5", "--activation-cache-dir", str(caches), "--stage", "top:2:1e-3:1.0",
                 "--val-fraction", "0.34", "--batch-size", "4", "--cached-view", "original", "--cached-view", "hflip"]
    carclf(*arguments)
    printed = capsys.readouterr().out
    assert "Activation cache: " in printed and "written" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    # The kept epoch was validated on cached activations; the export is measured on the photos by the SavedModel.
    assert metrics["kept_epoch"]["val_accuracy"] == round(metrics["accuracy"], 4)
    assert metrics["memory"]["peak_gb"] > 0.1 and "activation cache" in metrics["memory"]["phases"]
    config = json.loads((out / "training_config.json").read_text())
    assert config["cache_cut"] == 5 and config["cached_views"] == ["original", "hflip"]
    assert sorted(path.suffix for path in caches.iterdir()) == [".f16", ".f16", ".json", ".json"]


def test_cached_fine_tuning_refuses_what_the_cache_cannot_hold():
    with pytest.raises(ValueError, match="one scale"):
        TrainConfig(data=["x"], out="y", cache_cut=5, multiscale_sides=[300])
    with pytest.raises(ValueError, match="one image size"):
        TrainConfig(data=["x"], out="y", cache_cut=5, stages=["a:1:1e-3:1:8:224", "b:1:1e-3:1:8:448"])
    with pytest.raises(ValueError, match="cached views"):
        TrainConfig(data=["x"], out="y", cache_cut=5, cached_views=["sideways"])


@pytest.mark.parametrize("head_init", ["probe", "random"])
def test_a_probe_started_head_keeps_its_standardisation_while_fine_tuning(head_init):
    model, _ = tiny_classifier(head_init=head_init, stages=["top:1:1e-3:1"])
    before = [weights.copy() for weights in model.get_layer("head_bn").get_weights()]
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    pixels = np.random.default_rng(1).uniform(0, 255, (4, SIZE, SIZE, 3)).astype(np.float32)
    model.train_on_batch(pixels, np.eye(3)[[0, 1, 2, 0]])
    after = model.get_layer("head_bn").get_weights()
    unchanged = all(np.array_equal(a, b) for a, b in zip(before, after))
    assert unchanged == (head_init == "probe")  # the probe's scaler stays; a random head's BN learns
