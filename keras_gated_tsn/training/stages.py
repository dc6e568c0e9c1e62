"""One stage of Algorithm 1 with ``fit()``: :class:`StageConfig` and :func:`run_stage`.

Algorithm 1 of the gated TSN paper (Sec. III-B, IV-A):

1. ``rgb`` / ``flow``: train the two TSN streams (cross-modality
   initialisation and partial BN for the flow stream);
2. ``gate``: freeze the streams, train the gating ConvNet for the fusion
   weights only (λ = 0) until validation accuracy stops rising;
3. ``joint``: go on with the multi-task loss of eq. (4), λ = 1 (the authors'
   conv-fusion Caffe solver used 0.1).

The other systems of the papers are stages of the same runner (same
``fit()``, schedule, logs, resumption): ``conv-fusion`` (Feichtenhofer et
al. 2016, a :class:`~keras_gated_tsn.models.ConvTwoStreamFusion` of two
trained streams), ``gcf`` (Hsiao et al. 2020, a
:class:`~keras_gated_tsn.models.GCFNet` on clips) and ``multitask``
(Simonyan & Zisserman 2014 Sec. 4, a
:class:`~keras_gated_tsn.models.MultiTaskTSN` over ``--data`` and each
``--also-data``).

Each stage's defaults (learning rate, batch, accumulation, λ) come from
:data:`~keras_gated_tsn.training.recipes.STAGE_RECIPES`. :class:`StageConfig`
fields carry their command-line flag and help in their metadata, so
``gated-tsn train`` is generated from them.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import sys
from typing import Callable, Dict, List, Optional

import keras

from keras_gated_tsn.atomic import save_atomically
from keras_gated_tsn.backbones import CLIP_BACKBONES, backbone_names
from keras_gated_tsn.data.flow_stacking import STACKINGS, FlowInput
from keras_gated_tsn.data.layout import SETTINGS_FILE
from keras_gated_tsn.models.common import check_int, check_ratio
from keras_gated_tsn.models.conv_fusion import SPATIAL_FUSIONS, TEMPORAL_FUSIONS, TOWERS
from keras_gated_tsn.models.gated_tsn import FEATURE_FUSIONS, FUSION_INITIALIZERS, GATE_ACTIVATIONS
from keras_gated_tsn.models.gcf_net import FUSIONS as GCF_FUSIONS
from keras_gated_tsn.models.gcf_net import SPARSITY_WEIGHT
from keras_gated_tsn.precision import PRECISIONS
from keras_gated_tsn.training import recipes
from keras_gated_tsn.training.distribute import STRATEGIES

#: Validation metric monitored per stage kind.
STREAM_MONITOR = "val_accuracy"
GATED_MONITOR = "val_fused_accuracy"


def _option(default, help: str, *, flag: Optional[str] = None, group: str = "general", aliases=(),
            stages: Optional[tuple] = None, **argparse_kwargs):
    """A :class:`StageConfig` field with its command-line flag (and aliases) in
    the metadata, and the stages it applies to (None: every stage; another
    stage given a value other than the default is refused)."""
    return dataclasses.field(
        default=default,
        metadata={"help": help, "flag": flag, "aliases": tuple(aliases), "group": group, "stages": stages,
                  "argparse": argparse_kwargs},
    )


#: Option groups of the other systems' stages.
CONV_FUSION_GROUP = "convolutional two-stream fusion (--stage conv-fusion)"
GCF_GROUP = "GCF-Net (--stage gcf)"
MULTITASK_GROUP = "multi-task stream (--stage multitask)"
#: The backbone of a new model when --backbone is not given.
DEFAULT_BACKBONE = {"gcf": "resnext3d_101"}
STREAM_BACKBONE = "bn_inception"
#: The crop side when --input-size is not given (GCF-Net: 112, Sec. 3.3).
DEFAULT_INPUT_SIZE = {"gcf": 112}
STREAM_INPUT_SIZE = 224


@dataclasses.dataclass
class StageConfig:
    """Everything one stage of Algorithm 1 needs (the ``gated-tsn train`` options).

    A field left at None takes the stage's recipe
    (:func:`~keras_gated_tsn.training.recipes.stage_recipe`) or, for the
    gate's options, the model's default. Each field's metadata holds its
    command-line flag and help text.
    """

    stage: str = _option(
        None, "what to train: a stage of Algorithm 1 (rgb, flow, gate, joint) or another system of the papers "
        "(conv-fusion, gcf, multitask)", flag="--stage", required=True, choices=recipes.STAGES)
    data_dir: str = _option(None, "prepared dataset folder (frames/, classes.txt, lists)", flag="--data",
                            required=True)
    out: str = _option(None, "the model to write, .keras (best validation epoch)", flag="--out", required=True)
    train_list: Optional[str] = _option(None, "training list (default DATA/train.txt)", flag="--train-list")
    val_list: Optional[str] = _option(
        None, "validation list for early stopping and the lr schedule (default DATA/val.txt if present; "
        "see `gated-tsn split --help` for which videos it holds: the authors validated on the test list)",
        flag="--val-list")
    epochs: int = _option(80, "upper bound on epochs; early stopping usually ends sooner (default 80)",
                          flag="--epochs", type=int)
    batch_size: Optional[int] = _option(None, "videos per step (default: 32 streams, 4 gate/joint)",
                                        flag="--batch-size", type=int)
    iter_size: Optional[int] = _option(
        None, "batches accumulated per update, Caffe's iter_size (default: 1 streams, 32 gate/joint: "
        "4 x 32 = 128 videos per update as the authors' solver)", flag="--iter-size", type=int)
    num_segments: int = _option(3, "K segments per video (default 3; 1 = the original two-stream net)",
                                flag="--segments", type=int)
    input_size: Optional[int] = _option(
        None, "crop side in pixels (default 224; gcf 112; conv-fusion: the streams')", flag="--input-size", type=int)
    new_length: int = _option(5, "stacked flow frames per snippet, L (default 5)", flag="--new-length", type=int)
    learning_rate: Optional[float] = _option(
        None, "initial learning rate (default: 1e-3 rgb, 5e-3 flow (TSN's), 1e-3 gate/joint)", flag="--lr",
        type=float)
    min_learning_rate: Optional[float] = _option(
        None, "lowest learning rate of the /10-on-plateau schedule (default: lr/100 streams, lr/10 gate/joint)",
        flag="--min-lr", type=float)
    patience: int = _option(10, "epochs without improvement before early stopping (default 10)",
                            flag="--patience", type=int)
    lr_patience: int = _option(4, "epochs without improvement before lr / 10 (default 4)", flag="--lr-patience",
                               type=int)
    weight_decay: Optional[float] = _option(
        None, "Caffe L2 weight decay on kernels (default 5e-4; gcf 1e-3, the GCF-Net paper's)",
        flag="--weight-decay", type=float)
    clip_gradients: Optional[float] = _option(
        None, "global gradient L2 norm clip, Caffe's clip_gradients (default 40; gcf: none, as the GCF-Net "
        "paper); 0 turns it off", flag="--clip-gradients", type=float)
    seed: Optional[int] = _option(
        None, "seed of the initial weights, data order, sampling, augmentation and dropout (default: drawn, "
        "and kept in the training state so a resumed run goes on with it)", flag="--seed", type=int)
    backbone: Optional[str] = _option(
        None, "backbone of a new stream (default bn_inception) or GCF-Net (a 3D clip backbone, default "
        "resnext3d_101, or a 2D one run per frame)", flag="--backbone", group="streams (--stage rgb / flow)",
        choices=tuple(backbone_names()) + tuple(CLIP_BACKBONES))
    backbone_weights: Optional[str] = _option(
        None, "'imagenet' or a backbone weights file to start a stream, a multi-task stream or GCF-Net from "
        "(see weights/README.md)", flag="--backbone-weights", group="streams (--stage rgb / flow)",
        stages=("rgb", "flow", "gcf", "multitask"))
    partial_bn: bool = _option(True, "train every BN layer of a stream (TSN's partial BN is the default)",
                               flag="--no-partial-bn", group="streams (--stage rgb / flow)", action="store_false")
    dropout: Optional[float] = _option(
        None, "dropout before a stream's classifier (default: the backbone's, 0.8 rgb / 0.7 flow for "
        "BN-Inception; conv-fusion: the streams'; gcf 0)", flag="--dropout", group="streams (--stage rgb / flow)",
        type=float)
    init_from: Optional[str] = _option(
        None, "a .keras model to start from: a stream (an RGB stream into a flow stream: cross-modality conv1); "
        "for gcf a GCF-Net, a TSN stream or a saved clip backbone (by layer name)",
        flag="--init-from", group="streams (--stage rgb / flow)", stages=("rgb", "flow", "gcf"))
    flow_stacking: str = _option(
        "optical_flow", "a flow stream's input volume (two-stream ConvNets Sec. 3.1): optical_flow (eq. 1, TSN's, "
        "default) or trajectory (eq. 2, the flow sampled along its trajectories)", flag="--flow-stacking",
        group="streams (--stage rgb / flow)", choices=STACKINGS)
    bidirectional: bool = _option(
        False, "a flow stream on L/2 forward and L/2 backward fields (the backward ones inverted from the "
        "extracted flow; L even)", flag="--bidirectional", group="streams (--stage rgb / flow)",
        action="store_true")
    mean_subtraction: bool = _option(
        False, "subtract each flow field's mean vector (camera-motion compensation)", flag="--mean-subtraction",
        group="streams (--stage rgb / flow)", action="store_true")
    rgb: Optional[str] = _option(None, "the trained RGB stream, .keras (stages gate, conv-fusion)", flag="--rgb",
                                 group="gate (--stage gate / joint)", stages=("gate", "conv-fusion"))
    flow: Optional[str] = _option(None, "the trained flow stream, .keras (stages gate, conv-fusion)", flag="--flow",
                                  group="gate (--stage gate / joint)", stages=("gate", "conv-fusion"))
    gate_model: Optional[str] = _option(
        None, "the stage-2 gated .keras the joint stage goes on from (--resume is its old name)", flag="--gate",
        aliases=("--resume",), group="gate (--stage gate / joint)", stages=("joint",))
    fusion_layer: Optional[str] = _option(
        None, "feature layer to fuse (default: the backbone's: inception_4e_output / conv4 / block5_conv2; "
        "conv-fusion: the last conv layer's ReLU, Sec. 3.4)", flag="--fusion-layer",
        group="gate (--stage gate / joint)")
    feature_fusion: Optional[str] = _option(
        None, "conv (paper, default), concat (channels, eq. 8) or concat_height (the authors' concatenation network)",
        flag="--feature-fusion", group="gate (--stage gate / joint)", choices=FEATURE_FUSIONS)
    gate_activation: Optional[str] = _option(
        None, "relu (paper, default) or softmax", flag="--gate-activation", group="gate (--stage gate / joint)",
        choices=GATE_ACTIVATIONS)
    gate_dropout: Optional[float] = _option(
        None, "dropout before the gate's heads (default: the paper's 0.8)", flag="--gate-dropout",
        group="gate (--stage gate / joint)", type=float)
    fusion_initializer: Optional[str] = _option(
        None, "kernel init of the fusion conv: xavier (prototxt, default) or identity", flag="--fusion-init",
        group="gate (--stage gate / joint)", choices=FUSION_INITIALIZERS)
    gate_init: Optional[str] = _option(
        None, "the gating ConvNet's start: rgb (the RGB stream's layers, default), imagenet (the paper's) or a "
        "backbone weights file", flag="--gate-init", group="gate (--stage gate / joint)")
    stream_dropout: bool = _option(
        False, "keep the frozen streams' dropout on while the gate trains (the authors' Caffe net did)",
        flag="--stream-dropout", group="gate (--stage gate / joint)", action="store_true")
    gating_loss_weight: Optional[float] = _option(
        None, "lambda of eq. (4) (default 0 gate, 1 joint)", flag="--lam", group="gate (--stage gate / joint)",
        type=float)
    spatial_fusion: Optional[str] = _option(
        None, "how the two maps are fused in space (Sec. 3.1): sum, max, concat, conv (default: concatenation "
        "and a 1x1 conv initialised as the sum) or bilinear", flag="--spatial-fusion", group=CONV_FUSION_GROUP,
        stages=("conv-fusion",), choices=SPATIAL_FUSIONS)
    temporal_fusion: Optional[str] = _option(
        None, "how the T snippets are fused in time (Sec. 3.3): none (scores averaged), pool3d or conv3d_pool3d "
        "(3x3x3 conv + 3D pooling, default, the paper's best)", flag="--temporal-fusion", group=CONV_FUSION_GROUP,
        stages=("conv-fusion",), choices=TEMPORAL_FUSIONS)
    towers: Optional[str] = _option(
        None, "keep_both (default: the other tower goes on too, a loss on each, predictions averaged, Fig. 4) "
        "or truncate (Fig. 2 left)", flag="--towers", group=CONV_FUSION_GROUP, stages=("conv-fusion",),
        choices=TOWERS)
    fuse_into: str = _option(
        "rgb", "the stream whose tower goes on from the fused map (default rgb, the paper's)", flag="--fuse-into",
        group=CONV_FUSION_GROUP, stages=("conv-fusion",), choices=("rgb", "flow"))
    num_snippets: int = _option(
        5, "T snippets per video, tau frames apart (default 5, Sec. 3.5)", flag="--snippets",
        group=CONV_FUSION_GROUP, stages=("conv-fusion",), type=int)
    snippet_stride: tuple = _option(
        (1, 10), "the range tau is drawn from per training video (default 1 10, Sec. 3.5); validation takes the "
        "largest that fits", flag="--snippet-stride", group=CONV_FUSION_GROUP, stages=("conv-fusion",), type=int,
        nargs=2)
    other_fusion_layer: Optional[str] = _option(
        None, "the layer of the stream not fused into, when its backbone differs (default: --fusion-layer if "
        "both have it, else its last conv layer; a map up to 2 px smaller is zero-padded, Sec. 4.1's VGG-16 + "
        "VGG-M pair)", flag="--other-fusion-layer", group=CONV_FUSION_GROUP, stages=("conv-fusion",))
    train_streams: bool = _option(
        False, "also train the streams' layers before the fusion layer (the paper propagates back only to the "
        "fusion layer)", flag="--train-streams", group=CONV_FUSION_GROUP, stages=("conv-fusion",),
        action="store_true")
    clip_fusion: str = _option(
        "gcf", "the video-level head: gcf (inter-clip fusion + gated clip-wise attention, default), inter_clip, "
        "attention (Table 2's ablations), d_clips or c_clip (Table 1's baselines)", flag="--clip-fusion",
        group=GCF_GROUP, stages=("gcf",), choices=GCF_FUSIONS)
    num_clips: int = _option(10, "C clips per video (default 10)", flag="--clips", group=GCF_GROUP,
                             stages=("gcf",), type=int)
    clip_length: int = _option(16, "T frames per clip (default 16)", flag="--clip-length", group=GCF_GROUP,
                               stages=("gcf",), type=int)
    descriptor_dim: int = _option(1024, "D, the fused descriptors' dimension (default 1024)",
                                  flag="--descriptor-dim", group=GCF_GROUP, stages=("gcf",), type=int)
    sparsity_weight: float = _option(
        SPARSITY_WEIGHT, f"lambda of eq. (9), the attention's L1 sparsity loss (default {SPARSITY_WEIGHT:g}; the "
        "paper gives none)", flag="--sparsity-weight", group=GCF_GROUP, stages=("gcf",), type=float)
    freeze_backbone: bool = _option(
        False, "train the head only (the paper's UCF-101 fine-tuning of a Kinetics model)",
        flag="--freeze-backbone", group=GCF_GROUP, stages=("gcf",), action="store_true")
    modality: Optional[str] = _option(
        None, "the input of a multi-task stream (default flow: the two-stream ConvNets' temporal net) or of a "
        "GCF-Net over a 2D backbone (default rgb; flow: each clip frame a stack of --new-length flow fields)",
        flag="--modality", group=MULTITASK_GROUP, stages=("multitask", "gcf"), choices=("rgb", "flow"))
    also_data: Optional[list] = _option(
        None, "another prepared dataset, one head each (repeat the option; the heads are named after the folders, "
        "--data's first: its validation accuracy chooses the best epoch)", flag="--also-data",
        group=MULTITASK_GROUP, stages=("multitask",), action="append")
    precision: str = _option(
        "float32", "float32, mixed_float16 (GPUs: float16 compute, loss scaling) or mixed_bfloat16 (GPUs and "
        "CPUs with AMX / AVX512-BF16); scores, fusion weights, losses and BN statistics stay float32",
        flag="--precision", group="speed and scale", choices=PRECISIONS)
    jit_compile: bool = _option(False, "compile the training step with XLA", flag="--jit-compile",
                                group="speed and scale", action="store_true")
    augment_on: str = _option(
        "host", "where training crops are resized and flipped: host (the input pipeline's CPU threads, "
        "default) or device (the accelerator, inside the training step; same pixels, less host CPU per "
        "sample: for GPUs whose input pipeline cannot keep up)",
        flag="--augment-on", group="speed and scale", choices=("host", "device"))
    strategy: str = _option(
        "default", "default (one device), mirrored (every GPU of this machine) or multi-worker (the machines "
        "of TF_CONFIG); --batch-size is the global batch, split over the workers",
        flag="--strategy", group="speed and scale", choices=STRATEGIES)
    checkpoint_every: int = _option(
        500, "also save the training state every N batches, besides every epoch (default 500); a killed run "
        "started again with the same command goes on from the last state in OUT.ckpt/",
        flag="--checkpoint-every", group="speed and scale", type=int)
    restart: bool = _option(False, "discard the training state in OUT.ckpt/ and start the stage again",
                            flag="--restart", group="speed and scale", action="store_true")
    verbose: Optional[int] = None

    def recipe(self) -> recipes.StageRecipe:
        """The stage's recipe with this config's overrides applied.

        Raises:
            ValueError: for an unknown stage or a value out of range (quoted).
        """
        base = recipes.stage_recipe(self.stage, _modality(self))
        learning_rate = base.learning_rate if self.learning_rate is None else self.learning_rate
        # The schedule's floor keeps the recipe's ratio to the learning rate actually used.
        min_learning_rate = (
            learning_rate * base.min_learning_rate / base.learning_rate
            if self.min_learning_rate is None else self.min_learning_rate
        )
        overrides = {
            name: getattr(self, name)
            for name in ("batch_size", "iter_size", "gating_loss_weight", "weight_decay", "clip_gradients")
            if getattr(self, name) is not None
        }
        if overrides.get("clip_gradients") == 0:  # 0: no clipping (None: the recipe's)
            overrides["clip_gradients"] = None
        recipe = dataclasses.replace(
            base, learning_rate=learning_rate, min_learning_rate=min_learning_rate, **overrides
        )
        for name in ("batch_size", "iter_size"):
            check_int(name, getattr(recipe, name), 1)
        for name in ("epochs", "num_segments", "new_length", "num_snippets", "num_clips", "clip_length",
                     "descriptor_dim"):
            check_int(name, getattr(self, name), 1)
        if self.input_size is not None:
            check_int("input_size", self.input_size, 1)
        for name in ("patience", "lr_patience"):
            check_int(name, getattr(self, name), 0)
        if not recipe.learning_rate > 0 or not recipe.min_learning_rate > 0:
            raise ValueError(
                f"learning rates must be > 0, got {recipe.learning_rate!r} and {recipe.min_learning_rate!r}"
            )
        if recipe.min_learning_rate > recipe.learning_rate:
            raise ValueError(
                f"the lowest learning rate ({recipe.min_learning_rate!r}) is above the initial one "
                f"({recipe.learning_rate!r})"
            )
        if not recipe.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {recipe.weight_decay!r}")
        if self.clip_gradients is not None and not self.clip_gradients >= 0:
            raise ValueError(f"clip_gradients must be > 0 (0: no clipping; None: the stage's), got "
                             f"{self.clip_gradients!r}")
        if not self.sparsity_weight >= 0:
            raise ValueError(f"the sparsity loss weight lambda must be >= 0, got {self.sparsity_weight!r}")
        from keras_gated_tsn.data.sampling import check_stride_range

        check_stride_range(tuple(self.snippet_stride))
        for name in ("dropout", "gate_dropout"):
            if getattr(self, name) is not None:
                check_ratio(name, getattr(self, name))
        if recipe.gating_loss_weight is not None and not recipe.gating_loss_weight >= 0:
            raise ValueError(f"the loss weight lambda must be >= 0, got {recipe.gating_loss_weight!r}")
        check_int("checkpoint_every", self.checkpoint_every, 1)
        if self.seed is not None:
            check_int("seed", self.seed, 0)
        for name, value in (("precision", self.precision), ("strategy", self.strategy)):
            choices = PRECISIONS if name == "precision" else STRATEGIES
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        self._check_stage_inputs()
        return recipe

    def _check_stage_inputs(self) -> None:
        """Refuses the inputs and options of one stage given to another (they
        would be ignored): each field's ``stages`` metadata."""
        wrong = []
        for field in dataclasses.fields(self):
            stages = field.metadata.get("stages")
            value = getattr(self, field.name)
            value = tuple(value) if isinstance(value, list) and isinstance(field.default, tuple) else value
            if stages and self.stage not in stages and value != field.default and value not in (None, [], ()):
                aliases = field.metadata["aliases"]
                wrong.append(field.metadata["flag"] + (f" ({', '.join(aliases)})" if aliases else ""))
        if wrong:
            hint = (" (a killed run resumes by itself: start the same command again)"
                    if self.gate_model and self.stage != "joint" else "")
            raise ValueError(f"{', '.join(wrong)} does not apply to --stage {self.stage}{hint}")


