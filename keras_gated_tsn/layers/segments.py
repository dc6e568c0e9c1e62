"""Folding segments into the batch and the segmental consensus of TSN."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class SegmentFold(keras.layers.Layer):
    """Folds the segment axis into the batch: ``(B, K, H, W, C)`` → ``(B·K, H, W, C)``.

    The K snippets of a video then run through the backbone as one batch
    (TSN, Wang et al. 2016, Sec. 3.1), with no per-segment Python loop.
    Any rank >= 3 works: the first two axes are merged.

    Input: a tensor of shape ``(B, K, ...)``, any dtype. Output: ``(B·K, ...)``.
    """

    def call(self, inputs):
        shape = ops.shape(inputs)
        return ops.reshape(inputs, (-1,) + tuple(shape[2:]))

    def compute_output_shape(self, input_shape):
        batch, segments = input_shape[0], input_shape[1]
        folded = batch * segments if batch is not None and segments is not None else None
        return (folded,) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class SegmentConsensus(keras.layers.Layer):
    """Average consensus over the segments of each video.

    Called on ``[scores, clip]``: ``scores`` has shape ``(B·K, D)`` (one row per
    snippet, folded by :class:`SegmentFold`) and ``clip`` is the model input of
    shape ``(B, K, ...)``, used only for ``B``. Returns ``(B, D)``, the mean over
    the K snippets of each video. K is read at run time, so a model trained
    with K=3 segments can score test views one at a time (K=1).

    This is the segmental consensus G of TSN (Wang et al. 2016, eq. (1)) and of
    the gating ConvNet (gated TSN paper, eqs. (1) and (3): average pooling for
    G_g and G_c). Applied to pre-softmax scores, as both papers do.

    Args:
        mode: only ``"average"`` (the papers' choice) is implemented.

    Raises:
        ValueError: for any other ``mode``.
    """

    def __init__(self, mode: str = "average", **kwargs):
        super().__init__(**kwargs)
        if mode != "average":
            raise ValueError(f"SegmentConsensus mode must be 'average', got {mode!r}")
        self.mode = mode

    def call(self, inputs):
        scores, clip = inputs
        batch = ops.shape(clip)[0]
        per_video = ops.reshape(scores, (batch, -1) + tuple(scores.shape[1:]))
        return ops.mean(per_video, axis=1)

    def compute_output_shape(self, input_shape):
        scores_shape, clip_shape = input_shape
        return (clip_shape[0],) + tuple(scores_shape[1:])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
