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
from typing import Optional

import keras

from keras_gated_tsn.atomic import save_atomically
from keras_gated_tsn.backbones import backbone_names
from keras_gated_tsn.models.common import check_int, check_ratio
from keras_gated_tsn.models.gated_tsn import FEATURE_FUSIONS, FUSION_INITIALIZERS, GATE_ACTIVATIONS
from keras_gated_tsn.training import recipes

#: Validation metric monitored per stage kind.
STREAM_MONITOR = "val_accuracy"
GATED_MONITOR = "val_fused_accuracy"


def _option(default, help: str, *, flag: Optional[str] = None, group: str = "general", **argparse_kwargs):
    """A :class:`StageConfig` field with its command-line flag in the metadata."""
    return dataclasses.field(
        default=default, metadata={"help": help, "flag": flag, "group": group, "argparse": argparse_kwargs}
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
    seed: Optional[int] = _option(None, "seed of data order, sampling and augmentation", flag="--seed", type=int)
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
    rgb: Optional[str] = _option(None, "the trained RGB stream, .keras (stage gate)", flag="--rgb",
                                 group="gate (--stage gate / joint)")
    flow: Optional[str] = _option(None, "the trained flow stream, .keras (stage gate)", flag="--flow",
                                  group="gate (--stage gate / joint)")
    resume: Optional[str] = _option(None, "the stage-2 gated .keras to go on from (stage joint)", flag="--resume",
                                    group="gate (--stage gate / joint)")
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
    verbose: int = 1

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
        return recipe


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
        kind: the class it must be (``TSN`` or ``GatedTSN``), or None.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file holds another kind of model (the message
            names the file and both kinds).
    """
    import keras_gated_tsn  # noqa: F401  (registers the package's layers and models)

    _require_file(path, "model")
    model = keras.saving.load_model(path)
    if kind is not None and not isinstance(model, kind):
        raise ValueError(f"{path} holds a {type(model).__name__}, expected a {kind.__name__}")
    return model


def build_stage_model(config: StageConfig, num_classes: int) -> keras.Model:
    """The model a stage trains, compiled (new, initialised or resumed).

    Raises:
        ValueError, FileNotFoundError: for a missing or wrong input model.
    """
    from keras_gated_tsn.models import TSN, GatedTSN

    recipe = config.recipe()
    optimizer = recipes.make_optimizer(
        recipe.learning_rate, weight_decay=config.weight_decay, clip_gradients=config.clip_gradients,
        iter_size=recipe.iter_size,
    )
    if config.stage in ("rgb", "flow"):
        model = TSN(
            config.backbone, config.stage, num_classes, config.num_segments, config.input_size,
            config.new_length, dropout=config.dropout, partial_bn=config.partial_bn,
            backbone_weights=config.backbone_weights,
        )
        if config.init_from:
            model.init_from(load_model(_require_file(config.init_from, "--init-from")))
        model.compile(optimizer=optimizer)
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
        model = load_model(_require_file(config.resume, "--resume (the stage-2 gated model)"), GatedTSN)
    if model.num_classes != num_classes:
        raise ValueError(f"the streams score {model.num_classes} classes but the dataset has {num_classes}")
    model.compile(optimizer=optimizer, gating_loss_weight=recipe.gating_loss_weight)
    return model


def run_stage(config: StageConfig):
    """Runs one stage of Algorithm 1 with ``fit()`` and writes ``config.out``.

    Returns:
        ``(model, history)``: the model with its best weights (also saved to
        ``config.out``) and the Keras ``History``.

    Raises:
        ValueError: for an unknown stage, a missing option of that stage or a
            value out of range.
        FileNotFoundError: for a missing list, class or checkpoint file.
    """
    from keras_gated_tsn.data import pipeline
    from keras_gated_tsn.data.layout import CLASSES_FILE, FRAMES_DIR, list_file
    from keras_gated_tsn.data.lists import read_class_names

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
    gated = config.stage in ("gate", "joint")
    model = build_stage_model(config, len(class_names))
    modality = "rgb+flow" if gated else model.modality

    def data(records, training):
        return pipeline.make_dataset(
            records, os.path.join(data_dir, FRAMES_DIR), modality, num_segments=config.num_segments,
            new_length=model.new_length if gated else model.snippet_length, input_size=model.input_size, batch_size=recipe.batch_size,
            training=training, seed=config.seed,
        )

    monitor = GATED_MONITOR if gated else STREAM_MONITOR
    if val_list is None:
        monitor = monitor[len("val_"):]
        print(f"warning: no validation list in {data_dir}; monitoring training {monitor}")
    stem = str(config.out)[: -len(".keras")]
    callbacks = recipes.stage_callbacks(
        f"{stem}_best.keras", monitor, patience=config.patience, lr_patience=config.lr_patience,
        min_learning_rate=recipe.min_learning_rate, log_csv=f"{stem}_log.csv",
    )
    history = model.fit(
        data(train_list, True),
        validation_data=data(val_list, False) if val_list else None,
        epochs=config.epochs,
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipeline shuffles (seedably) itself
        verbose=config.verbose,
    )
    save_atomically(model, config.out)
    return model, history