def _require_file(path: Optional[str], what: str) -> str:
    if not path:
        raise ValueError(f"{what} is required")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: no such file {path!r}")
    return path


def load_model(path: str, kind: Optional[type] = None) -> keras.Model:
    """Loads a ``.keras`` model of this package.

    Args:
        path: the file.
        kind: the class it must be (``TSN`` or ``GatedTSN``, or a tuple of
            classes), or None.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a whole ``.keras`` archive (truncated
            or damaged: Keras would report "File not found"), or holds another
            kind of model (the message names the file and both kinds).
    """
    import zipfile

    import keras_gated_tsn  # noqa: F401  (registers the package's layers and models)

    _require_file(path, "model")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()  # reads every member: a CRC check
    except (zipfile.BadZipFile, EOFError) as error:
        raise ValueError(
            f"{path} is not a whole .keras file ({error}): truncated or damaged, e.g. by a copy or a "
            "training run that did not finish"
        ) from None
    if damaged is not None:
        raise ValueError(f"{path} is damaged: its member {damaged!r} fails its checksum")
    model = keras.saving.load_model(path)
    if kind is not None and not isinstance(model, kind):
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ValueError(f"{path} holds a {type(model).__name__}, expected a {expected}")
    return model


def _flow_bound(data_dir: Optional[str]) -> float:
    """The flow bound ``DATA/prepare.json`` records (the default 20 px without one)."""
    import json

    path = os.path.join(data_dir, SETTINGS_FILE) if data_dir else None
    if path and os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as handle:
                bound = json.load(handle).get("bound")
        except (OSError, ValueError, AttributeError):
            bound = None
        if isinstance(bound, (int, float)) and not isinstance(bound, bool) and bound > 0:
            return float(bound)
    from keras_gated_tsn.data.prepare import DEFAULT_BOUND

    return DEFAULT_BOUND


