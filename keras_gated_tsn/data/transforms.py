"""Group transforms of TSN: multi-scale corner crops, flips, centre and 10-crop views.

Every transform applies to a whole *group*: all frames of all snippets of one
video get the same crop and the same flip, and in the joint mode so do its RGB
frames and its flow stacks (gated TSN, Sec. III-B: "each group of RGB frames
and optical flow stack starts from the same point"). Tensors are uint8 pixels
0-255 laid out ``(N, H, W, C)`` (any leading axes for the flips); flow is
uint8-encoded (128 = no motion) with channels interleaved ``x1, y1, x2, y2, ...``,
so the x components are the even channels.

Training augmentation is TSN's (Wang et al., ECCV 2016, Sec. 3.2 "Data
Augmentation"; the ``GroupMultiScaleCrop(input_size, [1, .875, .75, .66])`` +
``GroupRandomHorizontalFlip`` of its reference code), which the gated TSN adopts
(Sec. IV-A): a crop whose width and height are each ``base * s`` for a scale
``s`` (``base`` = the shorter image side, sizes within 3 px of the input size
snapped to it, width and height scale indices at most ``max_distort`` apart),
placed at one of 13 fixed grid positions, resized to ``input_size`` squared;
then a horizontal flip with probability 0.5, which for flow also inverts the x
component (``255 - x``).

Evaluation views (paper Sec. IV-A "Network Testing"): frames scaled so their
shorter side is ``scale_size`` (default ``round(input_size * 256 / 224)``, 256
for 224), then the centre crop (1 view) or the 4 corners + centre and their
horizontal flips (10 views; flips invert flow x).

The NumPy functions (:func:`multiscale_crop_sizes`, :func:`fixed_crop_offsets`)
are the reference for the candidate crops; the TensorFlow functions run inside
``tf.data``.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
import tensorflow as tf

DEFAULT_SCALES = (1.0, 0.875, 0.75, 0.66)
"""TSN's multi-scale crop scales (relative to the shorter image side)."""

# Grid positions of the fixed crops as (x multiple, y multiple) of the steps
# ((W - w) // 4, (H - h) // 4): the 4 corners and the centre first, then the
# "more fix crop" positions of TSN.
_GRID = (
    (0, 0),  # upper left
    (4, 0),  # upper right
    (0, 4),  # lower left
    (4, 4),  # lower right
    (2, 2),  # centre
    (0, 2),  # centre left
    (4, 2),  # centre right
    (2, 4),  # lower centre
    (2, 0),  # upper centre
    (1, 1),  # upper left quarter
    (3, 1),  # upper right quarter
    (1, 3),  # lower left quarter
    (3, 3),  # lower right quarter
)


def default_scale_size(input_size: int) -> int:
    """Shorter side the evaluation frames are scaled to: ``round(input_size * 256 / 224)``."""
    return int(round(int(input_size) * 256 / 224))


def _check_size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _check_scales(scales: Sequence[float], max_distort: int) -> Tuple[Tuple[float, ...], int]:
    scales = tuple(float(s) for s in scales)
    if not scales or any(not (0.0 < s <= 1.0) for s in scales):
        raise ValueError(f"scales must be a non-empty sequence of values in (0, 1], got {scales!r}")
    if (
        isinstance(max_distort, bool)
        or not isinstance(max_distort, (int, np.integer))
        or max_distort < 0
    ):
        raise ValueError(f"max_distort must be an int >= 0, got {max_distort!r}")
    return scales, int(max_distort)


def _pair_indices(num_scales: int, max_distort: int) -> Tuple[List[int], List[int]]:
    """Scale-index pairs (height index, width index) with ``|i - j| <= max_distort``."""
    hi, wi = [], []
    for i in range(num_scales):
        for j in range(num_scales):
            if abs(i - j) <= max_distort:
                hi.append(i)
                wi.append(j)
    return hi, wi


