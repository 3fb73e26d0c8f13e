"""The model contract (inference.contract): what training exports is what the service
reads, and a file becomes the same model input in training and in the service."""

from pathlib import Path

import numpy as np
import tensorflow as tf

from inference.contract import (
    METADATA_OUTPUTS,
    METADATA_SIGNATURE,
    OUTPUTS,
    SERVING_SIGNATURE,
    ModelFacts,
    model_input,
)
from inference.savedmodel import TensorFlowClassifier
from tests.helpers import synthetic_dataset
from training.data.dataset import load_samples, make_dataset


def test_the_export_has_the_contracts_signatures_and_metadata(tiny_savedmodel):
    module = tf.saved_model.load(str(tiny_savedmodel))
    assert set(module.signatures[SERVING_SIGNATURE].structured_outputs) == set(OUTPUTS)
    assert set(module.signatures[METADATA_SIGNATURE].structured_outputs) == set(METADATA_OUTPUTS)
    facts = ModelFacts.from_savedmodel(module)
    assert facts.labels == ["a", "b"] and facts.image_size == (32, 32) and facts.metadata["version"] == "tiny"


def test_training_pipeline_and_service_give_the_same_input_for_the_same_file(tiny_savedmodel, tmp_path):
    samples, labels = load_samples(synthetic_dataset(tmp_path, per_class=2, size=(300, 200)))
    classifier = TensorFlowClassifier(tiny_savedmodel)
    (pixels, _), = make_dataset(samples, labels, classifier.image_size[0], len(samples)).take(1)
    for sample, trained in zip(samples, pixels.numpy()):
        served = model_input(Path(sample.path).read_bytes(), classifier.image_size)
        assert served.shape == (32, 32, 3) and served.dtype == np.uint8
        np.testing.assert_array_equal(trained, served.astype(np.float32))