def _backbone(config: StageConfig) -> str:
    return config.backbone or DEFAULT_BACKBONE.get(config.stage, STREAM_BACKBONE)


def _modality(config: StageConfig) -> str:
    """The input of a multi-task stream (default flow) or GCF-Net (default rgb)."""
    return config.modality or ("rgb" if config.stage == "gcf" else "flow")


def _input_size(config: StageConfig) -> int:
    return config.input_size or DEFAULT_INPUT_SIZE.get(config.stage, STREAM_INPUT_SIZE)


def _check_same_classes(model, num_classes: int, class_names, what: str = "the streams") -> None:
    if model.num_classes != num_classes:
        raise ValueError(f"{what} score {model.num_classes} classes but the dataset has {num_classes}")
    if class_names is not None and model.class_names is not None and model.class_names != list(class_names):
        difference = next(i for i, (a, b) in enumerate(zip(model.class_names, class_names)) if a != b)
        raise ValueError(
            f"{what} were trained on other classes: class {difference} is {model.class_names[difference]!r} "
            f"for them, {class_names[difference]!r} in the dataset's classes.txt"
        )


def build_stage_model(config: StageConfig, num_classes: int, class_names=None, *, heads=None) -> keras.Model:
    """The model a stage trains, compiled (new, initialised or resumed).

    ``class_names`` (the dataset's ``classes.txt``) go into a new stream's
    config; a gate's streams must have been trained on the same names when
    they know theirs.

    Args:
        config: the stage's options.
        num_classes: classes of the dataset (``--data``).
        class_names: their names, or None.
        heads: ``--stage multitask``: ``{head: class names}`` of every
            dataset, in order (``--data``'s first).

    Raises:
        ValueError, FileNotFoundError: for a missing or wrong input model, or
            streams trained on other classes.
    """
    from keras_gated_tsn.models import TSN, ConvTwoStreamFusion, GatedTSN, GCFNet, MultiTaskTSN

    recipe = config.recipe()
    optimizer = recipes.make_optimizer(
        recipe.learning_rate * recipe.lr_scale, weight_decay=recipe.weight_decay,
        clip_gradients=recipe.clip_gradients, iter_size=recipe.iter_size,
        bias_lr_multiplier=recipe.bias_lr_multiplier,
    )
    flow_input = FlowInput(config.flow_stacking, config.bidirectional, config.mean_subtraction,
                           bound=_flow_bound(config.data_dir))
    if config.stage == "multitask":
        modality = _modality(config)
        if modality == "rgb" and not flow_input.is_plain:
            raise ValueError("--flow-stacking, --bidirectional and --mean-subtraction configure a flow stream, "
                             "not an rgb one (--modality rgb)")
        model = MultiTaskTSN(
            _backbone(config), modality, {head: len(names) for head, names in heads.items()},
            config.num_segments, _input_size(config), config.new_length, dropout=config.dropout,
            partial_bn=config.partial_bn, backbone_weights=config.backbone_weights,
            class_names={head: list(names) for head, names in heads.items()},
            flow_input=None if modality == "rgb" else flow_input,
        )
        model.compile(optimizer=optimizer, jit_compile=config.jit_compile)
        return model
    if config.stage == "gcf":
        if not flow_input.is_plain:
            raise ValueError("--flow-stacking, --bidirectional and --mean-subtraction configure a flow stream; "
                             "GCF-Net over flow takes plain optical flow stacks")
        model = GCFNet(
            _backbone(config), num_classes, config.num_clips, config.clip_length, _input_size(config),
            fusion=config.clip_fusion, descriptor_dim=config.descriptor_dim,
            dropout=0.0 if config.dropout is None else config.dropout, freeze_backbone=config.freeze_backbone,
            modality=_modality(config), new_length=config.new_length,
            backbone_weights=config.backbone_weights, class_names=class_names,
        )
        if config.init_from:
            model.init_from(load_model(_require_file(config.init_from, "--init-from")))
        model.compile(optimizer=optimizer, sparsity_weight=config.sparsity_weight, jit_compile=config.jit_compile)
        return model
    if config.stage == "conv-fusion":
        rgb = load_model(_require_file(config.rgb, "--rgb (the trained RGB stream)"), TSN)
        flow = load_model(_require_file(config.flow, "--flow (the trained flow stream)"), TSN)
        options = {"fusion_layer": config.fusion_layer, "other_fusion_layer": config.other_fusion_layer,
                   "spatial_fusion": config.spatial_fusion,
                   "temporal_fusion": config.temporal_fusion, "towers": config.towers, "dropout": config.dropout}
        model = ConvTwoStreamFusion(
            rgb, flow, fuse_into=config.fuse_into, num_snippets=config.num_snippets,
            snippet_stride=int(config.snippet_stride[1]), freeze_before_fusion=not config.train_streams,
            **{name: value for name, value in options.items() if value is not None},  # else the model's default
        )
        _check_same_classes(model, num_classes, class_names)
        model.compile(optimizer=optimizer, jit_compile=config.jit_compile)
        return model
    if config.stage in ("rgb", "flow"):
        if config.stage == "rgb" and not flow_input.is_plain:
            raise ValueError("--flow-stacking, --bidirectional and --mean-subtraction configure a flow stream "
                             "(--stage flow), not the rgb stream")
        model = TSN(
            _backbone(config), config.stage, num_classes, config.num_segments, _input_size(config),
            config.new_length, dropout=config.dropout, partial_bn=config.partial_bn,
            backbone_weights=config.backbone_weights, class_names=class_names,
            flow_input=None if config.stage == "rgb" else flow_input,
        )
        if config.init_from:
            model.init_from(load_model(_require_file(config.init_from, "--init-from")))
        model.compile(optimizer=optimizer, jit_compile=config.jit_compile)
        return model
    if config.stage == "gate":
        rgb = load_model(_require_file(config.rgb, "--rgb (the trained RGB stream)"), TSN)
        flow = load_model(_require_file(config.flow, "--flow (the trained flow stream)"), TSN)
        options = {
            "fusion_layer": config.fusion_layer, "feature_fusion": config.feature_fusion,
            "gate_activation": config.gate_activation, "dropout": config.gate_dropout,
            "fusion_initializer": config.fusion_initializer, "gate_init": config.gate_init,
        }
        model = GatedTSN(
            rgb, flow, stream_dropout=config.stream_dropout,
            **{name: value for name, value in options.items() if value is not None},  # else the model's default
        )
    else:
        model = load_model(_require_file(config.gate_model, "--gate (the stage-2 gated model)"), GatedTSN)
        if model.precision != config.precision:  # a loaded model keeps the policy it was saved with
            from keras_gated_tsn.models.common import with_precision

            model = with_precision(model, config.precision)
    _check_same_classes(model, num_classes, class_names)
    model.compile(optimizer=optimizer, gating_loss_weight=recipe.gating_loss_weight, jit_compile=config.jit_compile)
    return model


