"""One stream, one head per dataset: the two-stream ConvNets' multi-task learning.

Simonyan & Zisserman, "Two-Stream Convolutional Networks for Action
Recognition in Videos" (NIPS 2014), Sec. 4: the temporal net is trained on
UCF101 and HMDB51 together, "modified so that it has two softmax
classification layers on top of the last fully-connected layer: one [...]
HMDB-51 classification scores, the other one – the UCF-101 scores. Each of
the layers is equipped with its own loss function, which operates only on the
videos, coming from the respective dataset. The overall training loss is
computed as the sum of the individual tasks' losses."

Here that is a Keras multi-output model (one named output per dataset)
compiled with a loss per output, and
:func:`keras_gated_tsn.data.multitask.multitask_dataset`, which merges
the datasets' pipelines into batches whose per-output sample weights are 1 for
the videos of that output's dataset and 0 for the others: each head's loss
counts only its own videos, through plain ``fit()``.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import keras
from keras import layers

from keras_gated_tsn.backbones import get_backbone
from keras_gated_tsn.data.flow_stacking import as_flow_input
from keras_gated_tsn.layers import SegmentConsensus
from keras_gated_tsn.layers.preprocessing import MODALITIES
from keras_gated_tsn.models.common import (
    BuildsFromSpecs,
    RecordsBackboneWeights,
    check_int,
    check_ratio,
)
from keras_gated_tsn.models.tsn import CLASSIFIER, TSN, stream_trunk
from keras_gated_tsn.precision import precision_scope, resolve_precision
from keras_gated_tsn.weights.transfer import copy_weights_by_name


def _check_heads(heads) -> Dict[str, int]:
    if not isinstance(heads, Mapping) or not heads:
        raise ValueError(f"heads must be a non-empty mapping of dataset name -> number of classes, got {heads!r}")
    out = {}
    for name, classes in heads.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"a head's name must be an identifier (it names an output), got {name!r}")
        out[name] = check_int(f"heads[{name!r}]", classes, 1)
    return out


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class MultiTaskTSN(RecordsBackboneWeights, BuildsFromSpecs, keras.Model):
    """A TSN stream with one classifier and segmental consensus per dataset.

    Input: raw clips ``(B, K, S, S, C)`` as :class:`~keras_gated_tsn.models.TSN`
    takes them. Output: ``{dataset: (B, classes) float32}`` pre-softmax
    scores, one per head, all from the same backbone features (two-stream
    ConvNets Sec. 4). The heads are named ``fc-action_<dataset>``.

    Args:
        backbone, modality, num_segments, input_size, new_length, dropout,
        partial_bn, backbone_weights, flow_input, name, dtype: as for
            :class:`~keras_gated_tsn.models.TSN`.
        heads: ``{dataset name: number of classes}`` in output order, e.g.
            ``{"ucf101": 101, "hmdb51": 51}``; names are identifiers.
        class_names: optional ``{dataset name: [class names]}``.

    Raises:
        ValueError: for bad heads (quoted), an unknown backbone or modality,
            or class names that do not match a head's count.
    """

    def __init__(
        self,
        backbone: str = "cnn_m_2048_no_norm2",
        modality: str = "flow",
        heads: Optional[Mapping[str, int]] = None,
        num_segments: int = 1,
        input_size: int = 224,
        new_length: int = 10,
        dropout: Optional[float] = None,
        partial_bn: bool = True,
        backbone_weights: Optional[str] = None,
        class_names: Optional[Mapping[str, Sequence[str]]] = None,
        flow_input=None,
        name: Optional[str] = None,
        dtype=None,
        **kwargs,
    ):
        heads = _check_heads({"ucf101": 101, "hmdb51": 51} if heads is None else heads)
        spec = get_backbone(backbone)
        policy = resolve_precision(dtype)
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        check_int("num_segments", num_segments, 1)
        check_int("input_size", input_size, spec.min_input_size)
        check_int("new_length", new_length, 1)
        dropout = spec.stream_dropout[modality] if dropout is None else check_ratio("dropout", dropout)
        if class_names is not None:
            class_names = {k: [str(c) for c in v] for k, v in class_names.items()}
            for head, names in class_names.items():
                if head not in heads or len(names) != heads[head]:
                    raise ValueError(f"class_names[{head!r}] has {len(names)} names for a head of "
                                     f"{heads.get(head)} classes")
        flow_input = None if modality == "rgb" else as_flow_input(flow_input)
        if flow_input is not None:
            flow_input.check_length(int(new_length))
        channels = 3 if modality == "rgb" else 2 * int(new_length)
        with precision_scope(policy, warn=False):
            clip, features = stream_trunk(spec, modality, input_size, channels, dropout, backbone_weights)
            outputs = {}
            for head, classes in heads.items():
                scores = layers.Dense(
                    classes, kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
                    bias_initializer="zeros", dtype="float32", name=f"{CLASSIFIER}_{head}",
                )(features)
                outputs[head] = SegmentConsensus(dtype="float32", name=head)([scores, clip])
            super().__init__(inputs=clip, outputs=outputs,
                             name=name or f"multitask_{modality}_{backbone}", **kwargs)
        self.backbone = backbone
        self.modality = modality
        self.heads = heads
        self.num_segments = int(num_segments)
        self.input_size = int(input_size)
        self.new_length = int(new_length)
        self.dropout = float(dropout)
        self.backbone_weights = None if backbone_weights is None else str(backbone_weights)
        self.class_names = class_names
        self.flow_input = flow_input
        self.set_partial_bn(partial_bn)

    #: TSN's partial BN, as for :meth:`keras_gated_tsn.models.TSN.set_partial_bn`.
    set_partial_bn = TSN.set_partial_bn

    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """``keras.Model.compile`` with, for what is ``"auto"``: the stream's
        Caffe SGD recipe, a cross-entropy per head (summed: loss weights 1),
        and each head's accuracy as a *weighted* metric, so that it counts only
        its own dataset's videos (the sample weights of
        :func:`~keras_gated_tsn.data.multitask.multitask_dataset`)."""
        from keras_gated_tsn.training import recipes

        if optimizer == "auto":
            optimizer = recipes.make_optimizer(recipes.stage_recipe(self.modality).learning_rate)
        if loss == "auto":
            loss = {head: recipes.classification_loss() for head in self.heads}
        if metrics == "auto":
            kwargs.setdefault("weighted_metrics", {head: [recipes.accuracy_metric()] for head in self.heads})
            metrics = None
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def head_stream(self, head: str) -> TSN:
        """One head as a plain stream: a :class:`~keras_gated_tsn.models.TSN`
        of this model's backbone, modality, segments, input size, flow length,
        dropout, partial BN, flow input and dtype policy, scoring ``head``'s
        classes (with its class names), holding the shared trunk's weights and
        ``fc-action_<head>`` as its classifier ``fc-action``. Its scores are
        this model's ``head`` output; it is evaluated, fused and gated like any
        stream (``gated-tsn evaluate --flow multitask.keras --head ucf101``).
        Not compiled; ``backbone_weights`` is kept as provenance.

        Raises:
            ValueError: for a head this model does not have (naming its heads).
        """
        if head not in self.heads:
            raise ValueError(f"{self.name!r} has no head {head!r}; its heads are {list(self.heads)}")
        names = (self.class_names or {}).get(head)
        stream = TSN(
            self.backbone, self.modality, num_classes=self.heads[head], num_segments=self.num_segments,
            input_size=self.input_size, new_length=self.new_length, dropout=self.dropout,
            partial_bn=self.partial_bn, class_names=names,
            flow_input=None if self.modality == "rgb" else self.flow_input,
            name=f"tsn_{self.modality}_{self.backbone}_k{self.num_segments}_{head}", dtype=self.precision,
        )
        stream.backbone_weights = self.backbone_weights
        filled = set(copy_weights_by_name(self, stream))  # the shared trunk
        stream.get_layer(CLASSIFIER).set_weights(self.get_layer(f"{CLASSIFIER}_{head}").get_weights())
        missing = [layer.name for layer in stream.layers
                   if layer.weights and layer.name not in filled and layer.name != CLASSIFIER]
        if missing:  # the two are built by the same code: a bug, not bad input
            raise RuntimeError(f"layers {missing} of the stream have no namesake in {self.name!r}")
        return stream

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": self.backbone,
            "modality": self.modality,
            "heads": dict(self.heads),
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


__all__ = ["MultiTaskTSN"]