def multiscale_crop_sizes(
    height: int,
    width: int,
    input_size: int,
    scales: Sequence[float] = DEFAULT_SCALES,
    max_distort: int = 1,
) -> np.ndarray:
    """Candidate crop sizes of TSN's multi-scale crop (NumPy reference).

    Sizes are ``int(min(height, width) * s)`` for each scale, snapped to
    ``input_size`` when within 3 px (``|size - input_size| < 3``) and clamped to
    the image; pairs take the height from scale ``i`` and the width from scale
    ``j`` with ``|i - j| <= max_distort``.

    Args:
        height, width: image size in pixels.
        input_size: network input side S in pixels.
        scales: scales in (0, 1].
        max_distort: largest allowed scale-index distance between width and height.

    Returns:
        int64 array (P, 2) of ``(crop_h, crop_w)``, in the order height index
        outer, width index inner (P = 10 for the default scales).

    Raises:
        ValueError: on a non-positive size or bad scales.
    """
    height, width = _check_size("height", height), _check_size("width", width)
    input_size = _check_size("input_size", input_size)
    scales, max_distort = _check_scales(scales, max_distort)
    base = min(height, width)
    sizes = [int(base * s) for s in scales]
    sizes = [input_size if abs(s - input_size) < 3 else s for s in sizes]
    hi, wi = _pair_indices(len(scales), max_distort)
    return np.array(
        [(min(sizes[i], height), min(sizes[j], width)) for i, j in zip(hi, wi)], dtype=np.int64
    )


def fixed_crop_offsets(
    height: int, width: int, crop_h: int, crop_w: int, more_fix_crop: bool = True
) -> np.ndarray:
    """Fixed crop positions of TSN ("fix crop" / "more fix crop"), NumPy reference.

    With ``h_step = (height - crop_h) // 4`` and ``w_step = (width - crop_w) // 4``
    the positions are, in this order: upper left, upper right, lower left, lower
    right, centre; and with ``more_fix_crop`` also centre left, centre right,
    lower centre, upper centre and the four quarter points.

    Returns:
        int64 array (13, 2) — or (5, 2) without ``more_fix_crop`` — of the
        top-left corners ``(y, x)`` in pixels.

    Raises:
        ValueError: if the crop is larger than the image.
    """
    if crop_h > height or crop_w > width:
        raise ValueError(f"crop {crop_h}x{crop_w} does not fit in a {height}x{width} image")
    h_step, w_step = (height - crop_h) // 4, (width - crop_w) // 4
    grid = _GRID if more_fix_crop else _GRID[:5]
    return np.array([(ym * h_step, xm * w_step) for xm, ym in grid], dtype=np.int64)


# --------------------------------------------------------------------------------------
# TensorFlow ops.


def multiscale_crop_sizes_tf(
    height, width, input_size: int, scales: Sequence[float] = DEFAULT_SCALES, max_distort: int = 1
) -> tf.Tensor:
    """Graph version of :func:`multiscale_crop_sizes` (same values).

    Args:
        height, width: scalar int tensors.

    Returns:
        int32 tensor (P, 2) of ``(crop_h, crop_w)``; P is static.
    """
    input_size = _check_size("input_size", input_size)
    scales, max_distort = _check_scales(scales, max_distort)
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    base = tf.cast(tf.minimum(height, width), tf.float64)
    sizes = tf.cast(tf.floor(base * tf.constant(scales, tf.float64)), tf.int32)
    sizes = tf.where(tf.abs(sizes - input_size) < 3, tf.constant(input_size, tf.int32), sizes)
    hi, wi = _pair_indices(len(scales), max_distort)
    crop_h = tf.minimum(tf.gather(sizes, hi), height)
    crop_w = tf.minimum(tf.gather(sizes, wi), width)
    return tf.stack([crop_h, crop_w], axis=1)


def fixed_crop_offsets_tf(height, width, crop_h, crop_w, more_fix_crop: bool = True) -> tf.Tensor:
    """Graph version of :func:`fixed_crop_offsets`: int32 (13, 2) or (5, 2) of ``(y, x)``."""
    h_step = tf.math.floordiv(tf.cast(height, tf.int32) - tf.cast(crop_h, tf.int32), 4)
    w_step = tf.math.floordiv(tf.cast(width, tf.int32) - tf.cast(crop_w, tf.int32), 4)
    grid = np.array(_GRID if more_fix_crop else _GRID[:5], dtype=np.int32)
    return tf.stack([grid[:, 1] * h_step, grid[:, 0] * w_step], axis=1)


