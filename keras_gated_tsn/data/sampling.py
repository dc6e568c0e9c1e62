"""TSN segment sampling: which frames / flow stacks of a video feed the network.

A video is split into ``K`` equal segments and one *snippet* is taken from
each: ``new_length`` consecutive items starting at a snippet *offset* (0-based).
For the spatial stream an item is an RGB frame (``new_length`` = 1); for the
temporal stream it is a flow pair (``new_length`` = L = 5 stacked pairs).
This is the sparse sampling of Wang et al., "Temporal Segment Networks"
(ECCV 2016, Sec. 3.1), used unchanged by the gated TSN (Zhu, Zou, Zhu,
"Learning gating ConvNet for two-stream based methods in action recognition",
Sec. III-B "Inputs": RGB frames and flow stacks "are randomly sampled from each
of K segments", "each group of RGB frames and optical flow stack starts from the
same point"; Sec. IV-A: K = 3 in training, 25 uniformly spaced snippets at test).

Two flavours of every sampler live here:

* NumPy functions (:func:`train_offsets`, :func:`test_offsets`,
  :func:`snippet_indices`, :func:`sample_indices`): the reference, used by tests
  and by anything outside a ``tf.data`` graph. Random ones take an explicit
  ``np.random.Generator`` or an integer seed.
* TensorFlow functions (``*_tf``): the same rules as graph ops, used inside the
  ``tf.data`` map of :mod:`keras_gated_tsn.data.pipeline`. Random ones take a
  stateless seed (shape ``[2]`` integer tensor), so a pipeline is reproducible
  given its seed. The deterministic (test) path gives exactly the NumPy values;
  the random path draws from the same ranges (not the same numbers).

All offsets and indices are 0-based item indices; the file of item ``i`` is
number ``i + 1`` (``img_00001.jpg`` is item 0).

Number of items ``n`` (see :func:`num_items`): the RGB frame count for
``"rgb"``; the flow-pair count (``num_frames - 1``) for ``"flow"`` and for the
joint mode ``"rgb+flow"``, where the RGB frame of a snippet is the *first*
frame of its flow stack (image index = offset), as the authors' loader does.
"""

from __future__ import annotations

from typing import Tuple, Union

import numpy as np
import tensorflow as tf

MODALITIES = ("rgb", "flow", "rgb+flow")
"""The modalities a pipeline reads: RGB frames, flow stacks, or both (joint)."""

SeedLike = Union[None, int, np.random.Generator]


def check_modality(modality: str) -> str:
    """Returns ``modality`` if it is one of :data:`MODALITIES`.

    Raises:
        ValueError: quoting the value received, otherwise.
    """
    if not isinstance(modality, str) or modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return modality


def default_new_length(modality: str) -> int:
    """Snippet length of a modality as in TSN: 1 for ``"rgb"``, 5 for flow and joint.

    Raises:
        ValueError: on an unknown modality.
    """
    return 1 if check_modality(modality) == "rgb" else 5


def num_items(num_frames: int, modality: str) -> int:
    """Number of sampleable items of a video with ``num_frames`` RGB frames.

    Args:
        num_frames: RGB frame count (as in a list file), >= 1.
        modality: one of :data:`MODALITIES`.

    Returns:
        ``num_frames`` for ``"rgb"``; ``num_frames - 1`` (the flow pairs;
        0 for a one-frame video) for ``"flow"`` and ``"rgb+flow"``.

    Raises:
        ValueError: on an unknown modality or ``num_frames < 1``.
    """
    check_modality(modality)
    if int(num_frames) < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames!r}")
    return int(num_frames) if modality == "rgb" else int(num_frames) - 1


def _check_args(n: int, num_segments: int, new_length: int) -> None:
    if int(n) < 0:
        raise ValueError(f"num_items must be >= 0, got {n!r}")
    if int(num_segments) < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments!r}")
    if int(new_length) < 1:
        raise ValueError(f"new_length must be >= 1, got {new_length!r}")


