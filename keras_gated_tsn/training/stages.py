"""One stage of Algorithm 1 with ``fit()``: :class:`StageConfig` and :func:`run_stage`.

Algorithm 1 of the gated TSN paper (Sec. III-B, IV-A):

1. ``rgb`` / ``flow``: train the two TSN streams (cross-modality
   initialisation and partial BN for the flow stream);
2. ``gate``: freeze the streams, train the gating ConvNet for the fusion
   weights only (λ = 0) until validation accuracy stops rising;
3. ``joint``: go on with the multi-task loss of eq. (4), λ = 1 (the authors'
   conv-fusion Caffe solver used 0.1).

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
from keras_gated_tsn.backbones import backbone_names
from keras_gated_tsn.data.flow_stacking import STACKINGS, FlowInput
from keras_gated_tsn.data.layout import SETTINGS_FILE
from keras_gated_tsn.models.common import check_int, check_ratio
from keras_gated_tsn.models.gated_tsn import FEATURE_FUSIONS, FUSION_INITIALIZERS, GATE_ACTIVATIONS
from keras_gated_tsn.precision import PRECISIONS
from keras_gated_tsn.training import recipes
from keras_gated_tsn.training.distribute import STRATEGIES

#: Validation metric monitored per stage kind.
STREAM_MONITOR = "val_accuracy"
GATED_MONITOR = "val_fused_accuracy"


def _option(default, help: str, *, flag: Optional[str] = None, group: str = "general", aliases=(),
            **argparse_kwargs):
    """A :class:`StageConfig` field with its command-line flag (and aliases) in the metadata."""
    return dataclasses.field(
        default=default,
        metadata={"help": help, "flag": flag, "aliases": tuple(aliases), "group": group, "argparse": argparse_kwargs},
    )


@dataclasses.dataclass
class StageConfig:
    """Everything one stage of Algorithm 1 needs (the ``gated-tsn train`` options).

    A field left at None takes the stage's recipe
    (:func:`~keras_gated_tsn.training.recipes.stage_recipe`) or, for the
    gate's options, the model's default. Each field's metadata holds its
    command-line flag and help text.
    """

    stage: str = _option(None, "the stage of Algorithm 1", flag="--stage", required=True,
                         choices=recipes.STAGES)
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
    input_size: int = _option(224, "crop side in pixels (default 224)", flag="--input-size", type=int)
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
    weight_decay: float = _option(recipes.WEIGHT_DECAY, "Caffe L2 weight decay on kernels (default 5e-4)",
                                  flag="--weight-decay", type=float)
    clip_gradients: Optional[float] = _option(
        recipes.CLIP_GRADIENTS, "global gradient L2 norm clip, Caffe's clip_gradients (default 40)",
        flag="--clip-gradients", type=float)
    seed: Optional[int] = _option(
        None, "seed of the initial weights, data order, sampling, augmentation and dropout (default: drawn, "
        "and kept in the training state so a resumed run goes on with it)", flag="--seed", type=int)
    backbone: str = _option("bn_inception", "backbone of a new stream (default bn_inception)",
                            flag="--backbone", group="streams (--stage rgb / flow)",
                            choices=backbone_names())
    backbone_weights: Optional[str] = _option(
        None, "'imagenet' or a backbone weights file to start a stream from (see weights/README.md)",
        flag="--backbone-weights", group="streams (--stage rgb / flow)")
    partial_bn: bool = _option(True, "train every BN layer of a stream (TSN's partial BN is the default)",
                               flag="--no-partial-bn", group="streams (--stage rgb / flow)", action="store_false")
    dropout: Optional[float] = _option(
        None, "dropout before a stream's classifier (default: the backbone's, 0.8 rgb / 0.7 flow for BN-Inception)",
        flag="--dropout", group="streams (--stage rgb / flow)", type=float)
    init_from: Optional[str] = _option(
        None, "a .keras stream to start from (an RGB stream into a flow stream: cross-modality conv1)",
        flag="--init-from", group="streams (--stage rgb / flow)")
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
    rgb: Optional[str] = _option(None, "the trained RGB stream, .keras (stage gate)", flag="--rgb",
                                 group="gate (--stage gate / joint)")
    flow: Optional[str] = _option(None, "the trained flow stream, .keras (stage gate)", flag="--flow",
                                  group="gate (--stage gate / joint)")
    gate_model: Optional[str] = _option(
        None, "the stage-2 gated .keras the joint stage goes on from (--resume is its old name)", flag="--gate",
        aliases=("--resume",), group="gate (--stage gate / joint)")
    fusion_layer: Optional[str] = _option(
        None, "feature layer to fuse (default: the backbone's: inception_4e_output / conv4 / block5_conv2)",
        flag="--fusion-layer", group="gate (--stage gate / joint)")
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
        base = recipes.stage_recipe(self.stage)
        learning_rate = base.learning_rate if self.learning_rate is None else self.learning_rate
        # The schedule's floor keeps the recipe's ratio to the learning rate actually used.
        min_learning_rate = (
            learning_rate * base.min_learning_rate / base.learning_rate
            if self.min_learning_rate is None else self.min_learning_rate
        )
        recipe = dataclasses.replace(
            base,
            learning_rate=learning_rate,
            min_learning_rate=min_learning_rate,
            **{
                name: value
                for name, value in (
                    ("batch_size", self.batch_size),
                    ("iter_size", self.iter_size),
                    ("gating_loss_weight", self.gating_loss_weight),
                )
                if value is not None
            },
        )
        for name in ("batch_size", "iter_size"):
            check_int(name, getattr(recipe, name), 1)
        for name in ("epochs", "num_segments", "input_size", "new_length"):
            check_int(name, getattr(self, name), 1)
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
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.clip_gradients is not None and not self.clip_gradients > 0:
            raise ValueError(f"clip_gradients must be > 0 (or None: no clipping), got {self.clip_gradients!r}")
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
        """Refuses the inputs of one stage given to another (they would be ignored)."""
        inputs = {"gate": ("rgb", "flow"), "joint": ("gate_model",)}
        flags = {"rgb": "--rgb", "flow": "--flow", "gate_model": "--gate (--resume)", "init_from": "--init-from",
                 "backbone_weights": "--backbone-weights"}
        wrong = [name for name in ("rgb", "flow", "gate_model") if getattr(self, name)
                 and name not in inputs.get(self.stage, ())]
        if self.stage in ("gate", "joint"):
            wrong += [name for name in ("init_from", "backbone_weights") if getattr(self, name)]
        if wrong:
            hint = (" (a killed run resumes by itself: start the same command again)"
                    if "gate_model" in wrong else "")
            raise ValueError(
                f"{', '.join(flags[name] for name in wrong)} does not apply to --stage {self.stage}{hint}"
            )


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


def build_stage_model(config: StageConfig, num_classes: int, class_names=None) -> keras.Model:
    """The model a stage trains, compiled (new, initialised or resumed).

    ``class_names`` (the dataset's ``classes.txt``) go into a new stream's
    config; a gate's streams must have been trained on the same names when
    they know theirs.

    Raises:
        ValueError, FileNotFoundError: for a missing or wrong input model, or
            streams trained on other classes.
    """
    from keras_gated_tsn.models import TSN, GatedTSN

    recipe = config.recipe()
    optimizer = recipes.make_optimizer(
        recipe.learning_rate, weight_decay=config.weight_decay, clip_gradients=config.clip_gradients,
        iter_size=recipe.iter_size,
    )
    if config.stage in ("rgb", "flow"):
        flow_input = FlowInput(config.flow_stacking, config.bidirectional, config.mean_subtraction,
                               bound=_flow_bound(config.data_dir))
        if config.stage == "rgb" and not flow_input.is_plain:
            raise ValueError("--flow-stacking, --bidirectional and --mean-subtraction configure a flow stream "
                             "(--stage flow), not the rgb stream")
        model = TSN(
            config.backbone, config.stage, num_classes, config.num_segments, config.input_size,
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
    if model.num_classes != num_classes:
        raise ValueError(f"the streams score {model.num_classes} classes but the dataset has {num_classes}")
    if class_names is not None and model.class_names is not None and model.class_names != list(class_names):
        difference = next(i for i, (a, b) in enumerate(zip(model.class_names, class_names)) if a != b)
        raise ValueError(
            f"the streams were trained on other classes: class {difference} is {model.class_names[difference]!r} "
            f"for them, {class_names[difference]!r} in the dataset's classes.txt"
        )
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
               "seed", "train_list", "workers", "precision", "feature_fusion", "fusion_layer")


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
    import tensorflow as tf

    from keras_gated_tsn.data import pipeline
    from keras_gated_tsn.data.layout import CLASSES_FILE, frames_source, list_file, read_layout
    from keras_gated_tsn.data.lists import check_labels, read_class_names, read_list_file
    from keras_gated_tsn.precision import precision_scope
    from keras_gated_tsn.training import checkpoints, distribute

    recipe = config.recipe()
    if not str(config.out).endswith(".keras"):
        raise ValueError(f"the output model must end in .keras, got {config.out!r}")
    data_dir = config.data_dir
    class_names = read_class_names(_require_file(os.path.join(data_dir, CLASSES_FILE), CLASSES_FILE))
    train_list = _require_file(config.train_list or os.path.join(data_dir, list_file("train")), "training list")
    val_list = config.val_list or os.path.join(data_dir, list_file("val"))
    if not os.path.isfile(val_list):
        if config.val_list:
            raise FileNotFoundError(f"validation list: no such file {val_list!r}")
        val_list = None
    train_records = read_list_file(train_list)
    val_records = read_list_file(val_list) if val_list else []
    # Every line against classes.txt and its frame folder, before any work (not a traceback in fit()).
    modality = "rgb+flow" if config.stage in ("gate", "joint") else config.stage
    templates = read_layout(data_dir).pipeline_templates()  # other tools' frame names, from DATA/prepare.json
    for records, path in ((train_records, train_list), (val_records, val_list)):
        if records:
            check_labels(records, len(class_names), path)
            pipeline.check_frame_folders(path, frames_source(data_dir), modality, **templates)

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
               "iter_size": recipe.iter_size, "train_list": os.path.abspath(train_list)}

    gated = config.stage in ("gate", "joint")
    batch = recipe.batch_size
    if batch % workers.count:
        raise ValueError(f"the global batch of {batch} videos does not split over {workers.count} workers")
    steps_per_epoch = len(train_records) // batch if workers.count > 1 else -(-len(train_records) // batch)
    if steps_per_epoch == 0:
        raise ValueError(f"{train_list} has {len(train_records)} videos, fewer than one global batch of {batch}")
    say(
        f"stage {config.stage}: {len(train_records)} training videos ({train_list}), "
        + (f"{len(val_records)} validation videos ({val_list})" if val_list else "no validation list")
        + f", {len(class_names)} classes"
    )
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
        model = build_stage_model(config, len(class_names), class_names)
    if workers.replicas > 1:
        # A BN layer that trains on batch statistics takes them over the global
        # batch, as one device would (partial BN's first layer; the rest are frozen).
        for layer in _batch_norms(model):
            layer.synchronized = True
    modality = "rgb+flow" if gated else model.modality
    new_length = model.new_length if gated else model.snippet_length
    frames_root = frames_source(data_dir)
    from keras_gated_tsn.models.tsn import flow_input_of

    flow_input = flow_input_of(model)
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

    def training_data(start_epoch: int, skip_batches: int):
        return distributed(lambda: pipeline.make_dataset(
            train_records, frames_root, modality, num_segments=config.num_segments, new_length=new_length,
            input_size=model.input_size, batch_size=batch, training=True, seed=seed, repeat=True,
            start_epoch=start_epoch, skip_batches=skip_batches, num_shards=workers.count,
            shard_index=workers.index, augment_on=config.augment_on, flow_input=flow_input, **templates,
        ))

    validation = validation_steps = None
    if val_list:
        # Every worker scores the whole validation list (the metrics are ratios).
        validation = distributed(lambda: pipeline.make_dataset(
            val_records, frames_root, modality, num_segments=config.num_segments, new_length=new_length,
            input_size=model.input_size, batch_size=batch // workers.count, training=False,
            flow_input=flow_input, **templates,
        ))
        if workers.replicas > 1:
            # A distributed dataset has no known length: without the count Keras
            # ends each validation on an end-of-data error and warns about it.
            validation_steps = -(-len(val_records) // (batch // workers.count))

    monitor = GATED_MONITOR if gated else STREAM_MONITOR
    if val_list is None:
        monitor = monitor[len("val_"):]
        say(f"warning: no validation list in {data_dir}; the best epoch is chosen on training {monitor}")
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
