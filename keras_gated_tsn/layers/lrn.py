"""Caffe's local response normalisation across channels (CaffeNet's ``norm1``/``norm2``)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class LocalResponseNormalization(keras.layers.Layer):
    """Caffe ``LRN`` layer, ``ACROSS_CHANNELS`` mode, channels last.

    For each position and channel ``i`` of an input with C channels::

        y_i = x_i / (k + alpha / local_size * sum_j x_j^2) ** beta

    where ``j`` runs over the ``local_size`` channels centred on ``i``
    (``i - (local_size - 1) / 2 .. i + (local_size - 1) / 2``), channels
    outside ``0 .. C-1`` counting as zero. This is Caffe's formula
    (``lrn_layer.cpp``): alpha is divided by ``local_size``, unlike
    ``tf.nn.local_response_normalization``. AlexNet/CaffeNet use
    ``local_size=5, alpha=1e-4, beta=0.75, k=1`` (Krizhevsky et al. 2012,
    Sec. 3.3; BVLC reference CaffeNet ``deploy.prototxt``).

    Input: ``(..., C)`` float, any range (CaffeNet: non-negative ReLU output).
    Output: same shape, the layer's compute dtype. The sum of squares is
    computed in float32 even under mixed precision (squares of activations
    in the hundreds overflow float16).

    Args:
        local_size: the window of channels, a positive odd int (Caffe
            requires odd).
        alpha: scaling parameter, >= 0 (divided by ``local_size``).
        beta: exponent, >= 0.
        k: additive constant, > 0 (Caffe's ``k``, default 1).

    Raises:
        ValueError: for an even or non-positive ``local_size``, a negative
            ``alpha`` or ``beta``, or a non-positive ``k``, quoting the value;
            when built on input whose channel axis is unknown.
    """

    def __init__(
        self, local_size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0, **kwargs
    ):
        super().__init__(**kwargs)
        odd = isinstance(local_size, int) and not isinstance(local_size, bool) and local_size % 2 == 1
        if not odd or local_size < 1:
            raise ValueError(f"local_size must be a positive odd int, got {local_size!r}")
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta!r}")
        if not k > 0:
            raise ValueError(f"k must be > 0, got {k!r}")
        self.local_size = local_size
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = float(k)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(
                f"LocalResponseNormalization needs a known channel axis, got shape {input_shape}"
            )
        self.built = True

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        channels = x.shape[-1]
        half = (self.local_size - 1) // 2
        squares = ops.square(x)
        padded = ops.pad(squares, [(0, 0)] * (len(x.shape) - 1) + [(half, half)])
        window_sum = padded[..., 0:channels]
        for offset in range(1, self.local_size):
            window_sum = window_sum + padded[..., offset : offset + channels]
        scale = self.k + (self.alpha / self.local_size) * window_sum
        y = x * ops.power(scale, -self.beta)
        return ops.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "local_size": self.local_size,
            "alpha": self.alpha,
            "beta": self.beta,
            "k": self.k,
        }
