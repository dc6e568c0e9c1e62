"""Backbones with the keras.applications signature and their ``FEATURE_LAYERS``.

Every backbone module (``bn_inception``, ``caffenet``, ``vgg16``) exports:

* its builder (``BNInception``, ``CaffeNet``, ``VGG16``) with the
  keras.applications signature, also as ``BUILDER``;
* ``FEATURE_LAYERS``: layer name -> (channels, stride), the maps a gating
  ConvNet can start from; ``STAGES``, the stage output layers in order, and
  ``build_tail(x, after, *, prefix="", bn_training=None)``, which applies the
  stages after ``after`` (how the gating ConvNet gets "the layers after the
  fusion layer");
* ``DEFAULT_FUSION_LAYER`` (the paper's choice), ``DEFAULT_INPUT_SIZE``,
  ``MIN_INPUT_SIZE``, ``STREAM_DROPOUT`` (per modality), ``STREAM_POOLING`` (``"avg"``: global average pooling
  before a stream's classifier; ``"flatten"``: the last pooled map flattened,
  as the fully connected layers it replaces saw it), ``BGR_MEAN`` (subtracted
  from RGB input in BGR order), ``SIGNATURE_LAYER`` (a layer name only this
  backbone has) and ``preprocess_input(x, modality)``.
"""

import importlib

from keras_gated_tsn.backbones.bn_inception import BNInception, preprocess_input
from keras_gated_tsn.backbones.caffenet import CaffeNet
from keras_gated_tsn.backbones.vgg16 import VGG16

_MODULES = {
    "bn_inception": "keras_gated_tsn.backbones.bn_inception",
    "caffenet": "keras_gated_tsn.backbones.caffenet",
    "vgg16": "keras_gated_tsn.backbones.vgg16",
}


def available_backbones():
    """Names of the backbones whose module is present."""
    names = []
    for name, module in _MODULES.items():
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            continue
        names.append(name)
    return names


def get_backbone_module(name: str):
    """Returns the module of backbone ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name not in _MODULES:
        raise ValueError(f"unknown backbone {name!r}; available: {available_backbones()}")
    return importlib.import_module(_MODULES[name])


def backbone_of(model) -> str:
    """The backbone name of a stream model, from its layer names.

    Raises:
        ValueError: if no known backbone's signature layer is in ``model``.
    """
    names = {layer.name for layer in model.layers}
    for name in available_backbones():
        if get_backbone_module(name).SIGNATURE_LAYER in names:
            return name
    raise ValueError(f"cannot tell the backbone of model {model.name!r}")


__all__ = ["BNInception", "CaffeNet", "VGG16", "preprocess_input", "available_backbones", "backbone_of", "get_backbone_module"]
