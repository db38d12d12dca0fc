"""Training on several devices or hosts with ``tf.distribute``.

- ``default``: the current (single-device) strategy.
- ``mirrored``: ``tf.distribute.MirroredStrategy``, every local device (GPUs, or logical CPUs).
- ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy`` across hosts, configured by
  the ``TF_CONFIG`` environment variable; it must be created before any other TensorFlow work.

The global batch is split across replicas; each replica's loss is divided by the number of
replicas, so the all-reduced (summed) gradient is the gradient of the global-batch mean; metrics
average the replicas' means, which is the global mean for equal shards. Only the chief writes
checkpoints and run files. Checkpoints hold plain arrays, so a run resumes on any number of
workers, or on one.
"""

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multiworker")


def make_strategy(name="default"):
    """The ``tf.distribute.Strategy`` called ``name``.

    Raises:
        ValueError: for an unknown name, or ``multiworker`` without a valid ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    config = os.environ.get("TF_CONFIG")
    try:
        cluster = json.loads(config)["cluster"] if config else None
    except (ValueError, KeyError, TypeError):
        cluster = None
    if not cluster:
        raise ValueError(
            "strategy 'multiworker' needs TF_CONFIG naming the cluster and this task, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}. '
            f"Received: TF_CONFIG={config!r}"
        )
    return tf.distribute.MultiWorkerMirroredStrategy()


def spans_workers(strategy=None):
    """Whether ``strategy`` reduces across several worker processes."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return False
    return sum(len(tasks) for tasks in resolver.cluster_spec().as_dict().values()) > 1


def is_chief(strategy=None):
    """Whether this process writes files: always, except non-chief workers of a cluster."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs
    )


def shard_by_data(dataset):
    """``dataset`` with auto-sharding by element, so workers split in-memory data evenly."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
