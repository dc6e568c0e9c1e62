"""Backbones with the keras.applications signature and their ``FEATURE_LAYERS``."""

from keras_gated_tsn.backbones import bn_inception
from keras_gated_tsn.backbones.bn_inception import BNInception, preprocess_input

#: Backbone name -> module (builder, FEATURE_LAYERS, build_tail, preprocess_input).
BACKBONES = {"bn_inception": bn_inception}


def get_backbone_module(name: str):
    """Returns the module of backbone ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; available: {sorted(BACKBONES)}") from None


__all__ = ["BNInception", "preprocess_input", "BACKBONES", "get_backbone_module"]
