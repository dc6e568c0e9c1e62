"""One stream of a two-stream network: TSN (Wang et al. 2016), K=1 being the
original two-stream ConvNet (Simonyan & Zisserman 2014)."""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np
from keras import layers

from keras_gated_tsn.backbones import get_backbone_module
from keras_gated_tsn.backbones.weights import copy_weights_by_name, cross_modality_kernel  # noqa: F401
from keras_gated_tsn.layers import ModalityPreprocessing, SegmentConsensus, SegmentFold
from keras_gated_tsn.layers.preprocessing import MODALITIES

#: Name of the new classifier (Caffe ``fc-action``).
CLASSIFIER = "fc-action"


def TSN(
    backbone: str = "bn_inception",
    modality: str = "rgb",
    num_classes: int = 101,
    num_segments: int = 3,
    input_size: int = 224,
    new_length: int = 5,
    dropout: Optional[float] = None,
    partial_bn: bool = True,
    backbone_weights: Optional[str] = None,
    name: Optional[str] = None,
) -> keras.Model:
    """A TSN stream: preprocessing → segments folded → backbone → dropout → fc
    → average consensus of the pre-softmax scores.

    Input: raw clips ``(B, K, S, S, 3)`` RGB 0-255 for ``"rgb"``, or
    ``(B, K, S, S, 2·new_length)`` uint8-encoded flow (128 = no motion,
    channels ``x1, y1, x2, y2, ...``) for ``"flow"``; any numeric dtype
    (uint8 from :mod:`keras_gated_tsn.data.pipeline`). The segment axis K is
    free: the model is trained with ``num_segments`` snippets and the test
    protocol scores one view at a time (K=1).

    Output: ``(B, num_classes)`` float pre-softmax class scores averaged over
    the K segments (TSN's segmental consensus, Wang et al. 2016 eq. (1)).
    Train with ``SparseCategoricalCrossentropy(from_logits=True)``.

    Args:
        backbone: ``"bn_inception"`` (or another name of
            :func:`keras_gated_tsn.backbones.available_backbones`).
        modality: ``"rgb"`` (spatial stream) or ``"flow"`` (temporal stream).
        num_classes: number of action classes (UCF101: 101).
        num_segments: K, the segments the stream is trained with (TSN: 3;
            1 is the original two-stream network). Recorded in the model
            name; the input accepts any K.
        input_size: S, the crop size (224 in the papers; at least the
            backbone's ``MIN_INPUT_SIZE``).
        new_length: L, stacked flow frames per snippet (TSN: 5).
        dropout: ratio before the classifier; default the backbone's
            ``STREAM_DROPOUT``: 0.8 RGB / 0.7 flow for BN-Inception (TSN),
            0.8 for both with CaffeNet and VGG16 (gated TSN paper, Sec. IV-B).
        partial_bn: freeze every BN layer but the first (TSN's partial BN:
            ``trainable=False`` runs them in inference mode and freezes their
            scale and shift). Undo with :func:`set_partial_bn`.
        backbone_weights: backbone weights to start from: a registered name
            (``"imagenet"``) or a weights file of the backbone (see
            :mod:`keras_gated_tsn.backbones.weights`). RGB weights given to a
            flow stream are loaded with TSN's cross-modality initialisation.
        name: model name; default ``tsn_<modality>_<backbone>_k<K>``.

    Returns:
        A functional ``keras.Model`` with input named after the modality,
        the backbone's layers under their Caffe names and the classifier
        ``fc-action``.

    Raises:
        ValueError: for an unknown backbone or modality, or a value out of
            range (the message quotes it).
    """
    module = get_backbone_module(backbone)
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    for arg, value, low in (
        ("num_classes", num_classes, 1),
        ("num_segments", num_segments, 1),
        ("input_size", input_size, module.MIN_INPUT_SIZE),
        ("new_length", new_length, 1),
    ):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{arg} must be an int >= {low}, got {value!r}")
    if dropout is None:
        dropout = module.STREAM_DROPOUT[modality]
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    channels = 3 if modality == "rgb" else 2 * new_length

    clip = keras.Input(shape=(None, input_size, input_size, channels), name=modality)
    x = ModalityPreprocessing(modality, bgr_mean=module.BGR_MEAN, name=f"{modality}_preprocessing")(clip)
    x = SegmentFold(name="segment_fold")(x)
    base = module.BUILDER(
        include_top=False, input_tensor=x, pooling=None, weights=None, name=f"{backbone}_{modality}"
    )
    x = stream_pooling(module, base.output)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
        bias_initializer="zeros",
        name=CLASSIFIER,
    )(x)
    scores = SegmentConsensus(name="segment_consensus")([x, clip])
    model = keras.Model(
        clip, scores, name=name or f"tsn_{modality}_{backbone}_k{num_segments}"
    )
    if backbone_weights is not None:
        _load_backbone_weights(model, module, backbone, backbone_weights, input_size, channels)
    if partial_bn:
        set_partial_bn(model, True)
    return model


def stream_pooling(module, x, prefix: str = ""):
    """The backbone's way from its last feature map to a classifier's input:
    global average pooling (``global_pool``, BN-Inception) or flattening
    (``flatten``, CaffeNet / VGG16, whose fully connected layers are replaced)."""
    if module.STREAM_POOLING == "avg":
        return layers.GlobalAveragePooling2D(name=f"{prefix}global_pool")(x)
    return layers.Flatten(name=f"{prefix}flatten")(x)


def _load_backbone_weights(model, module, backbone, weights, input_size, channels):
    """Loads backbone weights (a registered name or a file) into the stream's
    backbone layers, by name (cross-modality for a flow stream given RGB weights)."""
    from keras_gated_tsn.backbones import weights as weights_lib

    kwargs = dict(include_top=False, input_shape=(input_size, input_size, channels), weights=None)
    reference = module.BUILDER(**kwargs)
    weights_lib.load_into(reference, backbone, weights, kwargs)
    copy_weights_by_name(reference, model)


def batch_norm_layers(model: keras.Model):
    """The BatchNormalization layers of ``model`` in graph order."""
    return [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]


def set_partial_bn(model: keras.Model, enabled: bool = True) -> None:
    """TSN's partial BN: every BN layer but the first frozen (inference mode).

    With ``enabled=False`` all BN layers are trainable again.
    Source: TSN (Wang et al. 2016), Sec. 3.2 "partial BN".
    """
    for index, layer in enumerate(batch_norm_layers(model)):
        layer.trainable = (index == 0) or not enabled


def init_from_rgb(target: keras.Model, rgb_model: keras.Model, include_classifier: bool = False) -> None:
    """Copies an RGB model's backbone weights into ``target`` by layer name.

    Layers whose kernels differ only in input channels (the first conv of a
    flow stream) get :func:`cross_modality_kernel`. This is TSN's
    cross-modality pre-training when ``rgb_model`` carries ImageNet (or
    RGB-stream) weights.

    Args:
        target: a model built by :func:`TSN` (any modality).
        rgb_model: a model with the same backbone (TSN stream or backbone).
        include_classifier: also copy ``fc-action`` (same classes only).

    Raises:
        ValueError: naming the layer and both shapes when weights cannot be
            matched.
    """
    copy_weights_by_name(rgb_model, target, skip=() if include_classifier else (CLASSIFIER,))