def _rng(rng: SeedLike) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def train_offsets(
    num_items: int, num_segments: int, new_length: int = 1, rng: SeedLike = None
) -> np.ndarray:
    """Random snippet offsets for training (TSN ``_sample_indices``).

    With ``avg = (n - new_length + 1) // K``:

    * ``avg > 0``: one uniform offset in each of the K segments,
      ``k * avg + randint(avg)``;
    * else if ``n > K``: K sorted uniform draws in ``[0, max(n - new_length + 1, 1))``
      (TSN would crash when ``n < new_length``; here every offset is then 0);
    * else: all zeros (snippet indices are clamped, so short videos repeat
      their last item).

    Args:
        num_items: n, the number of available items (>= 0).
        num_segments: K >= 1.
        new_length: snippet length >= 1.
        rng: a ``np.random.Generator``, an integer seed, or None (fresh entropy).

    Returns:
        int64 array of shape (K,), each in ``[0, max(n - new_length, 0)]``.

    Raises:
        ValueError: if an argument is out of range.
    """
    _check_args(num_items, num_segments, new_length)
    n, k, length = int(num_items), int(num_segments), int(new_length)
    gen = _rng(rng)
    span = n - length + 1
    avg = span // k
    if avg > 0:
        return np.arange(k, dtype=np.int64) * avg + gen.integers(0, avg, size=k, dtype=np.int64)
    if n > k:
        return np.sort(gen.integers(0, max(span, 1), size=k, dtype=np.int64))
    return np.zeros(k, dtype=np.int64)


def test_offsets(num_items: int, num_segments: int, new_length: int = 1) -> np.ndarray:
    """Uniform snippet offsets for validation and test (TSN ``_get_test_indices``).

    ``tick = (n - new_length + 1) / K``; if positive the offsets are
    ``int(tick / 2 + tick * k)`` (the centre of each segment), else all zeros.
    The test protocol of the paper (Sec. IV-A) uses K = 25.

    Args:
        num_items: n >= 0.
        num_segments: K >= 1.
        new_length: snippet length >= 1.

    Returns:
        int64 array of shape (K,), non-decreasing, in ``[0, max(n - new_length, 0)]``.

    Raises:
        ValueError: if an argument is out of range.
    """
    _check_args(num_items, num_segments, new_length)
    n, k, length = int(num_items), int(num_segments), int(new_length)
    tick = (n - length + 1) / float(k)
    if tick <= 0:
        return np.zeros(k, dtype=np.int64)
    return np.array([int(tick / 2.0 + tick * i) for i in range(k)], dtype=np.int64)


def snippet_indices(offsets, num_items: int, new_length: int) -> np.ndarray:
    """Item indices of the snippets starting at ``offsets``.

    Index ``[k, i] = min(offsets[k] + i, n - 1)``: a snippet that runs past the
    end repeats the last item (TSN stops advancing at the last frame).

    Args:
        offsets: int array (K,) of 0-based offsets.
        num_items: n >= 1 (a video needs one item to be read at all).
        new_length: snippet length L >= 1.

    Returns:
        int64 array (K, L) of 0-based indices in ``[0, n - 1]``.

    Raises:
        ValueError: if ``num_items < 1`` or ``new_length < 1``.
    """
    if int(num_items) < 1:
        raise ValueError(f"num_items must be >= 1 to index a snippet, got {num_items!r}")
    if int(new_length) < 1:
        raise ValueError(f"new_length must be >= 1, got {new_length!r}")
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 1)
    return np.minimum(offsets + np.arange(int(new_length), dtype=np.int64), int(num_items) - 1)


def sample_indices(
    num_items: int,
    num_segments: int,
    new_length: int = 1,
    *,
    training: bool,
    rng: SeedLike = None,
) -> np.ndarray:
    """Snippet item indices: random (training) or uniform (evaluation) offsets.

    Returns:
        int64 array (K, new_length) of 0-based item indices, see
        :func:`snippet_indices`.
    """
    if training:
        offsets = train_offsets(num_items, num_segments, new_length, rng)
    else:
        offsets = test_offsets(num_items, num_segments, new_length)
    return snippet_indices(offsets, max(int(num_items), 1), new_length)


# --------------------------------------------------------------------------------------
# TensorFlow versions (graph ops for tf.data).


