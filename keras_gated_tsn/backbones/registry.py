"""One registry of backbones: a :class:`BackboneSpec` per architecture, looked up by name.

Every place that needs to know something about a backbone (the stream and
gated models, the weight converters, the CLI's choices) asks the registry by
name; each backbone module registers its spec once, when
:mod:`keras_gated_tsn.backbones` is imported.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Mapping, Optional, Tuple

from keras_gated_tsn.layers.preprocessing import MODALITIES


@dataclasses.dataclass(frozen=True)
class PretrainedFile:
    """A registered weights file of a backbone (e.g. its ImageNet weights).

    Attributes:
        file_name: the file's name in the weights folder
            (``$KGT_WEIGHTS_DIR`` or ``~/.keras/models``).
        how_to_get: what the user does when the file is missing (shown in the
            error).
        url, md5: where ``keras.utils.get_file`` fetches it from and the hash
            it checks, for files published in Keras' format; None for files
            the user converts from a Caffe or PyTorch checkpoint.
    """

    file_name: str
    how_to_get: str
    url: Optional[str] = None
    md5: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What the rest of the package needs to know about one backbone.

    Attributes:
        name: registry key (``"bn_inception"``), used in configs and the CLI.
        display_name: for messages and tables (``"BN-Inception"``).
        builder: the keras.applications-style builder (``BNInception``).
        feature_layers: layer name -> ``(channels, stride)``: the maps a
            gating ConvNet can start from (stride relative to the input, nominal
            where the backbone rounds pooled sizes up).
        stages: the stage output layers in order; ``build_tail`` applies the
            stages after a feature layer.
        build_tail: ``build_tail(x, after, *, prefix="", frozen_bn=False)``:
            the backbone's layers after the feature layer ``after`` on a 4-D
            map ``x`` (how the gating ConvNet gets "the layers after the fusion
            layer", gated TSN paper Sec. III-B).
        default_fusion_layer: the paper's gate input for this backbone.
        default_input_size: side of the input the backbone was designed for.
        min_input_size: the smallest side that builds.
        stream_pooling: ``"avg"`` (global average pooling before a stream's
            classifier) or ``"flatten"`` (the last pooled map flattened, as the
            fully connected layers it replaces saw it).
        stream_dropout: dropout before a stream's classifier, per modality.
        bgr_mean: the per-channel mean subtracted from RGB input (B, G, R; 0-255).
        pretrained: registered weights names (``"imagenet"``) -> file.
    """

    name: str
    display_name: str
    builder: Callable
    feature_layers: Mapping[str, Tuple[int, int]]
    stages: Tuple[str, ...]
    build_tail: Callable
    default_fusion_layer: str
    default_input_size: int
    min_input_size: int
    stream_pooling: str
    stream_dropout: Mapping[str, float]
    bgr_mean: Tuple[float, float, float]
    pretrained: Mapping[str, PretrainedFile] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.stream_pooling not in ("avg", "flatten"):
            raise ValueError(f"stream_pooling must be 'avg' or 'flatten', got {self.stream_pooling!r}")
        if set(self.stream_dropout) != set(MODALITIES):
            raise ValueError(f"stream_dropout needs a ratio for each of {MODALITIES}")
        if self.default_fusion_layer not in self.feature_layers:
            raise ValueError(f"default_fusion_layer {self.default_fusion_layer!r} is not a feature layer")
        if not set(self.feature_layers) <= set(self.stages):
            raise ValueError("every feature layer must be a stage output")

    def check_feature_layer(self, layer: str) -> str:
        """``layer`` if it is one of :attr:`feature_layers`.

        Raises:
            ValueError: naming the backbone and listing the valid layers.
        """
        if layer not in self.feature_layers:
            raise ValueError(
                f"{layer!r} is not a feature layer of {self.display_name}; valid: {list(self.feature_layers)}"
            )
        return layer

    def preprocess_input(self, x, modality: str = "rgb"):
        """Raw 0-255 pixels -> this backbone's input (see
        :class:`~keras_gated_tsn.layers.ModalityPreprocessing`): RGB to BGR minus
        :attr:`bgr_mean`, uint8-encoded flow minus 128. NumPy in, float32 NumPy
        out; a tensor gives a tensor.

        Raises:
            ValueError: for another modality or RGB input without 3 channels.
        """
        import keras
        import numpy as np

        from keras_gated_tsn.layers.preprocessing import ModalityPreprocessing

        # float32 whatever the global dtype policy (a mixed policy would give float16).
        out = ModalityPreprocessing(modality, bgr_mean=self.bgr_mean, dtype="float32")(x)
        return keras.ops.convert_to_numpy(out) if isinstance(x, np.ndarray) else out


_REGISTRY: Dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Adds ``spec`` to the registry under ``spec.name`` and returns it.

    Raises:
        ValueError: if another spec is registered under that name.
    """
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"a backbone named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def backbone_names() -> Tuple[str, ...]:
    """Names of the registered backbones, in registration order."""
    return tuple(_REGISTRY)


def get_backbone(name: str) -> BackboneSpec:
    """The spec registered as ``name``.

    Raises:
        ValueError: for an unknown name, listing the registered ones.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown backbone {name!r}; available: {list(_REGISTRY)}")
    return _REGISTRY[name]
