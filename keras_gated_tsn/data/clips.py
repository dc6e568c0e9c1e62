"""Clip sampling for clip-level 3D CNNs and GCF-Net: C non-overlapping clips of T frames per video.

GCF-Net (Hsiao, Chen, Ho 2020, Sec. 3.3): "we select non-overlapping 16-frame
from each video sample as one clip, and 10 clips are used as the network
input. If the video contains smaller number of clips than the input size,
loop padding is applied", giving an input of ``10 x 16 x 112 x 112 x 3``.
Here, for a video of n frames, C clips and T frames per clip:

* n >= C·T: the video is split into C equal segments (segment i holds frames
  ``floor(i·n / C)`` up to ``floor((i+1)·n / C)``, at least T of them) and
  each clip is T consecutive frames inside its segment: the clips do not
  overlap and every part of the video has one. Evaluation takes the middle
  of each segment; training a uniformly random position in it (temporal
  jitter; the paper does not say how it trains the clips' positions).
* n < C·T: loop padding (Hara et al.'s ``LoopPadding``, which the paper's
  code base uses): the frames ``0, 1, ..., n-1, 0, 1, ...`` repeated up to
  C·T frames and cut into C consecutive clips (clips of a video shorter than
  T frames loop inside). Training starts the loop at a random frame.

Spatial transforms are shared by every frame of every clip of a video
(GCF-Net Sec. 3.3: "multi-scale cropping", "flipped with 50% probability";
the multi-scale corner crop of Hara et al.'s code base): training takes one
square crop of side ``s · min(H, W)`` for a scale s of :data:`CLIP_SCALES`
at one of 5 positions (4 corners and the centre), resized to S x S, then a
horizontal flip with probability ``flip_prob``; evaluation scales the
shorter side to ``scale_size`` (default S, as Hara et al.'s test ``Scale``)
and takes the centre crop.

Flow clips (``modality="flow"``, for GCF-Net over a 2D flow backbone): each
clip frame is a TSN flow snippet, the stack of L consecutive flow pairs
``p .. p+L-1`` (pair i lies between frames i and i+1; a video of n frames has
n - 1 pairs), channels ``x1, y1, x2, y2, ...`` built as
:func:`keras_gated_tsn.data.pipeline.make_dataset` builds them (its
``flow_input`` volumes too). The clip rule above runs over the video's usable
stack starts, ``max(n - L, 1)`` of them (``0 .. n - 1 - L``), so the last
start's stack ends at the last pair; loop padding, when there are fewer than
C·T starts, loops over these starts. A video with fewer than L pairs has the
one start 0 and its stacks repeat the last pair (as make_dataset's snippets
near the end: pair ``min(p + l, n - 2)``). Crops and flips are those of RGB
clips, cut from the flow frames, and a flip inverts the x channels
(``255 - x``, TSN's flow flip).

The frame folders are those of ``gated-tsn prepare`` (``img_00001.jpg``, ...,
``flow_x_00001.jpg`` / ``flow_y_00001.jpg``, ...) or a TFRecord folder, read
and checked exactly as :mod:`keras_gated_tsn.data.pipeline` reads them (its
list checks and readers, reused).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from keras_gated_tsn.data import flow_stacking, pipeline, transforms
from keras_gated_tsn.data.pipeline import (
    FLOW_X_TEMPLATE,
    FLOW_Y_TEMPLATE,
    RGB_TEMPLATE,
    FramesLike,
    RecordsLike,
    _sources,
    check_ordered_batches,
    ordered_batches,
)

#: Scales of the training crop, relative to the shorter side: Hara et al.'s
#: ``MultiScaleCornerCrop`` (5 scales, step 2^(-1/4)).
CLIP_SCALES = (1.0, 0.84089641525, 0.70710678118, 0.59460355750, 0.5)


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def clip_indices(
    num_frames: int, num_clips: int = 10, clip_length: int = 16, *, training: bool = False, rng=None
) -> np.ndarray:
    """The frames of each clip (NumPy reference of the rule in the module docstring).

    Args:
        num_frames: n >= 1, the video's frame count.
        num_clips: C >= 1.
        clip_length: T >= 1.
        training: random positions in the segments (and a random loop start
            for short videos) instead of the middle (and frame 0).
        rng: ``np.random.Generator`` or seed for ``training``.

    Returns:
        int64 ``(C, T)``: 0-based frame indices (frame ``i`` is file
        ``img_{i+1:05d}.jpg``), each row consecutive frames (modulo n when
        loop padded).

    Raises:
        ValueError: for a count that is not a positive int.
    """
    n = _check_positive("num_frames", num_frames)
    clips = _check_positive("num_clips", num_clips)
    length = _check_positive("clip_length", clip_length)
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if n < clips * length:
        shift = int(generator.integers(n)) if training else 0
        return ((shift + np.arange(clips * length)) % n).reshape(clips, length).astype(np.int64)
    bounds = np.arange(clips + 1) * n // clips
    slack = bounds[1:] - bounds[:-1] - length
    offsets = generator.integers(0, slack + 1) if training else slack // 2
    return (bounds[:-1] + offsets)[:, None] + np.arange(length)[None, :]


def clip_indices_tf(num_frames, num_clips: int, clip_length: int, seed=None) -> tf.Tensor:
    """Graph version of :func:`clip_indices`: the same values without a seed
    (evaluation), the same ranges (not the same draws) with one.

    Args:
        num_frames: scalar int tensor n >= 1.
        num_clips, clip_length: C, T (Python ints).
        seed: None (evaluation) or a stateless seed, int shape ``[2]`` (training).

    Returns:
        int32 ``(C, T)`` 0-based frame indices.
    """
    clips = _check_positive("num_clips", num_clips)
    length = _check_positive("clip_length", clip_length)
    n = tf.cast(num_frames, tf.int32)
    span = clips * length
    bounds = tf.range(clips + 1, dtype=tf.int32) * n // clips
    slack = bounds[1:] - bounds[:-1] - length
    if seed is None:
        offsets = slack // 2
        shift = tf.constant(0, tf.int32)
    else:
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
        draws = tf.random.stateless_uniform([clips], seeds[0])
        offsets = tf.minimum(tf.cast(tf.floor(draws * tf.cast(slack + 1, tf.float32)), tf.int32), slack)
        shift = tf.random.stateless_uniform([], seeds[1], minval=0, maxval=tf.int32.max, dtype=tf.int32) % n
    spread = (bounds[:-1] + offsets)[:, None] + tf.range(length, dtype=tf.int32)[None, :]
    looped = tf.reshape((shift + tf.range(span, dtype=tf.int32)) % n, [clips, length])
    return tf.where(n >= span, spread, looped)


def flow_clip_indices(
    num_frames: int, num_clips: int = 10, clip_length: int = 16, new_length: int = 5, *,
    training: bool = False, rng=None,
) -> np.ndarray:
    """The flow pairs of each clip frame's stack (NumPy reference of the flow rule).

    Args:
        num_frames: n >= 2, the video's RGB frame count (n - 1 flow pairs).
        num_clips, clip_length: C, T.
        new_length: L >= 1, flow pairs per stack.
        training, rng: as :func:`clip_indices`.

    Returns:
        int64 ``(C, T, L)``: 0-based flow pair indices (pair ``i`` is file
        ``flow_x_{i+1:05d}.jpg``); ``[c, t]`` is the stack starting at the
        clip position of :func:`clip_indices` over ``max(n - L, 1)`` usable
        starts, clamped to the last pair when the video has fewer than L.

    Raises:
        ValueError: for a count that is not a positive int, or n < 2.
    """
    n = _check_positive("num_frames", num_frames)
    length = _check_positive("new_length", new_length)
    if n < 2:
        raise ValueError(f"num_frames must be >= 2 for flow (a flow pair needs two frames), got {n}")
    pairs = n - 1
    starts = clip_indices(max(pairs - length + 1, 1), num_clips, clip_length, training=training, rng=rng)
    return np.minimum(starts[..., None] + np.arange(length), pairs - 1)


def flow_clip_indices_tf(num_pairs, num_clips: int, clip_length: int, new_length: int, seed=None) -> tf.Tensor:
    """Graph version of :func:`flow_clip_indices`, from the flow pair count.

    Args:
        num_pairs: scalar int tensor, the video's flow pairs (n - 1) >= 1.
        num_clips, clip_length, new_length: C, T, L (Python ints).
        seed: as :func:`clip_indices_tf`.

    Returns:
        int32 ``(C·T, L)``: the stacks' pair indices, clip-major (what
        the pipeline's reader reads).
    """
    length = _check_positive("new_length", new_length)
    pairs = tf.cast(num_pairs, tf.int32)
    usable = tf.maximum(pairs - length + 1, 1)
    starts = tf.reshape(clip_indices_tf(usable, num_clips, clip_length, seed), [-1])
    return tf.minimum(starts[:, None] + tf.range(length, dtype=tf.int32)[None, :], tf.maximum(pairs - 1, 0))


def make_clip_dataset(
    records_or_list_file: Optional[RecordsLike],
    frames_root: FramesLike,
    *,
    num_clips: int = 10,
    clip_length: int = 16,
    input_size: int = 112,
    batch_size: int = 8,
    training: bool = True,
    seed: Optional[int] = None,
    shuffle: Optional[bool] = None,
    scales: Sequence[float] = CLIP_SCALES,
    max_distort: int = 0,
    flip_prob: float = 0.5,
    scale_size: Optional[int] = None,
    rgb_template: str = RGB_TEMPLATE,
    modality: str = "rgb",
    new_length: int = 5,
    flow_input: flow_stacking.FlowInputLike = None,
    flow_x_template: str = FLOW_X_TEMPLATE,
    flow_y_template: str = FLOW_Y_TEMPLATE,
    num_parallel_calls: Optional[int] = tf.data.AUTOTUNE,
    prefetch: Optional[int] = tf.data.AUTOTUNE,
    drop_remainder: bool = False,
    repeat: bool = False,
    start_epoch: int = 0,
    skip_batches: int = 0,
    num_shards: int = 1,
    shard_index: int = 0,
) -> tf.data.Dataset:
    """Batches of C clips of T RGB frames (or flow stacks) per video (GCF-Net Sec. 3.3).

    Clip positions follow :func:`clip_indices_tf` (non-overlapping clips
    covering the video, loop padding below C·T frames); the crop and the flip
    are drawn once per video and applied to all its frames. See the module
    docstring for the rules and their sources.

    Args:
        records_or_list_file: a list file (``<video> <num_frames> <label>``),
            or :class:`~keras_gated_tsn.data.lists.VideoRecord`s or
            ``(video, num_frames, label)`` tuples; None with a TFRecord
            ``frames_root`` (its videos). Checked before any work, as
            :func:`keras_gated_tsn.data.pipeline.make_dataset` checks them.
        frames_root: the frame folders' root (``DATA/frames``) or a TFRecord
            folder (:mod:`~keras_gated_tsn.data.tfrecord`).
        num_clips: C (paper: 10).
        clip_length: T (paper: 16).
        input_size: S, the output side in pixels (paper: 112).
        batch_size: videos per batch.
        training: random clip positions, multi-scale corner crop and flip
            (True), or the deterministic middle clips and centre crop.
        seed: makes shuffling and every draw reproducible (and the map
            deterministic); None draws fresh entropy.
        shuffle: shuffle the videos each pass; default ``training``.
        scales: training crop scales in (0, 1] of the shorter side.
        max_distort: largest scale-index distance between the crop's height
            and width (0: square crops, as Hara et al.).
        flip_prob: probability of the horizontal flip (training), in [0, 1].
        scale_size: evaluation shorter side before the centre crop, >= S;
            default S.
        rgb_template: RGB frame file name with one integer field (1-based).
        modality: ``"rgb"`` (frames) or ``"flow"`` (each clip frame a flow
            stack of ``new_length`` pairs, see the module docstring: the
            input of ``GCFNet(modality="flow")`` over a 2D flow backbone).
        new_length: L, flow pairs per stack (flow only; >= 1 always).
        flow_input: how a stack's 2L channels are built from its L pairs, a
            :class:`~keras_gated_tsn.data.flow_stacking.FlowInput` or its
            settings dict (flow only; default plain optical flow stacking), as
            in :func:`keras_gated_tsn.data.pipeline.make_dataset`.
        flow_x_template, flow_y_template: flow file names (flow only; as
            :func:`keras_gated_tsn.data.pipeline.make_dataset`).
        num_parallel_calls: parallelism of the decoding map.
        prefetch: batches to prefetch (None or 0: none).
        drop_remainder: drop a last partial batch.
        repeat: repeat forever (epoch boundaries kept: reshuffled each pass).
        start_epoch, skip_batches: with a ``seed``, the epoch the dataset
            starts at and the batches of it to leave out (ints >= 0): where a
            resumed run goes on.
        num_shards, shard_index: this worker's share (shard ``w`` of ``W``)
            of every global batch, in batches of ``batch_size / W``, partial
            global batches dropped; needs a ``seed``. Both as for
            :func:`keras_gated_tsn.data.pipeline.make_dataset`.

    With a ``seed`` and ``repeat`` (or a start, skip or shards), epoch ``e`` of
    a training dataset is a pure function of ``(seed, e)``: its order is a
    stateless permutation and each video's random draws (clip positions, crop,
    flip) are keyed by ``(seed, e, position)``; without ``repeat`` it is that
    one epoch. (A seeded dataset without these draws anew on each pass, the
    same on every run.) A run resumed at epoch ``e``, batch ``s``
    (``start_epoch=e, skip_batches=s``) sees exactly the batches an
    uninterrupted run would, and ``W`` shards together see the batches of one
    process (:func:`keras_gated_tsn.data.pipeline.ordered_batches`, as
    :func:`keras_gated_tsn.data.pipeline.make_dataset`).

    Returns:
        A dataset of ``(clips, label)``: ``clips`` uint8 ``(B, C, T, S, S, 3)``
        RGB pixels 0-255, or for flow ``(B, C, T, S, S, 2L)`` uint8-encoded
        flow, channels ``x1, y1, x2, y2, ...`` (128 = no motion); ``label``
        int32 ``(B,)``; B is ``batch_size`` (``batch_size / num_shards`` per
        shard).

    Raises:
        ValueError: for a size, count or probability out of range (quoted),
            bad scales, or a bad record (naming the list file and line); for
            a modality not ``"rgb"`` / ``"flow"``, a ``flow_input`` with
            ``"rgb"`` or a bad one (an odd L bi-directional), a one-frame
            video in flow mode (no flow pair); for
            a start, skip or shards without ``training=True`` and a seed, a
            ``shard_index`` >= ``num_shards``, a ``batch_size`` that
            ``num_shards`` does not divide, or (epoch-indexed, partial
            batches dropped) fewer videos than one batch.
        FileNotFoundError: for a missing list file, frames root, video folder
            or frame (naming the video).
    """
    if not isinstance(modality, str) or modality not in ("rgb", "flow"):
        raise ValueError(f"modality must be 'rgb' or 'flow', got {modality!r}")
    flow = modality == "flow"
    stack = _check_positive("new_length", new_length)
    if not flow and flow_input is not None:
        raise ValueError(f"flow_input is for modality='flow', got {flow_input!r} with modality 'rgb'")
    clips = _check_positive("num_clips", num_clips)
    length = _check_positive("clip_length", clip_length)
    size = _check_positive("input_size", input_size)
    batch_size = _check_positive("batch_size", batch_size)
    if isinstance(flip_prob, bool) or not isinstance(flip_prob, (int, float)) or not 0.0 <= flip_prob <= 1.0:
        raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob!r}")
    scales, max_distort = transforms._check_scales(scales, max_distort)
    scale_size = size if scale_size is None else _check_positive("scale_size", scale_size)
    if scale_size < size:
        raise ValueError(f"scale_size must be >= input_size {size}, got {scale_size}")
    shuffle = training if shuffle is None else bool(shuffle)
    check_ordered_batches(training=training, seed=seed, batch_size=batch_size, start_epoch=start_epoch,
                          skip_batches=skip_batches, num_shards=num_shards, shard_index=shard_index)

    if flow:
        flow_input = flow_stacking.as_flow_input(flow_input)
        flow_input.check_length(stack)
        # (counts: the videos' flow pairs, n - 1; a one-frame video is refused, naming it.)
        records, reader, locations, counts = _sources(
            records_or_list_file, frames_root, "flow", stack,
            {"rgb": rgb_template, "flow_x": flow_x_template, "flow_y": flow_y_template}, flow_input,
        )
    else:
        records, reader, locations, counts = _sources(
            records_or_list_file, frames_root, "rgb", 1, {"rgb": rgb_template}
        )
    columns = locations + (tf.constant(counts, tf.int32), tf.constant([r.label for r in records], tf.int32))
    frames_per_video = clips * length
    flip_prob = float(flip_prob)

    def load_flow(payload, pairs, label, key):
        seeds = [tf.stack([key, tf.constant(i, tf.int64)]) for i in range(3)]
        indices = flow_clip_indices_tf(pairs, clips, length, stack, seeds[0] if training else None)
        encoded = reader.encoded(payload, indices)
        if training:
            # As make_dataset's flow: the crop's window decoded alone for plain stacking
            # (the same pixels as whole planes cut), whole planes for other volumes.
            windows = pipeline._DECODE_WINDOWS and reader.flow_input.is_plain
            if windows:
                hw = reader.size(encoded, "flow")
            else:
                frames = reader.decode(encoded)["flow"]
                hw = tf.shape(frames)[1:3]
            box = transforms.sample_multiscale_crop_tf(
                hw[0], hw[1], size, seeds[1], scales, max_distort, more_fix_crop=False
            )
            if windows:
                window = reader.decode_window(encoded, "flow", box)
                x = transforms.crop_and_resize(window, tf.concat([[0, 0], tf.cast(box, tf.int32)[2:]], 0), size)
            else:
                x = transforms.crop_and_resize(frames, box, size)
            do_flip = tf.random.stateless_uniform([], seeds[2], dtype=tf.float32) < flip_prob
            x = tf.cond(do_flip, lambda: transforms.flip(x, True), lambda: x)
        else:
            x = transforms.center_crop(reader.decode(encoded)["flow"], size, scale_size)
        x = tf.ensure_shape(x, [frames_per_video, size, size, 2 * stack])
        return tf.reshape(x, [clips, length, size, size, 2 * stack]), label

    def load(payload, n, label, key):
        seeds = [tf.stack([key, tf.constant(i, tf.int64)]) for i in range(3)]
        indices = clip_indices_tf(n, clips, length, seeds[0] if training else None)
        frames = reader.decode(reader.encoded(payload, tf.reshape(indices, [-1, 1])))["rgb"]
        if training:
            shape = tf.shape(frames)
            box = transforms.sample_multiscale_crop_tf(
                shape[1], shape[2], size, seeds[1], scales, max_distort, more_fix_crop=False
            )
            x = transforms.crop_and_resize(frames, box, size)
            do_flip = tf.random.stateless_uniform([], seeds[2], dtype=tf.float32) < flip_prob
            x = tf.cond(do_flip, lambda: transforms.flip_rgb(x), lambda: x)
        else:
            x = transforms.center_crop(frames, size, scale_size)
        x = tf.ensure_shape(x, [frames_per_video, size, size, 3])
        return tf.reshape(x, [clips, length, size, size, 3]), label

    return ordered_batches(
        columns, len(records), reader, load_flow if flow else load, training=training, seed=seed,
        shuffle=shuffle, repeat=repeat, batch_size=batch_size, drop_remainder=drop_remainder,
        start_epoch=start_epoch, skip_batches=skip_batches, num_shards=num_shards, shard_index=shard_index,
        num_parallel_calls=num_parallel_calls, prefetch=prefetch,
    )


__all__ = ["CLIP_SCALES", "clip_indices", "clip_indices_tf", "flow_clip_indices", "flow_clip_indices_tf",
           "make_clip_dataset"]
