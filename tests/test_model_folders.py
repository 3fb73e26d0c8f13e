"""Broken model folders fail with a message that names the broken file and the fix,
never TensorFlow's own ("requires a `tags=` argument", "Read less bytes than requested")."""

import logging
import shutil

import numpy as np
import pytest
import tensorflow as tf

from app.model import ModelLoader
from inference.model_folder import ModelLoadError, ModelNotFoundError
from inference.savedmodel import TensorFlowClassifier
from tests.conftest import SHIPPED_MODEL

FIX = "git checkout -- model/"
WEIGHTS = "variables.data-00000-of-00001"


def broken_copy(tmp_path, edit):
    """A copy of model/ in ``tmp_path``, changed by ``edit(folder)``."""
    folder = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, folder)
    edit(folder)
    return folder


def truncate(path, keep):
    path.write_bytes(path.read_bytes()[:keep])


BROKEN = {
    "empty saved_model.pb": (lambda m: truncate(m / "saved_model.pb", 0), "saved_model.pb is empty or truncated"),
    "truncated saved_model.pb": (lambda m: truncate(m / "saved_model.pb", 5000),
                                 "saved_model.pb is empty or truncated (5000 bytes)"),
    "truncated weights": (lambda m: truncate(m / "variables" / WEIGHTS, 100_000), f"{WEIGHTS} (100000 bytes)"),
    "empty weights": (lambda m: truncate(m / "variables" / WEIGHTS, 0), f"{WEIGHTS} (0 bytes)"),
    "truncated weight index": (lambda m: truncate(m / "variables" / "variables.index", 300),
                               "variables.index (300 bytes)"),
    "no variables folder": (lambda m: shutil.rmtree(m / "variables"), "no variables.index and variables.data-*"),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_broken_copy_of_the_model_names_the_file_and_the_fix(tmp_path, kind):
    edit, names = BROKEN[kind]
    with pytest.raises(ModelLoadError) as caught:
        TensorFlowClassifier(broken_copy(tmp_path, edit))
    message = str(caught.value)
    assert names in message and str(tmp_path / "model") in message and FIX in message


def test_an_empty_folder_names_the_missing_file(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no saved_model.pb.*CARCLF_MODEL_DIR"):
        TensorFlowClassifier(tmp_path)


def test_a_savedmodel_with_other_signatures_is_refused(tmp_path):
    module = tf.Module()
    module.double = tf.function(lambda x: {"y": 2 * x}, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.double})
    with pytest.raises(ModelLoadError) as caught:
        TensorFlowClassifier(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "saved_model.pb") in message and "no 'metadata' signature" in message
    assert "lacks the outputs ['logits', 'probabilities']" in message and "uint8 'images'" in message
    assert "carclf train" in message
    # a valid SavedModel
    assert np.array_equal(tf.saved_model.load(str(tmp_path)).double(tf.constant([1.0]))["y"], [2.0])


def test_the_service_logs_the_actionable_message_without_a_trace(tmp_path, caplog):
    folder = broken_copy(tmp_path, BROKEN["empty weights"][0])
    logger = logging.getLogger("carclf.model")
    logger.addHandler(caplog.handler)  # the app's JSON logging stops propagation to the root logger
    try:
        assert ModelLoader(folder, "tensorflow").start().wait(120) == "failed"
    finally:
        logger.removeHandler(caplog.handler)
    record = next(r for r in caplog.records if r.name == "carclf.model")
    assert record.getMessage().startswith("model failed to load: The weights in") and FIX in record.getMessage()
    assert not record.exc_info  # no traceback: the message is the whole story
