"""CNN-M-2048, the network of the original two-stream ConvNets.

Simonyan & Zisserman, "Two-Stream Convolutional Networks for Action
Recognition in Videos", NIPS 2014, Fig. 1 and Sec. 6 ("ConvNets
configuration"): both streams are the CNN-M-2048 of Chatfield, Simonyan,
Vedaldi, Zisserman, "Return of the Devil in the Details: Delving Deep into
Convolutional Nets", BMVC 2014 (Table 1, "CNN-M"; ``VGG_CNN_M_2048`` in the
Caffe Model Zoo, ``imagenet-vgg-m-2048`` in MatConvNet)::

    conv1 7x7x96 /2 → ReLU → norm1 (LRN) → pool1 3x3/2
    conv2 5x5x256 /2 pad 1 → ReLU → norm2 (LRN) → pool2 3x3/2
    conv3 3x3x512 pad 1 → ReLU
    conv4 3x3x512 pad 1 → ReLU
    conv5 3x3x512 pad 1 → ReLU → pool5 3x3/2
    fc6 4096 → ReLU → drop6 → fc7 2048 → ReLU → drop7 → fc8 (classes)

Unlike CaffeNet (:mod:`~keras_gated_tsn.backbones.caffenet`), normalisation
comes *before* pooling (``norm1`` → ``pool1``) and there are no grouped
convolutions.

Choices, and why:

* **Pooling 3x3, stride 2.** Fig. 1 of the two-stream paper writes
  "pool 2x2", but its Sec. 6 says "max-pooling is performed over 3x3 spatial
  windows with stride 2", and so do Chatfield et al.'s Table 1 and the
  released CNN-M definitions; the figure's "2x2" is read as the stride. All
  three pools use Caffe's round-up ("ceil mode") output size,
  ``ceil((n - 3) / 2) + 1``, as CaffeNet here does (the released Caffe
  prototxt's unpadded pools); MatConvNet's model pads ``pool1``/``pool2``
  by one row and column at the end instead, which on these non-negative
  maps gives the same values and sizes at 224x224 (54, 13, 6).
* **Padding** of the Caffe / MatConvNet CNN-M: ``conv1`` none; ``conv2``
  one pixel on every side with stride 2 (an explicit ``ZeroPadding2D`` named
  ``conv2_pad`` before a ``"valid"`` convolution: Keras' ``"same"`` at
  stride 2 pads asymmetrically and would give 27 instead of Caffe's 26 at
  224); ``conv3``-``conv5`` pad 1 at stride 1 (``"same"``, symmetric).
* **LRN** "uses the same settings as [Krizhevsky et al.]" (two-stream paper,
  Sec. 6): k=2, n=5, alpha=1e-4, beta=0.75 in Krizhevsky's formula, whose sum
  is not divided by n. In Caffe's formula (alpha / n, as
  :class:`~keras_gated_tsn.layers.LocalResponseNormalization` computes) that
  is ``alpha=5e-4, k=2`` — the ``lrn_param`` of the released
  ``VGG_CNN_M_2048`` prototxt (CaffeNet's BVLC values, alpha 1e-4 and k 1,
  differ).
* **The temporal net without norm2.** "The only difference between spatial
  and temporal ConvNet configurations is that we removed the second
  normalisation layer from the latter to reduce memory consumption" (Sec. 6).
  The builder takes ``conv2_norm=True``; ``conv2_norm=False`` drops
  ``norm2`` (``conv2`` → ``pool2``) and nothing else. Because everything that
  builds a backbone (TSN, GatedTSN, the weight loader's RGB twin, the
  converter) calls ``spec.builder`` with the keras.applications arguments
  only, the variant is a second registered backbone, ``"cnn_m_2048_no_norm2"``,
  whose builder is :func:`CNNM2048NoNorm2` (``CNNM2048`` with
  ``conv2_norm=False``) and whose feature layers and stages have no
  ``norm2``. The name is then what a saved model's config records, so a
  ``.keras`` file says which net it is, with no new field in any model::

      TSN("cnn_m_2048", "rgb", ...)            # spatial stream
      TSN("cnn_m_2048_no_norm2", "flow", ...)  # temporal stream, as in the paper

  (A registry entry per (architecture, option) is the cost; one more option
  would argue for a builder-options field in :class:`BackboneSpec`.)
* **Default fusion layer ``conv5``** (after its ReLU): Feichtenhofer et al.,
  "Convolutional Two-Stream Network Fusion", CVPR 2016, fuse two CNN-M-2048
  streams and find ReLU5 best (Sec. 4.2-4.3, Tables 1 and 2: earlier fusion
  is weaker, fusing after the fully connected layers is weaker too, because
  the spatial correspondence is gone), on a 13x13 map at 224. ``pool5``
  would leave the gating ConvNet an empty tail; after ``conv5`` it still has
  ``pool5``. ``conv4`` (the gated TSN paper's CaffeNet choice) is available.
* **Streams** follow CaffeNet's convention: ``include_top=False`` ends at
  ``pool5``; a TSN stream flattens it (``stream_pooling="flatten"``: what
  ``fc6`` saw) and puts dropout and its new classifier there, i.e. the TSN
  and gated TSN recipe of removing the fully connected layers. The
  two-stream paper keeps ``fc6``/``fc7`` in both streams; that network is
  ``CNNM2048(include_top=True, classes=101)`` (``classifier_activation=None``
  for scores), one frame or flow stack at a time. The stream dropout is
  CaffeNet's 0.8 for both modalities (the gated TSN paper's ratio after the
  last conv block of an AlexNet-type net); the two-stream paper's 0.5
  (spatial, last layer) and 0.9 (temporal, from scratch) ratios belong to
  ``drop6``/``drop7``, which the stream does not have. ``TSN(dropout=...)``
  overrides it.
* **Mean**: the package's Caffe convention, BGR minus ``[104, 117, 123]``
  (:data:`~keras_gated_tsn.layers.preprocessing.CAFFE_BGR_MEAN`). The released
  CNN-M subtracts an ImageNet mean image whose per-channel means are within
  about one grey level of these.
* **Weights**: ``None``, a ``.weights.h5`` path, or ``"imagenet"``, which is
  registered as a file the user converts once from the public
  ``VGG_CNN_M_2048.caffemodel`` (the same mechanism as CaffeNet; the file is
  not downloaded). Its layer names are this module's (``conv1`` ... ``fc8``);
  the converter permutes ``fc6``'s input axis from Caffe's ``(c, h, w)``
  flatten order. LRN has no weights, so the same file fills the no-norm2
  variant (as an initialisation only: ``conv3`` then sees un-normalised
  maps; the paper trains its temporal net from scratch, ``weights=None``).

Map sizes at 224x224 input: ``conv1``/``norm1`` 109, ``pool1`` 54,
``conv2``/``norm2`` 26, ``pool2`` and ``conv3``-``conv5`` 13, ``pool5`` 6
(6x6x512 = 18432 inputs to ``fc6``).
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

#: Registry names: the spatial net (with norm2) and the temporal net of the
#: two-stream paper (without norm2, Sec. 6).
NAME = "cnn_m_2048"
NAME_NO_NORM2 = "cnn_m_2048_no_norm2"

#: After ReLU5, the best CNN-M-2048 fusion point of Feichtenhofer et al. 2016 (Tables 1, 2).
DEFAULT_FUSION_LAYER = "conv5"
#: The two-stream paper's crops are 224x224 (Sec. 6, "Training").
DEFAULT_INPUT_SIZE = 224
#: The smallest input side that builds: 41 → conv1 18 → pool1 9 → conv2 4 →
#: pool2 2 → pool5 1 (Caffe's round-up pooling over a clipped 2x2 window).
MIN_INPUT_SIZE = 41
#: As CaffeNet: the stream's classifier reads the flattened ``pool5``.
STREAM_POOLING = "flatten"
#: As CaffeNet: dropout 0.8 on the flattened ``pool5`` for both streams.
STREAM_DROPOUT = {"rgb": 0.8, "flow": 0.8}
BGR_MEAN = CAFFE_BGR_MEAN

#: LRN of norm1/norm2 in Caffe's convention (alpha divided by local_size):
#: Krizhevsky's k=2, n=5, alpha=1e-4, beta=0.75.
LRN_PARAMS = dict(local_size=5, alpha=5e-4, beta=0.75, k=2.0)
#: Dropout ratio of drop6/drop7 (Chatfield et al. 2014; two-stream paper Table 1a).
TOP_DROPOUT = 0.5
#: Widths of fc6 and fc7 ("full6 4096", "full7 2048", two-stream paper Fig. 1).
FC6_UNITS = 4096
FC7_UNITS = 2048

#: Convolutions: name -> (filters, kernel, stride, pad), Caffe's
#: ``convolution_param``. All are followed by ReLU.
CONVS: Dict[str, Tuple[int, int, int, int]] = {
    "conv1": (96, 7, 2, 0),
    "conv2": (256, 5, 2, 1),
    "conv3": (512, 3, 1, 1),
    "conv4": (512, 3, 1, 1),
    "conv5": (512, 3, 1, 1),
}

#: Feature layers a gating ConvNet can start from: name -> (channels, stride
#: relative to the input). The stride is nominal (the product of the layer
#: strides): ``conv1`` has no padding, ``conv2`` pads 1 at stride 2 and the
#: pools round up, so the exact side is not ``input // stride`` — at 224 it
#: is 109, 54, 26, 13 and 6 for strides 2, 4, 8, 16 and 32.
FEATURE_LAYERS: Dict[str, Tuple[int, int]] = {
    "conv1": (96, 2),
    "norm1": (96, 2),
    "pool1": (96, 4),
    "conv2": (256, 8),
    "norm2": (256, 8),
    "pool2": (256, 16),
    "conv3": (512, 16),
    "conv4": (512, 16),
    "conv5": (512, 16),
    "pool5": (512, 32),
}
#: The temporal variant's feature layers: the same without ``norm2``.
FEATURE_LAYERS_NO_NORM2: Dict[str, Tuple[int, int]] = {
    name: value for name, value in FEATURE_LAYERS.items() if name != "norm2"
}

#: Stages in order, each a single Caffe layer (convolution with its ReLU,
#: normalisation or pooling), named as its output layer.
STAGES: Tuple[str, ...] = (
    "conv1", "norm1", "pool1", "conv2", "norm2", "pool2", "conv3", "conv4", "conv5", "pool5",
)
STAGES_NO_NORM2: Tuple[str, ...] = tuple(stage for stage in STAGES if stage != "norm2")


def _run_stage(x, stage: str, prefix: str = ""):
    name = f"{prefix}{stage}"
    if stage in CONVS:
        filters, kernel, stride, pad = CONVS[stage]
        if pad and stride == 1:  # odd kernel, stride 1: "same" pads (kernel - 1) / 2 on each side
            padding = "same"
        else:  # Caffe pads symmetrically whatever the stride; "same" would not at stride 2
            padding = "valid"
            if pad:
                x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        return layers.Conv2D(
            filters, kernel, strides=stride, padding=padding, activation="relu", name=name
        )(x)
    if stage.startswith("pool"):
        return _ceil_max_pool(x, name)
    return LocalResponseNormalization(**LRN_PARAMS, name=name)(x)


def _tail(x, after: str, prefix: str, conv2_norm: bool):
    return common.run_tail(
        x, after, arch="CNN-M-2048" if conv2_norm else "CNN-M-2048 (no norm2)",
        stages=STAGES if conv2_norm else STAGES_NO_NORM2,
        feature_layers=FEATURE_LAYERS if conv2_norm else FEATURE_LAYERS_NO_NORM2,
        run_stage=lambda y, stage: _run_stage(y, stage, prefix),
    )


def build_tail(x, after: str, *, prefix: str = "", frozen_bn: bool = False):
    """Applies the CNN-M-2048 stages that follow the feature layer ``after``.

    The gating ConvNet's "layers after the input fusion layer" (gated TSN
    paper, Sec. III-B): after the default ``conv5`` that is ``pool5``. Layer
    names are the backbone's with ``prefix`` in front (``gating_pool5``).

    Args:
        x: a 4-D feature map ``(N, h, w, c)`` float; c may differ from the
            backbone's (concatenation fusion doubles it).
        after: a key of :data:`FEATURE_LAYERS`.
        prefix: prepended to every layer name.
        frozen_bn: accepted for the registry's protocol and ignored (no BN).

    Returns:
        The output of ``pool5``: ``(N, h', w', 512)``, or ``(N, h', w', c)``
        when ``after`` is ``conv5`` (pooling keeps the channels); ``x``
        itself when ``after`` is ``pool5``.

    Raises:
        ValueError: if ``after`` is not a feature layer, listing the valid ones.
    """
    del frozen_bn  # no BN in CNN-M
    return _tail(x, after, prefix, conv2_norm=True)


def build_tail_no_norm2(x, after: str, *, prefix: str = "", frozen_bn: bool = False):
    """:func:`build_tail` of the temporal variant (no ``norm2``); ``after`` is
    a key of :data:`FEATURE_LAYERS_NO_NORM2`.

    Raises:
        ValueError: if ``after`` is not one of its feature layers (``norm2``
            included).
    """
    del frozen_bn
    return _tail(x, after, prefix, conv2_norm=False)


def CNNM2048(
    include_top: bool = True,
    weights: Optional[str] = None,
    input_tensor=None,
    input_shape: Optional[Sequence[Optional[int]]] = None,
    pooling: Optional[str] = None,
    classes: int = 1000,
    classifier_activation: Optional[str] = "softmax",
    name: str = NAME,
    conv2_norm: bool = True,
) -> keras.Model:
    """CNN-M-2048 (two-stream paper Fig. 1) with the keras.applications signature.

    Input: preprocessed images ``(N, H, W, C)`` float (see
    :func:`preprocess_input`): BGR minus ``[104, 117, 123]`` for RGB, or
    uint8-encoded flow minus 128 with C = 2L channels (two-stream paper: L=10,
    C=20; TSN: L=5, C=10). Any H, W >= 41 and any channel count build;
    ``pool5`` is ``(N, 6, 6, 512)`` for 224x224 input. With the 1000-class
    top and RGB input the network has 92,469,864 parameters (6,528,640 in the
    convolutions).

    Sources: Simonyan & Zisserman, NIPS 2014, Fig. 1 and Sec. 6; Chatfield
    et al., BMVC 2014, Table 1 (CNN-M, with a 2048-wide ``fc7``).

    Args:
        include_top: add ``flatten`` → ``fc6`` (4096, ReLU) → ``drop6`` (0.5)
            → ``fc7`` (2048, ReLU) → ``drop7`` (0.5) → ``fc8`` (``classes``).
            Needs a fixed H and W.
        weights: ``None`` (random initialisation), ``"imagenet"`` (the file
            converted from ``VGG_CNN_M_2048.caffemodel``, see the module
            docstring; a missing file is a ``FileNotFoundError`` that says how
            to make it) or the path of a ``.weights.h5`` file saved from a
            model built with the same arguments (a 3-channel file fills a
            flow model by cross-modality initialisation).
        input_tensor: optional tensor to build on (keras.applications style);
            the model's inputs are then that tensor's source inputs.
        input_shape: ``(H, W, C)``; default ``(224, 224, 3)``. H and W may be
            ``None`` without the top.
        pooling: with ``include_top=False``: ``None`` (4-D output of
            ``pool5``), ``"avg"`` (layer ``global_pool``) or ``"max"``
            (``global_max_pool``).
        classes: width of ``fc8`` with ``include_top``.
        classifier_activation: activation of ``fc8`` (``None`` for logits).
        name: model name.
        conv2_norm: keep ``norm2`` (the spatial net). ``False`` is the
            two-stream paper's temporal net (Sec. 6), registered as
            ``"cnn_m_2048_no_norm2"`` (:func:`CNNM2048NoNorm2`).

    Returns:
        A ``keras.Model`` with float output: ``(N, classes)`` with the top,
        ``(N, h, w, 512)`` (ReLU'd, non-negative) or ``(N, 512)`` without.

    Raises:
        ValueError: for a bad ``pooling``, ``classes``, ``input_shape``,
            ``weights`` or ``conv2_norm`` value (the message quotes it); for
            ``include_top`` with an unknown H or W.
        FileNotFoundError: for ``weights="imagenet"`` when the converted file
            is not in ``$KGT_WEIGHTS_DIR`` (default ``~/.keras/models``).
    """
    if not isinstance(conv2_norm, bool):
        raise ValueError(f"conv2_norm must be True or False, got {conv2_norm!r}")
    common.check_arguments(pooling, include_top, classes, weights)
    shape = common.input_shape_of(
        "CNN-M-2048", input_shape, input_tensor, default_size=DEFAULT_INPUT_SIZE, min_size=MIN_INPUT_SIZE,
        fixed_size_reason="include_top=True flattens pool5" if include_top else None,
    )
    inputs, x = common.builder_inputs(input_tensor, shape)
    for stage in STAGES if conv2_norm else STAGES_NO_NORM2:
        x = _run_stage(x, stage)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(FC6_UNITS, activation="relu", name="fc6")(x)
        x = layers.Dropout(TOP_DROPOUT, name="drop6")(x)
        x = layers.Dense(FC7_UNITS, activation="relu", name="fc7")(x)
        x = layers.Dropout(TOP_DROPOUT, name="drop7")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="fc8")(x)
    else:
        x = common.global_pooling(x, pooling)
    # The registry name picks the builder that rebuilds this net (the weight loader's
    # RGB twin), so conv2_norm is not among the keyword arguments passed on.
    return common.finish(
        inputs, x, name=name, arch=NAME if conv2_norm else NAME_NO_NORM2, weights=weights,
        builder_kwargs=dict(
            include_top=include_top, input_shape=input_shape, pooling=pooling, classes=classes,
            classifier_activation=classifier_activation, name=name,
        ),
    )


def CNNM2048NoNorm2(
    include_top: bool = True,
    weights: Optional[str] = None,
    input_tensor=None,
    input_shape: Optional[Sequence[Optional[int]]] = None,
    pooling: Optional[str] = None,
    classes: int = 1000,
    classifier_activation: Optional[str] = "softmax",
    name: str = NAME_NO_NORM2,
) -> keras.Model:
    """The two-stream paper's temporal ConvNet: :func:`CNNM2048` with
    ``conv2_norm=False`` ("we removed the second normalisation layer ... to
    reduce memory consumption", Sec. 6), the builder of the registered
    ``"cnn_m_2048_no_norm2"``. Same arguments, shapes, parameters and errors
    as :func:`CNNM2048`; the model has no ``norm2`` layer (``conv2`` feeds
    ``pool2``)."""
    return CNNM2048(
        include_top=include_top, weights=weights, input_tensor=input_tensor, input_shape=input_shape,
        pooling=pooling, classes=classes, classifier_activation=classifier_activation, name=name,
        conv2_norm=False,
    )


def preprocess_input(x, modality: str = "rgb"):
    """Raw 0-255 pixels → CNN-M-2048 input (NumPy or tensor, channels last):
    RGB → BGR minus the Caffe mean ``[104, 117, 123]``; uint8-encoded flow
    minus 128. Returns float32: NumPy for NumPy input, a tensor otherwise.
    The same for both variants.

    Raises:
        ValueError: for another modality or RGB input without 3 channels.
    """
    return SPEC.preprocess_input(x, modality)


_IMAGENET = PretrainedFile(
    "cnn_m_2048_imagenet.weights.h5",
    "convert the Caffe Model Zoo's VGG_CNN_M_2048.caffemodel (Chatfield et al. 2014) with "
    "`gated-tsn convert-weights VGG_CNN_M_2048.caffemodel cnn_m_2048_imagenet.weights.h5 --arch cnn_m_2048` "
    "(the file fills both cnn_m_2048 and cnn_m_2048_no_norm2)",
)

_SHARED = dict(
    default_fusion_layer=DEFAULT_FUSION_LAYER,
    default_input_size=DEFAULT_INPUT_SIZE,
    min_input_size=MIN_INPUT_SIZE,
    stream_pooling=STREAM_POOLING,
    stream_dropout=STREAM_DROPOUT,
    bgr_mean=BGR_MEAN,
    pretrained={"imagenet": _IMAGENET},
)

SPEC = register_backbone(BackboneSpec(
    name=NAME,
    display_name="CNN-M-2048",
    builder=CNNM2048,
    feature_layers=FEATURE_LAYERS,
    stages=STAGES,
    build_tail=build_tail,
    **_SHARED,
))

SPEC_NO_NORM2 = register_backbone(BackboneSpec(
    name=NAME_NO_NORM2,
    display_name="CNN-M-2048 (no norm2)",
    builder=CNNM2048NoNorm2,
    feature_layers=FEATURE_LAYERS_NO_NORM2,
    stages=STAGES_NO_NORM2,
    build_tail=build_tail_no_norm2,
    **_SHARED,
))

__all__ = [
    "CNNM2048", "CNNM2048NoNorm2", "SPEC", "SPEC_NO_NORM2", "FEATURE_LAYERS", "FEATURE_LAYERS_NO_NORM2",
    "STAGES", "STAGES_NO_NORM2", "build_tail", "build_tail_no_norm2", "preprocess_input",
    "DEFAULT_FUSION_LAYER", "DEFAULT_INPUT_SIZE", "MIN_INPUT_SIZE", "STREAM_POOLING", "BGR_MEAN",
    "NAME", "NAME_NO_NORM2",
]
