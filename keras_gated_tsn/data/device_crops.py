"""TSN's training crops on the accelerator: the host decodes, the train step crops, resizes and flips.

With ``make_dataset(..., augment_on="device")`` the ``tf.data`` pipeline
stops after decoding. A training batch then holds each video's whole frames
(all videos of a dataset share one frame size, as ``gated-tsn prepare`` writes
them) with the multi-scale crop box and the flip it drew, and the models'
``train_step`` (:class:`~keras_gated_tsn.models.TSN`,
:class:`~keras_gated_tsn.models.GatedTSN`) turns it into the batch the host
pipeline would have given, on the device the step runs on, with
:func:`crop_resize_flip`. The host's CPU time per sample drops to reading and
decoding JPEG files (``benchmarks/pipeline.py``), which is what starves
accelerators in two-stream training: a flow sample decodes 30 grayscale
planes and resizes ten 224x224 channels per snippet.

The pixels are those of the host pipeline (TSN's augmentation, Wang et al.
ECCV 2016 Sec. 3.2, adopted by the gated TSN Sec. IV-A): the same draws, the
same half-pixel-centre bilinear interpolation as ``tf.image.resize`` in the
same float32 arithmetic (the four neighbours gathered, then interpolated along
x, then y), rounded half to even, then mirrored (and for flow ``255 - x``).
Equal pixels on the CPU, eagerly and inside a compiled step (tested); another
device's kernels may contract the arithmetic differently (fused multiply-adds),
which can move a value lying within a rounding error of ``k + 0.5`` by one level.

Batch layout (``x`` of ``(x, label)``; B videos, K snippets, frames H x W):

* ``"rgb_frames"``: uint8 (B, K, h, w, 3L), ``"rgb_box"``: int32 (B, 4);
* ``"flow_planes"``: uint8 (B, K, 2L, h, w), planes ``x1, y1, x2, y2, ...``
  (128 = no motion; interleaved into channels on the device),
  ``"flow_box"``: int32 (B, 4);

  colour frames whole; flow planes whole, or (JPEG planes, plain optical
  flow stacking) a fixed window of them that holds every candidate crop,
  decoded alone: 256 x 258 of 340 x 256 planes, a quarter fewer pixels to
  decode; the flow box is in the window's coordinates;
* ``"flip"``: bool (B,).

A box is ``(y, x, h, w)`` in pixels of its group's frames (or window). ``"rgb"`` has the
rgb keys, ``"flow"`` the flow keys, ``"rgb+flow"`` both (the flow box is the
rgb box mapped onto the flow frames, :func:`~keras_gated_tsn.data.transforms.rescale_box`).
"""

from __future__ import annotations

from typing import Dict

import tensorflow as tf

RGB_FRAMES = "rgb_frames"
RGB_BOX = "rgb_box"
FLOW_PLANES = "flow_planes"
FLOW_BOX = "flow_box"
FLIP = "flip"


def is_uncropped(x) -> bool:
    """Whether ``x`` (tensors or ``tf.TensorSpec``) is a batch of ``augment_on="device"``."""
    return isinstance(x, dict) and FLIP in x and (RGB_BOX in x or FLOW_BOX in x)


def modality_of(x) -> str:
    """``"rgb"``, ``"flow"`` or ``"rgb+flow"`` of an uncropped batch (or its spec)."""
    if RGB_BOX in x and FLOW_BOX in x:
        return "rgb+flow"
    return "rgb" if RGB_BOX in x else "flow"


def _taps(start, length, size: int, flip=None):
    """Source positions of the ``size`` output pixels along one axis of each crop.

    ``tf.image.resize`` (bilinear, half-pixel centres; TensorFlow's
    ``ResizeBilinear`` kernel): output ``i`` samples ``(i + 0.5) * scale - 0.5``
    with ``scale = length / size`` in float32, from its floor (>= 0) and ceiling
    (<= length - 1) with weight ``src - floor``. Reversed for flipped crops
    (mirroring the output is reading its columns in reverse).

    Args:
        start, length: int32 (B,), the crop's first pixel and extent.
        size: S.
        flip: bool (B,) or None.

    Returns:
        ``(lower, upper, lerp)``: int32 (B, S) absolute pixel indices and float32 (B, S) weights.
    """
    # In a graph, a float32 division by a constant becomes a multiplication by
    # its reciprocal (one ulp off at times, which moves a pixel by one level);
    # an integer quotient divided in float64 and rounded to float32 is exactly
    # the float32 division the kernel does.
    scale = tf.cast(tf.cast(length, tf.float64) / float(size), tf.float32)
    src = (tf.range(size, dtype=tf.float32)[None, :] + 0.5) * scale[:, None] - 0.5
    floor = tf.floor(src)
    lower = tf.maximum(tf.cast(floor, tf.int32), 0)
    upper = tf.minimum(tf.cast(tf.math.ceil(src), tf.int32), length[:, None] - 1)
    lerp = src - floor
    lower, upper = lower + start[:, None], upper + start[:, None]
    if flip is not None:
        mirrored = flip[:, None]
        lower = tf.where(mirrored, tf.reverse(lower, [1]), lower)
        upper = tf.where(mirrored, tf.reverse(upper, [1]), upper)
        lerp = tf.where(mirrored, tf.reverse(lerp, [1]), lerp)
    return lower, upper, lerp


