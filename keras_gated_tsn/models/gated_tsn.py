"""The gated TSN: two frozen streams and the gating ConvNet (gated TSN paper,
Sec. III, Fig. 1; the authors' ``gating_three_2`` prototxts)."""

from __future__ import annotations

from typing import Optional

import keras
import numpy as np
from keras import layers

from keras_gated_tsn.backbones import get_backbone
from keras_gated_tsn.layers import GatedFusion, SegmentConsensus
from keras_gated_tsn.models.common import (
    BuildsFromSpecs,
    PlainLabels,
    TwoStreams,
    check_choice,
    check_ratio,
)
from keras_gated_tsn.models.tsn import CLASSIFIER, TSN, StreamLike, stream_config, stream_pooling
from keras_gated_tsn.precision import precision_scope, resolve_precision
from keras_gated_tsn.weights.transfer import copy_weights_by_name

#: How the two streams' feature maps enter the gating ConvNet.
FEATURE_FUSIONS = ("conv", "concat", "concat_height")
GATE_ACTIVATIONS = ("relu", "softmax")
FUSION_INITIALIZERS = ("xavier", "identity")
#: Output names of the gated model, in order.
OUTPUTS = ("fused", "rgb", "flow", "gating_classifier", "fusion_weights")
#: Outputs that carry class scores (pre-softmax) and take a cross-entropy loss or an accuracy.
SCORED_OUTPUTS = ("fused", "gating_classifier", "rgb", "flow")
#: The metrics of the mean fusion weights (w_rgb, w_flow) that fit() logs per epoch.
WEIGHT_METRICS = ("rgb_weight", "flow_weight")

def _frozen_stream(
    config: dict, source: Optional[TSN], fusion_layer: str, stream_dropout: bool, dtype: str
) -> keras.Model:
    """A frozen copy of a stream that returns ``[features at fusion_layer, scores]``.

    The copy is built from the stream's config (without its dropout unless
    ``stream_dropout``) under the gated model's dtype policy ``dtype``,
    whatever policy the stream was built under (variables are float32 under
    every policy, so the weights copy either way), and takes ``source``'s
    weights by layer name; the caller's model is left as it is.
    """
    modality = config["modality"]
    copy_config = {**config, "name": f"{modality}_tsn", "backbone_weights": None, "dtype": dtype}
    if not stream_dropout:
        copy_config["dropout"] = 0.0
    copy = TSN(**copy_config)
    if source is not None:
        copy_weights_by_name(source, copy)
    stream = keras.Model(
        copy.input, [copy.get_layer(fusion_layer).output, copy.output], name=f"{modality}_stream"
    )
    stream.trainable = False
    return stream


