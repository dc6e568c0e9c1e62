"""GCF-Net: the Gated Clip Fusion Network (Hsiao, Chen, Ho 2020) and its baselines.

A video is C clips of T frames. A clip backbone (3D-ResNeXt-101 or
3D-MobileNetV2, no temporal stride; or a 2D backbone of the zoo run on each
frame) gives each clip a descriptor; GCF-Net's head fuses them across clips
(bi-directional inter-clip fusion, eq. (1)), weighs the clips (gated
clip-wise attention, eqs. (2)-(3)), re-scales with a residual (eqs. (4)-(6)),
averages (eq. (7)) and classifies (eq. (8), pre-softmax here). Trained with
``CE + λ·||att||_1`` (eqs. (9)-(10)). Table 1's baselines and Table 2's
ablations are the ``fusion`` option of the same class.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
from keras import layers, ops

from keras_gated_tsn.backbones import CLIP_BACKBONES, backbone_names, get_backbone, get_clip_backbone
from keras_gated_tsn.layers import ModalityPreprocessing, SegmentConsensus, SegmentFold
from keras_gated_tsn.layers.clip_fusion import (
    RELATION_NORMALIZATIONS,
    CentralClip,
    ClipUnfold,
    ClipWiseAttention,
    GatedClipResidual,
    InterClipFusion,
)
from keras_gated_tsn.layers.preprocessing import MODALITIES
from keras_gated_tsn.models.common import (
    BuildsFromSpecs,
    PlainLabels,
    RecordsBackboneWeights,
    check_choice,
    check_class_names,
    check_int,
    check_ratio,
)
from keras_gated_tsn.models.tsn import CLASSIFIER as TSN_CLASSIFIER
from keras_gated_tsn.models.tsn import stream_pooling
from keras_gated_tsn.precision import precision_scope, resolve_precision
from keras_gated_tsn.weights.transfer import copy_weights_by_name

#: The video-level heads, in the paper's words:
#:
#: * ``"gcf"``: GCF-Net (inter-clip fusion + clip-wise attention), "GCF-Net Full";
#: * ``"inter_clip"``: "Inter-Clip Fusion only" (Table 2): ``v' = mean_i b_i``;
#: * ``"attention"``: "Clip-Wise Attention only" (Table 2): attention over the
#:   raw descriptors V;
#: * ``"d_clips"``: "D-Clips prediction" (Fig. 1(b), Table 1): the average of
#:   every clip's class scores;
#: * ``"c_clip"``: "C-Clip prediction" (Fig. 1(a), Table 1): the central clip's scores.
FUSIONS = ("gcf", "inter_clip", "attention", "d_clips", "c_clip")
#: Heads with inter-clip fusion (eq. (1)) and with clip-wise attention (eqs. (2)-(6)).
INTER_CLIP_FUSIONS = ("gcf", "inter_clip")
ATTENTION_FUSIONS = ("gcf", "attention")
#: Output names: the class scores, and the per-clip attention where the head has it.
OUTPUTS = ("scores", "attention")
#: Name of the classifier W_3 (eq. (8)).
CLASSIFIER = "classifier"
#: λ of eq. (9) that ``compile()`` uses; the paper gives no value.
SPARSITY_WEIGHT = 1e-4
#: The paper's SGD (Sec. 3.3): lr 0.1, momentum 0.9, dampening 0.9, weight decay 1e-3.
PAPER_LEARNING_RATE = 0.1
PAPER_DAMPENING = 0.9
PAPER_WEIGHT_DECAY = 1e-3


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class AttentionSparsity(keras.losses.Loss):
    """The sparsity loss of GCF-Net, eq. (10): ``L_s = ||att||_1`` per video.

    ``y_pred`` is the attention ``(B, C)`` (sigmoid outputs, so the L1 norm
    is their sum over the C clips); ``y_true`` is ignored (the loss needs no
    label: the attention is learned without temporal annotation, Sec. 3.2).
    Returns the batch mean of the per-video norms (``reduction``), a float
    >= 0; weighted by λ in the total loss of eq. (9).
    """

    def __init__(self, name: str = "attention_sparsity", reduction: str = "sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        del y_true
        return ops.sum(ops.abs(y_pred), axis=-1)


def paper_optimizer(learning_rate: float = PAPER_LEARNING_RATE):
    """The paper's SGD (Sec. 3.3) in :func:`~keras_gated_tsn.training.recipes.make_optimizer` terms.

    PyTorch's SGD with dampening d updates ``v = μv + (1 - d)(g + wd·w)``,
    ``w -= lr·v``: Caffe's (:class:`~keras_gated_tsn.training.recipes.CaffeSGD`)
    with the learning rate ``lr·(1 - d)``, the L2 decay added to the gradient,
    no bias multiplier and no clipping. With the paper's lr 0.1, d = 0.9:
    an effective 0.01, momentum 0.9, decay 1e-3 (on kernels only, where
    PyTorch decays every parameter).
    """
    from keras_gated_tsn.training import recipes

    return recipes.make_optimizer(
        learning_rate * (1.0 - PAPER_DAMPENING), momentum=0.9, weight_decay=PAPER_WEIGHT_DECAY,
        clip_gradients=None, bias_lr_multiplier=1.0,
    )


def _optional_int(name: str, value, minimum: int):
    return None if value is None else check_int(name, value, minimum)


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class GCFNet(RecordsBackboneWeights, PlainLabels, BuildsFromSpecs, keras.Model):
    """GCF-Net over a clip backbone: clips → descriptors → fusion → attention → scores.

    Input: raw clips ``(B, C, T, S, S, 3)`` RGB pixels 0-255, any numeric
    dtype (uint8 from :func:`keras_gated_tsn.data.clips.make_clip_dataset`);
    ``(B, C, T, S, S, 2L)`` uint8-encoded flow stacks for a 2D flow backbone.
    C (``num_clips``) is fixed where the head has clip-wise attention (its
    W_1, W_2 are C-wide) and free otherwise. The graph:

    1. preprocessing as the first layer (``rgb_preprocessing``: minus the
       clip backbone's mean; or the 2D backbone's
       :class:`~keras_gated_tsn.layers.ModalityPreprocessing`);
    2. the clips folded into the batch (``clip_fold``,
       :class:`~keras_gated_tsn.layers.SegmentFold`) and through the backbone,
       globally pooled: the raw clip descriptors v_i in R^d (Sec. 3.1);
       a 2D backbone instead runs on every frame (``frame_fold``) and its
       pooled features are averaged over the T frames of a clip
       (``frame_consensus``), so a clip of one frame is one TSN snippet;
    3. ``clip_descriptors`` (:class:`~keras_gated_tsn.layers.ClipUnfold`):
       V = (v_1 .. v_C) per video, ``(B, C, d)``;
    4. ``inter_clip_fusion_1`` .. ``_n``
       (:class:`~keras_gated_tsn.layers.InterClipFusion`): eq. (1), n times
       (eqs. (11)-(12)), B = (b_1 .. b_C) ``(B, C, D)``;
    5. ``attention`` (:class:`~keras_gated_tsn.layers.ClipWiseAttention`):
       eqs. (2)-(3), att ``(B, C)`` in (0, 1);
    6. ``residual_descriptors``
       (:class:`~keras_gated_tsn.layers.GatedClipResidual`): R = B + att·B,
       eqs. (4)-(6);
    7. ``video_descriptor`` (``GlobalAveragePooling1D``): v' = mean_i r_i, eq. (7);
    8. ``dropout`` and ``classifier`` (W_3, eq. (8)): pre-softmax class scores.

    ``fusion`` picks Table 2's ablations (steps 4 or 5-6 left out) and
    Table 1's baselines (``"d_clips"``: ``classifier`` on every clip's v_i
    and ``scores`` their mean; ``"c_clip"``: ``central_clip`` picks clip
    C // 2 first, only it runs through the backbone).

    Output: a dict — ``scores``: ``(B, num_classes)`` float32 pre-softmax;
    with attention (``"gcf"``, ``"attention"``) also ``attention``:
    ``(B, C)`` float32 in (0, 1), the per-clip weights for temporal
    localisation (Sec. 4.6: clips above 0.5 are the action's). ``compile()``
    sets eq. (9): cross-entropy on ``scores`` plus λ times
    :class:`AttentionSparsity` on ``attention``; ``fit(clips, labels)`` takes
    integer labels.

    Args:
        backbone: a clip backbone (:data:`keras_gated_tsn.backbones.CLIP_BACKBONES`:
            ``"resnext3d_101"``, ``"mobilenet3d_v2"``) or a 2D backbone of the
            registry (:func:`keras_gated_tsn.backbones.backbone_names`).
        num_classes: number of action classes (Kinetics-600: 600).
        num_clips: C, clips per video (paper: 10).
        clip_length: T, frames per clip (paper: 16). For a 2D backbone, the
            frames of a clip each run through it and their features are
            averaged (T = 1: a clip is one TSN snippet).
        input_size: S, the crop side (paper: 112).
        fusion: one of :data:`FUSIONS`.
        descriptor_dim: D, the dimension of b_i, r_i and v' (Sec. 4.4,
            Fig. 3(a): >= 256 beats the baselines, saturating above 1024).
            Without inter-clip fusion the descriptors keep the backbone's d.
            Table 3's head (0.86M parameters, 15 MFLOPs) is D = 128 over
            3D-ResNeXt-101: 880,436 parameters here.
        key_dim: dimension of W_q v and W_k v in eq. (1); default D.
        fusion_layers: n, inter-clip fusion layers stacked (eqs. (11)-(12); paper: 1).
        relation_normalization: N(v) of eq. (1), one of
            :data:`~keras_gated_tsn.layers.clip_fusion.RELATION_NORMALIZATIONS`:
            ``"softmax"`` (default; scaled dot-product attention) or
            ``"clips"`` (eq. (1) as printed, divided by C; see
            :class:`~keras_gated_tsn.layers.InterClipFusion` for why it is
            not the default).
        attention_units: hidden width of eq. (3)'s W_1; default C.
        dropout: ratio before the classifier, in [0, 1) (the paper names
            none: default 0).
        freeze_backbone: freeze the backbone (its BN layers then run in
            inference mode): the paper's UCF-101 fine-tuning, "frozen the
            network parameters and fine-tuned only the last layer" (Sec. 3.3;
            the head stays trainable here).
        modality: ``"rgb"``; ``"flow"`` only with a 2D backbone.
        new_length: L, flow pairs per frame stack (2D flow backbone only).
        backbone_weights: weights for the backbone: a weights file (clip
            backbones; nothing is downloaded), or a 2D backbone's registered
            name (``"imagenet"``) or file. Recorded for provenance; a loaded
            model takes its weights from its file.
        class_names: optional list of ``num_classes`` names.
        name: model name; default ``<fusion>_<backbone>``.
        dtype: the dtype policy, one of
            :data:`keras_gated_tsn.precision.PRECISIONS`; default the global
            one. Under a mixed policy the backbone computes in float16 /
            bfloat16 and the whole head (from ``clip_descriptors`` on) in
            float32.

    Raises:
        ValueError: for an unknown backbone, fusion, normalization or
            modality, a value out of range (quoted), flow with a clip
            backbone, or weights that do not fit.
        FileNotFoundError: for a 2D backbone's registered weights that are
            not on disk.
    """

    def __init__(
        self,
        backbone: str = "resnext3d_101",
        num_classes: int = 600,
        num_clips: int = 10,
        clip_length: int = 16,
        input_size: int = 112,
        fusion: str = "gcf",
        descriptor_dim: int = 1024,
        key_dim: Optional[int] = None,
        fusion_layers: int = 1,
        relation_normalization: str = "softmax",
        attention_units: Optional[int] = None,
        dropout: float = 0.0,
        freeze_backbone: bool = False,
        modality: str = "rgb",
        new_length: int = 5,
        backbone_weights: Optional[str] = None,
        class_names: Optional[Sequence[str]] = None,
        name: Optional[str] = None,
        dtype=None,
        **kwargs,
    ):
        clip_backbone = backbone in CLIP_BACKBONES
        if not clip_backbone and backbone not in backbone_names():
            raise ValueError(
                f"unknown backbone {backbone!r}; clip backbones: {list(CLIP_BACKBONES)}, "
                f"2D backbones: {list(backbone_names())}"
            )
        spec = get_clip_backbone(backbone) if clip_backbone else get_backbone(backbone)
        policy = resolve_precision(dtype)
        check_choice("fusion", fusion, FUSIONS)
        check_choice("relation_normalization", relation_normalization, RELATION_NORMALIZATIONS)
        check_choice("modality", modality, MODALITIES)
        if clip_backbone and modality != "rgb":
            raise ValueError(f"the clip backbone {backbone!r} takes RGB clips, got modality {modality!r}")
        check_int("num_classes", num_classes, 1)
        check_int("num_clips", num_clips, 1)
        check_int("clip_length", clip_length, 1)
        check_int("input_size", input_size, spec.min_input_size)
        check_int("descriptor_dim", descriptor_dim, 1)
        key_dim = _optional_int("key_dim", key_dim, 1)
        check_int("fusion_layers", fusion_layers, 1)
        attention_units = _optional_int("attention_units", attention_units, 1)
        dropout = check_ratio("dropout", dropout)
        check_int("new_length", new_length, 1)
        class_names = check_class_names(class_names, num_classes)
        channels = 3 if modality == "rgb" else 2 * int(new_length)
        # W_1 and W_2 of eq. (3) are C-wide: the clip axis is fixed where there is attention.
        clip_axis = int(num_clips) if fusion in ATTENTION_FUSIONS else None

        with precision_scope(policy, warn=False):
            clips = keras.Input(shape=(clip_axis, clip_length, input_size, input_size, channels), name=modality)
            x = CentralClip(name="central_clip")(clips) if fusion == "c_clip" else clips
            per_clip = x
            if clip_backbone:
                x = layers.Normalization(
                    mean=list(spec.rgb_mean), variance=[s * s for s in spec.rgb_std], name="rgb_preprocessing"
                )(x)
                x = SegmentFold(name="clip_fold")(x)
                base = spec.builder(
                    include_top=False, input_tensor=x, pooling="avg", weights=backbone_weights, name=backbone
                )
                features = base.output
            else:
                x = ModalityPreprocessing(modality, bgr_mean=spec.bgr_mean, name=f"{modality}_preprocessing")(x)
                x = SegmentFold(name="clip_fold")(x)
                frames = SegmentFold(name="frame_fold")(x)
                base = spec.builder(
                    include_top=False, input_tensor=frames, pooling=None, weights=backbone_weights,
                    name=f"{backbone}_{modality}",
                )
                features = SegmentConsensus(name="frame_consensus")([stream_pooling(spec, base.output), x])
            backbone_layer_names = tuple(layer.name for layer in base.layers if layer.weights)

            # The head computes in float32 under every policy: its outputs are scores and weights.
            outputs = {}
            if fusion in ("d_clips", "c_clip"):
                x = layers.Dropout(dropout, name="dropout")(features)
                x = layers.Dense(num_classes, dtype="float32", name=CLASSIFIER)(x)
                outputs["scores"] = SegmentConsensus(dtype="float32", name="clip_consensus")([x, per_clip])
            else:
                x = ClipUnfold(dtype="float32", name="clip_descriptors")([features, clips])
                if fusion in INTER_CLIP_FUSIONS:
                    for layer in range(1, fusion_layers + 1):
                        x = InterClipFusion(
                            descriptor_dim, key_dim, relation_normalization, dtype="float32",
                            name=f"inter_clip_fusion_{layer}",
                        )(x)
                if fusion in ATTENTION_FUSIONS:
                    attention = ClipWiseAttention(attention_units, dtype="float32", name="attention")(x)
                    x = GatedClipResidual(dtype="float32", name="residual_descriptors")([x, attention])
                    outputs["attention"] = attention
                x = layers.GlobalAveragePooling1D(dtype="float32", name="video_descriptor")(x)
                x = layers.Dropout(dropout, name="dropout")(x)
                outputs = {"scores": layers.Dense(num_classes, dtype="float32", name=CLASSIFIER)(x), **outputs}
            super().__init__(
                inputs=clips, outputs=outputs, name=name or f"{fusion}_{backbone}", **kwargs
            )
        self._backbone_layer_names = backbone_layer_names
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.num_clips = int(num_clips)
        self.clip_length = int(clip_length)
        self.input_size = int(input_size)
        self.fusion = fusion
        self.descriptor_dim = int(descriptor_dim)
        self.key_dim = key_dim
        self.fusion_layers = int(fusion_layers)
        self.relation_normalization = relation_normalization
        self.attention_units = attention_units
        self.dropout = dropout
        self.modality = modality
        self.new_length = int(new_length)
        self.backbone_weights = None if backbone_weights is None else str(backbone_weights)
        self.class_names = class_names
        self.freeze_backbone = bool(freeze_backbone)
        self.set_backbone_trainable(not self.freeze_backbone)

    # ------------------------------------------------------------------ info
    @property
    def is_clip_backbone(self) -> bool:
        """Whether the backbone is a 3D clip backbone (else a 2D one, per frame)."""
        return self.backbone in CLIP_BACKBONES

    @property
    def has_attention(self) -> bool:
        """Whether the head has clip-wise attention (and an ``attention`` output)."""
        return self.fusion in ATTENTION_FUSIONS

    @property
    def output_keys(self):
        """The keys of the output dict: ``("scores", "attention")`` or ``("scores",)``."""
        return OUTPUTS if self.has_attention else OUTPUTS[:1]

    @property
    def backbone_layers(self):
        """The backbone's layers with weights (convolutions, BN), in graph order."""
        return [self.get_layer(name) for name in self._backbone_layer_names]

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Trains (True) or freezes (False, BN in inference mode) the backbone;
        recorded in the config as ``freeze_backbone``."""
        for layer in self.backbone_layers:
            layer.trainable = bool(trainable)
        self.freeze_backbone = not trainable

    def init_from(self, source: keras.Model, include_classifier: bool = False) -> None:
        """Copies another model's weights into this one by layer name.

        ``source`` is a backbone built by its builder, a TSN stream (for a
        2D backbone; a 3-channel first convolution fills a flow backbone
        through TSN's cross-modality rule), or another GCF-Net. Classifiers
        (``classifier``, ``fc-action``, ``predictions``) are left out unless
        ``include_classifier`` (same classes only).

        Raises:
            ValueError: naming the layer and both shapes when weights cannot
                be matched, or when no layer of ``source`` fills this model.
        """
        skip = () if include_classifier else (CLASSIFIER, TSN_CLASSIFIER, "predictions")
        if not copy_weights_by_name(source, self, skip=skip):
            raise ValueError(f"no layer of {source.name!r} has a namesake with weights in {self.name!r}")

    # -------------------------------------------------------------- training
    def compile(self, optimizer="auto", loss="auto", loss_weights=None, metrics="auto", *,
                sparsity_weight: float = SPARSITY_WEIGHT, jit_compile="auto", **kwargs):
        """``keras.Model.compile`` with eq. (9) for what is ``"auto"``.

        Loss ``CE(y, scores) + λ·||att||_1``: per-output losses, sparse
        cross-entropy on the pre-softmax ``scores`` and
        :class:`AttentionSparsity` on ``attention`` (heads with attention
        only), with ``loss_weights`` ``{"scores": 1, "attention": λ}``.
        Metrics: top-1 ``accuracy`` of ``scores``. Optimizer:
        :func:`paper_optimizer` (Sec. 3.3). Under ``mixed_float16`` Keras
        wraps the optimizer in a ``LossScaleOptimizer``.

        Args:
            sparsity_weight: λ >= 0 (the paper gives no value; default
                :data:`SPARSITY_WEIGHT`); ignored when ``loss_weights`` is given.
            jit_compile: passed to ``keras.Model.compile`` (``"auto"``: XLA on
                a GPU, not on a CPU).
            **kwargs: the other ``keras.Model.compile`` arguments.

        Raises:
            ValueError: for a negative λ.
        """
        from keras_gated_tsn.training import recipes

        if isinstance(sparsity_weight, bool) or not isinstance(sparsity_weight, (int, float)) or sparsity_weight < 0:
            raise ValueError(f"sparsity_weight (lambda) must be a number >= 0, got {sparsity_weight!r}")
        if optimizer == "auto":
            optimizer = paper_optimizer()
        if loss == "auto":
            loss = {"scores": recipes.classification_loss()}
            if self.has_attention:
                loss["attention"] = AttentionSparsity()
        if loss_weights is None and isinstance(loss, dict):
            loss_weights = {"scores": 1.0, "attention": float(sparsity_weight)}
            loss_weights = {name: weight for name, weight in loss_weights.items() if name in loss}
        if metrics == "auto":
            metrics = {"scores": [recipes.accuracy_metric()]}
        super().compile(
            optimizer=optimizer, loss=loss, loss_weights=loss_weights, metrics=metrics, jit_compile=jit_compile,
            **kwargs,
        )

    @property
    def label_outputs(self):
        """Plain labels go to every output (the sparsity loss ignores its own)."""
        return self.output_keys

    # --------------------------------------------------------- serialization
    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": self.backbone,
            "num_classes": self.num_classes,
            "num_clips": self.num_clips,
            "clip_length": self.clip_length,
            "input_size": self.input_size,
            "fusion": self.fusion,
            "descriptor_dim": self.descriptor_dim,
            "key_dim": self.key_dim,
            "fusion_layers": self.fusion_layers,
            "relation_normalization": self.relation_normalization,
            "attention_units": self.attention_units,
            "dropout": self.dropout,
            "freeze_backbone": self.freeze_backbone,
            "modality": self.modality,
            "new_length": self.new_length,
            "backbone_weights": self.backbone_weights,
            "class_names": self.class_names,
            "dtype": self.precision,
        }



__all__ = [
    "ATTENTION_FUSIONS", "AttentionSparsity", "CLASSIFIER", "FUSIONS", "GCFNet", "INTER_CLIP_FUSIONS", "OUTPUTS",
    "SPARSITY_WEIGHT", "paper_optimizer",
]