def crop_resize_flip(frames, box, flip, size: int, *, row_axis: int, flow: bool = False) -> tf.Tensor:
    """Each video's crop, resized to ``size`` x ``size`` and mirrored where ``flip``.

    Args:
        frames: uint8 (B, ..., H, W, ...) with H at ``row_axis`` and W after it.
        box: int (B, 4) ``(y, x, h, w)`` inside H x W.
        flip: bool (B,).
        size: S (Python int).
        row_axis: the axis of H (2 for (B, K, H, W, C); 3 for flow planes (B, K, 2L, H, W)).
        flow: planes ``x1, y1, x2, ...`` on axis 2: mirrored x planes become ``255 - x``.

    Returns:
        uint8, ``frames``' shape with H, W replaced by S, S: the bilinear resize
        of the crop (what :func:`~keras_gated_tsn.data.transforms.crop_and_resize`
        gives each video), rounded, mirrored.
    """
    box = tf.cast(box, tf.int32)
    flip = tf.cast(flip, tf.bool)
    y_low, y_high, y_lerp = _taps(box[:, 0], box[:, 2], size)
    x_low, x_high, x_lerp = _taps(box[:, 1], box[:, 3], size, flip)
    col_axis = row_axis + 1
    top = tf.gather(frames, y_low, axis=row_axis, batch_dims=1)
    bottom = tf.gather(frames, y_high, axis=row_axis, batch_dims=1)

    def corners(rows):
        left = tf.gather(rows, x_low, axis=col_axis, batch_dims=1)
        right = tf.gather(rows, x_high, axis=col_axis, batch_dims=1)
        return tf.cast(left, tf.float32), tf.cast(right, tf.float32)

    rank = frames.shape.rank
    x_shape = [-1] + [1] * (col_axis - 1) + [size] + [1] * (rank - col_axis - 1)
    y_shape = [-1] + [1] * (row_axis - 1) + [size] + [1] * (rank - row_axis - 1)
    x_lerp, y_lerp = tf.reshape(x_lerp, x_shape), tf.reshape(y_lerp, y_shape)
    top_left, top_right = corners(top)
    bottom_left, bottom_right = corners(bottom)
    upper = top_left + (top_right - top_left) * x_lerp
    lower = bottom_left + (bottom_right - bottom_left) * x_lerp
    out = tf.cast(tf.round(upper + (lower - upper) * y_lerp), tf.uint8)
    if flow:
        planes = frames.shape[2]
        is_x = tf.constant([p % 2 == 0 for p in range(planes)])
        invert = tf.logical_and(tf.reshape(flip, [-1, 1]), is_x[None, :])  # (B, 2L)
        mask = tf.cast(invert, tf.uint8) * tf.constant(255, tf.uint8)
        out = tf.bitwise.bitwise_xor(out, tf.reshape(mask, [-1, 1, planes, 1, 1]))  # 255 - v where set
    return out


def apply(x: Dict[str, tf.Tensor], input_size: int):
    """An uncropped batch -> the batch ``augment_on="host"`` gives (see module doc).

    Returns:
        ``"rgb"``: uint8 (B, K, S, S, 3L); ``"flow"``: uint8 (B, K, S, S, 2L),
        channels ``x1, y1, x2, y2, ...``; ``"rgb+flow"``: the dict of both.

    Raises:
        ValueError: if ``x`` is not an uncropped batch.
    """
    if not is_uncropped(x):
        raise ValueError(f"not a batch of augment_on='device' (keys {sorted(x) if isinstance(x, dict) else x!r})")
    out = {}
    if RGB_BOX in x:
        out["rgb"] = crop_resize_flip(x[RGB_FRAMES], x[RGB_BOX], x[FLIP], input_size, row_axis=2)
    if FLOW_BOX in x:
        planes = crop_resize_flip(x[FLOW_PLANES], x[FLOW_BOX], x[FLIP], input_size, row_axis=3, flow=True)
        out["flow"] = tf.transpose(planes, [0, 1, 3, 4, 2])
    return out if len(out) == 2 else next(iter(out.values()))


def output_spec(spec: Dict[str, tf.TensorSpec], input_size: int):
    """The ``tf.TensorSpec`` (or dict of them) :func:`apply` gives for inputs of ``spec``."""
    out = {}
    if RGB_BOX in spec:
        frames = spec[RGB_FRAMES].shape
        out["rgb"] = tf.TensorSpec([frames[0], frames[1], input_size, input_size, frames[4]], tf.uint8)
    if FLOW_BOX in spec:
        planes = spec[FLOW_PLANES].shape
        out["flow"] = tf.TensorSpec([planes[0], planes[1], input_size, input_size, planes[2]], tf.uint8)
    return out if len(out) == 2 else next(iter(out.values()))


__all__ = [
    "RGB_FRAMES",
    "RGB_BOX",
    "FLOW_PLANES",
    "FLOW_BOX",
    "FLIP",
    "is_uncropped",
    "modality_of",
    "crop_resize_flip",
    "apply",
    "output_spec",
]
