"""Dataset discovery and the group-aware split on the real cars-ru10 data."""

from collections import Counter

import numpy as np
import pytest

from training.data import load_image, load_samples, make_dataset, split_by_group


def test_cars_ru10_loads_from_labels_csv(cars):
    samples, labels = load_samples(cars)
    assert len(samples) == 858 and len(labels) == 10
    assert Counter(s.label for s in samples)["kia_ceed"] == 129
    assert len({s.group for s in samples}) < len(samples)  # near-duplicates share groups


def test_split_keeps_groups_apart_is_stratified_and_seeded(cars):
    samples, labels = load_samples(cars)
    train, val = split_by_group(samples, 0.2, seed=42)
    assert len(train) + len(val) == len(samples)
    assert not {s.group for s in train} & {s.group for s in val}
    share = Counter(s.label for s in val)
    assert set(share) == set(labels) and 0.15 < len(val) / len(samples) < 0.25
    assert [s.path for s in split_by_group(samples, 0.2, seed=42)[1]] == [s.path for s in val]
    assert [s.path for s in split_by_group(samples, 0.2, seed=7)[1]] != [s.path for s in val]


def test_image_folder_without_csv(tiny_dataset):
    samples, labels = load_samples(tiny_dataset)
    assert labels == ["kia_rio", "lada_kalina", "mazda_3"] and len(samples) == 12
    assert len({s.group for s in samples}) == 12


def test_bad_roots_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_samples(tmp_path / "nowhere")
    (tmp_path / "only_one").mkdir()
    with pytest.raises(ValueError, match="at least 2"):
        load_samples(tmp_path)


def test_pipeline_batches_resized_pixels_and_one_hot(tiny_dataset):
    samples, labels = load_samples(tiny_dataset)
    pixels, targets = next(iter(make_dataset(samples, labels, 64, batch_size=5, shuffle_seed=1)))
    assert pixels.shape == (5, 64, 64, 3) and pixels.dtype.name == "float32"
    assert targets.shape == (5, 3) and np.all(targets.numpy().sum(axis=1) == 1)
    assert 0 <= pixels.numpy().min() and pixels.numpy().max() <= 255
    first = load_image(samples[0].path, 64)
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
