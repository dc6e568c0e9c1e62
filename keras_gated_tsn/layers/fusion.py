"""Gated fusion of the two streams' scores (gated TSN paper, eq. (2))."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class GatedFusion(keras.layers.Layer):
    """``G_adap = w_rgb · G_rgb + w_flow · G_flow`` per video.

    Called on ``[fusion_weights, rgb_scores, flow_scores]``:
    ``fusion_weights`` has shape ``(B, 2)`` in the order (rgb, flow) — the
    gating ConvNet's output after ReLU (or softmax) —, the scores have shape
    ``(B, C)`` and are the streams' pre-softmax, segment-averaged class scores.
    Returns ``(B, C)`` pre-softmax fused scores.

    Source: gated TSN paper, Sec. III-A, eq. (2); the authors' prototxt
    (``gating_three_2``) computes the same with Slice, Tile and Eltwise layers
    (their weight order is flow first; this layer takes rgb first).
    """

    def call(self, inputs):
        weights, rgb_scores, flow_scores = inputs
        weights = ops.cast(weights, rgb_scores.dtype)
        return weights[:, 0:1] * rgb_scores + weights[:, 1:2] * flow_scores

    def compute_output_shape(self, input_shape):
        return input_shape[1]
