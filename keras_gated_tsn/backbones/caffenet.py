"""CaffeNet, the BVLC reference network (Krizhevsky et al. 2012, as BVLC runs it).

The network of BVLC's ``bvlc_reference_caffenet/deploy.prototxt`` in Keras,
with its layer names: AlexNet with pooling before normalisation (``pool1`` →
``norm1``, ``pool2`` → ``norm2``) and two-group convolutions ``conv2``,
``conv4``, ``conv5``. The gated TSN paper (Sec. IV-B, Table III) uses it as
one of its "different network architectures".

Caffe details reproduced exactly:

* each ReLU is fused into its convolution / fully connected layer
  (``activation="relu"``), so the Keras layer ``conv3`` outputs Caffe's
  in-place ``conv3`` blob after ``relu3``;
* grouped convolutions (``groups=2``: the first half of the input channels
  feeds the first half of the filters, as Caffe's ``group: 2``; Keras kernel
  layout ``(kh, kw, in / 2, out)``);
* symmetric convolution padding (``conv1`` has none; the others are stride 1
  with odd kernels, where ``"same"`` pads symmetrically);
* round-up ("ceil mode") 3x3/2 max pooling: output ``ceil((n - 3) / 2) + 1``,
  e.g. 55 → 27 → ... (one extra zero row/column at the bottom/right; the
  inputs are ReLU outputs, so zero padding equals Caffe's clipped window);
* across-channel LRN with Caffe's formula (alpha divided by ``local_size``),
  :class:`~keras_gated_tsn.layers.LocalResponseNormalization`.

Map sizes at 227x227 input: ``conv1`` 55, ``pool1``/``norm1``/``conv2`` 27,
``pool2``/``norm2``/``conv3``-``conv5`` 13, ``pool5`` 6 (6x6x256 = 9216
inputs to ``fc6``; 224x224 input gives the same 6x6 ``pool5``).

Converting Caffe weights: convolution blobs ``(out, in / group, kh, kw)``
transpose to Keras ``(kh, kw, in / group, out)``; ``fc6`` sees ``pool5``
flattened in Keras' ``(h, w, c)`` order where Caffe flattens ``(c, h, w)``,
so its ``(4096, 9216)`` blob needs its input axis reordered, not only
transposed.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import keras
from keras import layers

from keras_gated_tsn.backbones import common
from keras_gated_tsn.backbones.bn_inception import _ceil_max_pool
from keras_gated_tsn.backbones.registry import BackboneSpec, PretrainedFile, register_backbone
from keras_gated_tsn.layers.lrn import LocalResponseNormalization
from keras_gated_tsn.layers.preprocessing import CAFFE_BGR_MEAN

#: The paper's fusion layer for CaffeNet: "the layers before the last
#: convolutional layers" (gated TSN paper, Sec. IV-B), i.e. conv4.
DEFAULT_FUSION_LAYER = "conv4"
DEFAULT_INPUT_SIZE = 227
#: The smallest input side that builds (``pool5`` is then 1x1).
MIN_INPUT_SIZE = 39
#: The paper removes fc6-fc8 and puts dropout and a new classifier on the
#: flattened ``pool5``, which is what ``fc6`` saw.
STREAM_POOLING = "flatten"
#: The paper (Sec. IV-B): fully connected layers removed, dropout 0.8 after
#: the last conv block, for both streams.
STREAM_DROPOUT = {"rgb": 0.8, "flow": 0.8}
BGR_MEAN = CAFFE_BGR_MEAN

#: LRN of norm1/norm2 (Caffe ``lrn_param``).
LRN_PARAMS = dict(local_size=5, alpha=1e-4, beta=0.75, k=1.0)
#: Dropout ratio of drop6/drop7.
TOP_DROPOUT = 0.5

#: Convolutions: name -> (filters, kernel, stride, pad, groups), Caffe's
#: ``convolution_param``. All are followed by ReLU.
CONVS: Dict[str, Tuple[int, int, int, int, int]] = {
    "conv1": (96, 11, 4, 0, 1),
    "conv2": (256, 5, 1, 2, 2),
    "conv3": (384, 3, 1, 1, 1),
    "conv4": (384, 3, 1, 1, 2),
    "conv5": (256, 3, 1, 1, 2),
}

#: Feature layers a gating ConvNet can start from: name -> (channels, stride
#: relative to the input). The stride is nominal (the product of the layer
#: strides): ``conv1`` has no padding and the pools round up, so the exact
#: side is not ``input // stride`` — at 227 it is 55, 27, 13 and 6 for
#: strides 4, 8, 16 and 32.
FEATURE_LAYERS: Dict[str, Tuple[int, int]] = {
    "conv1": (96, 4),
    "pool1": (96, 8),
    "norm1": (96, 8),
    "conv2": (256, 8),
    "pool2": (256, 16),
    "norm2": (256, 16),
    "conv3": (384, 16),
    "conv4": (384, 16),
    "conv5": (256, 16),
    "pool5": (256, 32),
}

#: Stages in order, each a single Caffe layer (convolution with its ReLU,
#: pooling or normalisation), named as its output layer.
STAGES: Tuple[str, ...] = (
    "conv1", "pool1", "norm1", "conv2", "pool2", "norm2", "conv3", "conv4", "conv5", "pool5",
)


def _run_stage(x, stage: str, prefix: str = ""):
    name = f"{prefix}{stage}"
    if stage in CONVS:
        filters, kernel, stride, pad, groups = CONVS[stage]
        # Padded convolutions have stride 1 and pad (kernel - 1) / 2: "same" is symmetric there.
        return layers.Conv2D(
            filters, kernel, strides=stride, padding="same" if pad else "valid", groups=groups,
            activation="relu", name=name,
        )(x)
    if stage.startswith("pool"):
        return _ceil_max_pool(x, name)
    return LocalResponseNormalization(**LRN_PARAMS, name=name)(x)


def build_tail(x, after: str, *, prefix: str = "", frozen_bn: bool = False):
    """Applies the CaffeNet stages that follow the feature layer ``after``.

    This is how the gating ConvNet gets "the layers after the input fusion
    layer" (gated TSN paper, Sec. III-B, IV-B): after ``conv4`` it runs
    ``conv5`` and ``pool5``. Layer names are the backbone's with ``prefix`` in
    front (``gating_conv5``).

    Args:
        x: a 4-D feature map ``(N, h, w, c)`` float; c may differ from the
            backbone's (concatenation fusion doubles it; a grouped first layer
            then needs an even c).
        after: a key of :data:`FEATURE_LAYERS`.
        prefix: prepended to every layer name.
        frozen_bn: accepted for the registry's protocol and ignored (CaffeNet
            has no BN).

    Returns:
        The output of ``pool5`` (``(N, h', w', 256)``), or ``x`` itself when
        ``after`` is ``pool5``.

    Raises:
        ValueError: if ``after`` is not a feature layer.
    """
    del frozen_bn  # no BN in CaffeNet
    return common.run_tail(
        x, after, arch="CaffeNet", stages=STAGES, feature_layers=FEATURE_LAYERS,
        run_stage=lambda y, stage: _run_stage(y, stage, prefix),
    )


def CaffeNet(
    include_top: bool = True,
    weights: Optional[str] = None,
    input_tensor=None,
    input_shape: Optional[Sequence[Optional[int]]] = None,
    pooling: Optional[str] = None,
    classes: int = 1000,
    classifier_activation: Optional[str] = "softmax",
    name: str = "caffenet",
) -> keras.Model:
    """BVLC reference CaffeNet with the keras.applications signature.

    Input: preprocessed images ``(N, H, W, C)`` float (see
    :func:`preprocess_input`): BGR minus ``[104, 117, 123]`` for RGB, or
    uint8-encoded flow minus 128 with C = 2L channels (TSN: L=5, C=10). Any
    H, W >= 39 and any channel count build; ``pool5`` is ``(N, 6, 6, 256)``
    for 227x227 input. With the 1000-class top the network has 60,965,224
    parameters (2,334,080 in the convolutions for RGB input).

    Sources: Krizhevsky, Sutskever, Hinton, "ImageNet Classification with
    Deep Convolutional Neural Networks", NIPS 2012; BVLC reference CaffeNet
    (``models/bvlc_reference_caffenet/deploy.prototxt`` in Caffe).

    Args:
        include_top: add ``flatten`` → ``fc6`` (4096, ReLU) → ``drop6`` (0.5)
            → ``fc7`` (4096, ReLU) → ``drop7`` (0.5) → ``fc8`` (``classes``).
            Needs a fixed H and W.
        weights: ``None`` (random initialisation) or the path of a
            ``.weights.h5`` file saved from a model built with the same
            arguments.
        input_tensor: optional tensor to build on (keras.applications style);
            the model's inputs are then that tensor's source inputs, and the
            backbone's layers join that graph. With ``weights``, the layers
            upstream of it must have no weights (as in keras.applications).
        input_shape: ``(H, W, C)``; default ``(227, 227, 3)``. H and W may be
            ``None`` without the top.
        pooling: with ``include_top=False``: ``None`` (4-D output of
            ``pool5``), ``"avg"`` (global average pooling, layer
            ``global_pool``) or ``"max"`` (``global_max_pool``).
        classes: width of ``fc8`` with ``include_top``.
        classifier_activation: activation of ``fc8`` (``None`` for logits).
        name: model name.

    Returns:
        A ``keras.Model`` with float output: ``(N, classes)`` with the top,
        ``(N, h, w, 256)`` (ReLU'd, non-negative) or ``(N, 256)`` without.

    Raises:
        ValueError: for a bad ``pooling``, ``classes``, ``input_shape`` or
            ``weights`` value (the message quotes it); for ``include_top``
            with an unknown H or W.
    """
    common.check_arguments(pooling, include_top, classes, weights)
    shape = common.input_shape_of(
        "CaffeNet", input_shape, input_tensor, default_size=DEFAULT_INPUT_SIZE, min_size=MIN_INPUT_SIZE,
        fixed_size_reason="include_top=True flattens pool5" if include_top else None,
    )
    inputs, x = common.builder_inputs(input_tensor, shape)
    for stage in STAGES:
        x = _run_stage(x, stage)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(4096, activation="relu", name="fc6")(x)
        x = layers.Dropout(TOP_DROPOUT, name="drop6")(x)
        x = layers.Dense(4096, activation="relu", name="fc7")(x)
        x = layers.Dropout(TOP_DROPOUT, name="drop7")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="fc8")(x)
    else:
        x = common.global_pooling(x, pooling)
    return common.finish(inputs, x, name=name, arch="caffenet", weights=weights, builder_kwargs=dict(
        include_top=include_top, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name,
    ))


def preprocess_input(x, modality: str = "rgb"):
    """Raw 0-255 pixels → CaffeNet input (NumPy or tensor, channels last):
    RGB → BGR minus the Caffe mean ``[104, 117, 123]``; uint8-encoded flow
    minus 128. Returns float32: NumPy for NumPy input, a tensor otherwise.

    Raises:
        ValueError: for another modality or RGB input without 3 channels.
    """
    return SPEC.preprocess_input(x, modality)


SPEC = register_backbone(BackboneSpec(
    name="caffenet",
    display_name="CaffeNet",
    builder=CaffeNet,
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
            "caffenet_imagenet.weights.h5",
            "convert BVLC's bvlc_reference_caffenet.caffemodel with "
            "`gated-tsn convert-weights bvlc_reference_caffenet.caffemodel caffenet_imagenet.weights.h5 "
            "--arch caffenet` (see weights/README.md)",
        ),
    },
))

__all__ = [
    "CaffeNet", "SPEC", "FEATURE_LAYERS", "STAGES", "build_tail", "preprocess_input",
    "DEFAULT_FUSION_LAYER", "DEFAULT_INPUT_SIZE", "MIN_INPUT_SIZE", "STREAM_POOLING", "BGR_MEAN",
]
