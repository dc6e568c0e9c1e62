"""Multi-task batches over several datasets (two-stream ConvNets, Sec. 4): one
head per dataset, each head's loss on its own dataset's videos only; for
:class:`~keras_gated_tsn.models.multitask.MultiTaskTSN`."""

from __future__ import annotations

from typing import Mapping, Optional

import tensorflow as tf


def multitask_dataset(datasets: Mapping[str, tf.data.Dataset], *, weights=None, seed: Optional[int] = None):
    """Merges each dataset's training batches into multi-task batches.

    Each input is a dataset of ``(x, label)`` batches
    (:func:`~keras_gated_tsn.data.pipeline.make_dataset` of one dataset, with
    ``repeat=True``), keyed by its head's name. A batch of dataset ``d``
    becomes ``(x, {head: labels}, {head: weights})`` with the labels and a
    weight of 1 for head ``d`` and label 0 with weight 0 for every other head,
    so each head's loss operates only on its own dataset's videos (two-stream
    ConvNets Sec. 4). Batches are drawn from the datasets at random with
    probabilities ``weights`` (default: equal), reproducibly with a ``seed``.

    Args:
        datasets: ``{head: dataset}``, at least one; their ``x`` specs must agree.
        weights: optional sampling probabilities, one per dataset, in order.
        seed: seed of the choice of dataset per batch.

    Returns:
        A ``tf.data.Dataset`` for ``MultiTaskTSN.fit``.

    Raises:
        ValueError: for no datasets, or inputs that do not match.
    """
    if not datasets:
        raise ValueError("multitask_dataset needs at least one dataset")
    heads = list(datasets)
    specs = {head: ds.element_spec[0] for head, ds in datasets.items()}
    first = specs[heads[0]]
    for head, spec in specs.items():
        same = tf.nest.flatten(tf.nest.map_structure(
            lambda a, b: a.shape.as_list()[1:] == b.shape.as_list()[1:] and a.dtype == b.dtype, spec, first))
        if not all(same):
            raise ValueError(f"the datasets' inputs differ: {heads[0]} {first}, {head} {spec}")

    def tagged(head):
        def tag(x, label):
            label = tf.cast(label, tf.int32)
            zeros = tf.zeros_like(label)
            labels = {h: (label if h == head else zeros) for h in heads}
            sample_weights = {h: tf.cast(tf.fill(tf.shape(label), 1.0 if h == head else 0.0), tf.float32)
                              for h in heads}
            return x, labels, sample_weights
        return datasets[head].map(tag)

    parts = [tagged(head) for head in heads]
    if len(parts) == 1:
        return parts[0]
    return tf.data.Dataset.sample_from_datasets(parts, weights=weights, seed=seed)


__all__ = ["multitask_dataset"]