def _fusion_conv(channels_in: int, channels: int, initializer: str, name: str) -> layers.Conv2D:
    """The 1x1 convolution of conv fusion (2D -> D) or of the authors'
    height-concatenation network (D -> D)."""
    if initializer == "xavier":
        # Caffe's xavier filler: uniform, variance 1 / fan_in; the prototxt's bias 0.2.
        kernel_init = keras.initializers.VarianceScaling(1.0, "fan_in", "uniform")
        bias_init = keras.initializers.Constant(0.2)
    else:
        copies = channels_in // channels
        eye = np.eye(channels, dtype="float32") / copies
        kernel_init = keras.initializers.Constant(np.concatenate([eye] * copies)[None, None])
        bias_init = "zeros"
    return layers.Conv2D(channels, 1, kernel_initializer=kernel_init, bias_initializer=bias_init, name=name)


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class GatedTSN(TwoStreams, PlainLabels, BuildsFromSpecs, keras.Model):
    """Gated TSN: adaptive, per-video fusion weights for the two streams.

    The two TSN streams are rebuilt inside the model from their configs, take
    the given streams' weights (the caller's models are left as they are),
    and are frozen: their BN layers run in inference mode, and by default
    their dropout is off, so the gate learns on the scores it will see at
    test time (``stream_dropout=True`` keeps it on while training, as the
    authors' Caffe network did). Their feature maps at ``fusion_layer`` (the
    paper's "feature snippets") are combined by ``feature_fusion`` and go
    through the gating ConvNet: the backbone's layers after ``fusion_layer``
    with their own weights (its BN layers are
    :class:`~keras_gated_tsn.layers.FrozenBatchNormalization`: global
    statistics, trained scale and shift, the prototxt's ``frozen: true``),
    pooling, dropout and two heads, each averaged over the segments:

    * ``gating_fc-action`` (2 units) → consensus → ReLU (or softmax): the
      fusion weights ``(w_rgb, w_flow)``, eq. (1); with ReLU its bias starts
      at 0.5 so that training starts from 1:1 averaging;
    * ``gating_fc_classify`` (C units) → consensus: the gating ConvNet's own
      class scores ``G_c``, eq. (3).

    Called on ``{"rgb": (B, K, S, S, 3), "flow": (B, K, S, S, 2L)}`` raw
    clips (see :class:`~keras_gated_tsn.models.TSN`) it returns a dict:

    * ``fused``: ``(B, C)`` ``w_rgb·G_rgb + w_flow·G_flow``, pre-softmax (eq. (2));
    * ``rgb``, ``flow``: ``(B, C)`` the streams' pre-softmax scores;
    * ``gating_classifier``: ``(B, C)`` pre-softmax ``G_c``;
    * ``fusion_weights``: ``(B, 2)`` float, non-negative, order (rgb, flow).

    ``compile()`` sets the multi-task loss of eq. (4),
    ``CE(fused) + λ·CE(gating_classifier)``, as per-output losses with loss
    weights 1 and λ (``gating_loss_weight``); ``fit(clips, labels)`` takes
    plain integer labels (every scored output is compared with them).

    Args:
        rgb_stream: the trained RGB :class:`~keras_gated_tsn.models.TSN`
            (or its config, which builds it with untrained weights).
        flow_stream: the trained flow stream (or its config), same classes
            and input size; same backbone, or a variant of it with the same
            fusion layer (``cnn_m_2048_no_norm2``, the two-stream ConvNets'
            temporal net, beside a ``cnn_m_2048`` RGB stream). The gating
            ConvNet is built from the RGB stream's backbone.
        fusion_layer: a feature layer of the backbone; default the
            backbone's ``default_fusion_layer``: ``inception_4e_output`` for
            BN-Inception (the paper's best, Table II), the layer before the
            last conv layer for CaffeNet (``conv4``) and VGG16
            (``block5_conv2``), Sec. IV-B.
        feature_fusion:

            * ``"conv"``: the two maps stacked along channels (flow first,
              then RGB, as in the prototxt) and reduced back to D channels by
              a 1x1 convolution (eqs. (8)-(9); the paper's choice);
            * ``"concat"``: stacked along channels only (eq. (8)); the gating
              ConvNet's first layers take 2D input channels;
            * ``"concat_height"``: the authors' concatenation network
              (``gating_three_2_concat``, Tables I and II's "concatenation"
              rows): the two maps stacked along the height (flow on top), a
              1x1 convolution D → D, the trunk, then average pooling with
              one window per stream's half (Caffe: kernel 7, stride 7 at
              224), so the heads see the two halves' features side by side.
        gate_activation: ``"relu"`` (eq. (6), the paper's choice) or
            ``"softmax"`` (eq. (7)).
        dropout: ratio before the two heads (paper Sec. IV-A: 0.8; the
            authors' conv-fusion prototxt used 0.9).
        fusion_initializer: kernel initialiser of the fusion convolution:
            ``"xavier"`` (Caffe's xavier, bias 0.2, as the prototxt) or
            ``"identity"`` (``[I; I] / 2`` for conv fusion, ``I`` for
            ``concat_height``; bias 0: starts as the average of the two
            streams' maps, Feichtenhofer et al. 2016 Sec. 3.1).
        gate_init: where the gating ConvNet's trunk starts: ``"rgb"`` (the
            RGB stream's layers), ``"imagenet"`` or a backbone weights file
            (Algorithm 1, input 2: "the gating ConvNet pretrained on
            ImageNet"), or None (random). With channel concatenation the
            first layers' kernels are the source kernel halved for each of
            the two stacked inputs. Recorded in the config for provenance; a
            loaded model takes its weights from its file.
        stream_dropout: keep the frozen streams' dropout active while the
            gate trains (the prototxt's behaviour); default off.
        name: model name.
        dtype: the Keras dtype policy of the whole model, the frozen stream
            copies included, one of :data:`keras_gated_tsn.precision.PRECISIONS`;
            default None: the global policy
            (:func:`keras_gated_tsn.precision.precision_scope`). The streams'
            own policies do not matter (streams trained in float32 go into a
            mixed gate and vice versa; the stream configs are kept as given).
            Recorded in the config, so a loaded model keeps it. Under a mixed
            policy the variables and BN statistics stay float32, the streams'
            backbones and the gating ConvNet's trunk compute in float16 /
            bfloat16, and the classifiers, heads, consensus, fusion weights
            and every output are float32.

    Raises:
        ValueError: for an unknown option, a fusion layer that is not a
            feature layer of the backbone, streams that do not match, or a
            ``dtype`` (or a global policy) not in ``PRECISIONS``.
        FileNotFoundError: for ``gate_init="imagenet"`` when the backbone's
            ImageNet file is not on disk.
    """

    #: Plain labels go to every output (the loss and metrics pick theirs).
    label_outputs = OUTPUTS

    def __init__(
        self,
        rgb_stream: StreamLike,
        flow_stream: StreamLike,
        fusion_layer: Optional[str] = None,
        feature_fusion: str = "conv",
        gate_activation: str = "relu",
        dropout: float = 0.8,
        fusion_initializer: str = "xavier",
        gate_init: Optional[str] = "rgb",
        stream_dropout: bool = False,
        name: str = "gated_tsn",
        dtype=None,
        **kwargs,
    ):
        policy = resolve_precision(dtype)
        check_choice("feature_fusion", feature_fusion, FEATURE_FUSIONS)
        check_choice("gate_activation", gate_activation, GATE_ACTIVATIONS)
        check_choice("fusion_initializer", fusion_initializer, FUSION_INITIALIZERS)
        dropout = check_ratio("dropout", dropout)
        rgb_config = stream_config(rgb_stream, "rgb")
        flow_config = stream_config(flow_stream, "flow")
        for key in ("num_classes", "input_size"):
            if rgb_config[key] != flow_config[key]:
                raise ValueError(
                    f"the streams disagree on {key}: rgb {rgb_config[key]!r}, flow {flow_config[key]!r}"
                )
        names = {key: config.get("class_names") for key, config in (("rgb", rgb_config), ("flow", flow_config))}
        if None not in names.values() and list(names["rgb"]) != list(names["flow"]):
            difference = next(i for i, (a, b) in enumerate(zip(names["rgb"], names["flow"])) if a != b)
            raise ValueError(
                f"the streams disagree on the class names: class {difference} is {names['rgb'][difference]!r} "
                f"for rgb, {names['flow'][difference]!r} for flow"
            )
        spec = get_backbone(rgb_config["backbone"])
        fusion_layer = spec.check_feature_layer(fusion_layer or spec.default_fusion_layer)
        if rgb_config["backbone"] != flow_config["backbone"]:
            # Two variants of one architecture (the two-stream ConvNets' temporal net drops
            # norm2): allowed where both have the fusion layer with the same maps.
            flow_spec = get_backbone(flow_config["backbone"])
            if flow_spec.feature_layers.get(fusion_layer) != spec.feature_layers[fusion_layer]:
                raise ValueError(
                    f"the streams disagree on backbone: rgb {rgb_config['backbone']!r}, flow "
                    f"{flow_config['backbone']!r}, and the flow backbone has no {fusion_layer!r} with the rgb "
                    f"one's channels and stride {spec.feature_layers[fusion_layer]}"
                )
        num_classes = rgb_config["num_classes"]

        with precision_scope(policy, warn=False):
            frozen = {
                modality: _frozen_stream(
                    config, stream if isinstance(stream, TSN) else None, fusion_layer, stream_dropout, policy
                )
                for modality, config, stream in (("rgb", rgb_config, rgb_stream), ("flow", flow_config, flow_stream))
            }
            inputs = {
                modality: keras.Input(shape=stream.input.shape[1:], name=modality)
                for modality, stream in frozen.items()
            }
            rgb_features, rgb_scores = frozen["rgb"](inputs["rgb"])
            flow_features, flow_scores = frozen["flow"](inputs["flow"])

            channels = spec.feature_layers[fusion_layer][0]
            axis = 1 if feature_fusion == "concat_height" else -1
            x = layers.Concatenate(axis=axis, name=f"gating_{fusion_layer}_concat")([flow_features, rgb_features])
            if feature_fusion != "concat":
                x = _fusion_conv(
                    x.shape[-1], channels, fusion_initializer, name=f"gating_{fusion_layer}_conv_fusion"
                )(x)
            x = spec.build_tail(x, fusion_layer, prefix="gating_", frozen_bn=True)
            if feature_fusion == "concat_height" and spec.stream_pooling == "avg":
                height, width = x.shape[1], x.shape[2]
                if height is None or width is None or height % 2:
                    raise ValueError(
                        f"concat_height fusion needs an even, known map height after the gating ConvNet, got "
                        f"{height}x{width} (fusion layer {fusion_layer!r}, input size {rgb_config['input_size']})"
                    )
                window = (height // 2, width)
                x = layers.AveragePooling2D(window, strides=window, name="gating_global_pool")(x)
                x = layers.Flatten(name="gating_flatten")(x)
            else:
                x = stream_pooling(spec, x, prefix="gating_")
            x = layers.Dropout(dropout, name="gating_dropout")(x)
            head_init = keras.initializers.RandomNormal(stddev=0.001)
            # Bias 0.5 (ReLU gate): the gate starts as 1:1 averaging, and no sample
            # starts with both weights at ReLU's dead zero (the prototxt's bias 0
            # does not guarantee that).
            weights_bias = keras.initializers.Constant(0.5 if gate_activation == "relu" else 0.0)
            # The two heads, their consensus and every output compute in float32 under
            # every policy (the streams' scores are float32 already): fusion weights and
            # scores are what the losses, eq. (2) and the score files see.
            weights = layers.Dense(
                2, kernel_initializer=head_init, bias_initializer=weights_bias, dtype="float32",
                name="gating_fc-action",
            )(x)
            weights = SegmentConsensus(dtype="float32", name="gating_segment_consensus")([weights, inputs["rgb"]])
            weights = layers.Activation(gate_activation, dtype="float32", name="fusion_weights")(weights)
            classify = layers.Dense(
                num_classes, kernel_initializer=head_init, dtype="float32", name="gating_fc_classify"
            )(x)
            classify = SegmentConsensus(dtype="float32", name="gating_classifier")([classify, inputs["rgb"]])
            fused = GatedFusion(dtype="float32", name="fused")([weights, rgb_scores, flow_scores])
            outputs = {
                "fused": fused,
                "rgb": layers.Identity(dtype="float32", name="rgb_scores")(rgb_scores),
                "flow": layers.Identity(dtype="float32", name="flow_scores")(flow_scores),
                "gating_classifier": classify,
                "fusion_weights": weights,
            }
            super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.rgb_stream_config = rgb_config
        self.flow_stream_config = flow_config
        self.backbone = spec.name
        self.fusion_layer = fusion_layer
        self.feature_fusion = feature_fusion
        self.gate_activation = gate_activation
        self.dropout = dropout
        self.fusion_initializer = fusion_initializer
        self.stream_dropout = bool(stream_dropout)
        self.gate_init = None if gate_init is None else str(gate_init)
        # The mean fusion weights of an epoch, logged by fit() and evaluate().
        self.rgb_weight_tracker = keras.metrics.Mean(name=WEIGHT_METRICS[0])
        self.flow_weight_tracker = keras.metrics.Mean(name=WEIGHT_METRICS[1])
        if gate_init == "rgb":
            if isinstance(rgb_stream, TSN):
                self._init_gate_from(rgb_stream)
        elif gate_init is not None:
            self._init_gate_from(
                spec.builder(
                    include_top=False, weights=gate_init,
                    input_shape=(rgb_config["input_size"], rgb_config["input_size"], 3),
                )
            )

    # ------------------------------------------------------------------ info
    def _init_gate_from(self, source: keras.Model) -> None:
        """Copies ``source``'s weights into the gating ConvNet's ``gating_*`` twins
        (none when the fusion layer is the backbone's last: the trunk is empty)."""
        copy_weights_by_name(source, self, prefix="gating_", skip=(CLASSIFIER,), channel_rule="stacked")

    # -------------------------------------------------------------- training
    def compile(self, optimizer="auto", loss="auto", loss_weights=None, metrics="auto", *,
                gating_loss_weight: float = 1.0, jit_compile="auto", **kwargs):
        """``keras.Model.compile`` with eq. (4) for what is ``"auto"``.

        Loss ``CE(y, fused) + λ·CE(y, gating_classifier)`` on pre-softmax
        scores with integer labels: per-output cross-entropies with
        ``loss_weights`` ``{"fused": 1, "gating_classifier": λ}``. λ = 0 is
        stage 2 of Algorithm 1 (fusion weights only), λ = 1 stage 3 (paper
        Sec. IV-A; the authors' conv-fusion prototxt used 0.1). Metrics: top-1
        ``accuracy`` of ``fused``, the gating classifier and each stream. The
        optimizer: :func:`~keras_gated_tsn.training.recipes.make_optimizer`
        with the gate stage's learning rate and no gradient accumulation (the
        authors' 4 x 32 is ``make_optimizer(iter_size=32)`` with batches of 4,
        as ``gated-tsn train --stage gate`` does by default). Whatever is
        compiled, ``fit()`` and ``evaluate()`` also log the mean fusion
        weights ``rgb_weight`` and ``flow_weight`` (see :meth:`compute_metrics`).
        Under ``mixed_float16`` Keras wraps the optimizer in a
        ``LossScaleOptimizer``.

        Args:
            gating_loss_weight: λ >= 0 (ignored when ``loss_weights`` is given).
            jit_compile: passed to ``keras.Model.compile``: True compiles the
                train, test and predict steps with XLA; ``"auto"`` is XLA on
                a GPU and not on a CPU-only machine.
            **kwargs: the other ``keras.Model.compile`` arguments.

        Raises:
            ValueError: for a negative λ.
        """
        from keras_gated_tsn.training import recipes

        if gating_loss_weight < 0:
            raise ValueError(f"gating_loss_weight (lambda) must be >= 0, got {gating_loss_weight!r}")
        if optimizer == "auto":
            optimizer = recipes.make_optimizer(recipes.stage_recipe("gate").learning_rate)
        if loss == "auto":
            loss = {"fused": recipes.classification_loss(), "gating_classifier": recipes.classification_loss()}
        if loss_weights is None and isinstance(loss, dict):
            loss_weights = {"fused": 1.0, "gating_classifier": float(gating_loss_weight)}
        if metrics == "auto":
            metrics = {name: [recipes.accuracy_metric()] for name in SCORED_OUTPUTS}
        super().compile(
            optimizer=optimizer, loss=loss, loss_weights=loss_weights, metrics=metrics, jit_compile=jit_compile,
            **kwargs,
        )

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """The compiled metrics with plain labels, and the mean fusion weights.

        Besides the compiled metrics, every train and test step adds the
        batch's ``fusion_weights`` to two running means, ``rgb_weight`` and
        ``flow_weight`` (the mean ``w_rgb`` and ``w_flow`` of eq. (2) over the
        epoch's videos, weighted by ``sample_weight`` if given), so ``fit()``
        history, ``CSVLogger`` and ``TensorBoard`` show how the gate weighs
        the streams (``val_rgb_weight``, ``val_flow_weight`` on validation
        data). Keras resets them at the start of every epoch and evaluation.
        """
        weights = y_pred["fusion_weights"]
        self.rgb_weight_tracker.update_state(weights[:, 0], sample_weight=sample_weight)
        self.flow_weight_tracker.update_state(weights[:, 1], sample_weight=sample_weight)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    # --------------------------------------------------------- serialization
    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "rgb_stream": dict(self.rgb_stream_config),
            "flow_stream": dict(self.flow_stream_config),
            "fusion_layer": self.fusion_layer,
            "feature_fusion": self.feature_fusion,
            "gate_activation": self.gate_activation,
            "dropout": self.dropout,
            "fusion_initializer": self.fusion_initializer,
            "gate_init": self.gate_init,
            "stream_dropout": self.stream_dropout,
            "dtype": self.precision,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # The weights come from the saved file: no initialisation from elsewhere.
        provenance = config.pop("gate_init", None)
        model = cls(**config, gate_init=None)
        model.gate_init = provenance
        return model