def sample_multiscale_crop_tf(
    height,
    width,
    input_size: int,
    seed,
    scales: Sequence[float] = DEFAULT_SCALES,
    max_distort: int = 1,
    more_fix_crop: bool = True,
) -> tf.Tensor:
    """Draws one multi-scale crop box (TSN ``GroupMultiScaleCrop``, fixed-grid offsets).

    The crop size is uniform over the candidate pairs of
    :func:`multiscale_crop_sizes_tf`, its position uniform over the 13 grid
    positions of :func:`fixed_crop_offsets_tf` (duplicates kept, as in TSN).

    Args:
        height, width: scalar int tensors, the image size.
        input_size: S (Python int), used for snapping.
        seed: stateless seed, shape [2].

    Returns:
        int32 tensor (4,): ``(y, x, crop_h, crop_w)`` in pixels, inside the image.
    """
    sizes = multiscale_crop_sizes_tf(height, width, input_size, scales, max_distort)
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    pick = tf.random.stateless_uniform(
        [], seeds[0], minval=0, maxval=int(sizes.shape[0]), dtype=tf.int32
    )
    crop_h, crop_w = sizes[pick, 0], sizes[pick, 1]
    offsets = fixed_crop_offsets_tf(height, width, crop_h, crop_w, more_fix_crop)
    where = tf.random.stateless_uniform(
        [], seeds[1], minval=0, maxval=int(offsets.shape[0]), dtype=tf.int32
    )
    return tf.stack([offsets[where, 0], offsets[where, 1], crop_h, crop_w])


def rescale_box(box, from_hw, to_hw) -> tf.Tensor:
    """Maps a ``(y, x, h, w)`` pixel box of an image of size ``from_hw`` onto ``to_hw``.

    Used in the joint mode when flow and RGB frames differ in size, so both get
    the same relative crop. Identity when the sizes agree.

    Returns:
        int32 tensor (4,), rounded, clamped to lie inside ``to_hw``.
    """
    box = tf.cast(box, tf.float64)
    src = tf.cast(tf.stack([from_hw[0], from_hw[1], from_hw[0], from_hw[1]]), tf.float64)
    dst = tf.cast(tf.stack([to_hw[0], to_hw[1], to_hw[0], to_hw[1]]), tf.int32)
    out = tf.cast(tf.round(box * tf.cast(dst, tf.float64) / src), tf.int32)
    size = tf.clip_by_value(out[2:], 1, dst[:2])
    corner = tf.clip_by_value(out[:2], 0, dst[:2] - size)
    return tf.concat([corner, size], axis=0)


def _to_uint8(x: tf.Tensor) -> tf.Tensor:
    """Rounds (half to even) float pixels of a bilinear resize of uint8 images to uint8.

    No clip: a bilinear value is ``a + (b - a) * t`` twice over, with ``t`` in
    [0, 1) and ``a``, ``b`` in [0, 255]; in float32 that stays within rounding
    error (~1e-5) of [min(a, b), max(a, b)], so it rounds into [0, 255] and a
    clip to [0, 255] would change nothing (it cost a third of this function).
    """
    return tf.cast(tf.round(x), tf.uint8)


def crop_and_resize(frames, box, size: int) -> tf.Tensor:
    """Crops the same box from every frame and resizes it to ``size`` x ``size``.

    Args:
        frames: uint8 tensor (N, H, W, C).
        box: int tensor (4,) ``(y, x, crop_h, crop_w)`` inside the image.
        size: output side S (Python int).

    Returns:
        uint8 tensor (N, S, S, C): the crop, bilinearly resized (half-pixel
        centres, no antialiasing) and rounded; the exact pixels when the crop is
        already S x S.
    """
    size = _check_size("size", size)
    box = tf.cast(box, tf.int32)
    y, x, h, w = box[0], box[1], box[2], box[3]
    crop = frames[:, y : y + h, x : x + w, :]

    def resized():
        # float32 in: the same values the uint8 kernel converts, and a faster kernel.
        return _to_uint8(tf.image.resize(tf.cast(crop, tf.float32), [size, size], method="bilinear"))

    out = tf.cond(tf.logical_and(tf.equal(h, size), tf.equal(w, size)), lambda: crop, resized)
    return tf.ensure_shape(out, [frames.shape[0], size, size, frames.shape[-1]])


