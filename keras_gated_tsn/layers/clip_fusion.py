"""The layers of GCF-Net's head (Hsiao, Chen, Ho, "GCF-Net: Gated Clip Fusion
Network for Video Action Recognition", 2020, Sec. 3.1, Fig. 2).

A video is C clips; a clip backbone turns each into a raw clip descriptor
``v_i`` (the clips folded into the batch by
:class:`~keras_gated_tsn.layers.SegmentFold`). Then:

* :class:`ClipUnfold`: the descriptors back per video, ``V = (v_1 .. v_C)``;
* :class:`InterClipFusion`: bi-directional inter-clip fusion, eq. (1)
  (stacked n times: eqs. (11)-(12)), ``B = (b_1 .. b_C)``;
* :class:`ClipWiseAttention`: gated clip-wise attention, eqs. (2)-(3), ``att``;
* :class:`GatedClipResidual`: re-scaling and the residual, eqs. (4)-(6), ``R``;
* eq. (7), the video-level descriptor ``v' = mean_i r_i``, is Keras'
  ``GlobalAveragePooling1D`` over the clip axis;
* :class:`CentralClip`: the central clip alone, for the paper's C-Clip baseline.

Descriptors are laid out ``(B, C, D)``: videos, clips, channels. Every layer
is registered, keeps its constructor arguments in ``get_config()`` and
computes with ``keras.ops``.
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops

#: How eq. (1)'s relations are normalised: ``"softmax"`` takes a softmax over
#: j of the products divided by sqrt(key_units) (the normalisation factor
#: N(v) is then the softmax's sum of exponentials: the scaled dot-product
#: attention of Vaswani et al. 2017, the paper's ref. [24]); ``"clips"`` divides
#: them by N(v) = C, the number of clips (eq. (1) as printed, the dot-product
#: non-local block).
RELATION_NORMALIZATIONS = ("softmax", "clips")


def _check_units(name: str, value, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class ClipUnfold(keras.layers.Layer):
    """The clip axis back out of the batch: ``(B·C, ...)`` → ``(B, C, ...)``.

    The inverse of :class:`~keras_gated_tsn.layers.SegmentFold` for the
    backbone's outputs: called on ``[descriptors, clips]``, where
    ``descriptors`` has shape ``(B·C, ...)`` (clip-major within a video, as
    :class:`~keras_gated_tsn.layers.SegmentFold` folds them) and ``clips`` is
    the model input ``(B, C, ...)``, read for B (and C when it is known).
    Returns ``(B, C, ...)``, the raw clip descriptors ``V = {v_1 .. v_C}`` of
    GCF-Net Sec. 3.1 per video. Any dtype.
    """

    def call(self, inputs):
        descriptors, clips = inputs
        batch = ops.shape(clips)[0]
        count = clips.shape[1] if clips.shape[1] is not None else -1
        return ops.reshape(descriptors, (batch, count) + tuple(descriptors.shape[1:]))

    def compute_output_shape(self, input_shape):
        descriptors_shape, clips_shape = input_shape
        return (clips_shape[0], clips_shape[1]) + tuple(descriptors_shape[1:])


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class CentralClip(keras.layers.Layer):
    """The central clip of each video: ``(B, C, ...)`` → ``(B, 1, ...)``.

    Clip ``C // 2`` (0-based; of an even C the later of the two middle
    clips), read at run time, so any C works. This is the input of GCF-Net's
    C-Clip baseline (Sec. 1, Fig. 1(a), Table 1: "central clip prediction").
    Any dtype (uint8 pixels pass through unchanged).
    """

    def call(self, clips):
        index = ops.shape(clips)[1] // 2
        return ops.take(clips, ops.reshape(index, (1,)), axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class InterClipFusion(keras.layers.Layer):
    """Bi-directional inter-clip fusion, GCF-Net eq. (1).

    For the clip descriptors ``v_1 .. v_C`` of a video (rows of the input)::

        b_i = BA(v_i) = W_z · Σ_j [(W_q v_i) · (W_k v_j)] / N(v) · (W_v v_j)

    every clip's descriptor gathers every other clip's (both directions in
    time: "bi-directional"), weighted by the relation of the two clips.
    ``normalization="softmax"`` (default) normalises the relations of clip i
    by a softmax over j of the products divided by sqrt(key_units): the
    scaled dot-product attention of Vaswani et al. 2017, which the paper
    cites as eq. (1)'s motivation, N(v) being the softmax's sum. ``"clips"``
    is eq. (1) as printed: the products divided by N(v) = C, the number of
    clips (the dot-product non-local block, Wang et al. CVPR 2018, eq. (3)).
    Without the softmax ``b_i`` is cubic in the descriptors: at the
    initialisation it is tens of times larger than ``v_i``, and SGD on it
    diverged in three steps in our runs, which is why it is not the
    default. W_q, W_k, W_v and W_z are linear maps
    without bias ("linear transform matrices"): weights ``query_kernel``
    ``(d, key_units)``, ``key_kernel`` ``(d, key_units)``, ``value_kernel``
    ``(d, units)`` and ``output_kernel`` ``(units, units)``, applied as
    ``x @ kernel``. Stacking n of these is eqs. (11)-(12).

    Input: ``(B, C, d)`` float, C may be unknown. Output: ``(B, C, units)``,
    the bi-directional clip descriptors ``B = {b_1 .. b_C}`` (``b_i`` in R^D,
    D = ``units``).

    Args:
        units: D, the dimension of ``b_i`` (GCF-Net Sec. 4.4 / Fig. 3(a)).
        key_units: dimension of ``W_q v`` and ``W_k v``; default ``units``.
        normalization: one of :data:`RELATION_NORMALIZATIONS`.
        kernel_initializer: of the four kernels.

    Raises:
        ValueError: for a non-positive ``units`` or ``key_units`` or an
            unknown ``normalization`` (quoted).
    """

    def __init__(self, units: int, key_units: Optional[int] = None, normalization: str = "softmax",
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.units = _check_units("units", units)
        self.key_units = _check_units("key_units", key_units, allow_none=True)
        if normalization not in RELATION_NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {RELATION_NORMALIZATIONS}, got {normalization!r}")
        self.normalization = normalization
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(f"InterClipFusion takes (batch, clips, channels) with known channels, got {input_shape}")
        channels = input_shape[-1]
        keys = self.key_units or self.units
        self.query_kernel = self.add_weight(
            name="query_kernel", shape=(channels, keys), initializer=self.kernel_initializer)
        self.key_kernel = self.add_weight(
            name="key_kernel", shape=(channels, keys), initializer=self.kernel_initializer)
        self.value_kernel = self.add_weight(
            name="value_kernel", shape=(channels, self.units), initializer=self.kernel_initializer)
        self.output_kernel = self.add_weight(
            name="output_kernel", shape=(self.units, self.units), initializer=self.kernel_initializer)

    def relations(self, inputs):
        """The normalised relations of eq. (1), ``(B, C, C)``: entry (i, j) is
        ``(W_q v_i)·(W_k v_j) / N(v)`` (or its softmax over j)."""
        queries = ops.matmul(inputs, self.query_kernel)
        keys = ops.matmul(inputs, self.key_kernel)
        products = ops.matmul(queries, ops.transpose(keys, (0, 2, 1)))
        if self.normalization == "softmax":
            scale = ops.sqrt(ops.cast(self.key_units or self.units, products.dtype))
            return ops.softmax(products / scale, axis=-1)
        return products / ops.cast(ops.shape(inputs)[1], products.dtype)

    def call(self, inputs):
        values = ops.matmul(inputs, self.value_kernel)
        return ops.matmul(ops.matmul(self.relations(inputs), values), self.output_kernel)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "key_units": self.key_units,
            "normalization": self.normalization,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class ClipWiseAttention(keras.layers.Layer):
    """Gated clip-wise attention, GCF-Net eqs. (2)-(3).

    For the descriptors ``b_1 .. b_C`` of a video::

        g   = [mean(b_1), ..., mean(b_C)]                   eq. (2), in R^C
        att = sigmoid(W_2 · ReLU(W_1 · g))                  eq. (3), in (0, 1)^C

    a squeeze over each clip's channels and a two-layer gate across the clips
    (squeeze-and-excitation along the clip axis), so each clip's weight
    depends on all clips of the video. W_1 and W_2 are fully connected
    layers with biases: weights ``kernel_1`` ``(C, units)``, ``bias_1``,
    ``kernel_2`` ``(units, C)``, ``bias_2``.

    Input: ``(B, C, D)`` float with C known (W_1 and W_2 are C-wide).
    Output: ``(B, C)`` float in (0, 1): ``att``, one weight per clip (the
    temporal localisation of Sec. 4.6 thresholds it at 0.5).

    Args:
        units: width of the hidden layer (W_1's outputs); default C (the
            paper gives none).
        kernel_initializer, bias_initializer: of W_1, W_2 and their biases
            (zero biases: ``att`` starts near 0.5).

    Raises:
        ValueError: for a non-positive ``units``; when built on an input whose
            clip axis is unknown.
    """

    def __init__(self, units: Optional[int] = None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.units = _check_units("units", units, allow_none=True)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[1] is None:
            raise ValueError(
                "ClipWiseAttention needs a fixed number of clips (W_1 and W_2 of eq. (3) are as wide as the "
                f"clip axis), got input shape {input_shape}"
            )
        clips = input_shape[1]
        hidden = self.units or clips
        self.kernel_1 = self.add_weight(name="kernel_1", shape=(clips, hidden), initializer=self.kernel_initializer)
        self.bias_1 = self.add_weight(name="bias_1", shape=(hidden,), initializer=self.bias_initializer)
        self.kernel_2 = self.add_weight(name="kernel_2", shape=(hidden, clips), initializer=self.kernel_initializer)
        self.bias_2 = self.add_weight(name="bias_2", shape=(clips,), initializer=self.bias_initializer)

    def call(self, inputs):
        g = ops.mean(inputs, axis=-1)
        hidden = ops.relu(ops.matmul(g, self.kernel_1) + self.bias_1)
        return ops.sigmoid(ops.matmul(hidden, self.kernel_2) + self.bias_2)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:2])

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class GatedClipResidual(keras.layers.Layer):
    """Re-scaling by the attention and the residual, GCF-Net eqs. (4)-(6).

    Called on ``[descriptors, att]`` with ``descriptors`` ``(B, C, D)`` (the
    ``b_i``) and ``att`` ``(B, C)``: ``s_i = att_i · b_i`` (eqs. (4)-(5)) and
    ``r_i = b_i + s_i`` (eq. (6)). Returns ``(B, C, D)``, the residual clip
    descriptors R.
    """

    def call(self, inputs):
        descriptors, attention = inputs
        attention = ops.cast(attention, descriptors.dtype)
        return descriptors + ops.expand_dims(attention, -1) * descriptors

    def compute_output_shape(self, input_shape):
        return input_shape[0]


__all__ = [
    "RELATION_NORMALIZATIONS", "CentralClip", "ClipUnfold", "ClipWiseAttention", "GatedClipResidual",
    "InterClipFusion",
]
