"""Batch normalisation with frozen statistics and a learned scale and shift."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class FrozenBatchNormalization(keras.layers.BatchNormalization):
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

    Under a mixed dtype policy it normalises in float32 (Keras'
    ``BatchNormalization`` casts float16 / bfloat16 input up and the result
    back to the compute dtype); its four variables are float32 under every
    policy.

    Input and output: ``(..., C)`` float, channels last (``axis=-1``). Weights
    and constructor arguments are those of ``keras.layers.BatchNormalization``
    (``[gamma, beta, moving_mean, moving_variance]``), so weights copy between
    the two by name and order.
    """

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs, training=False, mask=mask)
