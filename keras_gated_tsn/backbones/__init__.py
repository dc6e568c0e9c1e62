"""Backbones with the keras.applications signature, registered by name.

Each backbone module (``bn_inception``, ``caffenet``, ``cnn_m_2048``,
``vgg16``) defines its builder (``BNInception``, ``CaffeNet``, ``CNNM2048``,
``VGG16``), its ``FEATURE_LAYERS``
(layer name -> (channels, stride): the maps a gating ConvNet can start from),
``build_tail`` (the layers after a feature layer), ``preprocess_input`` and
registers a :class:`~keras_gated_tsn.backbones.registry.BackboneSpec` that
holds all of it (``cnn_m_2048`` registers two: the two-stream paper's
spatial net and, as ``cnn_m_2048_no_norm2``, its temporal net without
``norm2``). Everything else looks backbones up by name::

    spec = keras_gated_tsn.backbones.get_backbone("vgg16")
    spec.builder(include_top=False, input_shape=(224, 224, 3))
    spec.default_fusion_layer, spec.feature_layers["block5_conv2"]
"""

# Importing the modules registers their specs.
from keras_gated_tsn.backbones import bn_inception, caffenet, cnn_m_2048, vgg16  # noqa: F401
from keras_gated_tsn.backbones.bn_inception import BNInception
from keras_gated_tsn.backbones.caffenet import CaffeNet
from keras_gated_tsn.backbones.cnn_m_2048 import CNNM2048, CNNM2048NoNorm2
from keras_gated_tsn.backbones.registry import (
    BackboneSpec,
    PretrainedFile,
    backbone_names,
    get_backbone,
    register_backbone,
)
from keras_gated_tsn.backbones.vgg16 import VGG16


def preprocess_input(x, backbone: str, modality: str = "rgb"):
    """Raw 0-255 pixels -> the input of ``backbone`` (its own mean; see
    :meth:`BackboneSpec.preprocess_input`). The backbone is required: the
    backbones subtract different RGB means.

    Raises:
        ValueError: for an unknown backbone or modality, or RGB input without
            3 channels.
    """
    return get_backbone(backbone).preprocess_input(x, modality)


__all__ = [
    "BNInception", "CaffeNet", "CNNM2048", "CNNM2048NoNorm2", "VGG16", "BackboneSpec", "PretrainedFile",
    "backbone_names", "get_backbone", "preprocess_input", "register_backbone",
]

# --------------------------------------------------------------------------------------
# 3D clip backbones (GCF-Net, Hsiao et al. 2020): a lookup of their own, apart from the
# 2D registry above, whose backbones make TSN streams and the CLI's --backbone choices.
# Each module (``resnext3d``, ``mobilenet3d``) defines its builder (``ResNeXt3D101``,
# ``MobileNet3DV2``: input (N, T, H, W, 3), no temporal stride), ``FEATURE_LAYERS``
# and a :class:`ClipBackboneSpec`.

from keras_gated_tsn.backbones import mobilenet3d, resnext3d  # noqa: E402
from keras_gated_tsn.backbones.mobilenet3d import MobileNet3DV2  # noqa: E402
from keras_gated_tsn.backbones.resnext3d import ClipBackboneSpec, ResNeXt3D101  # noqa: E402

#: The clip backbones by name: ``"resnext3d_101"``, ``"mobilenet3d_v2"``.
CLIP_BACKBONES = {spec.name: spec for spec in (resnext3d.SPEC, mobilenet3d.SPEC)}


def clip_backbone_names():
    """Names of the 3D clip backbones, a tuple of str."""
    return tuple(CLIP_BACKBONES)


def get_clip_backbone(name: str) -> ClipBackboneSpec:
    """The :class:`ClipBackboneSpec` of the clip backbone ``name``.

    Raises:
        ValueError: for an unknown name, listing the clip backbones.
    """
    if name not in CLIP_BACKBONES:
        raise ValueError(f"unknown clip backbone {name!r}; available: {list(CLIP_BACKBONES)}")
    return CLIP_BACKBONES[name]


__all__ += [
    "CLIP_BACKBONES", "ClipBackboneSpec", "MobileNet3DV2", "ResNeXt3D101", "clip_backbone_names",
    "get_clip_backbone",
]
