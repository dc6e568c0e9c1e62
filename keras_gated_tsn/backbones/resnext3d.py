"""3D-ResNeXt-101 (Hara, Kataoka, Satoh, CVPR 2018), the full clip backbone of GCF-Net.

A clip ``(T, H, W, 3)`` of T stacked frames runs through 3D convolutions:
the ResNeXt bottleneck of Xie et al. (CVPR 2017; "aggregated residual
transformations", cardinality 32) with every kernel given a temporal extent,
as Hara et al.'s 3D ResNeXt does: ``conv1`` 7x7x7/64 → 3x3x3 max pool →
``conv2``-``conv5`` of 3, 4, 23 and 3 blocks (101 layers), each block
``1x1x1 → 3x3x3 grouped (32 groups) → 1x1x1`` with 128, 256, 512, 1024
grouped channels and twice that at its output (256 ... 2048), and a
projection shortcut (1x1x1 convolution + BN, Hara's shortcut type B) where
the shape changes. GCF-Net (Hsiao, Chen, Ho 2020, Sec. 4.2) uses it as
"3D-ResNeXt-101", the backbone of its best results (Tables 1-2).

**No temporal stride.** GCF-Net Sec. 3.1: "To maintain the temporal accuracy
of action localization, no strides will be applied along the T dimension",
so the last feature map keeps all T frames. Every stride here is
``(1, 2, 2)`` — where Hara et al. stride the max pool and ``conv3``-``conv5``
by 2 in time too. Strides hold no weights, so the parameter count is Hara's:
48,340,816 trainable parameters with a 400-class top, GCF-Net Table 3's
"48.34M" (PyTorch's count, which leaves out the BN statistics; the figure is
that of the 400-class Kinetics network of Hara et al.: a 600-class top gives
48,750,616); the computation grows with T (Table 3's 6,932 MFLOPs are those
of the strided network).

Layer names follow keras.applications' ResNet: ``conv1_conv``, ``conv1_bn``,
``conv1_relu``, ``pool1_pool``, then ``conv{s}_block{b}_{1,2,3}_{conv,bn,relu}``,
the shortcut ``conv{s}_block1_0_{conv,bn}``, ``conv{s}_block{b}_add`` and the
block output ``conv{s}_block{b}_out``; the top is ``global_pool`` →
``predictions``. Padding is PyTorch's (symmetric, explicit
``ZeroPadding3D`` before each strided layer) and BN has PyTorch's epsilon
1e-5 and momentum 0.1 (Keras 0.9), so a converted PyTorch checkpoint would
give the same numbers; kernels start He-normal over the fan-in
(:func:`conv_kernel_initializer`).

The module also holds what the clip backbones share:
:class:`ClipBackboneSpec` (the clip backbones' counterpart of
:class:`~keras_gated_tsn.backbones.registry.BackboneSpec`, kept apart from the
2D registry that drives TSN streams and the CLI) and the builders' argument
checks.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import keras
from keras import layers, ops

#: Cardinality C of the grouped 3x3x3 convolutions (Xie et al.'s 32x4d, Hara's ResNeXt).
CARDINALITY = 32
#: Blocks per stage ``conv2`` ... ``conv5`` of the 101-layer network.
BLOCKS = (3, 4, 23, 3)
#: Channels of each stage's grouped convolution; a block outputs twice as many.
STAGE_WIDTHS = (128, 256, 512, 1024)
#: Clip length T and side S of GCF-Net's input (Sec. 3.3: 10 x 16 x 112 x 112 x 3).
DEFAULT_FRAMES = 16
DEFAULT_INPUT_SIZE = 112
#: The smallest side the network was designed for (``conv5`` then 1x1).
MIN_INPUT_SIZE = 32
#: Channels of the pooled clip descriptor v (GCF-Net Sec. 3.1, d).
FEATURES = 2048
#: Hara et al.'s input normalisation: RGB order, minus the ActivityNet mean
#: (their default ``mean_dataset``), not divided by a deviation; pixels 0-255.
RGB_MEAN = (114.7748, 107.7354, 99.4750)
RGB_STD = (1.0, 1.0, 1.0)
#: PyTorch's BatchNorm3d defaults (Hara's code): eps 1e-5, momentum 0.1 (Keras 0.9).
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def _feature_layers() -> Dict[str, Tuple[int, int]]:
    features = {"conv1_relu": (64, 2), "pool1_pool": (64, 4)}
    for stage, (blocks, width) in enumerate(zip(BLOCKS, STAGE_WIDTHS), start=2):
        features[f"conv{stage}_block{blocks}_out"] = (2 * width, 2 ** max(stage, 2))
    return features


#: Feature layers: name -> (channels, spatial stride relative to the input).
#: The temporal stride is 1 everywhere (the map keeps all T frames); the
#: spatial side is ``ceil(side / stride)`` (PyTorch's symmetric padding).
FEATURE_LAYERS: Dict[str, Tuple[int, int]] = _feature_layers()


# --------------------------------------------------------------------------------------
# What the clip backbones share.


@dataclasses.dataclass(frozen=True)
class ClipBackboneSpec:
    """What the rest of the package needs to know about one 3D clip backbone.

    The clip backbones take whole clips ``(N, T, H, W, 3)``; they are kept out
    of the 2D :mod:`~keras_gated_tsn.backbones.registry` (whose backbones make
    TSN streams and the CLI's ``--backbone`` choices) and looked up with
    :func:`keras_gated_tsn.backbones.get_clip_backbone`.

    Attributes:
        name: lookup key (``"resnext3d_101"``), used in model configs.
        display_name: for messages (``"3D-ResNeXt-101"``).
        builder: the keras.applications-style builder.
        feature_layers: layer name -> ``(channels, spatial stride)``.
        features: channels d of the globally pooled clip descriptor.
        default_frames: clip length T the network is used with (16).
        default_input_size: side S (112).
        min_input_size: the smallest side it was designed for.
        rgb_mean, rgb_std: input normalisation, RGB order, pixel units 0-255:
            ``(x - mean) / std``.
        published_params: the parameter count of the source (PyTorch's count:
            trainable parameters, no BN statistics) with a
            ``published_classes``-way top.
        published_classes: classes of that top.
    """

    name: str
    display_name: str
    builder: Callable
    feature_layers: Mapping[str, Tuple[int, int]]
    features: int
    default_frames: int
    default_input_size: int
    min_input_size: int
    rgb_mean: Tuple[float, float, float]
    rgb_std: Tuple[float, float, float]
    published_params: Optional[float] = None
    published_classes: Optional[int] = None

    def preprocess_input(self, x):
        """Raw RGB pixels 0-255 ``(..., 3)`` → this backbone's input,
        ``(x - rgb_mean) / rgb_std`` in float32 (NumPy in, NumPy out; a tensor
        gives a tensor). The models do the same in their first layer.

        Raises:
            ValueError: for input whose last axis is not 3.
        """
        import numpy as np

        if x.shape[-1] != 3:
            raise ValueError(f"{self.display_name} takes RGB input with 3 channels, got shape {tuple(x.shape)}")
        mean = np.asarray(self.rgb_mean, "float32")
        std = np.asarray(self.rgb_std, "float32")
        if isinstance(x, np.ndarray):
            return (x.astype("float32") - mean) / std
        return (keras.ops.cast(x, "float32") - mean) / std


def check_clip_arguments(arch: str, pooling, include_top: bool, classes, weights) -> None:
    """keras.applications-style up-front checks of a clip backbone's builder.

    ``weights`` is None or the path of an existing Keras weights file: no
    clip backbone has registered (downloadable) weights.

    Raises:
        ValueError: quoting a bad ``pooling``, ``classes`` or ``weights``.
    """
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if include_top and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 1):
        raise ValueError(f"classes must be a positive int with include_top=True, got {classes!r}")
    if weights is not None and not (isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights)):
        raise ValueError(
            f"{arch} weights must be None (random initialisation) or the path of an existing weights file "
            f"(no pretrained weights are registered for it), got {weights!r}"
        )


def clip_input_shape_of(arch: str, input_shape, input_tensor, *, default_frames: int, default_size: int,
                        min_size: int) -> Tuple[Optional[int], Optional[int], Optional[int], int]:
    """``(frames, height, width, channels)`` of a clip builder's input, checked.

    Raises:
        ValueError: for a shape that is not 4-D, a side below ``min_size``,
            no frame, or no positive channel count.
    """
    if input_tensor is not None:
        shape = tuple(input_tensor.shape[1:])
    elif input_shape is not None:
        shape = tuple(input_shape)
    else:
        shape = (default_frames, default_size, default_size, 3)
    if len(shape) != 4:
        raise ValueError(f"{arch} input_shape must be (frames, height, width, channels), got {shape}")
    frames, height, width, channels = shape
    if frames is not None and frames < 1:
        raise ValueError(f"{arch} needs at least one frame, got {shape}")
    for size in (height, width):
        if size is not None and size < min_size:
            raise ValueError(f"{arch} needs inputs of at least {min_size}x{min_size}, got {shape}")
    if channels is None or channels < 1:
        raise ValueError(f"the channel axis must be known and positive, got {shape}")
    return frames, height, width, channels


def clip_builder_inputs(input_tensor, shape):
    """``(inputs, x)``: a new ``Input`` named ``input``, or, keras.applications
    style, the source inputs of ``input_tensor`` and the tensor itself."""
    if input_tensor is None:
        inputs = keras.Input(shape=shape, name="input")
        return inputs, inputs
    return keras.utils.get_source_inputs(input_tensor), input_tensor


def clip_global_pooling(x, pooling: Optional[str]):
    """``pooling`` of a clip builder without top: None, ``"avg"`` (``global_pool``,
    over frames, height and width) or ``"max"`` (``global_max_pool``)."""
    if pooling == "avg":
        return layers.GlobalAveragePooling3D(name="global_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling3D(name="global_max_pool")(x)
    return x


def finish_clip_model(inputs, x, *, name: str, arch: str, weights) -> keras.Model:
    """The functional model, with ``weights`` (a weights file) loaded.

    Raises:
        ValueError: naming the file when it does not fit the model.
    """
    from keras_gated_tsn.weights.pretrained import _load_whole

    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        # A partial load (Keras warns "Skipping ..." and loads the rest) is a failed one.
        error = _load_whole(model, os.fspath(weights))
        if error is not None:
            raise ValueError(f"weights file {os.fspath(weights)} does not fit {arch} {name!r}: {error}")
    return model


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class GroupedConv3D(layers.Conv3D):
    """``Conv3D`` with ``groups`` > 1, computed as 2D depthwise convolutions.

    The same layer as ``keras.layers.Conv3D(filters, kernel_size, groups=g,
    ...)`` — same arguments, config, kernel ``(kt, kh, kw, C_in / g,
    filters)`` and outputs — computed another way: for each temporal tap of
    the kernel, one ``keras.ops.depthwise_conv`` over the frames (the channel
    multiplier is a group's output width; kernel entries regrouped so that
    input channel ``c`` of group ``k`` carries that group's filters), summed
    over the taps and over each group's input channels. The multiply-adds
    are the grouped convolution's. Keras' TensorFlow backend runs grouped
    convolutions through XLA, which on the CPU is about 100 times slower than
    this (a 3x3x3 depthwise layer on 8 x 4 x 16 x 16 x 96: 1.1 s against
    7 ms for a training step); with ``groups=1`` it is ``Conv3D`` itself.

    Restrictions (those of the 3D backbones here): ``channels_last``, no
    dilation, temporal stride 1.

    Raises:
        ValueError: for ``channels_first``, a dilation, or a temporal stride.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.data_format != "channels_last":
            raise ValueError(f"GroupedConv3D takes channels_last input, got data_format {self.data_format!r}")
        if tuple(self.dilation_rate) != (1, 1, 1):
            raise ValueError(f"GroupedConv3D has no dilation, got dilation_rate {self.dilation_rate!r}")
        if self.strides[0] != 1:
            raise ValueError(f"GroupedConv3D has temporal stride 1, got strides {self.strides!r}")

    def convolution_op(self, inputs, kernel):
        if self.groups == 1:
            return super().convolution_op(inputs, kernel)
        taps, kernel_h, kernel_w, group_in, filters = kernel.shape
        group_out = filters // self.groups
        # (kt, kh, kw, C_in / g, g, F / g) -> (kt, kh, kw, g, C_in / g, F / g) -> (kt, kh, kw, C_in, F / g):
        # input channel k * C_in / g + i gets group k's filters as its depthwise multiplier.
        depthwise = ops.reshape(kernel, (taps, kernel_h, kernel_w, group_in, self.groups, group_out))
        depthwise = ops.transpose(depthwise, (0, 1, 2, 4, 3, 5))
        depthwise = ops.reshape(depthwise, (taps, kernel_h, kernel_w, self.groups * group_in, group_out))
        x = inputs
        if self.padding == "same" and taps > 1:
            before = (taps - 1) // 2
            x = ops.pad(x, ((0, 0), (before, taps - 1 - before), (0, 0), (0, 0), (0, 0)))
        shape = ops.shape(x)
        outputs = None
        for tap in range(taps):
            end = tap - (taps - 1)
            frames = x[:, tap : end if end < 0 else None]
            frames = ops.reshape(frames, (-1, shape[2], shape[3], shape[4]))
            y = ops.depthwise_conv(frames, depthwise[tap], strides=self.strides[1:], padding=self.padding)
            outputs = y if outputs is None else outputs + y
        out_shape = ops.shape(outputs)
        outputs = ops.reshape(outputs, (shape[0], -1, out_shape[1], out_shape[2], self.groups, group_in, group_out))
        if group_in > 1:
            outputs = ops.sum(outputs, axis=-2)
        return ops.reshape(outputs, (shape[0], -1, out_shape[1], out_shape[2], filters))


def conv_kernel_initializer():
    """He-normal over the fan-in (``keras.initializers.HeNormal``).

    Hara's and Köpüklü's code starts from He-normal over the fan-out, which in
    a grouped or depthwise convolution counts every output channel while
    each output sees only its group's inputs: a fresh network's activations
    then shrink by the group count at every such layer (features ~1e-8 at
    the end of a fresh 3D-MobileNetV2 in inference mode). Over the fan-in
    (which Keras computes per group) they keep their scale, so a fresh or
    frozen backbone still gives usable features.
    """
    return keras.initializers.HeNormal()


def batch_norm(x, name: str):
    """BN over channels with PyTorch's epsilon and momentum (Hara's, Kopuklu's)."""
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


# --------------------------------------------------------------------------------------
# 3D-ResNeXt-101.


def _bottleneck(x, width: int, stride: int, shortcut: bool, name: str):
    """Hara's ResNeXt bottleneck: 1x1x1 (width) → 3x3x3 grouped (width, 32
    groups, spatial stride ``stride``) → 1x1x1 (2·width), + shortcut, ReLU."""
    init = conv_kernel_initializer()
    strides = (1, stride, stride)
    if shortcut:
        residual = layers.Conv3D(
            2 * width, 1, strides=strides, use_bias=False, kernel_initializer=init, name=f"{name}_0_conv"
        )(x)
        residual = batch_norm(residual, f"{name}_0_bn")
    else:
        residual = x
    y = layers.Conv3D(width, 1, use_bias=False, kernel_initializer=init, name=f"{name}_1_conv")(x)
    y = batch_norm(y, f"{name}_1_bn")
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    if stride > 1:
        y = layers.ZeroPadding3D(1, name=f"{name}_2_pad")(y)
    y = GroupedConv3D(
        width, 3, strides=strides, padding="valid" if stride > 1 else "same", groups=CARDINALITY,
        use_bias=False, kernel_initializer=init, name=f"{name}_2_conv",
    )(y)
    y = batch_norm(y, f"{name}_2_bn")
    y = layers.Activation("relu", name=f"{name}_2_relu")(y)
    y = layers.Conv3D(2 * width, 1, use_bias=False, kernel_initializer=init, name=f"{name}_3_conv")(y)
    y = batch_norm(y, f"{name}_3_bn")
    y = layers.Add(name=f"{name}_add")([residual, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def ResNeXt3D101(
    include_top: bool = True,
    weights: Optional[str] = None,
    input_tensor=None,
    input_shape: Optional[Sequence[Optional[int]]] = None,
    pooling: Optional[str] = None,
    classes: int = 600,
    classifier_activation: Optional[str] = "softmax",
    name: str = "resnext3d_101",
) -> keras.Model:
    """3D-ResNeXt-101 (cardinality 32) without temporal stride, keras.applications signature.

    Input: preprocessed clips ``(N, T, H, W, C)`` float (see
    :func:`preprocess_input`: RGB minus the ActivityNet mean). Any T >= 1,
    any H, W >= 32 and any channel count build; GCF-Net feeds 16 x 112 x 112
    x 3. The last map (``conv5_block3_out``) is ``(N, T, ceil(H / 32),
    ceil(W / 32), 2048)``: T is kept (GCF-Net Sec. 3.1, no temporal stride).
    With a 400-class top the network has 48,340,816 trainable parameters
    (GCF-Net Table 3: 48.34M, Hara et al.'s Kinetics-400 network), with
    600 classes 48,750,616.

    Sources: Hara, Kataoka, Satoh, "Can Spatiotemporal 3D CNNs Retrace the
    History of 2D CNNs and ImageNet?", CVPR 2018 (3D ResNeXt-101, shortcut B);
    Xie et al., "Aggregated Residual Transformations for Deep Neural
    Networks", CVPR 2017; Hsiao, Chen, Ho, "GCF-Net: Gated Clip Fusion Network
    for Video Action Recognition", 2020, Sec. 3.1 (no temporal stride), 4.2.

    Args:
        include_top: add ``global_pool`` → ``predictions`` (``classes``).
        weights: ``None`` (random initialisation) or the path of a
            ``.weights.h5`` file saved from a model built with the same
            arguments. Nothing is downloaded.
        input_tensor: optional tensor to build on (keras.applications style);
            the model's inputs are then that tensor's source inputs.
        input_shape: ``(T, H, W, C)``; default ``(16, 112, 112, 3)``. T, H and
            W may be ``None``.
        pooling: with ``include_top=False``: ``None`` (5-D output of
            ``conv5_block3_out``), ``"avg"`` (``global_pool``, the clip
            descriptor v of GCF-Net Sec. 3.1) or ``"max"`` (``global_max_pool``).
        classes: width of ``predictions`` with ``include_top``.
        classifier_activation: activation of ``predictions`` (``None`` for logits).
        name: model name.

    Returns:
        A ``keras.Model`` with float output: ``(N, classes)`` with the top,
        ``(N, T, h, w, 2048)`` (ReLU'd) or ``(N, 2048)`` without.

    Raises:
        ValueError: for a bad ``pooling``, ``classes``, ``input_shape`` or
            ``weights`` value (the message quotes it), or weights that do not
            fit.
    """
    check_clip_arguments("3D-ResNeXt-101", pooling, include_top, classes, weights)
    shape = clip_input_shape_of(
        "3D-ResNeXt-101", input_shape, input_tensor, default_frames=DEFAULT_FRAMES,
        default_size=DEFAULT_INPUT_SIZE, min_size=MIN_INPUT_SIZE,
    )
    inputs, x = clip_builder_inputs(input_tensor, shape)
    x = layers.ZeroPadding3D(3, name="conv1_pad")(x)
    x = layers.Conv3D(
        64, 7, strides=(1, 2, 2), use_bias=False, kernel_initializer=conv_kernel_initializer(), name="conv1_conv"
    )(x)
    x = batch_norm(x, "conv1_bn")
    x = layers.Activation("relu", name="conv1_relu")(x)
    # Zero padding equals PyTorch's -inf padding here: the input is ReLU'd.
    x = layers.ZeroPadding3D(1, name="pool1_pad")(x)
    x = layers.MaxPooling3D(3, strides=(1, 2, 2), name="pool1_pool")(x)
    for stage, (blocks, width) in enumerate(zip(BLOCKS, STAGE_WIDTHS), start=2):
        for block in range(1, blocks + 1):
            stride = 2 if block == 1 and stage > 2 else 1
            x = _bottleneck(x, width, stride, shortcut=block == 1, name=f"conv{stage}_block{block}")
    if include_top:
        x = layers.GlobalAveragePooling3D(name="global_pool")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = clip_global_pooling(x, pooling)
    return finish_clip_model(inputs, x, name=name, arch="3D-ResNeXt-101", weights=weights)


def preprocess_input(x):
    """Raw RGB pixels 0-255 → 3D-ResNeXt-101 input: minus Hara's ActivityNet
    mean ``[114.77, 107.74, 99.48]`` (RGB order), float32. NumPy in, NumPy out.

    Raises:
        ValueError: for input without 3 channels.
    """
    return SPEC.preprocess_input(x)


SPEC = ClipBackboneSpec(
    name="resnext3d_101",
    display_name="3D-ResNeXt-101",
    builder=ResNeXt3D101,
    feature_layers=FEATURE_LAYERS,
    features=FEATURES,
    default_frames=DEFAULT_FRAMES,
    default_input_size=DEFAULT_INPUT_SIZE,
    min_input_size=MIN_INPUT_SIZE,
    rgb_mean=RGB_MEAN,
    rgb_std=RGB_STD,
    published_params=48.34e6,
    published_classes=400,
)

__all__ = [
    "ClipBackboneSpec", "GroupedConv3D", "ResNeXt3D101", "SPEC", "FEATURE_LAYERS", "CARDINALITY", "BLOCKS",
    "STAGE_WIDTHS",
    "DEFAULT_FRAMES", "DEFAULT_INPUT_SIZE", "MIN_INPUT_SIZE", "FEATURES", "RGB_MEAN", "RGB_STD",
    "preprocess_input",
]
