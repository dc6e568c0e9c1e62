"""One stream of a two-stream network: TSN (Wang et al. 2016), K=1 being the
original two-stream ConvNet (Simonyan & Zisserman 2014)."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import keras
from keras import layers

from keras_gated_tsn.backbones import get_backbone
from keras_gated_tsn.data.flow_stacking import FlowInput, as_flow_input
from keras_gated_tsn.layers import ModalityPreprocessing, SegmentConsensus, SegmentFold
from keras_gated_tsn.layers.preprocessing import MODALITIES
from keras_gated_tsn.models.common import (
    BuildsFromSpecs,
    RecordsBackboneWeights,
    check_class_names,
    check_int,
    check_ratio,
)
from keras_gated_tsn.precision import precision_scope, resolve_precision
from keras_gated_tsn.weights.transfer import copy_weights_by_name

#: Name of the new classifier (Caffe ``fc-action``).
CLASSIFIER = "fc-action"


def stream_pooling(spec, x, prefix: str = ""):
    """The backbone's way from its last feature map to a classifier's input:
    global average pooling (``global_pool``, BN-Inception) or flattening
    (``flatten``, CaffeNet / VGG16, whose fully connected layers are replaced)."""
    if spec.stream_pooling == "avg":
        return layers.GlobalAveragePooling2D(name=f"{prefix}global_pool")(x)
    return layers.Flatten(name=f"{prefix}flatten")(x)


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class TSN(RecordsBackboneWeights, BuildsFromSpecs, keras.Model):
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
    ``compile()`` with no arguments uses the paper's recipe
    (:func:`keras_gated_tsn.training.recipes.make_optimizer`, cross-entropy on
    the scores, top-1 accuracy); ``fit(clips, labels)`` takes integer labels.

    The model is a Keras functional model whose configuration is its
    constructor arguments, so a saved ``.keras`` file says what it is
    (``model.backbone``, ``model.modality``, ``model.num_classes``, ...).

    Args:
        backbone: a registered backbone name
            (:func:`keras_gated_tsn.backbones.backbone_names`).
        modality: ``"rgb"`` (spatial stream) or ``"flow"`` (temporal stream).
        num_classes: number of action classes (UCF101: 101).
        num_segments: K, the segments the stream is trained with (TSN: 3;
            1 is the original two-stream network). The input accepts any K.
        input_size: S, the crop side in pixels (224 in the papers; at least
            the backbone's ``min_input_size``).
        new_length: L, stacked flow frames per snippet (TSN: 5); the RGB
            stream takes one frame.
        dropout: ratio before the classifier, in [0, 1); default the
            backbone's ``stream_dropout``: 0.8 RGB / 0.7 flow for BN-Inception
            (TSN), 0.8 for both with CaffeNet and VGG16 (gated TSN paper,
            Sec. IV-B).
        partial_bn: freeze every BN layer but the first (TSN's partial BN:
            ``trainable=False`` runs them in inference mode and freezes their
            scale and shift). Change it later with :meth:`set_partial_bn`.
        backbone_weights: backbone weights to start from: a registered name
            (``"imagenet"``) or a weights file of the backbone (see
            :mod:`keras_gated_tsn.weights.pretrained`), loaded into the
            backbone as it is built. RGB weights given to a flow stream are
            loaded with TSN's cross-modality initialisation. Recorded in the
            config for provenance; a loaded model takes its weights from its
            file.
        flow_input: a flow stream's input configuration, recorded so that its
            pipelines build the same volumes (two-stream ConvNets Sec. 3.1:
            optical flow stacking, trajectory stacking, bi-directional flow,
            mean flow subtraction): a
            :class:`~keras_gated_tsn.data.flow_stacking.FlowInput` or its
            settings dict; None is optical flow stacking (TSN's input). Only
            for ``"flow"``; a bi-directional one needs an even ``new_length``.
        name: model name; default ``tsn_<modality>_<backbone>_k<K>``.
        dtype: the Keras dtype policy the whole model is built under, one of
            :data:`keras_gated_tsn.precision.PRECISIONS` (``"float32"``,
            ``"mixed_float16"``, ``"mixed_bfloat16"``); default None: the
            global policy (:func:`keras_gated_tsn.precision.precision_scope`).
            Recorded in the config, so a loaded model keeps it. Under a mixed
            policy the variables and the BN statistics stay float32, the
            backbone computes in float16 / bfloat16, and the classifier
            ``fc-action`` and the consensus compute in float32: the output
            is float32 under every policy.

    Raises:
        ValueError: for an unknown backbone or modality, or a value out of
            range (the message quotes it); for weights that do not fit; for a
            ``dtype`` (or a global policy) not in ``PRECISIONS``.
        FileNotFoundError: for registered weights that are not on disk.
    """

    def __init__(
        self,
        backbone: str = "bn_inception",
        modality: str = "rgb",
        num_classes: int = 101,
        num_segments: int = 3,
        input_size: int = 224,
        new_length: int = 5,
        dropout: Optional[float] = None,
        partial_bn: bool = True,
        backbone_weights: Optional[str] = None,
        class_names: Optional[Sequence[str]] = None,
        flow_input=None,
        name: Optional[str] = None,
        dtype=None,
        **kwargs,
    ):
        spec = get_backbone(backbone)
        policy = resolve_precision(dtype)
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        check_int("num_classes", num_classes, 1)
        check_int("num_segments", num_segments, 1)
        check_int("input_size", input_size, spec.min_input_size)
        check_int("new_length", new_length, 1)
        class_names = check_class_names(class_names, num_classes)
        if modality == "rgb" and flow_input is not None:
            raise ValueError(f"flow_input configures a flow stream; the rgb stream takes frames, got {flow_input!r}")
        flow_input = None if modality == "rgb" else as_flow_input(flow_input)
        if flow_input is not None:
            flow_input.check_length(int(new_length))
        dropout = spec.stream_dropout[modality] if dropout is None else check_ratio("dropout", dropout)
        channels = 3 if modality == "rgb" else 2 * int(new_length)

        with precision_scope(policy, warn=False):
            clip, x = stream_trunk(spec, modality, input_size, channels, dropout, backbone_weights)
            # The classifier and the consensus compute in float32 under every policy:
            # the class scores are the model's output (Keras' mixed precision guide).
            x = layers.Dense(
                num_classes,
                kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
                bias_initializer="zeros",
                dtype="float32",
                name=CLASSIFIER,
            )(x)
            scores = SegmentConsensus(dtype="float32", name="segment_consensus")([x, clip])
            super().__init__(
                inputs=clip, outputs=scores, name=name or f"tsn_{modality}_{backbone}_k{num_segments}", **kwargs
            )
        self.backbone = backbone
        self.modality = modality
        self.num_classes = int(num_classes)
        self.num_segments = int(num_segments)
        self.input_size = int(input_size)
        self.new_length = int(new_length)
        self.dropout = float(dropout)
        self.backbone_weights = None if backbone_weights is None else str(backbone_weights)
        self.class_names = class_names
        #: :class:`~keras_gated_tsn.data.flow_stacking.FlowInput` of a flow stream, None for rgb.
        self.flow_input = flow_input
        self.partial_bn = bool(partial_bn)
        self.set_partial_bn(self.partial_bn)

    @property
    def channels(self) -> int:
        """Input channels per snippet: 3 (RGB) or 2L (flow)."""
        return 3 if self.modality == "rgb" else 2 * self.new_length

    @property
    def snippet_length(self) -> int:
        """Frames per snippet: 1 (an RGB frame) or L (a flow stack)."""
        return 1 if self.modality == "rgb" else self.new_length

    def set_partial_bn(self, enabled: bool = True) -> None:
        """TSN's partial BN: every BN layer but the first frozen (inference
        mode, scale and shift fixed); ``enabled=False`` makes all of them
        trainable again. Recorded in the config.

        Source: TSN (Wang et al. 2016), Sec. 3.2 "partial BN".
        """
        norms = [layer for layer in self.layers if isinstance(layer, layers.BatchNormalization)]
        for index, layer in enumerate(norms):
            layer.trainable = (index == 0) or not enabled
        self.partial_bn = bool(enabled)

    def init_from(self, source: keras.Model, include_classifier: bool = False) -> None:
        """Copies another model's weights into this stream by layer name.

        ``source`` is a stream or a backbone with the same backbone layers;
        a 3-channel (RGB) first convolution fills a flow stream's through
        :func:`~keras_gated_tsn.weights.transfer.cross_modality_kernel`: TSN's
        cross-modality pre-training when ``source`` carries ImageNet or RGB
        stream weights.

        Args:
            source: a Keras model.
            include_classifier: also copy ``fc-action`` (same classes only).

        Raises:
            ValueError: naming the layer and both shapes when weights cannot
                be matched, or when no layer of ``source`` fills this stream.
        """
        copied = copy_weights_by_name(source, self, skip=() if include_classifier else (CLASSIFIER,))
        if not copied:
            raise ValueError(f"no layer of {source.name!r} has a namesake with weights in {self.name!r}")

    def compile(self, optimizer="auto", loss="auto", metrics="auto", *, jit_compile="auto", **kwargs):
        """``keras.Model.compile`` with the paper's recipe for what is ``"auto"``:
        :func:`~keras_gated_tsn.training.recipes.make_optimizer` with this
        stream's learning rate (SGD as Caffe, lr 1e-3 RGB / 5e-3 flow, clip 40,
        no accumulation), cross-entropy
        on the pre-softmax scores with integer labels, top-1 ``accuracy``.
        Under ``mixed_float16`` Keras wraps the optimizer in a
        ``LossScaleOptimizer``.

        Args:
            jit_compile: passed to ``keras.Model.compile``: True compiles the
                train, test and predict steps with XLA; ``"auto"`` is XLA on
                a GPU and not on a CPU-only machine.
            **kwargs: the other ``keras.Model.compile`` arguments.
        """
        from keras_gated_tsn.training import recipes

        if optimizer == "auto":
            optimizer = recipes.make_optimizer(recipes.stage_recipe(self.modality).learning_rate)
        if loss == "auto":
            loss = recipes.classification_loss()
        if metrics == "auto":
            metrics = [recipes.accuracy_metric()]
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit_compile, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": self.backbone,
            "modality": self.modality,
            "num_classes": self.num_classes,
            "num_segments": self.num_segments,
            "input_size": self.input_size,
            "new_length": self.new_length,
            "dropout": self.dropout,
            "partial_bn": self.partial_bn,
            "backbone_weights": self.backbone_weights,
            "class_names": self.class_names,
            "flow_input": None if self.flow_input is None or self.flow_input.is_plain else self.flow_input.get_config(),
            "dtype": self.precision,
        }