@dataclasses.dataclass
class StageResult:
    """What :func:`run_stage` did.

    Attributes:
        model: the trained model, with the best epoch's weights.
        history: per-epoch logs of the whole stage, resumed parts included
            (``{"loss": [...], "val_accuracy": [...], ...}``; a resumed run has
            the epochs it ran).
        monitor: the metric that chose the best epoch (``val_accuracy``,
            ``val_fused_accuracy`` or, with no validation list, the training one).
        best: its best value, or None (no epoch finished).
        best_epoch: the best epoch, 1-based, or None.
        resumed_from: the training state the run went on from, or None.
        files: what the stage wrote: ``model``, ``log`` (CSV), ``tensorboard``.
    """

    model: keras.Model
    history: Dict[str, List[float]]
    monitor: str
    best: Optional[float]
    best_epoch: Optional[int]
    resumed_from: Optional[str]
    files: Dict[str, str]


#: StageConfig fields a resumed run must share with the run that wrote the state.
_MUST_MATCH = ("stage", "batch_size", "iter_size", "num_segments", "input_size", "new_length", "backbone",
               "seed", "train_list", "workers", "precision", "feature_fusion", "fusion_layer", "spatial_fusion",
               "temporal_fusion", "other_fusion_layer", "num_snippets", "snippet_stride", "clip_fusion",
               "num_clips", "clip_length", "modality", "also_data")


