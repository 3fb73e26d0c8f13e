"""The SavedModel on TensorFlow (inference.savedmodel) on real photos: the model's input
(inference.contract.model_input) resized as the model's own resize would."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from inference.contract import model_input
from inference.images import decode_image
from inference.savedmodel import TensorFlowClassifier
from tests.conftest import SHIPPED_MODEL, shipped_validation_samples
from tests.helpers import first_per_class


@pytest.fixture(scope="module")
def photos():
    """Eight held-out validation photos of different classes, as encoded bytes."""
    return [Path(sample.path).read_bytes() for sample in first_per_class(shipped_validation_samples())[:8]]


@pytest.fixture(scope="module")
def plain():
    return TensorFlowClassifier(SHIPPED_MODEL)


@pytest.mark.shared
def test_decode_resizes_to_the_input_size_like_the_models_own_resize(plain, photos):
    for data in photos:
        pixels = model_input(data, plain.image_size, max_pixels=40_000_000)
        assert pixels.shape == (*plain.image_size, 3) and pixels.dtype == np.uint8
        full = decode_image(data, min_size=plain.image_size[::-1])
        assert full.shape != pixels.shape  # the real photos are larger: a resize happened
        reference = tf.round(tf.image.resize(full, plain.image_size, antialias=True)).numpy()
        assert np.abs(pixels - reference).max() <= 1  # grey levels
