"""Multi-task batches over several datasets (two-stream ConvNets, Sec. 4): one
head per dataset, each head's loss on its own dataset's videos only; for
:class:`~keras_gated_tsn.models.multitask.MultiTaskTSN`.

* :func:`multitask_dataset`: a quick random merge of repeating datasets;
* :func:`multitask_training_batches`: the training merge of a stage: the
  dataset of every global step a pure function of ``(seed, step)``, resumable
  at any step;
* :func:`multitask_validation_batches`: every validation video once.
"""

from __future__ import annotations

from typing import Callable, List, Mapping, Optional, Sequence, Union

import numpy as np
import tensorflow as tf


def _check_inputs(datasets: Mapping[str, tf.data.Dataset], what: str) -> List[str]:
    """The heads of ``datasets`` (at least one), whose ``x`` specs must agree
    (up to the batch dimension)."""
    if not datasets:
        raise ValueError(f"{what} needs at least one dataset")
    heads = list(datasets)
    specs = {head: ds.element_spec[0] for head, ds in datasets.items()}
    first = specs[heads[0]]
    for head, spec in specs.items():
        try:
            same = tf.nest.flatten(tf.nest.map_structure(
                lambda a, b: a.shape.as_list()[1:] == b.shape.as_list()[1:] and a.dtype == b.dtype, spec, first))
        except (ValueError, TypeError):  # another structure
            same = [False]
        if not all(same):
            raise ValueError(f"the datasets' inputs differ: {heads[0]} {first}, {head} {spec}")
    return heads


