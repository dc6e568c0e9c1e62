"""Convolutional two-stream fusion (Feichtenhofer, Pinz, Zisserman, "Convolutional
Two-Stream Network Fusion for Video Action Recognition", CVPR 2016, Sec. 3, Figs. 2-4).

Two trained streams are fused at a convolutional layer instead of at the
softmax: their maps at the fusion layer are combined pixel by pixel (spatial
fusion, Sec. 3.1), optionally across T snippets in time (temporal fusion,
Sec. 3.3), and one tower — the spatial network's layers after the fusion
point — goes on from the fused map, while the other tower is either cut off
("truncate", Fig. 2 left) or kept with its own loss ("keep_both", Fig. 2
right, Sec. 3.4 and Fig. 4: the paper's proposed architecture).
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import numpy as np
from keras import layers

from keras_gated_tsn.backbones import get_backbone
from keras_gated_tsn.layers import SegmentConsensus, SegmentFold
from keras_gated_tsn.layers.two_stream_fusion import (
    SPATIAL_FUSIONS as _FUSION_LAYERS,
    Conv3DFusion,
    ConvFusion,
    Pooling3D,
    StackAcrossTime,
)
from keras_gated_tsn.models.common import (
    BuildsFromSpecs,
    PlainLabels,
    TwoStreams,
    check_choice,
    check_int,
    check_ratio,
)
from keras_gated_tsn.models.tsn import CLASSIFIER, TSN, StreamLike, stream_config, stream_pooling
from keras_gated_tsn.precision import precision_scope, resolve_precision
from keras_gated_tsn.weights.transfer import copy_weights_by_name

#: Spatial fusion functions (Sec. 3.1, eqs. (1)-(5)).
SPATIAL_FUSIONS = tuple(_FUSION_LAYERS)
#: Temporal fusion (Sec. 3.3, Fig. 3): (a) none — 2D pooling, the
#: predictions averaged over the T snippets; (b) 3D pooling; (c) 3D conv
#: fusion + 3D pooling.
TEMPORAL_FUSIONS = ("none", "pool3d", "conv3d_pool3d")
#: What happens to the tower that is fused from (Sec. 3.2, Fig. 2; Sec. 3.4).
TOWERS = ("keep_both", "truncate")
#: Init profiles of the 3D conv fusion (see :class:`~keras_gated_tsn.layers.Conv3DFusion`).
CONV3D_INIT_PROFILES = ("gaussian", "temporal_gaussian")
#: Name of the fused tower: its output and the prefix of its layers.
SPATIOTEMPORAL = "spatiotemporal"
#: The paper's learning rate for fusion fine-tuning (Sec. 3.5: from 1e-3, /10 on plateau).
LEARNING_RATE = 1e-3
#: The most rows (columns) of zeros the smaller map is padded with at the
#: bottom (right) to match the other stream's (Sec. 4.1 pads VGG-M's 13x13
#: ReLU5 with one row and one column to VGG-16's 14x14 ReLU5_3); a larger
#: mismatch means layers of different resolutions and is refused.
MAX_FUSION_PADDING = 2

_OTHER = {"rgb": "flow", "flow": "rgb"}


def last_conv_layer(backbone: str) -> str:
    """The last feature layer of ``backbone`` that is not a pooling layer: its
    last convolutional layer after the ReLU (``block5_conv3`` for VGG16,
    ``conv5`` for CaffeNet and CNN-M-2048, ``inception_5b_output`` for
    BN-Inception) — the paper's fusion point, ReLU5 (Sec. 3.4, Tables 1-2).

    Raises:
        ValueError: for an unknown backbone.
    """
    spec = get_backbone(backbone)
    layers_in_order = [stage for stage in spec.stages if stage in spec.feature_layers]
    candidates = [name for name in layers_in_order if "pool" not in name]
    return candidates[-1] if candidates else spec.default_fusion_layer


def _stream_copy(config: dict, source: Optional[TSN], dtype: str) -> TSN:
    """The stream rebuilt from its config under ``dtype``, with ``source``'s weights."""
    modality = config["modality"]
    copy = TSN(**{**config, "name": f"{modality}_tsn", "backbone_weights": None, "dtype": dtype})
    if source is not None:
        copy_weights_by_name(source, copy)
    return copy