def _batch_norms(model: keras.Model) -> List[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of a model, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(_batch_norms(layer))
    return found


def checkpoint_folder(out: str) -> str:
    """The folder of a stage's training state: ``<out without .keras>.ckpt``."""
    return str(out)[: -len(".keras")] + ".ckpt"


@dataclasses.dataclass
class _StageDataset:
    """One dataset a stage trains on: ``--data`` (and, for ``--stage
    multitask``, each ``--also-data``), its head name, lists and frames."""

    head: str
    data_dir: str
    class_names: List[str]
    train_list: str
    train_records: list
    val_list: Optional[str]
    val_records: list
    frames_root: str
    templates: dict


def head_name(data_dir: str) -> str:
    """The name of a multi-task head for a dataset folder: the folder's name as
    a lower-case identifier (``UCF-101/`` -> ``ucf_101``; a leading digit gets
    ``d_``)."""
    import re

    name = re.sub(r"\W+", "_", os.path.basename(os.path.normpath(os.path.abspath(data_dir)))).strip("_").lower()
    return name if name and not name[0].isdigit() else f"d_{name}"


def _stage_datasets(config: StageConfig) -> List[_StageDataset]:
    """``--data``'s lists (``--train-list`` / ``--val-list`` or its own) and,
    for a multi-task stage, those of every ``--also-data``."""
    from keras_gated_tsn.data.layout import CLASSES_FILE, frames_source, list_file, read_layout
    from keras_gated_tsn.data.lists import read_class_names, read_list_file

    folders = [config.data_dir, *(config.also_data or ())] if config.stage == "multitask" else [config.data_dir]
    heads = [head_name(folder) for folder in folders]
    repeated = sorted({head for head in heads if heads.count(head) > 1})
    if repeated:
        raise ValueError(f"two datasets would give the head {repeated[0]!r}: each --data / --also-data folder "
                         f"needs its own name ({folders})")
    out = []
    for index, (head, folder) in enumerate(zip(heads, folders)):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"dataset: no such folder {folder!r}")
        class_names = read_class_names(_require_file(os.path.join(folder, CLASSES_FILE), CLASSES_FILE))
        own = index == 0
        train_list = _require_file((config.train_list if own else None) or os.path.join(folder, list_file("train")),
                                   "training list")
        val_list = (config.val_list if own else None) or os.path.join(folder, list_file("val"))
        if not os.path.isfile(val_list):
            if own and config.val_list:
                raise FileNotFoundError(f"validation list: no such file {val_list!r}")
            val_list = None
        out.append(_StageDataset(
            head, folder, class_names, train_list, read_list_file(train_list), val_list,
            read_list_file(val_list) if val_list else [], frames_source(folder),
            read_layout(folder).pipeline_templates(),  # other tools' frame names, from DATA/prepare.json
        ))
    return out


