"""Batch normalisation with frozen statistics and a learned scale and shift."""

from __future__ import annotations

import keras

from keras_gated_tsn.layers.fused_bn import FusedBatchNormalization


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class FrozenBatchNormalization(FusedBatchNormalization):
    """Caffe's ``BN`` layer with ``frozen: true``: global statistics, trained scale and shift.

    Normalises with the moving mean and variance in every call, training or
    not, and never updates them; gamma and beta stay trainable (they train
    under ``fit()`` whenever the layer is trainable). Keras'
    ``BatchNormalization`` cannot do this by itself: ``trainable=False``
    freezes gamma and beta too, and a ``training=False`` fixed when the graph
    is built is overridden when the enclosing model is called with
    ``training=True``, as ``fit()`` does.

    The gated TSN's gating ConvNet uses it for every BN layer of its trunk
    (``gating_three_2_train_val.prototxt``: ``bn_param { frozen: true }`` with
    ``lr_mult: 1`` on scale and shift).

    Under a mixed dtype policy it normalises float16 / bfloat16 maps with
    TensorFlow's fused kernel, which computes in float32
    (:class:`~keras_gated_tsn.layers.FusedBatchNormalization`); its four
    variables are float32 under every policy.

    Input and output: ``(..., C)`` float, channels last (``axis=-1``). Weights
    and constructor arguments are those of ``keras.layers.BatchNormalization``
    (``[gamma, beta, moving_mean, moving_variance]``), so weights copy between
    the two by name and order.
    """

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs, training=False, mask=mask)