def _tagged(dataset: tf.data.Dataset, head: str, heads: Sequence[str]) -> tf.data.Dataset:
    """``dataset``'s ``(x, label)`` batches as ``(x, {h: labels}, {h: weights})``:
    the labels and weight 1 for ``head``, label 0 and weight 0 for the others."""
    heads = list(heads)

    def tag(x, label):
        label = tf.cast(label, tf.int32)
        zeros = tf.zeros_like(label)
        labels = {h: (label if h == head else zeros) for h in heads}
        sample_weights = {h: tf.cast(tf.fill(tf.shape(label), 1.0 if h == head else 0.0), tf.float32)
                          for h in heads}
        return x, labels, sample_weights

    return dataset.map(tag)


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
    For a stage's training, which must resume where it stopped, see
    :func:`multitask_training_batches`.

    Args:
        datasets: ``{head: dataset}``, at least one; their ``x`` specs must agree.
        weights: optional sampling probabilities, one per dataset, in order.
        seed: seed of the choice of dataset per batch.

    Returns:
        A ``tf.data.Dataset`` for ``MultiTaskTSN.fit``.

    Raises:
        ValueError: for no datasets, or inputs that do not match.
    """
    heads = _check_inputs(datasets, "multitask_dataset")
    parts = [_tagged(datasets[head], head, heads) for head in heads]
    if len(parts) == 1:
        return parts[0]
    return tf.data.Dataset.sample_from_datasets(parts, weights=weights, seed=seed)


def _check_weights(weights, heads: Sequence[str], batches_per_epoch: Mapping[str, int]) -> np.ndarray:
    """The sampling probabilities, one per head in order (they sum to 1)."""
    if weights is None:
        values = [float(batches_per_epoch[h]) for h in heads]
    elif isinstance(weights, Mapping):
        if set(weights) != set(heads):
            raise ValueError(f"weights name the heads {sorted(weights)}, the datasets are {sorted(heads)}")
        values = [weights[h] for h in heads]
    else:
        values = list(weights)
        if len(values) != len(heads):
            raise ValueError(f"weights has {len(values)} values for {len(heads)} datasets {list(heads)}")
    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"weights must be numbers, got {weights!r}") from None
    if not np.all(np.isfinite(values)) or np.any(values < 0) or values.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0, got {weights!r}")
    return values / values.sum()


def _head_of_step(seed: int, probabilities: np.ndarray) -> Callable[[tf.Tensor], tf.Tensor]:
    """``step -> index`` of the head that global step ``step`` (int64 scalar)
    draws from: a stateless uniform keyed by ``[seed, step]`` against the
    cumulative probabilities, so a pure function of ``(seed, step)``."""
    bounds = tf.constant(np.cumsum(probabilities)[:-1], dtype=tf.float64)
    seed = tf.constant(int(seed), tf.int64)

    def choose(step):
        u = tf.random.stateless_uniform([], seed=tf.stack([seed, tf.cast(step, tf.int64)]), dtype=tf.float64)
        return tf.reduce_sum(tf.cast(u >= bounds, tf.int64))  # bisect_right: a 0-probability head never wins

    return choose


def _steps_per_head(choose, start_step: int, num_heads: int) -> np.ndarray:
    """How many of steps ``0 .. start_step - 1`` each head took (``choose``
    itself, step by step, in chunks: a few seconds per million steps)."""
    counts = np.zeros(num_heads, dtype=np.int64)
    if start_step == 0:
        return counts

    @tf.function(reduce_retracing=True)
    def heads_of(steps):
        return tf.map_fn(choose, steps, fn_output_signature=tf.int64, parallel_iterations=64)

    chunk = 1 << 20
    for first in range(0, start_step, chunk):
        steps = tf.range(first, min(first + chunk, start_step), dtype=tf.int64)
        counts += np.bincount(heads_of(steps).numpy(), minlength=num_heads)
    return counts


def multitask_training_batches(
    make_batches: Mapping[str, Callable[[int, int], tf.data.Dataset]],
    batches_per_epoch: Mapping[str, int],
    *,
    seed: int,
    start_step: int = 0,
    weights: Union[None, Sequence[float], Mapping[str, float]] = None,
) -> tf.data.Dataset:
    """The multi-task training batches of a stage, resumable at any step.

    Like :func:`multitask_dataset` (the same ``(x, {head: labels}, {head:
    weights})`` batches), but deterministic: the dataset of global step ``g``
    is a pure function of ``(seed, g)`` (a stateless uniform keyed by ``[seed,
    g]`` against the cumulative ``weights``), and each dataset's batches come
    in its own seeded order, so the run is a pure function of the seeds. A
    run resumed at ``start_step`` counts how many batches each dataset gave to
    steps ``0 .. start_step - 1`` (``c``) and starts that dataset at epoch
    ``c // batches_per_epoch``, batch ``c % batches_per_epoch``: it yields
    exactly the batches the uninterrupted run yields from that step on.

    Args:
        make_batches: ``{head: make(start_epoch, skip_batches)}``: each
            returns that dataset's repeating, seeded ``(x, label)`` batches
            from epoch ``start_epoch``, batch ``skip_batches`` on, e.g.
            ``lambda e, s: make_dataset(records, frames, "flow", repeat=True,
            seed=seed, start_epoch=e, skip_batches=s)``
            (:func:`~keras_gated_tsn.data.pipeline.make_dataset`). Its order
            is the heads' order.
        batches_per_epoch: ``{head: int >= 1}``: batches in one epoch of each
            dataset (make_dataset: ``ceil(videos / batch_size)``, floor with
            ``drop_remainder`` or shards).
        seed: int, the seed of the choice of dataset per step.
        start_step: the global step the run starts at (0: a new run).
        weights: sampling probabilities, one per head (a sequence in the
            heads' order, or ``{head: weight}``), normalised; default
            proportional to ``batches_per_epoch``, so that one multi-task
            epoch of ``sum(batches_per_epoch)`` steps sees each dataset about
            once.

    Returns:
        An infinite ``tf.data.Dataset`` of multi-task batches for
        ``MultiTaskTSN.fit``, from step ``start_step`` on.

    Raises:
        ValueError: for no datasets, mappings of other heads, counts that are
            not ints >= 1, bad weights, a negative ``start_step``, a seed that
            is not an int, a dataset that ends, or inputs that do not match.
    """
    if not make_batches:
        raise ValueError("multitask_training_batches needs at least one dataset")
    heads = list(make_batches)
    if set(batches_per_epoch) != set(heads):
        raise ValueError(f"make_batches has the heads {sorted(heads)} but batches_per_epoch "
                         f"{sorted(batches_per_epoch)}")
    for head in heads:
        count = batches_per_epoch[head]
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"batches_per_epoch[{head!r}] must be an int >= 1, got {count!r}")
        if not callable(make_batches[head]):
            raise ValueError(f"make_batches[{head!r}] must be a callable (start_epoch, skip_batches) -> dataset, "
                             f"got {make_batches[head]!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int (the choice of dataset per step is keyed by it), got {seed!r}")
    if isinstance(start_step, bool) or not isinstance(start_step, (int, np.integer)) or start_step < 0:
        raise ValueError(f"start_step must be an int >= 0, got {start_step!r}")
    probabilities = _check_weights(weights, heads, batches_per_epoch)
    choose = _head_of_step(int(seed), probabilities)
    taken = _steps_per_head(choose, int(start_step), len(heads))
    datasets = {}
    for head, count in zip(heads, taken):
        per_epoch = int(batches_per_epoch[head])
        datasets[head] = make_batches[head](int(count) // per_epoch, int(count) % per_epoch)
        if not isinstance(datasets[head], tf.data.Dataset):
            raise ValueError(f"make_batches[{head!r}] returned a {type(datasets[head]).__name__}, "
                             "not a tf.data.Dataset")
        cardinality = int(datasets[head].cardinality())
        if cardinality >= 0:  # known and finite
            raise ValueError(f"the {head!r} dataset ends after {cardinality} batches: make_batches must give "
                             "repeating batches (make_dataset(..., repeat=True))")
    _check_inputs(datasets, "multitask_training_batches")
    parts = [_tagged(datasets[head], head, heads) for head in heads]
    choices = tf.data.Dataset.counter(int(start_step), dtype=tf.int64).map(choose)
    return tf.data.Dataset.choose_from_datasets(parts, choices)


def multitask_validation_batches(datasets: Mapping[str, tf.data.Dataset]) -> tf.data.Dataset:
    """Each dataset's validation batches, tagged as :func:`multitask_dataset`
    tags them, one dataset after the other (in the mapping's order): every
    validation video once, each head scored on its own dataset's videos (its
    weighted metrics), for ``fit(validation_data=...)`` or ``evaluate()``.

    Args:
        datasets: ``{head: dataset}`` of finite ``(x, label)`` batches
            (:func:`~keras_gated_tsn.data.pipeline.make_dataset` with
            ``training=False``); their ``x`` specs must agree.

    Raises:
        ValueError: for no datasets, one that repeats forever, or inputs
            that do not match.
    """
    heads = _check_inputs(datasets, "multitask_validation_batches")
    for head in heads:
        if int(datasets[head].cardinality()) == int(tf.data.INFINITE_CARDINALITY):
            raise ValueError(f"the {head!r} validation dataset repeats forever: give each video once "
                             "(make_dataset(..., repeat=False))")
    merged = None
    for head in heads:
        part = _tagged(datasets[head], head, heads)
        merged = part if merged is None else merged.concatenate(part)
    return merged


__all__ = ["multitask_dataset", "multitask_training_batches", "multitask_validation_batches"]