def _doubled_input(mine: np.ndarray, theirs: np.ndarray):
    """The weight for a layer whose input is eq. (3)'s interleaved concatenation
    of two maps, from a layer that took one: each input channel (a kernel's
    axis 2, a dense layer's rows) repeated twice and halved, so it starts on
    the mean of the two maps. None if the shapes are not of that kind."""
    if mine.ndim == 4 and theirs.ndim == 4 and mine.shape[2] == 2 * theirs.shape[2]:
        if mine.shape[:2] == theirs.shape[:2] and mine.shape[3] == theirs.shape[3]:
            return np.repeat(theirs, 2, axis=2) / 2
    if mine.ndim == 2 and theirs.ndim == 2 and mine.shape == (2 * theirs.shape[0], theirs.shape[1]):
        return np.repeat(theirs, 2, axis=0) / 2
    return None


def _fill_tower(source: keras.Model, target: keras.Model, prefix: str, skip=()) -> list:
    """Copies ``source``'s weights into ``target``'s layers named ``prefix + name``
    (the tower's layers after the fusion point, its classifier); a kernel that
    takes concatenation fusion's 2D channels gets :func:`_doubled_input`.

    Raises:
        ValueError: naming the layer and both shapes when a weight cannot be filled.
    """
    sources = {layer.name: layer for layer in source.layers if layer.weights}
    copied = []
    for layer in target.layers:
        if not layer.weights or not layer.name.startswith(prefix):
            continue
        name = layer.name[len(prefix):]
        if name in skip or name not in sources:
            continue
        filled = []
        for mine, theirs in zip(layer.get_weights(), sources[name].get_weights()):
            value = theirs if mine.shape == theirs.shape else _doubled_input(mine, theirs)
            if value is None:
                raise ValueError(
                    f"layer {layer.name!r} from {name!r} of {source.name!r}: cannot initialise a weight of shape "
                    f"{mine.shape} from shape {theirs.shape}"
                )
            filled.append(value.astype(mine.dtype))
        layer.set_weights(filled)
        copied.append(layer.name)
    return copied


