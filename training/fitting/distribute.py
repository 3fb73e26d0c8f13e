"""Devices: the ``tf.distribute`` strategy and mixed precision.

Strategies (TensorFlow guide "Distributed training with Keras"):

- ``default``: one device (the CPU, or the first GPU).
- ``mirrored``: ``tf.distribute.MirroredStrategy``, synchronous data
  parallelism over all GPUs of this machine (over the CPU when there is none).
- ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy``, the same over
  several machines: run the same command on each, with ``TF_CONFIG`` naming
  the cluster and this machine's task (tensorflow.org/tutorials/distribute/
  multi_worker_with_keras). It must be created before any other TensorFlow op.

``batch_size`` is the global batch, split over the replicas.
"""

import contextlib
import json
import os
from collections.abc import Iterator

import keras
import tensorflow as tf

from training.config import PRECISIONS, STRATEGIES  # noqa: F401 (the accepted names, in the light config module)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute.Strategy`` named ``name`` (one of ``STRATEGIES``).

    Raises:
        ValueError: ``multiworker`` without a ``TF_CONFIG`` environment variable.
    """
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multiworker needs TF_CONFIG (the cluster and this worker's task)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the outputs: always, except on the
    non-chief workers of a multi-worker cluster (the chief is the task of type
    ``chief``, else worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    has_chief = "chief" in json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker" and resolver.task_id == 0)


@contextlib.contextmanager
def precision(mode: str) -> Iterator[str]:
    """Set Keras' global dtype policy for the ``with`` block, then restore it.

    ``auto`` means ``mixed_float16`` when TensorFlow sees a GPU, ``float32``
    otherwise (float16 on a CPU is slower, not faster); ``on``/``off`` force it;
    ``bfloat16`` is ``mixed_bfloat16`` (no loss scaling needed: bfloat16 has
    float32's exponent range), for CPUs whose oneDNN kernels run it.
    Under ``mixed_float16`` layers compute in float16 and keep float32 weights;
    Keras wraps the optimizer in a ``LossScaleOptimizer`` at ``compile`` (Keras
    mixed-precision guide). The model keeps its logits layer in float32.

    Yields:
        the policy name in force.
    """
    mixed = mode == "on" or (mode == "auto" and bool(tf.config.list_physical_devices("GPU")))
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if mode == "bfloat16" else
                                            "mixed_float16" if mixed else "float32")
    try:
        yield keras.mixed_precision.global_policy().name
    finally:
        keras.mixed_precision.set_global_policy(previous)
