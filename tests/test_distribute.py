"""tf.distribute strategies and mixed precision, as far as one CPU can show them."""

import json
from types import SimpleNamespace

import keras
import pytest
import tensorflow as tf

from training.config import TrainConfig
from training.fitting.distribute import is_chief, make_strategy, precision
from training.model import build_classifier


def cluster(monkeypatch, task_type, task_id, with_chief):
    spec = {"worker": ["host1:2222", "host2:2222"], **({"chief": ["host0:2222"]} if with_chief else {})}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": spec, "task": {"type": task_type, "index": task_id}}))
    return SimpleNamespace(cluster_resolver=tf.distribute.cluster_resolver.TFConfigClusterResolver())


def test_chief_is_the_chief_task_else_worker_zero(monkeypatch):
    assert is_chief(tf.distribute.get_strategy())
    assert is_chief(cluster(monkeypatch, "chief", 0, with_chief=True))
    assert not is_chief(cluster(monkeypatch, "worker", 0, with_chief=True))
    assert is_chief(cluster(monkeypatch, "worker", 0, with_chief=False))
    assert not is_chief(cluster(monkeypatch, "worker", 1, with_chief=False))


def test_multiworker_without_tf_config_is_refused(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs TF_CONFIG"):
        make_strategy("multiworker")


def test_mirrored_strategy_builds_the_model_over_the_local_devices():
    strategy = make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == max(1, len(tf.config.list_physical_devices("GPU")))
    with strategy.scope():
        model, _ = build_classifier(TrainConfig(backbone="MobileNetV2", alpha=0.35, weights="none"), 4)
    assert model.distribute_strategy is strategy
    assert model(tf.zeros([1, 80, 64, 3])).shape == (1, 4)  # any input size


def test_mixed_precision_keeps_logits_float32_and_restores_the_policy():
    with precision("on") as policy:
        model, backbone = build_classifier(TrainConfig(backbone="MobileNetV2", alpha=0.35, weights="none"), 3)
        assert policy == "mixed_float16" and backbone.compute_dtype == "float16"
        assert model(tf.zeros([2, 64, 64, 3])).dtype == tf.float32
    assert keras.mixed_precision.global_policy().name == "float32"
    with precision("auto") as policy:  # no GPU in CI: full precision
        assert policy == ("mixed_float16" if tf.config.list_physical_devices("GPU") else "float32")
