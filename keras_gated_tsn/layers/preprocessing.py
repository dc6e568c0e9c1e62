"""Input preprocessing as a model layer, so a model is always fed raw pixels."""

from __future__ import annotations

import keras
from keras import ops

#: The Caffe BGR mean of BN-Inception/TSN (blue, green, red), pixel units 0-255.
CAFFE_BGR_MEAN = (104.0, 117.0, 123.0)
#: uint8-encoded optical flow: 128 is zero motion.
FLOW_MEAN = 128.0

MODALITIES = ("rgb", "flow")


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class ModalityPreprocessing(keras.layers.Layer):
    """Maps raw 0-255 pixels to what the Caffe-trained backbones expect.

    * ``"rgb"``: input RGB order, values 0-255 → BGR order minus the Caffe mean
      ``[104, 117, 123]`` (TSN's ``mean_value``), values about -123..151.
    * ``"flow"``: uint8-encoded flow (128 = no motion), any channel count
      (2L interleaved x/y) → minus 128, values -128..127.

    The input may be any numeric dtype (uint8 from the data pipeline); it is
    taken in float32 (float input is not autocast to a mixed policy's compute
    dtype) and the mean is subtracted in float32, then cast once to the
    layer's compute dtype (under the mixed policies the integers -128..151
    that the Caffe means give stay exact in float16 and bfloat16; VGG16's
    fractional mean rounds there).
    Output: the layer's compute dtype. Shape is unchanged: ``(..., C)`` with
    C = 3 for RGB.

    Args:
        modality: ``"rgb"`` or ``"flow"``.
        bgr_mean: the per-channel mean subtracted from RGB input, in BGR order
            (default Caffe's ``[104, 117, 123]``; keras.applications' VGG16
            weights use ``[103.939, 116.779, 123.68]``).

    Raises:
        ValueError: for another modality, a ``bgr_mean`` that is not three
            numbers, or (when called) RGB input whose last axis is not 3.
    """

    def __init__(self, modality: str = "rgb", bgr_mean=CAFFE_BGR_MEAN, **kwargs):
        super().__init__(**kwargs)
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        bgr_mean = tuple(float(v) for v in bgr_mean)
        if len(bgr_mean) != 3:
            raise ValueError(f"bgr_mean must be three numbers (B, G, R), got {bgr_mean!r}")
        self.modality = modality
        self.bgr_mean = bgr_mean

    def build(self, input_shape):
        if self.modality == "rgb" and input_shape[-1] != 3:
            raise ValueError(
                f"RGB preprocessing expects 3 channels on the last axis, got shape {input_shape}"
            )

    @property
    def input_dtype(self):
        # Raw pixels are not autocast to float16 / bfloat16 before the subtraction.
        return "float32"

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        if self.modality == "rgb":
            x = ops.flip(x, axis=-1) - ops.convert_to_tensor(self.bgr_mean, dtype="float32")
        else:
            x = x - FLOW_MEAN
        return ops.cast(x, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "modality": self.modality, "bgr_mean": list(self.bgr_mean)}
