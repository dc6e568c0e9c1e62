"""3D-MobileNetV2 (Köpüklü et al. 2019), the light clip backbone of GCF-Net.

MobileNetV2 (Sandler et al., CVPR 2018) with a temporal extent added to every
kernel, as "Resource Efficient 3D Convolutional Neural Networks" (Köpüklü,
Kose, Gunduz, Rigoll, ICCVW 2019) builds it and GCF-Net (Hsiao, Chen, Ho
2020, Sec. 4.2: "3D-MobileNet ... the extensions of their original 2D
versions, i.e. adding temporal dimension into kernel") uses it: a 3x3x3 stem
of 32 channels, the 17 inverted-residual blocks of Sandler et al.'s Table 2
(1x1x1 expansion by t, ReLU6 → 3x3x3 depthwise, ReLU6 → 1x1x1 linear
projection, identity shortcut where stride and width allow), a 1x1x1
convolution to 1280 channels, ReLU6, and the top ``global_pool`` →
``dropout`` (0.2, Köpüklü's) → ``predictions``.

**No temporal stride** (GCF-Net Sec. 3.1): every stride is ``(1, 2, 2)``,
where Köpüklü et al. stride the blocks by 2 in time too. Strides hold no
weights: at width 1.0 with a 600-class top (Kinetics-600) the network has
3,122,648 trainable parameters, GCF-Net Table 3's "3.12M" (PyTorch's count,
without BN statistics).

Depthwise 3x3x3 convolutions are ``Conv3D(groups=channels)`` (Keras has no
``DepthwiseConv3D``), computed by
:class:`~keras_gated_tsn.backbones.resnext3d.GroupedConv3D` as 2D depthwise
convolutions per temporal tap (Keras' TensorFlow backend would run them
through XLA, about 100 times slower on a CPU). Layer names follow keras.applications' MobileNetV2
(``Conv1``, ``bn_Conv1``, ``expanded_conv_depthwise``, ``block_1_expand``,
``block_1_pad``, ``block_1_depthwise_BN``, ``block_2_add``, ..., ``Conv_1``,
``Conv_1_bn``, ``out_relu``); padding is PyTorch's (symmetric); BN has
PyTorch's epsilon 1e-5 and momentum 0.1 (Keras 0.9).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import keras
from keras import layers

from keras_gated_tsn.backbones.resnext3d import (
    ClipBackboneSpec,
    GroupedConv3D,
    batch_norm,
    check_clip_arguments,
    clip_builder_inputs,
    clip_global_pooling,
    clip_input_shape_of,
    conv_kernel_initializer,
    finish_clip_model,
)

#: Inverted-residual settings (Sandler et al. Table 2): expansion t, output
#: channels c, blocks n, spatial stride s of the first block.
INVERTED_RESIDUALS: Tuple[Tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
#: Dropout before ``predictions`` (Köpüklü et al.'s classifier).
TOP_DROPOUT = 0.2
DEFAULT_FRAMES = 16
DEFAULT_INPUT_SIZE = 112
MIN_INPUT_SIZE = 32
#: Hara et al.'s / Köpüklü et al.'s input normalisation: RGB, minus the
#: ActivityNet mean, pixels 0-255.
RGB_MEAN = (114.7748, 107.7354, 99.4750)
RGB_STD = (1.0, 1.0, 1.0)

#: Feature layers at width 1.0: name -> (channels, spatial stride). The
#: temporal stride is 1 everywhere.
FEATURE_LAYERS: Dict[str, Tuple[int, int]] = {
    "Conv1_relu": (32, 2),
    "block_2_add": (24, 4),
    "block_5_add": (32, 8),
    "block_12_add": (96, 16),
    "block_16_project_BN": (320, 32),
    "out_relu": (1280, 32),
}


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Sandler et al.'s channel rounding: to a multiple of ``divisor``, never
    below 90 % of ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _inverted_residual(x, expansion: int, filters: int, stride: int, block: int):
    name = f"block_{block}" if block else "expanded_conv"
    inputs = x
    channels = x.shape[-1]
    init = conv_kernel_initializer()
    if expansion != 1:
        x = layers.Conv3D(
            expansion * channels, 1, use_bias=False, kernel_initializer=init, name=f"{name}_expand"
        )(x)
        x = batch_norm(x, f"{name}_expand_BN")
        x = layers.ReLU(6.0, name=f"{name}_expand_relu")(x)
    # keras.applications pads under the block's name ("block_1_pad").
    if stride > 1:
        x = layers.ZeroPadding3D(1, name=f"{name}_pad")(x)
    x = GroupedConv3D(
        x.shape[-1], 3, strides=(1, stride, stride), padding="valid" if stride > 1 else "same",
        groups=x.shape[-1], use_bias=False, kernel_initializer=init, name=f"{name}_depthwise",
    )(x)
    x = batch_norm(x, f"{name}_depthwise_BN")
    x = layers.ReLU(6.0, name=f"{name}_depthwise_relu")(x)
    x = layers.Conv3D(filters, 1, use_bias=False, kernel_initializer=init, name=f"{name}_project")(x)
    x = batch_norm(x, f"{name}_project_BN")
    if stride == 1 and channels == filters:
        x = layers.Add(name=f"{name}_add")([inputs, x])
    return x


def MobileNet3DV2(
    include_top: bool = True,
    weights: Optional[str] = None,
    input_tensor=None,
    input_shape: Optional[Sequence[Optional[int]]] = None,
    pooling: Optional[str] = None,
    classes: int = 600,
    classifier_activation: Optional[str] = "softmax",
    name: str = "mobilenet3d_v2",
    *,
    alpha: float = 1.0,
) -> keras.Model:
    """3D-MobileNetV2 without temporal stride, keras.applications signature.

    Input: preprocessed clips ``(N, T, H, W, C)`` float (see
    :func:`preprocess_input`: RGB minus the ActivityNet mean). Any T >= 1,
    any H, W >= 32 and any channel count build; GCF-Net feeds 16 x 112 x 112
    x 3. The last map (``out_relu``) is ``(N, T, ceil(H / 32), ceil(W / 32),
    1280)``. At ``alpha=1`` with a 600-class top: 3,122,648 trainable
    parameters (GCF-Net Table 3: 3.12M).

    Sources: Sandler et al., "MobileNetV2: Inverted Residuals and Linear
    Bottlenecks", CVPR 2018 (Table 2); Köpüklü et al., "Resource Efficient 3D
    Convolutional Neural Networks", ICCVW 2019 (the 3D version); GCF-Net
    (Hsiao, Chen, Ho 2020) Sec. 3.1 (no temporal stride), 4.2, Table 3.

    Args:
        include_top: add ``global_pool`` → ``dropout`` (0.2) →
            ``predictions`` (``classes``).
        weights: ``None`` (random initialisation) or the path of a
            ``.weights.h5`` file saved from a model built with the same
            arguments. Nothing is downloaded.
        input_tensor: optional tensor to build on (keras.applications style).
        input_shape: ``(T, H, W, C)``; default ``(16, 112, 112, 3)``; T, H and
            W may be ``None``.
        pooling: with ``include_top=False``: ``None`` (5-D ``out_relu``),
            ``"avg"`` (``global_pool``, the clip descriptor) or ``"max"``.
        classes: width of ``predictions`` with ``include_top``.
        classifier_activation: activation of ``predictions`` (``None`` for logits).
        name: model name.
        alpha: width multiplier > 0 (keras.applications' ``alpha``, Köpüklü's
            ``width_mult``): every block's channels times ``alpha``, rounded
            to a multiple of 8; the last convolution keeps 1280 channels
            unless ``alpha > 1``.

    Returns:
        A ``keras.Model`` with float output: ``(N, classes)`` with the top,
        ``(N, T, h, w, 1280)`` (ReLU6'd, in [0, 6]) or ``(N, 1280)`` without.

    Raises:
        ValueError: for a bad ``pooling``, ``classes``, ``input_shape``,
            ``alpha`` or ``weights`` value (the message quotes it), or
            weights that do not fit.
    """
    check_clip_arguments("3D-MobileNetV2", pooling, include_top, classes, weights)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"alpha must be a number > 0, got {alpha!r}")
    shape = clip_input_shape_of(
        "3D-MobileNetV2", input_shape, input_tensor, default_frames=DEFAULT_FRAMES,
        default_size=DEFAULT_INPUT_SIZE, min_size=MIN_INPUT_SIZE,
    )
    inputs, x = clip_builder_inputs(input_tensor, shape)
    x = layers.ZeroPadding3D(1, name="Conv1_pad")(x)
    x = layers.Conv3D(
        _make_divisible(STEM_CHANNELS * alpha), 3, strides=(1, 2, 2), use_bias=False,
        kernel_initializer=conv_kernel_initializer(), name="Conv1",
    )(x)
    x = batch_norm(x, "bn_Conv1")
    x = layers.ReLU(6.0, name="Conv1_relu")(x)
    block = 0
    for expansion, channels, repeats, stride in INVERTED_RESIDUALS:
        filters = _make_divisible(channels * alpha)
        for index in range(repeats):
            x = _inverted_residual(x, expansion, filters, stride if index == 0 else 1, block)
            block += 1
    last = _make_divisible(LAST_CHANNELS * alpha) if alpha > 1.0 else LAST_CHANNELS
    x = layers.Conv3D(last, 1, use_bias=False, kernel_initializer=conv_kernel_initializer(), name="Conv_1")(x)
    x = batch_norm(x, "Conv_1_bn")
    x = layers.ReLU(6.0, name="out_relu")(x)
    if include_top:
        x = layers.GlobalAveragePooling3D(name="global_pool")(x)
        x = layers.Dropout(TOP_DROPOUT, name="dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = clip_global_pooling(x, pooling)
    return finish_clip_model(inputs, x, name=name, arch="3D-MobileNetV2", weights=weights)


def preprocess_input(x):
    """Raw RGB pixels 0-255 → 3D-MobileNetV2 input: minus the ActivityNet mean
    (RGB order), float32. NumPy in, NumPy out.

    Raises:
        ValueError: for input without 3 channels.
    """
    return SPEC.preprocess_input(x)


SPEC = ClipBackboneSpec(
    name="mobilenet3d_v2",
    display_name="3D-MobileNetV2",
    builder=MobileNet3DV2,
    feature_layers=FEATURE_LAYERS,
    features=LAST_CHANNELS,
    default_frames=DEFAULT_FRAMES,
    default_input_size=DEFAULT_INPUT_SIZE,
    min_input_size=MIN_INPUT_SIZE,
    rgb_mean=RGB_MEAN,
    rgb_std=RGB_STD,
    published_params=3.12e6,
    published_classes=600,
)

__all__ = [
    "MobileNet3DV2", "SPEC", "FEATURE_LAYERS", "INVERTED_RESIDUALS", "DEFAULT_FRAMES", "DEFAULT_INPUT_SIZE",
    "MIN_INPUT_SIZE", "RGB_MEAN", "RGB_STD", "preprocess_input",
]
