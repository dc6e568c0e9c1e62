"""Temporal-stream input volumes from the extracted flow: the two-stream ConvNets' configurations.

Simonyan & Zisserman, "Two-Stream Convolutional Networks for Action
Recognition in Videos" (NIPS 2014), Sec. 3.1, build the temporal net's input
``I_tau`` (w x h x 2L) for a frame ``tau`` from the flow fields ``d_t``
(frame t -> t + 1) in four ways, all computed here from the same extracted
forward flow (``flow_x_*`` / ``flow_y_*``, uint8-encoded,
``v = round(255 (f + bound) / (2 bound))``, :func:`~keras_gated_tsn.data.flow.encode_flow`):

* **optical flow stacking** (eq. 1, the default and TSN's input): channels
  ``2k - 1, 2k`` hold ``d_{tau+k-1}(u, v)``, the same location in each field;
* **trajectory stacking** (eq. 2): they hold ``d_{tau+k-1}(p_k)``, sampled
  along the trajectory ``p_1 = (u, v)``, ``p_k = p_{k-1} + d_{tau+k-2}(p_{k-1})``
  (bilinear sampling; a point that leaves the frame reads the border);
* **bi-directional flow**: L/2 forward fields from ``tau`` on and L/2 backward
  fields from ``tau`` back to ``tau - L/2``, either stacked as in (1) or along
  (backward) trajectories as in (2). The backward field ``b_t`` (frame t ->
  t - 1) is the inverse of the extracted forward field ``d_{t-1}``:
  ``b_t(p) = -d_{t-1}(p + b_t(p))``, solved by fixed-point iteration from
  ``-d_{t-1}(p)`` (:data:`INVERSION_ITERATIONS` steps). This is an
  approximation of a separately computed backward flow (exact for smooth
  motion, not at occlusions), chosen so that no second extraction is needed;
* **mean flow subtraction**: each field's mean vector subtracted (a simple
  camera-motion compensation), from every channel of the volume.

The snippet of a bi-directional volume still starts at the first flow pair
the sampler picks (``offset``): its L pairs ``offset .. offset + L - 1`` give
the backward half (pairs ``offset .. offset + L/2 - 1``, inverted, ``tau =
offset + L/2``) and the forward half (the rest). Channel order: the L/2
forward fields ``d_tau, ..., d_{tau+L/2-1}``, then the L/2 backward fields
``b_tau, b_{tau-1}, ..., b_{tau-L/2+1}``, each as (x, y).

Volumes are computed on whole frames (before the crop) and stay uint8-encoded
with the same bound, rounded half to even, so the rest of the pipeline and the
models are unchanged; positions along trajectories use the decoded pixels
(hence ``bound``, the one the flow was extracted with, from ``prepare.json``).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Tuple, Union

import tensorflow as tf

#: The stackings of Sec. 3.1: eq. (1) and eq. (2).
STACKINGS = ("optical_flow", "trajectory")
#: Fixed-point steps of the forward-field inversion that gives the backward fields.
INVERSION_ITERATIONS = 3


@dataclasses.dataclass(frozen=True)
class FlowInput:
    """How a temporal snippet's 2L channels are built from its L flow pairs.

    Attributes:
        stacking: ``"optical_flow"`` (eq. 1) or ``"trajectory"`` (eq. 2).
        bidirectional: L/2 forward and L/2 backward fields (L must be even).
        mean_subtraction: subtract each field's mean vector.
        bound: the flow's clipping bound in pixels (``prepare --bound``, 20 by
            default); used to follow trajectories and invert fields.

    Raises:
        ValueError: for an unknown stacking (quoted) or a bound that is not a
            positive number.
    """

    stacking: str = "optical_flow"
    bidirectional: bool = False
    mean_subtraction: bool = False
    bound: float = 20.0

    def __post_init__(self):
        if self.stacking not in STACKINGS:
            raise ValueError(f"stacking must be one of {STACKINGS}, got {self.stacking!r}")
        bound = self.bound
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not bound > 0 or bound == float("inf"):
            raise ValueError(f"bound must be a positive number of pixels, got {bound!r}")
        object.__setattr__(self, "bound", float(bound))
        object.__setattr__(self, "bidirectional", bool(self.bidirectional))
        object.__setattr__(self, "mean_subtraction", bool(self.mean_subtraction))

    @property
    def is_plain(self) -> bool:
        """Optical flow stacking of forward fields as extracted (the pipeline's fast path)."""
        return self.stacking == "optical_flow" and not self.bidirectional and not self.mean_subtraction

    def check_length(self, new_length: int) -> None:
        """Raises ValueError if a bi-directional volume is asked for an odd L."""
        if self.bidirectional and new_length % 2:
            raise ValueError(f"bi-directional flow stacks L/2 forward and L/2 backward fields: L must be even, "
                             f"got new_length={new_length}")

    def describe(self) -> str:
        words = ["trajectory stacking" if self.stacking == "trajectory" else "optical flow stacking"]
        if self.bidirectional:
            words.append("bi-directional")
        if self.mean_subtraction:
            words.append("mean flow subtraction")
        return ", ".join(words)

    def get_config(self) -> dict:
        return dataclasses.asdict(self)


FlowInputLike = Union[None, FlowInput, Mapping]


def as_flow_input(value: FlowInputLike) -> FlowInput:
    """A :class:`FlowInput` from itself, its config dict, or None (the default, eq. 1)."""
    if value is None:
        return FlowInput()
    if isinstance(value, FlowInput):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - {f.name for f in dataclasses.fields(FlowInput)}
        if unknown:
            raise ValueError(f"unknown flow input settings {sorted(unknown)}; known: "
                             f"{[f.name for f in dataclasses.fields(FlowInput)]}")
        return FlowInput(**value)
    raise ValueError(f"flow_input must be a FlowInput, a dict of its settings or None, got {value!r}")


# ---------------------------------------------------------------------------------- pieces


def _sample(fields, positions):
    """Bilinear samples of ``fields`` float32 (H, W, C) at ``positions`` float32
    (H, W, 2) = (y, x) per output pixel, clamped to the frame: (H, W, C)."""
    shape = tf.shape(fields)
    height, width = shape[0], shape[1]
    y = tf.clip_by_value(positions[..., 0], 0.0, tf.cast(height - 1, tf.float32))
    x = tf.clip_by_value(positions[..., 1], 0.0, tf.cast(width - 1, tf.float32))
    y0, x0 = tf.floor(y), tf.floor(x)
    wy, wx = (y - y0)[..., None], (x - x0)[..., None]
    y0, x0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
    y1, x1 = tf.minimum(y0 + 1, height - 1), tf.minimum(x0 + 1, width - 1)
    flat = tf.reshape(fields, [height * width, -1])

    def at(row, col):
        return tf.gather(flat, row * width + col)

    top = at(y0, x0) * (1.0 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1.0 - wx) + at(y1, x1) * wx
    return top * (1.0 - wy) + bottom * wy


def _grid(height, width):
    ys, xs = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij")
    return tf.stack([ys, xs], axis=-1)


def _to_pixels(encoded_xy, bound: float):
    """Encoded (x, y) values -> displacement (dy, dx) in pixels, the order positions use."""
    pixels = encoded_xy * (2.0 * bound / 255.0) - bound
    return tf.stack([pixels[..., 1], pixels[..., 0]], axis=-1)


def invert_field(encoded_xy, bound: float, iterations: int = INVERSION_ITERATIONS):
    """The backward field of a forward field, uint8-encoded values as float32.

    ``encoded_xy``: float32 (H, W, 2), the encoded (x, y) of ``d_{t-1}`` (frame
    t - 1 -> t). Returns the encoded (x, y) of ``b_t`` (frame t -> t - 1),
    float32 (H, W, 2): ``b(p) = -d(p + b(p))`` by fixed-point iteration from
    ``b = -d(p)``; an encoded ``v`` of ``-f`` is ``255 - v`` (the encoding is
    symmetric about 127.5).
    """
    shape = tf.shape(encoded_xy)
    grid = _grid(shape[0], shape[1])
    backward = 255.0 - encoded_xy
    for _ in range(iterations):
        backward = 255.0 - _sample(encoded_xy, grid + _to_pixels(backward, bound))
    return backward


def _stack(fields, trajectory: bool, bound: float):
    """Eq. (1) or (2) over a sequence of encoded fields float32 [(H, W, 2), ...]
    from one start: the sampled fields, same list structure."""
    if not trajectory:
        return list(fields)
    shape = tf.shape(fields[0])
    positions = _grid(shape[0], shape[1])
    out = []
    for k, field in enumerate(fields):
        sampled = field if k == 0 else _sample(field, positions)  # p_1 = (u, v): the field itself
        out.append(sampled)
        if k + 1 < len(fields):
            positions = positions + _to_pixels(sampled, bound)  # p_{k+1} = p_k + d(p_k)
    return out


def flow_volume(x_planes, y_planes, flow_input: FlowInput):
    """One snippet's input volume from its L extracted flow pairs.

    Args:
        x_planes, y_planes: uint8 (L, H, W), the encoded x and y components of
            the flow pairs ``offset .. offset + L - 1`` (pair i: frame i -> i + 1).
        flow_input: the configuration (see module doc).

    Returns:
        ``(x, y)``: uint8 (L, H, W) each, the volume's x and y channels in
        channel order (``x[k], y[k]`` are channels ``2k + 1, 2k + 2``), encoded
        with the same bound. The input itself for plain optical flow stacking.
    """
    if flow_input.is_plain:
        return x_planes, y_planes
    length = int(x_planes.shape[0]) if x_planes.shape[0] is not None else None
    if length is None:
        raise ValueError("flow_volume needs a static number of flow pairs")
    fields = [tf.stack([tf.cast(x_planes[k], tf.float32), tf.cast(y_planes[k], tf.float32)], axis=-1)
              for k in range(length)]
    trajectory = flow_input.stacking == "trajectory"
    bound = flow_input.bound
    if flow_input.bidirectional:
        half = length // 2
        forward = _stack(fields[half:], trajectory, bound)
        # b_tau from d_{tau-1} (pair half - 1), b_{tau-1} from pair half - 2, ...
        backward_fields = [invert_field(fields[k], bound) for k in range(half - 1, -1, -1)]
        volume = forward + _stack(backward_fields, trajectory, bound)
    else:
        volume = _stack(fields, trajectory, bound)
    volume = tf.stack(volume)  # (L, H, W, 2)
    if flow_input.mean_subtraction:
        volume = volume - tf.reduce_mean(volume, axis=[1, 2], keepdims=True) + 127.5
    volume = tf.cast(tf.clip_by_value(tf.round(volume), 0.0, 255.0), tf.uint8)
    return volume[..., 0], volume[..., 1]


__all__ = ["STACKINGS", "INVERSION_ITERATIONS", "FlowInput", "as_flow_input", "invert_field", "flow_volume"]
