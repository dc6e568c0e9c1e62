"""VGG16 (Simonyan & Zisserman, ICLR 2015) with keras.applications' layer names.

Thirteen 3x3 convolutions (stride 1, ``"same"`` padding, ReLU fused in) in five
blocks, each closed by a 2x2/2 max pool: ``block1_conv1`` ... ``block5_conv3``,
``block1_pool`` ... ``block5_pool``; the top is ``flatten`` → ``fc1`` →
``fc2`` → ``predictions``. The layers, their order and their types are those
of ``keras.applications.VGG16``, so a weights file written by it (including
its ImageNet files) loads unchanged. The gated TSN paper (Sec. IV-B,
Table III) uses VGG16 as one of its "different network architectures".

The ImageNet weights of keras.applications expect its ``"caffe"``
preprocessing: BGR order minus ``[103.939, 116.779, 123.68]``
(:data:`BGR_MEAN`, :func:`preprocess_input`).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import keras
from keras import layers

from keras_gated_tsn.backbones import common
from keras_gated_tsn.backbones.registry import BackboneSpec, PretrainedFile, register_backbone


#: The paper's fusion layer for VGG16: "the layers before the last
#: convolutional layers" (gated TSN paper, Sec. IV-B), i.e. block5_conv2.
DEFAULT_FUSION_LAYER = "block5_conv2"
DEFAULT_INPUT_SIZE = 224
#: The smallest input side that builds (``block5_pool`` is then 1x1).
MIN_INPUT_SIZE = 32
#: The paper removes the fully connected layers and puts dropout and a new
#: classifier on the flattened ``block5_pool``, which is what ``fc1`` saw.
STREAM_POOLING = "flatten"
#: The paper (Sec. IV-B): fully connected layers removed, dropout 0.8 after
#: the last conv block, for both streams.
STREAM_DROPOUT = {"rgb": 0.8, "flow": 0.8}
#: keras.applications' ImageNet mean (``"caffe"`` mode), B, G, R, pixel units 0-255.
BGR_MEAN = (103.939, 116.779, 123.68)

#: Blocks: (filters, convolutions).
BLOCKS: Tuple[Tuple[int, int], ...] = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def _feature_layers() -> Dict[str, Tuple[int, int]]:
    features = {}
    for block, (filters, convs) in enumerate(BLOCKS, start=1):
        for conv in range(1, convs + 1):
            features[f"block{block}_conv{conv}"] = (filters, 2 ** (block - 1))
        features[f"block{block}_pool"] = (filters, 2**block)
    return features


#: Feature layers a gating ConvNet can start from: name -> (channels, stride
#: relative to the input). Exact: the side is ``input // stride`` (the pools
#: round down, as keras.applications' ``"valid"`` pooling does).
FEATURE_LAYERS: Dict[str, Tuple[int, int]] = _feature_layers()

#: Stages in order: every convolution (with its ReLU) and every pool.
STAGES: Tuple[str, ...] = tuple(FEATURE_LAYERS)


def _run_stage(x, stage: str, prefix: str = ""):
    block = int(stage[len("block")])
    if stage.endswith("_pool"):
        return layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"{prefix}{stage}")(x)
    return layers.Conv2D(
        BLOCKS[block - 1][0], (3, 3), activation="relu", padding="same", name=f"{prefix}{stage}"
    )(x)


def build_tail(x, after: str, *, prefix: str = "", frozen_bn: bool = False):
    """Applies the VGG16 stages that follow the feature layer ``after``.

    This is how the gating ConvNet gets "the layers after the input fusion
    layer" (gated TSN paper, Sec. III-B, IV-B): after ``block5_conv2`` it runs
    ``block5_conv3`` and ``block5_pool``. Layer names are the backbone's with
    ``prefix`` in front (``gating_block5_conv3``).

    Args:
        x: a 4-D feature map ``(N, h, w, c)`` float; c may differ from the
            backbone's (concatenation fusion doubles it).
        after: a key of :data:`FEATURE_LAYERS`.
        prefix: prepended to every layer name.
        frozen_bn: accepted for the registry's protocol and ignored (VGG16 has
            no BN).

    Returns:
        The output of ``block5_pool`` (``(N, h', w', 512)``), or ``x`` itself
        when ``after`` is ``block5_pool``.

    Raises:
        ValueError: if ``after`` is not a feature layer.
    """
    del frozen_bn  # no BN in VGG16
    return common.run_tail(
        x, after, arch="VGG16", stages=STAGES, feature_layers=FEATURE_LAYERS,
        run_stage=lambda y, stage: _run_stage(y, stage, prefix),
    )


def VGG16(
    include_top: bool = True,
    weights: Optional[str] = None,
    input_tensor=None,
    input_shape: Optional[Sequence[Optional[int]]] = None,
    pooling: Optional[str] = None,
    classes: int = 1000,
    classifier_activation: Optional[str] = "softmax",
    name: str = "vgg16",
) -> keras.Model:
    """VGG16 (configuration D) with the keras.applications signature and names.

    Input: preprocessed images ``(N, H, W, C)`` float (see
    :func:`preprocess_input`): BGR minus ``[103.939, 116.779, 123.68]`` for
    RGB, or uint8-encoded flow minus 128 with C = 2L channels (TSN: L=5,
    C=10). Any H, W >= 32 and any channel count build; ``block5_pool`` is
    ``(N, 7, 7, 512)`` for 224x224 input. Without the top the network has
    14,714,688 parameters for RGB input (138,357,544 with the 1000-class top).

    The model has the layers of ``keras.applications.VGG16`` in the same
    order, so ``weights`` may be a file written by it
    (``keras.applications.VGG16(...).save_weights(path)``, same
    ``include_top``).

    Source: Simonyan & Zisserman, "Very Deep Convolutional Networks for
    Large-Scale Image Recognition", ICLR 2015 (Table 1, configuration D).

    Args:
        include_top: add ``flatten`` → ``fc1`` (4096, ReLU) → ``fc2`` (4096,
            ReLU) → ``predictions`` (``classes``), as keras.applications (no
            dropout layers). Needs a fixed H and W.
        weights: ``None`` (random initialisation) or the path of a
            ``.weights.h5`` file saved from a model built with the same
            ``include_top`` and channel count (by this builder or by
            ``keras.applications.VGG16``).
        input_tensor: optional tensor to build on (keras.applications style);
            the model's inputs are then that tensor's source inputs, and the
            backbone's layers join that graph. With ``weights``, the layers
            upstream of it must have no weights (as in keras.applications).
        input_shape: ``(H, W, C)``; default ``(224, 224, 3)``. H and W may be
            ``None`` without the top.
        pooling: with ``include_top=False``: ``None`` (4-D output of
            ``block5_pool``), ``"avg"`` (global average pooling, layer
            ``global_pool``) or ``"max"`` (``global_max_pool``).
        classes: width of ``predictions`` with ``include_top``.
        classifier_activation: activation of ``predictions`` (``None`` for
            logits).
        name: model name.

    Returns:
        A ``keras.Model`` with float output: ``(N, classes)`` with the top,
        ``(N, h, w, 512)`` (non-negative) or ``(N, 512)`` without.

    Raises:
        ValueError: for a bad ``pooling``, ``classes``, ``input_shape`` or
            ``weights`` value (the message quotes it); for ``include_top``
            with an unknown H or W.
    """
    common.check_arguments(pooling, include_top, classes, weights)
    shape = common.input_shape_of(
        "VGG16", input_shape, input_tensor, default_size=DEFAULT_INPUT_SIZE, min_size=MIN_INPUT_SIZE,
        fixed_size_reason="include_top=True flattens block5_pool" if include_top else None,
    )
    inputs, x = common.builder_inputs(input_tensor, shape)
    for stage in STAGES:
        x = _run_stage(x, stage)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(4096, activation="relu", name="fc1")(x)
        x = layers.Dense(4096, activation="relu", name="fc2")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = common.global_pooling(x, pooling)
    return common.finish(inputs, x, name=name, arch="vgg16", weights=weights, builder_kwargs=dict(
        include_top=include_top, input_shape=input_shape, pooling=pooling, classes=classes,
        classifier_activation=classifier_activation, name=name,
    ))


def preprocess_input(x, modality: str = "rgb"):
    """Raw 0-255 pixels → VGG16 input (NumPy or tensor, channels last).

    ``"rgb"``: RGB → BGR minus :data:`BGR_MEAN` ``[103.939, 116.779,
    123.68]`` (keras.applications' ``"caffe"`` mode, what its VGG16 ImageNet
    weights expect); ``"flow"``: uint8-encoded flow (128 = no motion) minus
    128, any channel count. Computed by
    :class:`~keras_gated_tsn.layers.ModalityPreprocessing` (the first layer
    of the stream models). Returns float32; a NumPy array for NumPy input,
    a tensor otherwise.

    Raises:
        ValueError: for another modality or RGB input without 3 channels.
    """
    return SPEC.preprocess_input(x, modality)


SPEC = register_backbone(BackboneSpec(
    name="vgg16",
    display_name="VGG16",
    builder=VGG16,
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
        # keras.applications' VGG16 ImageNet file without the top: its published
        # address and md5 (keras.applications.vgg16's WEIGHTS_PATH_NO_TOP).
        "imagenet": PretrainedFile(
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "it is keras.applications' VGG16 ImageNet file without the top; fetch it on a machine "
            "with network access (`keras.applications.VGG16(weights='imagenet', include_top=False)` "
            "downloads it to ~/.keras/models)",
            url="https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            md5="6d6bbae143d832006294945121d1f1fc",
        ),
    },
))

__all__ = [
    "VGG16", "SPEC", "FEATURE_LAYERS", "STAGES", "build_tail", "preprocess_input",
    "DEFAULT_FUSION_LAYER", "DEFAULT_INPUT_SIZE", "MIN_INPUT_SIZE", "STREAM_POOLING", "BGR_MEAN",
]
