"""BN-Inception as TSN runs it (Wang et al. 2016; Ioffe & Szegedy 2015).

The network of ``tsn_bn_inception_{rgb,flow}_deploy.prototxt`` in Keras, with
the prototxt's layer names (``/`` replaced by ``_``): convolutions with bias,
BN (epsilon 1e-5) named ``<conv>_bn``, ReLU named after Caffe's ReLU layers,
block outputs ``inception_XX_output``.

Caffe details reproduced exactly:

* symmetric zero padding of strided convolutions (explicit ``ZeroPadding2D``
  + ``"valid"`` convolution; TF's ``"same"`` pads more at the bottom/right);
* round-up ("ceil mode") max pooling of ``pool1``/``pool2`` (one extra
  row/column at the bottom/right; their inputs are ReLU outputs, so zero
  padding equals Caffe's ignored padding);
* average pooling with padding that counts the padding (always divides by 9);
* the stride-2 blocks ``3c`` and ``4e`` pass their input through a 3x3/2 max
  pool without projection. Caffe's round-up there equals TF ``"same"`` max
  pooling whenever the map is even-sized (as it is for 224x224 input); for
  input sizes whose maps are odd there, Caffe's branches would not line up
  and cannot be built, while ``"same"`` keeps them aligned, so any input
  size from 32x32 up builds.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import keras
from keras import layers

from keras_gated_tsn.backbones import common
from keras_gated_tsn.backbones.registry import BackboneSpec, PretrainedFile, register_backbone
from keras_gated_tsn.layers.frozen_bn import FrozenBatchNormalization
from keras_gated_tsn.layers.fused_bn import FusedBatchNormalization
from keras_gated_tsn.layers.preprocessing import CAFFE_BGR_MEAN

DEFAULT_FUSION_LAYER = "inception_4e_output"
DEFAULT_INPUT_SIZE = 224
STREAM_POOLING = "avg"
BGR_MEAN = CAFFE_BGR_MEAN
#: TSN's dropout before a stream's classifier, per modality.
STREAM_DROPOUT = {"rgb": 0.8, "flow": 0.7}
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9
MIN_INPUT_SIZE = 32

# (1x1, 3x3_reduce, 3x3, double_3x3_reduce, double_3x3, pool, pool_proj, stride)
# pool_proj 0 with stride 2: the pool branch passes through without projection.
INCEPTION_BLOCKS: Dict[str, Tuple[int, int, int, int, int, str, int, int]] = {
    "3a": (64, 64, 64, 64, 96, "avg", 32, 1),
    "3b": (64, 64, 96, 64, 96, "avg", 64, 1),
    "3c": (0, 128, 160, 64, 96, "max", 0, 2),
    "4a": (224, 64, 96, 96, 128, "avg", 128, 1),
    "4b": (192, 96, 128, 96, 128, "avg", 128, 1),
    "4c": (160, 128, 160, 128, 160, "avg", 128, 1),
    "4d": (96, 128, 192, 160, 192, "avg", 128, 1),
    "4e": (0, 128, 192, 192, 256, "max", 0, 2),
    "5a": (352, 192, 320, 160, 224, "avg", 128, 1),
    "5b": (352, 192, 320, 192, 224, "max", 128, 1),
}

#: Feature layers a gating ConvNet can start from: name -> (channels, stride
#: relative to the input). ``pool1``/``pool2`` are the paper's "conv1"/"conv2"
#: (Table II) after their pooling.
FEATURE_LAYERS: Dict[str, Tuple[int, int]] = {
    "pool1_3x3_s2": (64, 4),
    "pool2_3x3_s2": (192, 8),
    "inception_3a_output": (256, 8),
    "inception_3b_output": (320, 8),
    "inception_3c_output": (576, 16),
    "inception_4a_output": (576, 16),
    "inception_4b_output": (576, 16),
    "inception_4c_output": (608, 16),
    "inception_4d_output": (608, 16),
    "inception_4e_output": (1056, 32),
    "inception_5a_output": (1024, 32),
    "inception_5b_output": (1024, 32),
}

#: Stages in order, each with the name of its output layer.
STAGES: Tuple[str, ...] = ("pool1_3x3_s2", "pool2_3x3_s2") + tuple(
    f"inception_{block}_output" for block in INCEPTION_BLOCKS
)


def _conv_bn_relu(
    x,
    filters: int,
    kernel: int,
    conv_name: str,
    relu_name: str,
    *,
    stride: int = 1,
    prefix: str = "",
    frozen_bn: bool = False,
):
    """Caffe Convolution (with bias) → BN (eps 1e-5) → ReLU, Caffe padding."""
    pad = (kernel - 1) // 2
    if stride > 1 and pad > 0:
        x = layers.ZeroPadding2D(pad, name=f"{prefix}{conv_name}_pad")(x)
        padding = "valid"
    else:
        padding = "same" if pad > 0 else "valid"
    x = layers.Conv2D(
        filters, kernel, strides=stride, padding=padding, use_bias=True, name=f"{prefix}{conv_name}"
    )(x)
    norm = FrozenBatchNormalization if frozen_bn else FusedBatchNormalization
    x = norm(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{prefix}{conv_name}_bn")(x)
    return layers.ReLU(name=f"{prefix}{relu_name}")(x)


def _ceil_max_pool(x, name: str):
    """Caffe MAX 3x3/2 pooling with round-up output size, on non-negative input.

    On an even static height and width TensorFlow's "same" pooling is Caffe's
    (one padded row and column at the end) and runs as one op; otherwise the
    map is zero-padded at the end (equal to Caffe's on ReLU outputs).
    """
    height, width = x.shape[1], x.shape[2]
    if height is not None and width is not None and height % 2 == 0 and width % 2 == 0:
        return layers.MaxPooling2D(3, strides=2, padding="same", name=name)(x)
    x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_pad")(x)
    return layers.MaxPooling2D(3, strides=2, padding="valid", name=name)(x)


def _stem_stage(x, stage: str, prefix: str, frozen_bn: bool):
    if stage == "pool1_3x3_s2":
        x = _conv_bn_relu(
            x, 64, 7, "conv1_7x7_s2", "conv1_relu_7x7", stride=2, prefix=prefix,
            frozen_bn=frozen_bn,
        )
        return _ceil_max_pool(x, f"{prefix}pool1_3x3_s2")
    x = _conv_bn_relu(
        x, 64, 1, "conv2_3x3_reduce", "conv2_relu_3x3_reduce", prefix=prefix,
        frozen_bn=frozen_bn,
    )
    x = _conv_bn_relu(
        x, 192, 3, "conv2_3x3", "conv2_relu_3x3", prefix=prefix, frozen_bn=frozen_bn
    )
    return _ceil_max_pool(x, f"{prefix}pool2_3x3_s2")


def _inception_block(x, block: str, prefix: str, frozen_bn: bool):
    n1x1, n3r, n3, nd3r, nd3, pool, nproj, stride = INCEPTION_BLOCKS[block]
    name = f"inception_{block}_"

    def cbr(inp, filters, kernel, conv, relu, stride=1):
        return _conv_bn_relu(
            inp, filters, kernel, name + conv, name + relu, stride=stride, prefix=prefix,
            frozen_bn=frozen_bn,
        )

    branches = []
    if n1x1:
        branches.append(cbr(x, n1x1, 1, "1x1", "relu_1x1"))
    b = cbr(x, n3r, 1, "3x3_reduce", "relu_3x3_reduce")
    branches.append(cbr(b, n3, 3, "3x3", "relu_3x3", stride=stride))
    b = cbr(x, nd3r, 1, "double_3x3_reduce", "relu_double_3x3_reduce")
    b = cbr(b, nd3, 3, "double_3x3_1", "relu_double_3x3_1")
    branches.append(cbr(b, nd3, 3, "double_3x3_2", "relu_double_3x3_2", stride=stride))
    pool_name = f"{prefix}{name}pool"
    if pool == "avg":
        # Caffe AVE pooling with pad 1 divides by 9 everywhere (counts the padding).
        b = layers.ZeroPadding2D(1, name=f"{pool_name}_pad")(x)
        b = layers.AveragePooling2D(3, strides=1, padding="valid", name=pool_name)(b)
    else:
        b = layers.MaxPooling2D(3, strides=stride, padding="same", name=pool_name)(x)
    if nproj:
        b = cbr(b, nproj, 1, "pool_proj", "relu_pool_proj")
    branches.append(b)
    return layers.Concatenate(axis=-1, name=f"{prefix}{name}output")(branches)


def _run_stage(x, stage: str, prefix: str = "", frozen_bn: bool = False):
    if stage in ("pool1_3x3_s2", "pool2_3x3_s2"):
        return _stem_stage(x, stage, prefix, frozen_bn)
    block = stage[len("inception_") : -len("_output")]
    return _inception_block(x, block, prefix, frozen_bn)


def build_tail(x, after: str, *, prefix: str = "", frozen_bn: bool = False):
    """Applies the BN-Inception stages that follow the feature layer ``after``.

    This is how the gating ConvNet gets "the convolutional layers of
    BN-Inception after the input fusion layer" (gated TSN paper, Sec. III-B):
    e.g. after ``inception_4e_output`` it runs ``inception_5a`` and
    ``inception_5b``. Layer names are the backbone's with ``prefix`` in front
    (``gating_inception_5a_1x1``).

    Args:
        x: a 4-D feature map ``(N, h, w, c)``; c may differ from the backbone's
            (e.g. concatenation fusion doubles it).
        after: a key of :data:`FEATURE_LAYERS`.
        prefix: prepended to every layer name.
        frozen_bn: use :class:`~keras_gated_tsn.layers.FrozenBatchNormalization`
            (global statistics in every call, scale and shift still trained),
            as Caffe's ``BN`` with ``frozen: true`` in the gating ConvNet.

    Returns:
        The output of ``inception_5b`` (``(N, h', w', 1024)``), or ``x`` itself
        when ``after`` is the last stage.

    Raises:
        ValueError: if ``after`` is not a feature layer.
    """
    return common.run_tail(
        x, after, arch="BN-Inception", stages=STAGES, feature_layers=FEATURE_LAYERS,
        run_stage=lambda y, stage: _run_stage(y, stage, prefix, frozen_bn),
    )


def BNInception(
    include_top: bool = True,
    weights: Optional[str] = None,
    input_tensor=None,
    input_shape: Optional[Sequence[Optional[int]]] = None,
    pooling: Optional[str] = None,
    classes: int = 1000,
    classifier_activation: Optional[str] = "softmax",
    name: str = "bn_inception",
) -> keras.Model:
    """BN-Inception of TSN with the keras.applications signature.

    Input: preprocessed images ``(N, H, W, C)`` float (see
    :func:`preprocess_input`): BGR minus ``[104, 117, 123]`` for RGB, or
    uint8-encoded flow minus 128 with C = 2L channels (TSN: L=5, C=10). Any
    H, W >= 32 and any channel count build; ``inception_4e_output`` is
    ``(N, 7, 7, 1056)`` for 224x224 input. Without the classifier the network
    has 10,270,240 trainable parameters for RGB input.

    Args:
        include_top: add global average pooling and a ``classes``-way
            ``Dense`` named ``predictions``.
        weights: ``None`` (random initialisation), ``"imagenet"`` (a file
            converted from TSN's ImageNet checkpoint, looked up in
            ``$KGT_WEIGHTS_DIR`` or ``~/.keras/models``; see
            :mod:`keras_gated_tsn.weights.pretrained`) or the path of a
            weights file saved from a model built with the same arguments.
            A 3-channel file given to a model with another channel count is
            loaded with TSN's cross-modality initialisation of ``conv1``.
        input_tensor: optional tensor to build on (keras.applications style);
            the model's inputs are then that tensor's source inputs, and the
            backbone's layers join that graph.
        input_shape: ``(H, W, C)``; default ``(224, 224, 3)``. H and W may be
            ``None``.
        pooling: with ``include_top=False``: ``None`` (4-D output of
            ``inception_5b``), ``"avg"`` (global average pooling, layer
            ``global_pool``, Caffe's 7x7 average at 224) or ``"max"``.
        classes: classifier width with ``include_top``.
        classifier_activation: activation of the classifier (``None`` for
            logits).
        name: model name.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: for a bad ``pooling``, ``classes``, ``input_shape`` or
            ``weights`` value (the message quotes it), or a weights file that
            does not fit.
        FileNotFoundError: for registered weights that are not on disk (the
            message says which file to make and where to put it).
    """
    common.check_arguments(pooling, include_top, classes, weights)
    shape = common.input_shape_of(
        "BN-Inception", input_shape, input_tensor, default_size=DEFAULT_INPUT_SIZE, min_size=MIN_INPUT_SIZE
    )
    inputs, x = common.builder_inputs(input_tensor, shape)
    for stage in STAGES:
        x = _run_stage(x, stage)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="global_pool")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = common.global_pooling(x, pooling)
    return common.finish(inputs, x, name=name, arch="bn_inception", weights=weights, builder_kwargs=dict(
        include_top=include_top, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name,
    ))


def preprocess_input(x, modality: str = "rgb"):
    """Raw 0-255 pixels → backbone input (NumPy or tensor, channels last).

    ``"rgb"``: RGB → BGR minus the Caffe mean ``[104, 117, 123]``;
    ``"flow"``: uint8-encoded flow (128 = no motion) minus 128. Returns
    float32: a NumPy array for NumPy input, a tensor otherwise.

    Raises:
        ValueError: for another modality or RGB input without 3 channels.
    """
    return SPEC.preprocess_input(x, modality)


SPEC = register_backbone(BackboneSpec(
    name="bn_inception",
    display_name="BN-Inception",
    builder=BNInception,
    feature_layers=FEATURE_LAYERS,
    stages=STAGES,
    build_tail=build_tail,
    default_fusion_layer=DEFAULT_FUSION_LAYER,
    default_input_size=DEFAULT_INPUT_SIZE,
    min_input_size=MIN_INPUT_SIZE,
    stream_pooling=STREAM_POOLING,
    stream_dropout=STREAM_DROPOUT,
    bgr_mean=BGR_MEAN,
    pretrained={
        "imagenet": PretrainedFile(
            "bn_inception_imagenet.weights.h5",
            "convert the BN-Inception ImageNet checkpoint that TSN starts from (Caffe "
            "bn_inception_rgb_init.caffemodel or the PyTorch bn_inception state dict) with "
            "`gated-tsn convert-weights SRC bn_inception_imagenet.weights.h5 --arch bn_inception` "
            "(see weights/README.md)",
        ),
    },
))