def _frames_modality(config: StageConfig) -> str:
    """The frames a stage reads: ``rgb``, ``flow`` or ``rgb+flow``."""
    if config.stage in ("gate", "joint", "conv-fusion"):
        return "rgb+flow"
    if config.stage in ("gcf", "multitask"):
        return _modality(config)
    return config.stage


def _stage_monitor(config: StageConfig, head: str) -> str:
    """The validation metric that chooses a stage's best epoch (Keras' name for it)."""
    if config.stage in ("gate", "joint", "conv-fusion"):
        return GATED_MONITOR  # the fused prediction's accuracy
    if config.stage == "gcf":
        return "val_scores_accuracy"
    if config.stage == "multitask":
        return f"val_{head}_accuracy"  # --data's head, on its own videos (a weighted metric)
    return STREAM_MONITOR


def _model_batches(model, config: StageConfig, records, dataset: _StageDataset, batch_size: int, *,
                   training: bool, **positioned):
    """The batches of ``records`` in the model's input layout: TSN snippets
    (streams, gate, multi-task), T strided snippets (conv fusion) or C clips
    of T frames (GCF-Net); ``positioned``: seed, repeat, start and shard."""
    from keras_gated_tsn.data import pipeline
    from keras_gated_tsn.models.tsn import flow_input_of

    if config.stage == "gcf":
        from keras_gated_tsn.data.clips import make_clip_dataset

        return make_clip_dataset(
            records, dataset.frames_root, num_clips=model.num_clips, clip_length=model.clip_length,
            input_size=model.input_size, batch_size=batch_size, training=training, modality=model.modality,
            new_length=model.new_length, **positioned, **dataset.templates,
        )
    modality = _frames_modality(config)
    if modality == "rgb+flow":  # the gated and conv-fusion models' flow stacks
        new_length = model.new_length
    elif config.stage == "multitask":
        new_length = 1 if modality == "rgb" else model.new_length
    else:
        new_length = model.snippet_length
    num_segments = model.num_snippets if config.stage == "conv-fusion" else config.num_segments
    return pipeline.make_dataset(
        records, dataset.frames_root, modality, num_segments=num_segments, new_length=new_length,
        input_size=model.input_size, batch_size=batch_size, training=training,
        augment_on=config.augment_on if training else "host", flow_input=flow_input_of(model),
        snippet_stride=tuple(config.snippet_stride) if config.stage == "conv-fusion" else None,
        **positioned, **dataset.templates,
    )