def train_offsets_tf(num_items, num_segments: int, new_length: int, seed) -> tf.Tensor:
    """Graph version of :func:`train_offsets`, drawn with stateless random ops.

    Args:
        num_items: scalar integer tensor n >= 0.
        num_segments: K (Python int).
        new_length: snippet length (Python int).
        seed: shape [2] int32/int64 tensor (``tf.random.stateless_*`` seed).

    Returns:
        int32 tensor (K,) in the ranges of :func:`train_offsets`.
    """
    k, length = int(num_segments), int(new_length)
    _check_args(0, k, length)
    n = tf.cast(num_items, tf.int32)
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    span = n - length + 1
    avg = tf.math.floordiv(span, k)
    jitter = tf.random.stateless_uniform(
        [k], seeds[0], minval=0, maxval=tf.maximum(avg, 1), dtype=tf.int32
    )
    segmented = tf.range(k, dtype=tf.int32) * avg + jitter
    anywhere = tf.sort(
        tf.random.stateless_uniform(
            [k], seeds[1], minval=0, maxval=tf.maximum(span, 1), dtype=tf.int32
        )
    )
    zeros = tf.zeros([k], tf.int32)
    return tf.where(avg > 0, segmented, tf.where(n > k, anywhere, zeros))


def test_offsets_tf(num_items, num_segments: int, new_length: int) -> tf.Tensor:
    """Graph version of :func:`test_offsets`; gives exactly the NumPy values.

    Args:
        num_items: scalar integer tensor n >= 0.
        num_segments: K (Python int).
        new_length: snippet length (Python int).

    Returns:
        int32 tensor (K,).
    """
    k, length = int(num_segments), int(new_length)
    _check_args(0, k, length)
    span = tf.cast(num_items, tf.float64) - float(length - 1)
    tick = span / float(k)
    offsets = tf.cast(tick / 2.0 + tick * tf.range(k, dtype=tf.float64), tf.int32)
    return tf.where(tick > 0, offsets, tf.zeros([k], tf.int32))


#: Feichtenhofer et al.'s training strides: tau drawn from [1, 10] frames (CVPR 2016, Sec. 4, "Spatiotemporal
#: architecture", training augmentation).
DEFAULT_STRIDE_RANGE = (1, 10)


def check_stride_range(stride_range) -> Tuple[int, int]:
    """``(tau_min, tau_max)`` as ints with ``1 <= tau_min <= tau_max``.

    Raises:
        ValueError: quoting the value otherwise.
    """
    try:
        low, high = (int(v) for v in stride_range)
        ok = all(float(v) == int(v) and not isinstance(v, bool) for v in stride_range)
    except (TypeError, ValueError):
        ok = False
    if not ok or not 1 <= low <= high:
        raise ValueError(f"snippet_stride must be (tau_min, tau_max) ints with 1 <= tau_min <= tau_max, "
                         f"got {stride_range!r}")
    return low, high


