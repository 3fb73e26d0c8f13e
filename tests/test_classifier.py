"""The SavedModel wrapper (inference.classifier) on real photos: decoding to
the model's input size, and dynamic batching across threads."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from inference.classifier import Classifier
from inference.images import decode_image
from inference.tta import predict_views
from tests.conftest import SHIPPED_MODEL, shipped_validation_samples
from tests.helpers import first_per_class
from tests.test_batching import call_concurrently

pytestmark = pytest.mark.shared  # real photos or weights from ../shared


@pytest.fixture(scope="module")
def photos():
    """Eight held-out validation photos of different classes, as encoded bytes."""
    return [Path(sample.path).read_bytes() for sample in first_per_class(shipped_validation_samples())[:8]]


@pytest.fixture(scope="module")
def plain():
    return Classifier(SHIPPED_MODEL)


def test_decode_resizes_to_the_input_size_like_the_models_own_resize(plain, photos):
    for data in photos:
        pixels = plain.decode(data, max_pixels=40_000_000)
        assert pixels.shape == (*plain.image_size, 3) and pixels.dtype == np.uint8
        full = decode_image(data, min_size=plain.image_size[::-1])
        assert full.shape != pixels.shape  # the real photos are larger: a resize happened
        reference = tf.round(tf.image.resize(full, plain.image_size, antialias=True)).numpy()
        assert np.abs(pixels - reference).max() <= 1  # grey levels


def test_batched_classifier_answers_concurrent_threads_as_if_alone(plain, photos):
    images = [plain.decode(data, max_pixels=40_000_000) for data in photos]
    batched = Classifier(SHIPPED_MODEL, batch_size=16, batch_wait_ms=30_000)  # 8 x 2 TTA views: one full batch
    batched.warm_up()
    together = call_concurrently(lambda image: predict_views(batched, image)[1], images)
    for image, probabilities in zip(images, together):
        np.testing.assert_allclose(probabilities, predict_views(plain, image)[1], atol=1e-4)
    assert len({int(np.argmax(p)) for p in together}) > 1  # different photos, different answers