def run_stage(config: StageConfig, log: Callable[[str], None] = print) -> StageResult:
    """Runs one stage of Algorithm 1 with ``fit()`` and writes ``config.out``.

    The run can be killed at any moment and started again with the same
    config: it goes on from the last training state in
    :func:`checkpoint_folder` (``config.restart`` discards it); see
    :mod:`keras_gated_tsn.training.checkpoints`. It writes ``<out>_log.csv``
    (one row per epoch: losses, accuracies, learning rate, mean fusion
    weights) and TensorBoard logs in ``<out>_logs/``; the output model holds
    the best epoch's weights. Under a multi-worker strategy only the chief
    writes.

    Args:
        config: the stage's options.
        log: where the run's summary lines go (``print``).

    Returns:
        A :class:`StageResult`.

    Raises:
        ValueError: for an unknown stage, a missing option of that stage, a
            value out of range, or a checkpoint folder written with other
            options.
        FileNotFoundError: for a missing list, class or checkpoint file.
        keras_gated_tsn.training.checkpoints.TrainingDiverged: the loss became
            NaN (the message names the epoch and batch); nothing is written
            over ``config.out``.
    """
    from keras_gated_tsn.data import pipeline
    from keras_gated_tsn.data.lists import check_labels
    from keras_gated_tsn.precision import precision_scope
    from keras_gated_tsn.training import checkpoints, distribute

    recipe = config.recipe()
    if not str(config.out).endswith(".keras"):
        raise ValueError(f"the output model must end in .keras, got {config.out!r}")
    if config.stage == "gcf" and config.augment_on == "device":
        raise ValueError("--augment-on device is for the TSN pipelines; GCF-Net's clips are cropped on the host")
    datasets = _stage_datasets(config)
    primary = datasets[0]
    class_names = primary.class_names
    train_records, val_records = primary.train_records, primary.val_records
    train_list, val_list = primary.train_list, primary.val_list
    modality = _frames_modality(config)
    # Every line against classes.txt and its frame folder, before any work (not a traceback in fit()).
    for dataset in datasets:
        for records, path in ((dataset.train_records, dataset.train_list), (dataset.val_records, dataset.val_list)):
            if records:
                check_labels(records, len(dataset.class_names), path)
                pipeline.check_frame_folders(path, dataset.frames_root, modality, **dataset.templates)

    strategy = distribute.make_strategy(config.strategy)
    workers = distribute.workers_of(strategy)
    chief = workers.is_chief
    say = log if chief else (lambda line: None)
    folder = checkpoint_folder(config.out)
    if config.restart and chief and os.path.isdir(folder):
        say(f"--restart: discarding the training state in {folder}")
        shutil.rmtree(folder)
    saved = checkpoints.newest_options(folder)
    seed = config.seed if config.seed is not None else saved.get("seed", random.SystemRandom().randrange(2**31))
    seed = distribute.chief_values(strategy, [seed])[0]  # a drawn seed: the chief's, on every worker
    options = {**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)},
               "seed": seed, "workers": workers.count, "batch_size": recipe.batch_size,
               "iter_size": recipe.iter_size, "train_list": os.path.abspath(train_list),
               "backbone": _backbone(config), "input_size": _input_size(config)}
    options["snippet_stride"] = list(config.snippet_stride)
    options["also_data"] = [os.path.abspath(path) for path in config.also_data or ()]

    batch = recipe.batch_size
    if batch % workers.count:
        raise ValueError(f"the global batch of {batch} videos does not split over {workers.count} workers")

    def batches_in(count: int) -> int:
        return count // batch if workers.count > 1 else -(-count // batch)

    total_videos = sum(len(dataset.train_records) for dataset in datasets)
    steps_per_epoch = batches_in(total_videos)
    for dataset in datasets:
        if batches_in(len(dataset.train_records)) == 0:
            raise ValueError(f"{dataset.train_list} has {len(dataset.train_records)} videos, fewer than one global "
                             f"batch of {batch}")
    say(
        f"stage {config.stage}: {len(train_records)} training videos ({train_list}), "
        + (f"{len(val_records)} validation videos ({val_list})" if val_list else "no validation list")
        + f", {len(class_names)} classes"
    )
    for dataset in datasets[1:]:
        say(f"  head {dataset.head}: {len(dataset.train_records)} training videos ({dataset.train_list}), "
            + (f"{len(dataset.val_records)} validation videos" if dataset.val_list else "no validation list")
            + f", {len(dataset.class_names)} classes")
    say(
        f"  {distribute.describe_devices(strategy)}, {config.precision}"
        + (", XLA" if config.jit_compile else "")
        + (", crops on the device" if config.augment_on == "device" else "")
        + f"; global batch {batch}"
        + (f" ({workers.count} workers x {batch // workers.count})" if workers.count > 1 else "")
        + (f" x {recipe.iter_size} accumulated = {batch * recipe.iter_size} videos per update"
           if recipe.iter_size > 1 else "")
        + f", {steps_per_epoch} batches per epoch, lr {recipe.learning_rate:g} (floor {recipe.min_learning_rate:g})"
        + f", seed {seed}"
    )
    say("  building the model (the first batches also compile the training graph)...")
    keras.utils.set_random_seed(seed)  # the initial weights and dropout draws follow the seed too
    with strategy.scope(), precision_scope(config.precision):
        model = build_stage_model(config, len(class_names), class_names,
                                  heads={dataset.head: dataset.class_names for dataset in datasets})
    if workers.replicas > 1:
        # A BN layer that trains on batch statistics takes them over the global
        # batch, as one device would (partial BN's first layer; the rest are frozen).
        for layer in _batch_norms(model):
            layer.synchronized = True
    local_replicas = workers.replicas // workers.count

    def distributed(make):
        """``make()``'s batches of this worker, split over its replicas; under
        several replicas, handed to ``fit`` already distributed (no re-sharding)."""
        if workers.replicas == 1:
            return make()
        if (batch // workers.count) % local_replicas:
            raise ValueError(f"the global batch of {batch} videos does not split over {workers.replicas} replicas")
        return strategy.distribute_datasets_from_function(
            lambda context: make().rebatch(batch // workers.replicas)
        )

    def batches_of(dataset, records, training: bool, start_epoch: int = 0, skip_batches: int = 0):
        """One dataset's batches for the model (training: repeated, resumed at a point, this worker's share)."""
        common = dict(training=training, **({"seed": seed, "repeat": True, "start_epoch": start_epoch,
                                             "skip_batches": skip_batches, "num_shards": workers.count,
                                             "shard_index": workers.index} if training else {}))
        size = batch if training else batch // workers.count
        return _model_batches(model, config, records, dataset, size, **common)

    def training_data(start_epoch: int, skip_batches: int):
        if config.stage != "multitask":
            return distributed(lambda: batches_of(primary, train_records, True, start_epoch, skip_batches))
        from keras_gated_tsn.data.multitask import multitask_training_batches

        return distributed(lambda: multitask_training_batches(
            {d.head: (lambda e, s, d=d: batches_of(d, d.train_records, True, e, s)) for d in datasets},
            {d.head: batches_in(len(d.train_records)) for d in datasets},
            seed=seed, start_step=start_epoch * steps_per_epoch + skip_batches,
        ))

    validation = validation_steps = None
    validated = [d for d in datasets if d.val_list] if config.stage == "multitask" else ([primary] if val_list else [])
    if validated:
        # Every worker scores the whole validation list (the metrics are ratios).
        if config.stage == "multitask":
            from keras_gated_tsn.data.multitask import multitask_validation_batches

            validation = distributed(lambda: multitask_validation_batches(
                {d.head: batches_of(d, d.val_records, False) for d in validated}))
        else:
            validation = distributed(lambda: batches_of(primary, val_records, False))
        if workers.replicas > 1:
            # A distributed dataset has no known length: without the count Keras
            # ends each validation on an end-of-data error and warns about it.
            validation_steps = sum(-(-len(d.val_records) // (batch // workers.count)) for d in validated)

    monitor = _stage_monitor(config, primary.head)
    if not validated:
        monitor = monitor[len("val_"):]
        say(f"warning: no validation list in {config.data_dir}; the best epoch is chosen on training {monitor}")
    stem = str(config.out)[: -len(".keras")]
    files = {"model": str(config.out), "log": f"{stem}_log.csv", "tensorboard": f"{stem}_logs"}
    callbacks = recipes.stage_callbacks(
        monitor, patience=config.patience, lr_patience=config.lr_patience, min_learning_rate=recipe.min_learning_rate,
    )
    state = checkpoints.TrainingState(
        folder, options, monitor, save_every=config.checkpoint_every, tracked=callbacks, write=chief,
        must_match=_MUST_MATCH,
    )
    resumed = None if (config.restart and not chief) else state.restore(model)  # the chief removed the state
    start_epoch, skip = (resumed.epoch, resumed.step) if resumed else (0, 0)
    if not distribute.same_on_all_workers(strategy, [start_epoch, skip]):  # every worker stops, none waits
        chief_start = distribute.chief_values(strategy, [start_epoch, skip])
        raise ValueError(
            f"the workers would start at different points (this one, worker {workers.index}: epoch "
            f"{start_epoch + 1}, batch {skip + 1}; worker 0: epoch {chief_start[0] + 1}, batch "
            f"{chief_start[1] + 1}): every worker needs the same training state in {folder} "
            "(give all the same --out on shared storage)"
        )
    if resumed and skip >= steps_per_epoch:  # saved on the last batch, before the epoch's end
        start_epoch, skip = start_epoch + 1, 0
    if chief:
        os.makedirs(os.path.dirname(os.path.abspath(config.out)), exist_ok=True)
        if resumed:
            checkpoints.trim_csv_log(files["log"], start_epoch)
            say(f"  resuming from {resumed.path}: epoch {start_epoch + 1}, batch {skip + 1}")
        elif os.path.exists(files["log"]):
            os.unlink(files["log"])  # a new run: a new log
        callbacks += [
            keras.callbacks.CSVLogger(files["log"], append=True),
            keras.callbacks.TensorBoard(files["tensorboard"], write_graph=False, profile_batch=0),
        ]
    callbacks.append(state)  # last: restores the others' counters after their on_train_begin
    verbose = config.verbose if config.verbose is not None else (1 if sys.stdout.isatty() else 2)
    history: Dict[str, List[float]] = {}

    def fit(first_epoch: int, skip_batches: int) -> None:
        run = model.fit(
            training_data(first_epoch, skip_batches),
            validation_data=validation,
            validation_steps=validation_steps,
            initial_epoch=first_epoch,
            epochs=first_epoch + 1 if skip_batches else config.epochs,
            steps_per_epoch=steps_per_epoch - skip_batches,
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline orders the videos itself
            verbose=verbose,
        )
        for key, values in run.history.items():
            history.setdefault(key, []).extend(values)

    if start_epoch < config.epochs and skip:  # the rest of the interrupted epoch first
        fit(start_epoch, skip)
        start_epoch += 1
    if start_epoch < config.epochs and not model.stop_training and not state.diverged:
        fit(start_epoch, 0)
    if state.diverged:
        raise checkpoints.TrainingDiverged(state.diverged)
    if not state.load_best(model):
        say(f"warning: no epoch reached a finite {monitor}; writing the last weights")
    if chief:
        save_atomically(model, config.out)
        state.remove()
    best_epoch = None if state.best_epoch is None else state.best_epoch + 1
    return StageResult(model, history, monitor, state.best, best_epoch, resumed.path if resumed else None, files)