def _reverse_width(x) -> tf.Tensor:
    """``tf.reverse(x, [-2])`` of (..., W, C), computed on a 3-D view (twice as fast as on 4-D or 5-D)."""
    shape = tf.shape(x)
    view = tf.reshape(x, tf.stack([-1, shape[-2], shape[-1]]))
    return tf.reshape(tf.reverse(view, axis=[1]), shape)


def flip_rgb(x) -> tf.Tensor:
    """Mirrors RGB images left-right: uint8 (..., H, W, C) -> same shape."""
    x = tf.convert_to_tensor(x)
    if x.shape.rank is None or x.shape.rank < 3:
        return tf.reverse(x, axis=[-2])
    return tf.ensure_shape(_reverse_width(x), x.shape)


def flip_flow(x) -> tf.Tensor:
    """Mirrors interleaved flow stacks left-right and inverts their x component.

    A mirrored video moves the other way horizontally, so the x channels (even
    indices of ``x1, y1, x2, y2, ...``) become ``255 - x``; the y channels are
    only mirrored (TSN ``GroupRandomHorizontalFlip(is_flow=True)``).

    Args:
        x: uint8 tensor (..., H, W, 2L).

    Returns:
        uint8 tensor, same shape.
    """
    x = tf.convert_to_tensor(x)
    channels = x.shape[-1]
    if x.dtype == tf.uint8 and channels is not None and channels % 2 == 0 and x.shape.rank >= 3:
        # Each (x, y) byte pair as one uint16: half the elements to reverse, and
        # 255 - x == x XOR 255 on the x byte is one XOR with a scalar.
        shape = tf.shape(x)
        pairs = tf.reshape(x, tf.stack([-1, shape[-2], channels // 2, 2]))
        words = tf.reverse(tf.bitcast(pairs, tf.uint16), axis=[1])
        words = tf.bitwise.bitwise_xor(words, tf.constant(_X_BYTE_MASK, tf.uint16))
        return tf.ensure_shape(tf.reshape(tf.bitcast(words, tf.uint8), shape), x.shape)
    x = tf.reverse(x, axis=[-2])
    if channels is None:
        is_x = tf.equal(tf.math.floormod(tf.range(tf.shape(x)[-1]), 2), 0)
        return tf.where(is_x, tf.constant(255, x.dtype) - x, x)
    if x.dtype == tf.uint8:
        # 255 - v == v XOR 255 for uint8 (and v XOR 0 == v): one cheap elementwise op.
        mask = tf.constant(np.where(np.arange(channels) % 2 == 0, 255, 0).astype(np.uint8))
        return tf.bitwise.bitwise_xor(x, mask)
    is_x = tf.constant(np.arange(channels) % 2 == 0)
    return tf.where(is_x, tf.constant(255, x.dtype) - x, x)


# A uint16 whose first byte in memory is 255 and second 0, whatever the byte order.
_X_BYTE_MASK = int(np.frombuffer(bytes([255, 0]), dtype=np.uint16)[0])


def flip(x, flow: bool) -> tf.Tensor:
    """:func:`flip_flow` if ``flow`` else :func:`flip_rgb`."""
    return flip_flow(x) if flow else flip_rgb(x)


def resize_shorter_side(frames, size: int) -> tf.Tensor:
    """Scales frames so their shorter side is ``size`` (TSN ``GroupScale``).

    The longer side becomes ``int(size * long / short)``. Frames already that
    size are returned untouched.

    Args:
        frames: uint8 tensor (N, H, W, C).
        size: target shorter side in pixels.

    Returns:
        uint8 tensor (N, H', W', C), bilinear (half-pixel centres), rounded.
    """
    size = _check_size("size", size)
    shape = tf.shape(frames)
    h, w = shape[1], shape[2]
    short = tf.minimum(h, w)
    scaled_h = tf.where(h <= w, size, tf.cast(size * h / short, tf.int32))
    scaled_w = tf.where(h <= w, tf.cast(size * w / short, tf.int32), size)

    def resized():
        return _to_uint8(tf.image.resize(frames, tf.stack([scaled_h, scaled_w]), method="bilinear"))

    out = tf.cond(tf.equal(short, size), lambda: frames, resized)
    return tf.ensure_shape(out, [frames.shape[0], None, None, frames.shape[-1]])


def oversample(
    frames, input_size: int, scale_size: int | None = None, *, crops: int = 10, flow: bool = False
) -> tf.Tensor:
    """Evaluation views of TSN's test protocol (paper Sec. IV-A "Network Testing").

    The frames are scaled to shorter side ``scale_size`` (:func:`resize_shorter_side`),
    then ``input_size`` squares are cut at the 5 fixed positions of
    :func:`fixed_crop_offsets` without ``more_fix_crop`` (upper left, upper
    right, lower left, lower right, centre).

    Args:
        frames: uint8 tensor (N, H, W, C).
        input_size: S.
        scale_size: shorter side before cropping, >= S; default
            :func:`default_scale_size`.
        crops: 1 (the centre crop), 3 (the start, middle and end of the
            longer side, centred on the shorter: mmaction's three-crop test),
            5 (corners + centre) or 10 (those 5, then their horizontal flips:
            view ``5 + i`` mirrors view ``i``).
        flow: whether ``frames`` are interleaved flow (flips then invert x).

    Returns:
        uint8 tensor (N, crops, S, S, C).

    Raises:
        ValueError: on a bad ``crops`` or ``scale_size < input_size``.
    """
    input_size = _check_size("input_size", input_size)
    scale_size = default_scale_size(input_size) if scale_size is None else scale_size
    scale_size = _check_size("scale_size", scale_size)
    if scale_size < input_size:
        raise ValueError(f"scale_size must be >= input_size {input_size}, got {scale_size}")
    if crops not in (1, 3, 5, 10):
        raise ValueError(f"crops must be 1, 3, 5 or 10, got {crops!r}")
    frames = resize_shorter_side(frames, scale_size)
    shape = tf.shape(frames)
    if crops == 3:
        offsets = _three_crop_offsets(shape[1], shape[2], input_size)
    else:
        offsets = fixed_crop_offsets_tf(shape[1], shape[2], input_size, input_size, more_fix_crop=False)
    positions = [4] if crops == 1 else range(3 if crops == 3 else 5)
    views = []
    for i in positions:
        y, x = offsets[i, 0], offsets[i, 1]
        views.append(frames[:, y : y + input_size, x : x + input_size, :])
    out = tf.stack(views, axis=1)
    if crops == 10:
        out = tf.concat([out, flip(out, flow)], axis=1)
    return tf.ensure_shape(out, [frames.shape[0], crops, input_size, input_size, frames.shape[-1]])


def _three_crop_offsets(height, width, size: int) -> tf.Tensor:
    """``(y, x)`` of three squares along the longer side: its start, middle and
    end, centred on the shorter side (mmaction's ``ThreeCrop``)."""
    y_mid, x_mid = (height - size) // 2, (width - size) // 2
    zero = tf.zeros_like(y_mid)
    landscape = tf.stack([[y_mid, zero], [y_mid, x_mid], [y_mid, width - size]])
    portrait = tf.stack([[zero, x_mid], [y_mid, x_mid], [height - size, x_mid]])
    return tf.where(width >= height, landscape, portrait)


def center_crop(frames, input_size: int, scale_size: int | None = None) -> tf.Tensor:
    """The single centre view: uint8 (N, H, W, C) -> uint8 (N, S, S, C).

    Same as view 4 of :func:`oversample` (frames scaled to shorter side
    ``scale_size``, then the centre grid position).
    """
    return oversample(frames, input_size, scale_size, crops=1)[:, 0]


__all__ = [
    "DEFAULT_SCALES",
    "default_scale_size",
    "multiscale_crop_sizes",
    "fixed_crop_offsets",
    "multiscale_crop_sizes_tf",
    "fixed_crop_offsets_tf",
    "sample_multiscale_crop_tf",
    "rescale_box",
    "crop_and_resize",
    "flip_rgb",
    "flip_flow",
    "flip",
    "resize_shorter_side",
    "oversample",
    "center_crop",
]