def _check_pool3d(pool3d_size, num_snippets: int):
    sizes = tuple(pool3d_size) if isinstance(pool3d_size, (list, tuple)) else ()
    if len(sizes) != 3 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
                                  for v in sizes):
        raise ValueError(f"pool3d_size must be three positive ints (T', H', W'), got {pool3d_size!r}")
    if sizes[0] > num_snippets:
        raise ValueError(f"pool3d_size's T'={sizes[0]} exceeds the {num_snippets} snippets (num_snippets)")
    return tuple(int(v) for v in sizes)


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class ConvTwoStreamFusion(TwoStreams, PlainLabels, BuildsFromSpecs, keras.Model):
    """Convolutional two-stream fusion: two streams fused at a conv layer, in space and time.

    The two TSN streams are rebuilt inside the model from their configs and
    take the given streams' weights (the caller's models are left as they
    are). The ``fuse_into`` stream runs up to ``fusion_layer``, the other
    one up to ``other_fusion_layer`` (the same layer by default when both
    backbones have it), on each of the T snippets of a video (``t, t + τ,
    ...``: the input's T axis). By default those layers are frozen: "we only
    propagate back to the injected fusion layer" (Sec. 3.5). Then:

    1. **Spatial fusion** (Sec. 3.1) of the two maps, which must have the same
       height and width (Sec. 3.2). Sec. 4.1 fuses "only between layers with
       the same output resolution; except for fusing a VGG-16 model at
       ReLU5_3 with a VGG-M model at ReLU5, where we pad the slightly smaller
       output of VGG-M (13 x 13, compared to 14 x 14) with a row and a column
       of zeros": when the other stream's map is smaller by at most
       :data:`MAX_FUSION_PADDING` rows / columns, the fused path sees it
       padded with zeros at the bottom and right (a ``ZeroPadding2D`` named
       ``<modality>_fusion_padding``, on each snippet's map before the fusion
       or the stacking across time); its kept tower (``"keep_both"``) goes on
       from its own unpadded map. The ``fuse_into`` stream's map is never
       padded: the fused tower's layers after ``fusion_layer`` take the size
       that stream was trained on (a flattening classifier's weights would
       not fit a larger map). Fusions: ``"sum"`` (eq. (1)), ``"max"`` (eq. (2)),
       ``"concat"`` (eq. (3), 2D channels), ``"conv"`` (eq. (4): concatenation
       and a 1x1 conv 2D -> D initialised as the sum, the paper's best,
       Table 1) or ``"bilinear"`` (eq. (5) with signed square root and L2
       normalisation; no layers follow but the classifier, which replaces the
       paper's linear SVM).
    2. **Temporal fusion** (Sec. 3.3, Fig. 3): ``"none"`` — each snippet goes
       on alone and the class scores are averaged over the T snippets
       (Fig. 3(a); T = 1 is single-frame fusion); ``"pool3d"`` — the fused
       maps stacked across time and max-pooled over ``T' x H' x W'`` cubes
       (Fig. 3(b)); ``"conv3d_pool3d"`` — the two stacked maps fused by a
       3x3x3 convolution 2D -> D (eq. (6), the paper's "3D Conv" fusion,
       initialised as in Sec. 3.5) and then 3D-pooled (Fig. 3(c), Table 4's
       best). The 3D pooling keeps the map's height and width (spatial stride
       1, ``"same"``) and pools ``T'`` snippets at a temporal stride ``T'``;
       the tower's own layers (its pooling included) then run on each of the
       ``(T - T') // T' + 1`` pooled maps, whose scores are averaged.
    3. **Towers** after the fusion point: the fused ("spatiotemporal") tower
       is the ``fuse_into`` stream's layers after ``fusion_layer`` (the
       backbone's tail, its pooling, dropout and classifier, with that
       stream's weights; the paper fuses into the spatial network,
       Sec. 3.4). ``towers="truncate"``: the other tower is cut off
       (Fig. 2 left, Tables 1-2: half the parameters). ``"keep_both"``: the
       other stream goes on through its own layers after
       ``other_fusion_layer``, on its own map (3D-pooled too when
       temporal fusion is on: Fig. 4 right), both towers have a loss, and at
       test time their predictions are averaged (Sec. 3.4, Table 4; the
       paper's proposed architecture, Fig. 4).

    The towers' BN layers (BN-Inception) are
    :class:`~keras_gated_tsn.layers.FrozenBatchNormalization`: the streams'
    statistics, scale and shift trained.

    Called on ``{"rgb": (B, T, S, S, 3), "flow": (B, T, S, S, 2L)}`` raw clips
    (see :class:`~keras_gated_tsn.models.TSN`; any numeric dtype, uint8 from
    :mod:`keras_gated_tsn.data.pipeline` with ``num_segments=T``; T is fixed
    to ``num_snippets`` with temporal fusion and free otherwise) it returns
    a dict of ``(B, C)`` float32 pre-softmax class scores:

    * ``spatiotemporal``: the fused tower's;
    * ``flow`` (or ``rgb`` with ``fuse_into="flow"``): the kept tower's
      (``"keep_both"`` only);
    * ``fused``: the prediction — the mean of the two towers' scores with
      ``"keep_both"`` (Sec. 3.4: "during testing we average the predictions
      of the two streams"), the fused tower's with ``"truncate"``.

    ``compile()`` puts a cross-entropy loss on each tower's output (weights 1
    and 1: "the losses of both streams are used for training"); ``fit(clips,
    labels)`` takes plain integer labels.

    Args:
        rgb_stream: the trained RGB :class:`~keras_gated_tsn.models.TSN` (or
            its config, which builds it with untrained weights). See
            :meth:`from_backbone` for a fresh model.
        flow_stream: the trained flow stream (or its config): the same classes
            and input size; the backbone may differ (CNN-M-2048 with
            ``cnn_m_2048_no_norm2``, the two-stream paper's pair; VGG16 with
            CNN-M-2048, Sec. 4.1 and Table 6, fused at ``block5_conv3`` and
            ``conv5``).
        fusion_layer: the feature layer of the ``fuse_into`` stream's backbone
            it is fused at (the fused tower goes on from there); default
            :func:`last_conv_layer` of that backbone (ReLU5, Sec. 3.4 and
            4.3).
        other_fusion_layer: the feature layer of the *other* stream's backbone
            (the one that is not ``fuse_into``: flow by default, rgb with
            ``fuse_into="flow"``) whose map is fused in; its kept tower goes
            on from there. Named for the role rather than the modality so it
            reads the same for either ``fuse_into``. Default
            ``fusion_layer`` when that is a feature layer of both backbones,
            else :func:`last_conv_layer` of the other backbone (``conv5``
            for a CNN-M-2048 flow stream beside a VGG16 one's
            ``block5_conv3``). The resolved name is what the config records.
        spatial_fusion: one of :data:`SPATIAL_FUSIONS` (above).
        temporal_fusion: one of :data:`TEMPORAL_FUSIONS` (above);
            ``"conv3d_pool3d"`` needs ``spatial_fusion="conv"`` (its 3x3x3
            filter replaces the 1x1 one), ``"bilinear"`` needs ``"none"``.
        towers: one of :data:`TOWERS` (above).
        fuse_into: the stream whose tower goes on from the fused map: ``"rgb"``
            (the paper's) or ``"flow"`` (Fig. 2 right keeps a purely spatial
            network beside a hybrid spatiotemporal one).
        num_snippets: T, the snippets per video (Sec. 3.5: T = 5).
        snippet_stride: τ, the frames between snippets the model was trained
            with (Sec. 3.4-3.5; the paper samples τ in [1, 10] while training),
            or None; recorded for the data pipeline only.
        pool3d_size: the 3D pooling cube ``(T', H', W')``; default ``(T, 3, 3)``
            (all the snippets, the paper's 3x3 spatial neighbourhood).
        fusion_identity_scales: ``(spatial, temporal)`` factors of the
            identity initialisation of conv / 3D conv fusion; default
            ``(1, 1)`` for ``"conv"`` (the sum) and ``(1, 3)`` for the 3D
            conv (Sec. 3.5: the temporal network's ReLU5 activations are about
            3 times lower); unused by the other fusions.
        conv3d_init_profile: ``"gaussian"`` (the paper's 3x3x3 Gaussian over
            x, y, t, sigma 1) or ``"temporal_gaussian"`` (Gaussian over t,
            identity in space).
        freeze_before_fusion: freeze the streams' layers up to the fusion
            layer (Sec. 3.5); False trains everything.
        dropout: ratio before the towers' classifiers, in [0, 1); default
            each stream's own ratio.
        name: model name.
        dtype: the Keras dtype policy of the whole model (one of
            :data:`keras_gated_tsn.precision.PRECISIONS`); default None: the
            global policy. Recorded in the config. Under a mixed policy the
            variables are float32, the streams, fusion layers and towers
            compute in float16 / bfloat16 (bilinear sums in float32), and the
            classifiers, consensus and every output are float32.

    Raises:
        ValueError: for an unknown option or a value out of range (the
            message quotes it); a ``fusion_layer`` (``other_fusion_layer``)
            that is not a feature layer of the ``fuse_into`` (other)
            stream's backbone; streams that disagree on classes or input
            size; maps at the two layers whose height or width differ by more
            than :data:`MAX_FUSION_PADDING`, or where the ``fuse_into``
            stream's is the smaller one (both shapes named); maps that
            differ in channels for sum, max, conv and concat fusion; a ``dtype`` (or
            global policy) not in ``PRECISIONS``.
    """

    def __init__(
        self,
        rgb_stream: StreamLike,
        flow_stream: StreamLike,
        fusion_layer: Optional[str] = None,
        other_fusion_layer: Optional[str] = None,
        spatial_fusion: str = "conv",
        temporal_fusion: str = "conv3d_pool3d",
        towers: str = "keep_both",
        fuse_into: str = "rgb",
        num_snippets: int = 5,
        snippet_stride: Optional[int] = None,
        pool3d_size: Optional[Sequence[int]] = None,
        fusion_identity_scales: Optional[Sequence[float]] = None,
        conv3d_init_profile: str = "gaussian",
        freeze_before_fusion: bool = True,
        dropout: Optional[float] = None,
        name: str = "conv_two_stream_fusion",
        dtype=None,
        **kwargs,
    ):
        policy = resolve_precision(dtype)
        check_choice("spatial_fusion", spatial_fusion, SPATIAL_FUSIONS)
        check_choice("temporal_fusion", temporal_fusion, TEMPORAL_FUSIONS)
        check_choice("towers", towers, TOWERS)
        check_choice("fuse_into", fuse_into, ("rgb", "flow"))
        check_choice("conv3d_init_profile", conv3d_init_profile, CONV3D_INIT_PROFILES)
        num_snippets = check_int("num_snippets", num_snippets, 1)
        if snippet_stride is not None:
            snippet_stride = check_int("snippet_stride", snippet_stride, 1)
        if dropout is not None:
            dropout = check_ratio("dropout", dropout)
        if temporal_fusion == "conv3d_pool3d" and spatial_fusion != "conv":
            raise ValueError(
                f"temporal_fusion 'conv3d_pool3d' is 3D conv fusion (concatenation and a 3x3x3 conv, Sec. 3.3) and "
                f"needs spatial_fusion='conv', got {spatial_fusion!r}"
            )
        if spatial_fusion == "bilinear" and temporal_fusion != "none":
            raise ValueError(
                f"bilinear fusion marginalises the spatial layout out, so there is no map to pool in 3D: it needs "
                f"temporal_fusion='none', got {temporal_fusion!r}"
            )
        if temporal_fusion == "none":
            if pool3d_size is not None:
                raise ValueError(
                    f"pool3d_size needs a temporal fusion, got {pool3d_size!r} with temporal_fusion='none'"
                )
        else:
            pool3d_size = _check_pool3d((num_snippets, 3, 3) if pool3d_size is None else pool3d_size, num_snippets)
        if fusion_identity_scales is None:
            fusion_identity_scales = (1.0, 3.0) if temporal_fusion == "conv3d_pool3d" else (1.0, 1.0)
        configs = {"rgb": stream_config(rgb_stream, "rgb"), "flow": stream_config(flow_stream, "flow")}
        for key in ("num_classes", "input_size"):
            if configs["rgb"][key] != configs["flow"][key]:
                raise ValueError(
                    f"the streams disagree on {key}: rgb {configs['rgb'][key]!r}, flow {configs['flow'][key]!r}"
                )
        names = [configs[m].get("class_names") for m in ("rgb", "flow")]
        if None not in names and list(names[0]) != list(names[1]):
            raise ValueError(f"the streams disagree on the class names: rgb {names[0]!r}, flow {names[1]!r}")
        specs = {m: get_backbone(configs[m]["backbone"]) for m in ("rgb", "flow")}
        other = _OTHER[fuse_into]
        fusion_layer = specs[fuse_into].check_feature_layer(fusion_layer or last_conv_layer(specs[fuse_into].name))
        if other_fusion_layer is None:
            shared = fusion_layer in specs[other].feature_layers
            other_fusion_layer = fusion_layer if shared else last_conv_layer(specs[other].name)
        other_fusion_layer = specs[other].check_feature_layer(other_fusion_layer)
        cut_at = {fuse_into: fusion_layer, other: other_fusion_layer}
        num_classes = int(configs["rgb"]["num_classes"])
        sources = {"rgb": rgb_stream, "flow": flow_stream}

        with precision_scope(policy, warn=False):
            copies = {
                m: _stream_copy(configs[m], sources[m] if isinstance(sources[m], TSN) else None, policy)
                for m in ("rgb", "flow")
            }
            trunks = {}
            for m, copy in copies.items():
                trunks[m] = keras.Model(copy.input, copy.get_layer(cut_at[m]).output, name=f"{m}_stream")
                trunks[m].trainable = not freeze_before_fusion
            frames = None if temporal_fusion == "none" else num_snippets
            inputs = {m: keras.Input(shape=(frames,) + tuple(trunks[m].input.shape[2:]), name=m) for m in trunks}
            maps = {m: trunks[m](inputs[m]) for m in trunks}
            padding = self._check_maps(maps, spatial_fusion, cut_at, fuse_into)
            # Sec. 4.1: the smaller map gets rows / columns of zeros at the bottom / right
            # on the fused path only; its own tower goes on from the unpadded map.
            to_fuse = {
                m: layers.ZeroPadding2D(((0, padding[m][0]), (0, padding[m][1])), name=f"{m}_fusion_padding")(x)
                if any(padding[m]) else x
                for m, x in maps.items()
            }

            prefix = f"{SPATIOTEMPORAL}_"
            method = "conv3d" if temporal_fusion == "conv3d_pool3d" else spatial_fusion
            fusion_name = f"{prefix}{fusion_layer}_{method}_fusion"
            own_map = maps[other]  # the kept tower's: never padded
            if temporal_fusion != "none":
                to_fuse = {m: StackAcrossTime(name=f"{m}_stack")([to_fuse[m], inputs[m]]) for m in to_fuse}
                own_map = (
                    StackAcrossTime(name=f"{other}_tower_stack")([maps[other], inputs[other]])
                    if any(padding[other]) else to_fuse[other]
                )
            if temporal_fusion == "conv3d_pool3d":
                fusion = Conv3DFusion(
                    identity_scales=fusion_identity_scales, init_profile=conv3d_init_profile, name=fusion_name
                )
            elif spatial_fusion == "conv":
                fusion = ConvFusion(identity_scales=fusion_identity_scales, name=fusion_name)
            else:
                fusion = _FUSION_LAYERS[spatial_fusion](name=fusion_name)
            fused_map = fusion([to_fuse["rgb"], to_fuse["flow"]])

            def tower(x, modality, prefix):
                spec = specs[modality]
                reference = inputs[modality]
                if temporal_fusion != "none":
                    x = Pooling3D(pool3d_size, name=f"{prefix}pool3d")(x)
                    reference = x
                    x = SegmentFold(name=f"{prefix}fold")(x)
                if spatial_fusion != "bilinear" or prefix != f"{SPATIOTEMPORAL}_":
                    x = spec.build_tail(x, cut_at[modality], prefix=prefix, frozen_bn=True)
                    x = stream_pooling(spec, x, prefix=prefix)
                rate = configs[modality]["dropout"] if dropout is None else dropout
                x = layers.Dropout(rate, name=f"{prefix}dropout")(x)
                x = layers.Dense(
                    num_classes, kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
                    bias_initializer="zeros", dtype="float32", name=f"{prefix}{CLASSIFIER}",
                )(x)
                return SegmentConsensus(dtype="float32", name=f"{prefix}consensus")([x, reference])

            outputs = {SPATIOTEMPORAL: tower(fused_map, fuse_into, prefix)}
            if towers == "keep_both":
                outputs[other] = tower(own_map, other, f"{other}_")
                outputs["fused"] = layers.Average(dtype="float32", name="fused")(
                    [outputs[SPATIOTEMPORAL], outputs[other]]
                )
            else:
                outputs["fused"] = layers.Identity(dtype="float32", name="fused")(outputs[SPATIOTEMPORAL])
            super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        # The towers start as the streams they continue (the fused one on the fused map).
        _fill_tower(copies[fuse_into], self, prefix, skip=(CLASSIFIER,) if spatial_fusion == "bilinear" else ())
        if towers == "keep_both":
            _fill_tower(copies[other], self, f"{other}_")

        self.rgb_stream_config = configs["rgb"]
        self.flow_stream_config = configs["flow"]
        self.fusion_layer = fusion_layer
        self.other_fusion_layer = other_fusion_layer
        self.spatial_fusion = spatial_fusion
        self.temporal_fusion = temporal_fusion
        self.towers = towers
        self.fuse_into = fuse_into
        self.num_snippets = num_snippets
        self.snippet_stride = snippet_stride
        self.pool3d_size = None if pool3d_size is None else tuple(pool3d_size)
        self.fusion_identity_scales = tuple(float(s) for s in fusion_identity_scales)
        self.conv3d_init_profile = conv3d_init_profile
        self.freeze_before_fusion = bool(freeze_before_fusion)
        self.dropout = dropout

    @staticmethod
    def _check_maps(maps, spatial_fusion: str, cut_at: dict, fuse_into: str) -> dict:
        """``{modality: (rows, columns)}`` of zeros each stream's map gets at the
        bottom and right for the fused path (Sec. 4.1), after the checks.

        Raises:
            ValueError: naming both maps' layers and shapes, when their height
                or width differ by more than :data:`MAX_FUSION_PADDING`, when
                the ``fuse_into`` stream's map would be the padded one, or when
                sum, max, conv and concat fusion get different channels.
        """
        shapes = {m: tuple(maps[m].shape[1:]) for m in ("rgb", "flow")}
        described = " and ".join(f"{m}'s map at {cut_at[m]!r} {shapes[m]}" for m in ("rgb", "flow"))
        padding = {}
        for m in ("rgb", "flow"):
            theirs = shapes[_OTHER[m]]
            padding[m] = tuple(max(0, int(t) - int(o)) for o, t in zip(shapes[m][:2], theirs[:2]))
        gap = max(max(p) for p in padding.values())
        if gap > MAX_FUSION_PADDING:
            raise ValueError(
                f"the streams' maps differ in height or width by {gap} > {MAX_FUSION_PADDING} pixels: {described}. "
                f"Fusion needs maps of the same resolution (Sec. 3.2); only a map up to {MAX_FUSION_PADDING} "
                f"rows / columns smaller is padded with zeros (Sec. 4.1 pads VGG-M's 13x13 ReLU5 to VGG-16's "
                f"14x14 ReLU5_3): pick layers of the same resolution"
            )
        if any(padding[fuse_into]):
            raise ValueError(
                f"the {fuse_into} stream's map, which the fused tower goes on from, is the smaller one: {described}. "
                f"Only the other stream's map is padded with zeros (Sec. 4.1): the fused tower's layers after "
                f"{cut_at[fuse_into]!r} take the map size they were trained on. Fuse into the stream with the "
                f"larger map (fuse_into={_OTHER[fuse_into]!r}) or pick layers of the same resolution"
            )
        if spatial_fusion in ("sum", "max", "conv") and shapes["rgb"][-1] != shapes["flow"][-1]:
            raise ValueError(
                f"{spatial_fusion} fusion needs the same channels D in both maps, got {described}"
            )
        if spatial_fusion == "concat" and shapes["rgb"][-1] != shapes["flow"][-1]:
            raise ValueError(
                f"concat fusion needs the same channels D in both maps (the fused tower's next layer starts from "
                f"the stream's, each input channel repeated for the 2D interleaved ones), got {described}"
            )
        return padding

    # ------------------------------------------------------------------ info
    @classmethod
    def from_backbone(
        cls,
        backbone: str = "vgg16",
        num_classes: int = 101,
        *,
        flow_backbone: Optional[str] = None,
        input_size: Optional[int] = None,
        new_length: int = 5,
        backbone_weights: Optional[str] = None,
        class_names: Optional[Sequence[str]] = None,
        **options,
    ) -> "ConvTwoStreamFusion":
        """A fresh fusion model over two new streams of ``backbone``.

        The streams are :class:`~keras_gated_tsn.models.TSN` models built with
        ``backbone_weights`` (e.g. ``"imagenet"``; the flow stream by
        cross-modality initialisation) or randomly; their configs are what
        the model records.

        Args:
            backbone: the RGB stream's registered backbone.
            num_classes: action classes.
            flow_backbone: the flow stream's backbone; default ``backbone``.
            input_size: crop side S; default the backbone's.
            new_length: L, flow frames per snippet.
            backbone_weights: weights of both streams' backbones, or None.
            class_names: optional names of the classes.
            **options: the other :class:`ConvTwoStreamFusion` arguments.

        Raises:
            ValueError: as :class:`~keras_gated_tsn.models.TSN` and
                :class:`ConvTwoStreamFusion`.
        """
        input_size = input_size or get_backbone(backbone).default_input_size
        shared = dict(
            num_classes=num_classes, num_segments=options.get("num_snippets", 5), input_size=input_size,
            new_length=new_length, backbone_weights=backbone_weights, class_names=class_names,
            dtype=options.get("dtype"),
        )
        rgb = TSN(backbone, "rgb", **shared)
        flow = TSN(flow_backbone or backbone, "flow", **shared)
        return cls(rgb, flow, **options)

    @property
    def backbone(self) -> str:
        """The RGB stream's backbone."""
        return str(self.rgb_stream_config["backbone"])

    @property
    def tower_outputs(self):
        """The outputs that take a loss: ``("spatiotemporal",)``, plus the kept
        tower's (``"flow"`` or ``"rgb"``) with ``towers="keep_both"``."""
        if self.towers == "keep_both":
            return (SPATIOTEMPORAL, _OTHER[self.fuse_into])
        return (SPATIOTEMPORAL,)

    # -------------------------------------------------------------- training
    def compile(self, optimizer="auto", loss="auto", loss_weights=None, metrics="auto", *, jit_compile="auto",
                **kwargs):
        """``keras.Model.compile`` with the paper's fine-tuning for what is ``"auto"``.

        Loss: cross-entropy on the pre-softmax scores (integer labels) of each
        tower, ``loss_weights`` 1 each (Sec. 3.4: "the losses of both streams
        are used for training"; one tower with ``"truncate"``). Metrics:
        top-1 ``accuracy`` of every output (``fused`` is the test-time
        prediction). Optimizer:
        :func:`~keras_gated_tsn.training.recipes.make_optimizer` at lr 1e-3
        (Sec. 3.5; lower it by 10 when validation accuracy saturates, e.g.
        with the recipes' callbacks). Under ``mixed_float16`` Keras wraps it
        in a ``LossScaleOptimizer``.

        Args:
            jit_compile: passed to ``keras.Model.compile`` (``"auto"``: XLA on
                a GPU only).
            **kwargs: the other ``keras.Model.compile`` arguments.
        """
        from keras_gated_tsn.training import recipes

        if optimizer == "auto":
            optimizer = recipes.make_optimizer(LEARNING_RATE)
        if loss == "auto":
            loss = {name: recipes.classification_loss() for name in self.tower_outputs}
        if loss_weights is None and isinstance(loss, dict):
            loss_weights = {name: 1.0 for name in loss}
        if metrics == "auto":
            metrics = {name: [recipes.accuracy_metric()] for name in self.output_names_in_order}
        super().compile(
            optimizer=optimizer, loss=loss, loss_weights=loss_weights, metrics=metrics, jit_compile=jit_compile,
            **kwargs,
        )

    @property
    def output_names_in_order(self):
        """Every output name: the towers' then ``fused``."""
        return self.tower_outputs + ("fused",)

    @property
    def label_outputs(self):
        """Plain labels go to every output (:class:`~keras_gated_tsn.models.common.PlainLabels`)."""
        return self.output_names_in_order

    # --------------------------------------------------------- serialization
    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "rgb_stream": dict(self.rgb_stream_config),
            "flow_stream": dict(self.flow_stream_config),
            "fusion_layer": self.fusion_layer,
            "other_fusion_layer": self.other_fusion_layer,
            "spatial_fusion": self.spatial_fusion,
            "temporal_fusion": self.temporal_fusion,
            "towers": self.towers,
            "fuse_into": self.fuse_into,
            "num_snippets": self.num_snippets,
            "snippet_stride": self.snippet_stride,
            "pool3d_size": None if self.pool3d_size is None else list(self.pool3d_size),
            "fusion_identity_scales": list(self.fusion_identity_scales),
            "conv3d_init_profile": self.conv3d_init_profile,
            "freeze_before_fusion": self.freeze_before_fusion,
            "dropout": self.dropout,
            "dtype": self.precision,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


__all__ = [
    "ConvTwoStreamFusion", "MAX_FUSION_PADDING", "SPATIAL_FUSIONS", "SPATIOTEMPORAL", "TEMPORAL_FUSIONS", "TOWERS",
    "last_conv_layer",
]