def stream_trunk(spec, modality: str, input_size: int, channels: int, dropout: float, backbone_weights=None):
    """A stream's layers up to its classifier (shared by :class:`TSN` and
    :class:`~keras_gated_tsn.models.multitask.MultiTaskTSN`): the raw clip
    input ``(B, K, S, S, C)`` named ``modality``, preprocessing, segments
    folded, the backbone, its pooling, dropout. Returns ``(clip, features)``,
    features ``(B·K, D)``."""
    clip = keras.Input(shape=(None, input_size, input_size, channels), name=modality)
    x = ModalityPreprocessing(modality, bgr_mean=spec.bgr_mean, name=f"{modality}_preprocessing")(clip)
    x = SegmentFold(name="segment_fold")(x)
    base = spec.builder(
        include_top=False, input_tensor=x, pooling=None, weights=backbone_weights,
        name=f"{spec.name}_{modality}",
    )
    x = stream_pooling(spec, base.output)
    return clip, layers.Dropout(dropout, name="dropout")(x)


def stream_config(stream: "StreamLike", modality: str) -> dict:
    """A stream's config, from the stream or from its config dict (the two-stream
    models take either).

    Raises:
        ValueError: for anything else, or a stream of another modality.
    """
    if isinstance(stream, TSN):
        config = stream.get_config()
    elif isinstance(stream, dict):
        config = dict(stream)
    else:
        raise ValueError(
            f"the {modality} stream must be a keras_gated_tsn.models.TSN (or its config), "
            f"got {type(stream).__name__}"
        )
    if config.get("modality") != modality:
        raise ValueError(f"the {modality} stream must have modality {modality!r}, got {config.get('modality')!r}")
    return config


#: A trained stream, or its config.
StreamLike = Union[TSN, dict]


def flow_input_of(model) -> Optional[FlowInput]:
    """The flow input configuration a model's flow pipelines must build: a flow
    :class:`TSN`'s own, a gated model's flow stream's (from its config), None
    for anything without a flow stream or with plain optical flow stacking (a
    multi-task stream's own too)."""
    if isinstance(model, TSN) or hasattr(model, "flow_input"):
        flow_input = model.flow_input
    else:
        config = getattr(model, "flow_stream_config", None)
        flow_input = as_flow_input(config.get("flow_input")) if config else None
    return None if flow_input is None or flow_input.is_plain else flow_input


def init_from_rgb(target: TSN, rgb_model: keras.Model, include_classifier: bool = False) -> None:
    """``target.init_from(rgb_model, include_classifier)``: TSN's cross-modality
    initialisation of a flow stream from an RGB stream or backbone (see
    :meth:`TSN.init_from`)."""
    target.init_from(rgb_model, include_classifier=include_classifier)


__all__ = ["CLASSIFIER", "TSN", "flow_input_of", "init_from_rgb", "stream_pooling"]
