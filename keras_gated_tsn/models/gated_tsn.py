"""The gated TSN: two frozen streams and the gating ConvNet (gated TSN paper,
Sec. III, Fig. 1; the authors' ``gating_three_2`` prototxt)."""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np
from keras import layers

from keras_gated_tsn.backbones import backbone_of, get_backbone_module
from keras_gated_tsn.layers import GatedFusion, SegmentConsensus
from keras_gated_tsn.models.tsn import stream_pooling

FEATURE_FUSIONS = ("conv", "concat")
GATE_ACTIVATIONS = ("relu", "softmax")
#: Output names of the gated model, in order.
OUTPUTS = ("fused", "rgb", "flow", "gating_classifier", "fusion_weights")


def GatedTSN(
    rgb_model: keras.Model,
    flow_model: keras.Model,
    fusion_layer: Optional[str] = None,
    feature_fusion: str = "conv",
    gate_activation: str = "relu",
    dropout: float = 0.8,
    fusion_initializer: str = "xavier",
    init_gate_from_rgb: bool = True,
    name: str = "gated_tsn",
) -> keras.Model:
    """Gated TSN: adaptive, per-video fusion weights for the two streams.

    The two TSN streams are copied into the model (the caller's models are left
    as they are), frozen, and run in inference mode.
    Their feature maps at ``fusion_layer`` (the paper's "feature snippets")
    are combined — concatenated along channels (flow first, then RGB, as in
    the authors' prototxt) and, for ``"conv"`` fusion, reduced back to D
    channels by a 1x1 convolution (eqs. (8)-(9)). The gating ConvNet is the
    backbone's layers after ``fusion_layer`` with its own weights (copied from
    the RGB stream when ``init_gate_from_rgb``; BN in inference mode with
    trainable scale/shift, like Caffe's frozen BN), then global average
    pooling, dropout and two heads, each averaged over the segments:

    * ``gating_fc-action`` (2 units) → consensus → ReLU (or softmax): the
      fusion weights ``(w_rgb, w_flow)``, eq. (1); with ReLU its bias starts
      at 0.5 so that training starts from 1:1 averaging;
    * ``gating_fc_classify`` (C units) → consensus: the gating ConvNet's own
      class scores ``G_c``, eq. (3).

    Called on ``{"rgb": (B, K, S, S, 3), "flow": (B, K, S, S, 2L)}`` raw
    clips (see :func:`keras_gated_tsn.models.TSN`) it returns a dict:

    * ``fused``: ``(B, C)`` ``w_rgb·G_rgb + w_flow·G_flow``, pre-softmax (eq. (2));
    * ``rgb``, ``flow``: ``(B, C)`` the streams' pre-softmax scores;
    * ``gating_classifier``: ``(B, C)`` pre-softmax ``G_c``;
    * ``fusion_weights``: ``(B, 2)`` non-negative, order (rgb, flow).

    Train it with the multi-task loss of eq. (4) —
    ``CE(fused) + λ·CE(gating_classifier)`` — as per-output losses with
    ``loss_weights`` (see :func:`keras_gated_tsn.training.compile_gated`).

    Args:
        rgb_model: a trained RGB :func:`~keras_gated_tsn.models.TSN` stream.
        flow_model: a trained flow stream with the same backbone, input size
            and classes.
        fusion_layer: a name in the backbone's ``FEATURE_LAYERS``; default
            the backbone's ``DEFAULT_FUSION_LAYER``: ``inception_4e_output``
            for BN-Inception (the paper's best, Table II), the layer before
            the last conv layer for CaffeNet and VGG16 (Sec. IV-B).
        feature_fusion: ``"conv"`` (1x1 conv 2D→D, the paper's choice) or
            ``"concat"`` (the 2D channels go straight into the gating ConvNet,
            whose first layers then take 2D input channels).
        gate_activation: ``"relu"`` (eq. (6), the paper's choice) or
            ``"softmax"`` (eq. (7)).
        dropout: ratio before the two heads (paper: 0.8).
        fusion_initializer: kernel initialiser of the conv fusion:
            ``"xavier"`` (Caffe's xavier = Keras ``VarianceScaling(1,
            "fan_in", "uniform")``, bias 0.2, as the prototxt) or
            ``"identity"`` (``0.5·[I; I]``, bias 0: starts as the average of
            the two streams' maps, Feichtenhofer et al. 2016 Sec. 3.1).
        init_gate_from_rgb: copy the RGB stream's weights into the gating
            ConvNet (the paper initialises it from ImageNet, the streams'
            starting point; the RGB stream is the closest thing at hand). With
            concatenation fusion, the first layers' kernels are the RGB
            kernel halved for each of the two stacked inputs (for a grouped
            convolution, CaffeNet's ``conv5``, the two groups then see the
            flow and the RGB maps separately, so this is only a starting
            point, not an average of the two).
        name: model name.

    Returns:
        A functional ``keras.Model`` with two inputs (``rgb``, ``flow``) and
        the five named outputs above.

    Raises:
        ValueError: for an unknown option, a fusion layer that is not a
            feature layer of the backbone, or streams that do not match.
    """
    if feature_fusion not in FEATURE_FUSIONS:
        raise ValueError(f"feature_fusion must be one of {FEATURE_FUSIONS}, got {feature_fusion!r}")
    if gate_activation not in GATE_ACTIVATIONS:
        raise ValueError(f"gate_activation must be one of {GATE_ACTIVATIONS}, got {gate_activation!r}")
    if fusion_initializer not in ("xavier", "identity"):
        raise ValueError(f"fusion_initializer must be 'xavier' or 'identity', got {fusion_initializer!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    backbone = backbone_of(rgb_model)
    if backbone_of(flow_model) != backbone:
        raise ValueError("the RGB and flow streams must use the same backbone")
    module = get_backbone_module(backbone)
    fusion_layer = fusion_layer or module.DEFAULT_FUSION_LAYER
    if fusion_layer not in module.FEATURE_LAYERS:
        raise ValueError(
            f"fusion_layer {fusion_layer!r} is not a feature layer of {backbone}; "
            f"valid: {list(module.FEATURE_LAYERS)}"
        )
    num_classes = rgb_model.output.shape[-1]
    if flow_model.output.shape[-1] != num_classes:
        raise ValueError(
            f"streams disagree on classes: rgb {num_classes}, flow {flow_model.output.shape[-1]}"
        )
    if rgb_model.input.shape[2:4] != flow_model.input.shape[2:4]:
        raise ValueError(
            f"streams disagree on input size: rgb {rgb_model.input.shape}, flow {flow_model.input.shape}"
        )

    rgb_in = keras.Input(shape=rgb_model.input.shape[1:], name="rgb")
    flow_in = keras.Input(shape=flow_model.input.shape[1:], name="flow")
    streams = {}
    for modality, model, clip in (("rgb", rgb_model, rgb_in), ("flow", flow_model, flow_in)):
        # The gated model owns a frozen copy of each stream: freezing the
        # caller's own layers would stop them from training elsewhere.
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        stream = keras.Model(
            copy.input,
            [copy.get_layer(fusion_layer).output, copy.output],
            name=f"{modality}_stream",
        )
        stream.trainable = False
        streams[modality] = stream(clip, training=False)
    (rgb_features, rgb_scores), (flow_features, flow_scores) = streams["rgb"], streams["flow"]

    x = layers.Concatenate(axis=-1, name=f"gating_{fusion_layer}_concat")(
        [flow_features, rgb_features]
    )
    if feature_fusion == "conv":
        channels = module.FEATURE_LAYERS[fusion_layer][0]
        if fusion_initializer == "xavier":
            kernel_init = keras.initializers.VarianceScaling(1.0, "fan_in", "uniform")
            bias_init = keras.initializers.Constant(0.2)
        else:
            eye = np.eye(channels, dtype="float32") * 0.5
            kernel_init = keras.initializers.Constant(np.concatenate([eye, eye])[None, None])
            bias_init = "zeros"
        x = layers.Conv2D(
            channels, 1, kernel_initializer=kernel_init, bias_initializer=bias_init,
            name=f"gating_{fusion_layer}_conv_fusion",
        )(x)
    x = module.build_tail(x, fusion_layer, prefix="gating_", bn_training=False)
    x = stream_pooling(module, x, prefix="gating_")
    x = layers.Dropout(dropout, name="gating_dropout")(x)
    head_init = keras.initializers.RandomNormal(stddev=0.001)
    # Bias 0.5 (ReLU gate): the gate starts as 1:1 averaging, and no sample
    # starts with both weights at ReLU's dead zero (the prototxt's bias 0
    # does not guarantee that).
    weights_bias = keras.initializers.Constant(0.5 if gate_activation == "relu" else 0.0)
    weights = layers.Dense(
        2, kernel_initializer=head_init, bias_initializer=weights_bias, name="gating_fc-action"
    )(x)
    weights = SegmentConsensus(name="gating_segment_consensus")([weights, rgb_in])
    weights = layers.Activation(gate_activation, name="fusion_weights")(weights)
    classify = layers.Dense(num_classes, kernel_initializer=head_init, name="gating_fc_classify")(x)
    classify = SegmentConsensus(name="gating_classifier")([classify, rgb_in])
    fused = GatedFusion(name="fused")([weights, rgb_scores, flow_scores])
    rgb_out = layers.Identity(name="rgb_scores")(rgb_scores)
    flow_out = layers.Identity(name="flow_scores")(flow_scores)
    model = keras.Model(
        {"rgb": rgb_in, "flow": flow_in},
        {
            "fused": fused,
            "rgb": rgb_out,
            "flow": flow_out,
            "gating_classifier": classify,
            "fusion_weights": weights,
        },
        name=name,
    )
    if init_gate_from_rgb:
        _init_gate(model, rgb_model)
    return model


_GATE_HEADS = ("gating_fc-action", "gating_fc_classify")


def _init_gate(gated: keras.Model, rgb_model: keras.Model) -> None:
    """Copies RGB-stream weights into the gating ConvNet's ``gating_*`` twins."""
    for layer in gated.layers:
        if not layer.name.startswith("gating_") or not layer.weights or layer.name in _GATE_HEADS:
            continue
        source_name = layer.name[len("gating_") :]
        try:
            source = rgb_model.get_layer(source_name)
        except ValueError:
            continue  # new layers: conv fusion, the two heads
        new = []
        for mine, theirs in zip(layer.get_weights(), source.get_weights()):
            if mine.shape == theirs.shape:
                new.append(theirs)
            elif mine.ndim == 4 and mine.shape[2] == 2 * theirs.shape[2]:
                new.append(np.concatenate([theirs, theirs], axis=2) * 0.5)
            else:
                raise ValueError(
                    f"gating layer {layer.name!r}: cannot initialise {mine.shape} from "
                    f"{source_name!r} {theirs.shape}"
                )
        layer.set_weights(new)
