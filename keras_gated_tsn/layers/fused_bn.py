"""Batch normalisation that runs TensorFlow's fused kernel on half-precision feature maps."""

from __future__ import annotations

import keras

#: Input dtypes normalised by the fused kernel. float32 input keeps Keras' own
#: computation, so float32 models are bit-for-bit those of
#: ``keras.layers.BatchNormalization``.
FUSED_DTYPES = ("float16", "bfloat16")


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with TensorFlow's fused kernel for float16 / bfloat16 maps.

    Under a mixed precision policy Keras' layer casts the whole feature map to
    float32, normalises it with separate reduction and element-wise ops and
    casts it back: three passes over a map that the next convolution reads in
    half precision anyway. TensorFlow's ``FusedBatchNormV3`` takes the half
    precision map, accumulates the statistics in float32 and writes the
    normalised map in one pass, forward and backward. Measured with
    ``benchmarks/train_step.py`` (BN-Inception rgb stream, mixed_bfloat16, 2
    CPU cores with AMX) it removes about a fifth of the training step.

    Behaviour is that of the Keras layer, which it subclasses (weights,
    config, ``trainable`` and ``training`` semantics, ``momentum``):

    - training with a trainable layer normalises with the batch mean and the
      biased batch variance and moves ``moving_mean`` / ``moving_variance``
      towards them by ``1 - momentum``. (The fused kernel returns the unbiased
      variance; it is converted, as Keras' own statistics are biased.)
    - otherwise it normalises with the moving statistics.

    The fused kernel is used for rank-4 channels-last input of dtype float16
    or bfloat16 on the TensorFlow backend, without a mask, renorm or
    ``synchronized=True`` (a replica-synchronised layer needs Keras'
    cross-replica moments). Everything else, float32 input included, runs
    Keras' computation unchanged. The kernel is called with the layer's own
    ``epsilon`` (``tf.nn.fused_batch_norm`` would raise 1e-5 to 1.001e-5).

    Input: ``(batch, height, width, channels)`` (or any rank for the Keras
    path). Output: same shape, in the layer's compute dtype. The four
    variables are float32 under every policy.
    """

    def _fused_kernel_applies(self, inputs, mask) -> bool:
        if keras.backend.backend() != "tensorflow":
            return False
        if mask is not None or self.renorm or self.synchronized:
            return False
        rank = len(inputs.shape)
        axis = self.axis if isinstance(self.axis, int) else None
        return (
            rank == 4
            and axis in (3, -1)
            and keras.backend.standardize_dtype(inputs.dtype) in FUSED_DTYPES
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused_kernel_applies(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = self.gamma if self.scale else tf.ones((channels,), "float32")
        offset = self.beta if self.center else tf.zeros((channels,), "float32")
        scale = tf.cast(scale, "float32")
        offset = tf.cast(offset, "float32")
        if training and self.trainable:
            empty = tf.constant([], "float32")
            outputs, mean, unbiased_variance = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=scale, offset=offset, mean=empty, variance=empty,
                epsilon=self.epsilon, data_format="NHWC", is_training=True,
            )[:3]
            count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), "float32")
            variance = unbiased_variance * (tf.maximum(count - 1.0, 0.0) / count)
            momentum = self.momentum
            self.moving_mean.assign(
                tf.cast(self.moving_mean, "float32") * momentum + mean * (1.0 - momentum)
            )
            self.moving_variance.assign(
                tf.cast(self.moving_variance, "float32") * momentum + variance * (1.0 - momentum)
            )
        else:
            outputs = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=scale, offset=offset,
                mean=tf.cast(self.moving_mean, "float32"),
                variance=tf.cast(self.moving_variance, "float32"),
                epsilon=self.epsilon, data_format="NHWC", is_training=False,
            )[0]
        return tf.cast(outputs, self.compute_dtype)
