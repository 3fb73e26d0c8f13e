"""Dataset discovery and the group-aware split on the real cars-ru10 data."""

from collections import Counter

import numpy as np
import pytest

from tests.conftest import TINY_CLASSES, make_kaggle_tree
from training.data.dataset import class_weights, group_folds, load_image, load_samples, make_dataset, split_by_group


@pytest.mark.shared
def test_cars_ru10_loads_from_labels_csv(cars):
    samples, labels = load_samples(cars)
    assert len(samples) == 858 and len(labels) == 10
    assert Counter(s.label for s in samples)["kia_ceed"] == 129
    assert len({s.group for s in samples}) < len(samples)  # near-duplicates share groups


@pytest.mark.shared
def test_split_keeps_groups_apart_is_stratified_and_seeded(cars):
    samples, labels = load_samples(cars)
    train, val = split_by_group(samples, 0.2, seed=42)
    assert len(train) + len(val) == len(samples)
    assert not {s.group for s in train} & {s.group for s in val}
    share = Counter(s.label for s in val)
    assert set(share) == set(labels) and 0.15 < len(val) / len(samples) < 0.25
    assert [s.path for s in split_by_group(samples, 0.2, seed=42)[1]] == [s.path for s in val]
    assert [s.path for s in split_by_group(samples, 0.2, seed=7)[1]] != [s.path for s in val]


@pytest.mark.shared
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


@pytest.mark.shared
def test_pipeline_batches_resized_pixels_and_one_hot(tiny_dataset):
    samples, labels = load_samples(tiny_dataset)
    pixels, targets = next(iter(make_dataset(samples, labels, 64, batch_size=5, shuffle_seed=1)))
    assert pixels.shape == (5, 64, 64, 3) and pixels.dtype.name == "float32"
    assert targets.shape == (5, 3) and np.all(targets.numpy().sum(axis=1) == 1)
    assert 0 <= pixels.numpy().min() and pixels.numpy().max() <= 255
    first = load_image(samples[0].path, 64)
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8


@pytest.mark.shared
def test_kaggle_layout_labels_are_category_indices_or_given_names(kaggle_dataset):
    samples, labels = load_samples(kaggle_dataset)
    assert labels == ["0", "1", "2"] and len(samples) == 9
    assert all(f"/train/{s.label}/" in s.path for s in samples)
    named, names = load_samples(kaggle_dataset, class_names=list(TINY_CLASSES))
    assert names == list(TINY_CLASSES)
    assert [s.label for s in named] == [TINY_CLASSES[int(s.label)] for s in samples]


@pytest.mark.shared
def test_kaggle_indices_sort_numerically_and_ids_may_lack_jpg(tmp_path):
    root = make_kaggle_tree(tmp_path, {2: "kia_rio", 10: "mazda_3"}, 2)
    csv = root / "train.csv"
    csv.write_text(csv.read_text().replace(".jpg", ""))
    samples, labels = load_samples(root)
    assert labels == ["2", "10"] and len(samples) == 4
    with pytest.raises(ValueError, match="Category '10' has no name among 3"):
        load_samples(root, class_names=["a", "b", "c"])
    next(root.glob("train/10/*.jpg")).unlink()
    with pytest.raises(FileNotFoundError, match="1 file\\(s\\) listed in .*train.csv are missing"):
        load_samples(root)


@pytest.mark.shared
def test_two_roots_merge_and_the_split_holds_out_groups_across_both(tiny_dataset, kaggle_dataset):
    samples, labels = load_samples([tiny_dataset, kaggle_dataset], class_names=list(TINY_CLASSES))
    assert labels == list(TINY_CLASSES) and len(samples) == 21
    assert Counter(s.label for s in samples) == {label: 7 for label in TINY_CLASSES}
    assert {s.group.split(":")[0] for s in samples} == {"0", "1"}
    train, val = split_by_group(samples, 0.25, seed=1)
    assert not {s.group for s in train} & {s.group for s in val} and len(train) + len(val) == 21
    assert {s.group.split(":")[0] for s in val} == {"0", "1"}  # both roots contribute to validation


@pytest.mark.shared
def test_group_folds_cover_every_photo_once_and_are_seeded(cars):
    samples, _ = load_samples(cars)
    folds = list(group_folds(samples, 5, seed=42))
    held_out = [s.path for _, fold in folds for s in fold]
    assert len(held_out) == len(set(held_out)) == len(samples)
    for rest, fold in folds:
        assert not {s.group for s in rest} & {s.group for s in fold}
        assert set(Counter(s.label for s in fold)) == set(Counter(s.label for s in samples))
    assert [s.path for s in next(group_folds(samples, 5, seed=42))[1]] == [s.path for s in folds[0][1]]
    assert [s.path for s in split_by_group(samples, 0.2, seed=42)[1]] == [s.path for s in folds[0][1]]


@pytest.mark.shared
def test_balanced_class_weights_follow_sklearn_formula(cars):
    samples, labels = load_samples(cars)
    weights = class_weights(samples, labels, "balanced")
    assert weights[labels.index("kia_rio")] == pytest.approx(858 / (10 * 45))
    assert weights[labels.index("kia_ceed")] == pytest.approx(858 / (10 * 129))
    assert class_weights(samples, labels, "none") is None
    with pytest.raises(ValueError, match="no training photo of class"):
        class_weights([s for s in samples if s.label != "mazda_3"], labels, "balanced")