def _longest_stride(n, num_snippets: int, new_length: int):
    """The largest tau with which T snippets of L items fit in n items (>= 1)."""
    if num_snippets == 1:
        return None
    return max((n - new_length) // (num_snippets - 1), 1)


def strided_offsets(
    num_items: int, num_snippets: int, new_length: int = 1, stride_range=DEFAULT_STRIDE_RANGE,
    training: bool = True, rng: SeedLike = None,
) -> np.ndarray:
    """Offsets of T snippets ``tau`` items apart (convolutional two-stream fusion, Sec. 3.5 and 4).

    The temporal fusion layer "receives T temporal chunks that are tau frames
    apart", at ``t, t + tau, ..., t + (T - 1) tau``. Training draws tau
    uniformly from ``stride_range`` (clamped to the largest stride at which the
    T snippets fit in the video, at least 1) and then the start ``t``
    uniformly among those that fit; evaluation takes the largest stride of
    the range that fits and centres the snippets. Snippets that do not fit
    (a video shorter than ``T - 1 + L`` items) are clamped by
    :func:`snippet_indices`, repeating the last items.

    Args:
        num_items: n, available items (frames for RGB, flow pairs for flow).
        num_snippets: T >= 1.
        new_length: L >= 1.
        stride_range: ``(tau_min, tau_max)`` in items, 1 <= tau_min <= tau_max.
        training: random (True) or centred (False).
        rng: seed or generator (training).

    Returns:
        int64 array (T,), non-decreasing, ``offsets[i + 1] - offsets[i] = tau``.

    Raises:
        ValueError: for an argument out of range.
    """
    _check_args(num_items, num_snippets, new_length)
    low, high = check_stride_range(stride_range)
    n, t, length = int(num_items), int(num_snippets), int(new_length)
    longest = _longest_stride(n, t, length)
    high = high if longest is None else min(high, longest)
    low = min(low, high)
    gen = _rng(rng) if training else None
    tau = int(gen.integers(low, high + 1)) if training else high
    span = (t - 1) * tau + length
    room = max(n - span, 0)
    start = int(gen.integers(0, room + 1)) if training else room // 2
    return start + tau * np.arange(t, dtype=np.int64)


def strided_offsets_tf(num_items, num_snippets: int, new_length: int, stride_range, training: bool, seed=None):
    """Graph version of :func:`strided_offsets` (stateless draws keyed by ``seed``, shape [2]).

    Returns:
        int32 tensor (T,).
    """
    t, length = int(num_snippets), int(new_length)
    _check_args(0, t, length)
    low, high = check_stride_range(stride_range)
    n = tf.cast(num_items, tf.int32)
    if t > 1:
        high = tf.minimum(high, tf.maximum(tf.math.floordiv(n - length, t - 1), 1))
    else:
        high = tf.constant(high, tf.int32)
    low = tf.minimum(tf.constant(low, tf.int32), high)
    if training:
        seeds = tf.random.experimental.stateless_split(seed, num=2)
        tau = tf.random.stateless_uniform([], seeds[0], minval=low, maxval=high + 1, dtype=tf.int32)
    else:
        tau = high
    room = tf.maximum(n - ((t - 1) * tau + length), 0)
    if training:
        start = tf.random.stateless_uniform([], seeds[1], minval=0, maxval=room + 1, dtype=tf.int32)
    else:
        start = tf.math.floordiv(room, 2)
    return start + tau * tf.range(t, dtype=tf.int32)


def snippet_indices_tf(offsets, num_items, new_length: int) -> tf.Tensor:
    """Graph version of :func:`snippet_indices`.

    Args:
        offsets: int tensor (K,).
        num_items: scalar integer tensor n >= 1.
        new_length: L (Python int).

    Returns:
        int32 tensor (K, L) of indices in ``[0, n - 1]``.
    """
    offsets = tf.cast(offsets, tf.int32)
    last = tf.maximum(tf.cast(num_items, tf.int32) - 1, 0)
    steps = tf.range(int(new_length), dtype=tf.int32)
    return tf.minimum(offsets[:, tf.newaxis] + steps[tf.newaxis, :], last)


def sample_indices_tf(
    num_items, num_segments: int, new_length: int, *, training: bool, seed=None
) -> tf.Tensor:
    """Graph version of :func:`sample_indices`.

    Args:
        seed: stateless seed (shape [2]); required when ``training``.

    Returns:
        int32 tensor (K, new_length).

    Raises:
        ValueError: if ``training`` and no seed is given.
    """
    if training:
        if seed is None:
            raise ValueError("sample_indices_tf(training=True) needs a stateless seed")
        offsets = train_offsets_tf(num_items, num_segments, new_length, seed)
    else:
        offsets = test_offsets_tf(num_items, num_segments, new_length)
    return snippet_indices_tf(offsets, num_items, new_length)


__all__ = [
    "MODALITIES",
    "check_modality",
    "default_new_length",
    "num_items",
    "train_offsets",
    "test_offsets",
    "snippet_indices",
    "sample_indices",
    "train_offsets_tf",
    "test_offsets_tf",
    "snippet_indices_tf",
    "sample_indices_tf",
    "DEFAULT_STRIDE_RANGE",
    "check_stride_range",
    "strided_offsets",
    "strided_offsets_tf",
]
