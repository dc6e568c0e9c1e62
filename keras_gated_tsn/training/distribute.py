"""Training on several GPUs or machines with TensorFlow's ``tf.distribute``.

Three strategies, chosen by name (``gated-tsn train --strategy``):

* ``default``: one device (the first GPU, else the CPU);
* ``mirrored``: every GPU of this machine, one replica each
  (``tf.distribute.MirroredStrategy``; on a machine without GPUs, the CPU);
* ``multi-worker``: several machines (or processes), each with its GPUs
  (``tf.distribute.MultiWorkerMirroredStrategy``). Each process reads its place
  in the cluster from the ``TF_CONFIG`` environment variable::

      TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                  "task": {"type": "worker", "index": 0}}'

  Worker 0 (or the ``chief`` task) writes the checkpoints, logs and the output
  model; the others train and write nothing. Give every worker the same
  ``--out`` on storage they all see (NFS, a cloud bucket mount): a killed run
  resumes only when every worker finds the same training state there, which
  is checked before training.

The batch a recipe names is the *global* batch: each worker reads its share
(``batch / workers`` videos of every global batch,
:func:`keras_gated_tsn.data.pipeline.make_dataset` ``num_shards``), Keras splits
a worker's share over its GPUs, and the gradients are summed across all
replicas before the update, so the learning rate stays the recipe's.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import List, Sequence

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi-worker")


@dataclasses.dataclass(frozen=True)
class Workers:
    """This process's place among the workers of a run.

    Attributes:
        count: workers (processes) in the run, >= 1.
        index: this worker's index in ``[0, count)``: its data shard.
        is_chief: whether this worker writes the files.
        replicas: replicas (devices) over all workers.
    """

    count: int
    index: int
    is_chief: bool
    replicas: int


def make_strategy(name: str = "default") -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy called ``name`` (see the module doc).

    Create it before any other TensorFlow work of the process (a
    multi-worker strategy must be made before the first op runs).

    Raises:
        ValueError: for another name, or ``multi-worker`` without a usable
            ``TF_CONFIG`` (the message says what it must hold).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def _check_tf_config() -> None:
    text = os.environ.get("TF_CONFIG")
    example = (
        'TF_CONFIG=\'{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}\''
    )
    if not text:
        raise ValueError(f"--strategy multi-worker reads the cluster from TF_CONFIG, which is not set; e.g. {example}")
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        tasks = cluster[task["type"]]
        if not 0 <= int(task["index"]) < len(tasks):
            raise ValueError(f"task index {task['index']} is outside the {len(tasks)} {task['type']} tasks")
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"TF_CONFIG is not a usable cluster description ({error}); e.g. {example}") from None


def workers_of(strategy: tf.distribute.Strategy) -> Workers:
    """The :class:`Workers` of ``strategy`` for this process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not spec:
        return Workers(1, 0, True, strategy.num_replicas_in_sync)
    chiefs = len(spec.get("chief", []))
    count = chiefs + len(spec.get("worker", []))
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    index = task_id if task_type == "chief" else chiefs + task_id
    return Workers(count, index, index == 0, strategy.num_replicas_in_sync)


def chief_values(strategy: tf.distribute.Strategy, values: Sequence[int]) -> List[int]:
    """The chief's ``values`` on every worker (a collective broadcast; as is with one worker).

    Used for what every worker must agree on before training: the seed drawn
    when ``--seed`` is not given, and the point a resumed run starts from.
    Every worker of the run must call it at the same point.

    Args:
        values: integers in ``[-2**53, 2**53]``.

    Returns:
        Worker 0's values, in order.
    """
    values = [int(v) for v in values]
    if workers_of(strategy).count == 1:
        return values
    local = tf.constant(values, tf.float64)  # exact for |v| <= 2**53; every collective reduces floats

    @tf.function
    def broadcast():
        def replica_fn():
            context = tf.distribute.get_replica_context()
            mine = tf.where(tf.equal(context.replica_id_in_sync_group, 0), local, tf.zeros_like(local))
            return context.all_reduce(tf.distribute.ReduceOp.SUM, mine)

        return strategy.run(replica_fn)

    result = strategy.experimental_local_results(broadcast())[0]
    return [int(v) for v in result.numpy()]


def same_on_all_workers(strategy: tf.distribute.Strategy, values: Sequence[int]) -> bool:
    """Whether every worker called this with the same ``values`` (True with one worker).

    A collective (every replica's values gathered on every replica), so
    every worker gets the same answer and can stop together instead of one
    stopping while the others wait for it. Every worker must call it at the
    same point.
    """
    values = [int(v) for v in values]
    if workers_of(strategy).count == 1:
        return True
    local = tf.constant([values], tf.float64)  # exact for |v| <= 2**53

    @tf.function
    def gather():
        return strategy.run(lambda: tf.distribute.get_replica_context().all_gather(local, axis=0))

    everyone = strategy.experimental_local_results(gather())[0].numpy()  # (replicas, len(values))
    return bool((everyone == everyone[0]).all())


def describe_devices(strategy: tf.distribute.Strategy) -> str:
    """``"2 workers x 1 CPU"`` / ``"1 x NVIDIA H100"``: where a run trains."""
    workers = workers_of(strategy)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        device = details.get("device_name", "GPU")
        local = f"{len(gpus)} x {device}" if len(gpus) > 1 else device
    else:
        local = f"CPU ({os.cpu_count()} cores)"
    return (f"{workers.count} workers x " if workers.count > 1 else "") + local + (
        f", {workers.replicas} replicas" if workers.replicas > 1 else ""
    )
