"""Training recipes: optimizer, losses, callbacks and the stages of Algorithm 1.

Algorithm 1 of the gated TSN paper (Sec. III-B, IV-A):

1. ``rgb`` / ``flow``: train the two TSN streams (cross-modality
   initialisation and partial BN for the flow stream);
2. ``gate``: freeze the streams, train the gating ConvNet for the fusion
   weights only (λ = 0) until validation accuracy stops rising;
3. ``joint``: go on with the multi-task loss of eq. (4), λ = 1 by default
   (the authors' Caffe solver used 0.1).

All stages use SGD with momentum 0.9, gradient L2 norm clipped at 40, weight
decay 5e-4 on kernels only (Caffe's ``decay_mult: 0`` for biases and BN),
lr 1e-3 divided by 10 on plateau down to 1e-4, early stopping on validation
accuracy, and ``.keras`` checkpoints of the best epoch.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional

import keras

from keras_gated_tsn.models.gated_tsn import OUTPUTS

STAGES = ("rgb", "flow", "gate", "joint")
#: Validation metric monitored per stage kind.
STREAM_MONITOR = "val_accuracy"
GATED_MONITOR = "val_fused_accuracy"


def make_optimizer(
    learning_rate: float = 1e-3,
    momentum: float = 0.9,
    clipnorm: float = 40.0,
    weight_decay: Optional[float] = 5e-4,
    gradient_accumulation_steps: Optional[int] = None,
) -> keras.optimizers.SGD:
    """SGD as the papers train: momentum 0.9, clip norm 40, weight decay 5e-4.

    Weight decay (Keras' decoupled form) is not applied to biases or BN
    scale/shift, as Caffe's ``decay_mult: 0``. ``gradient_accumulation_steps``
    plays the role of Caffe's ``iter_size`` (the authors: batch 4 x 32).

    Raises:
        ValueError: for a non-positive learning rate or clip norm.
    """
    if learning_rate <= 0 or clipnorm <= 0:
        raise ValueError(
            f"learning_rate and clipnorm must be > 0, got {learning_rate!r} and {clipnorm!r}"
        )
    optimizer = keras.optimizers.SGD(
        learning_rate=learning_rate,
        momentum=momentum,
        clipnorm=clipnorm,
        weight_decay=weight_decay or None,
        gradient_accumulation_steps=gradient_accumulation_steps,
    )
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def classification_loss() -> keras.losses.Loss:
    """Cross-entropy on pre-softmax scores with integer labels."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def compile_stream(model: keras.Model, optimizer: Optional[keras.optimizers.Optimizer] = None) -> keras.Model:
    """Compiles a TSN stream: cross-entropy of the consensus scores, top-1 accuracy."""
    model.compile(
        optimizer=optimizer or make_optimizer(),
        loss=classification_loss(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


def compile_gated(
    model: keras.Model, lam: float = 1.0, optimizer: Optional[keras.optimizers.Optimizer] = None
) -> keras.Model:
    """Compiles a gated TSN with the multi-task loss of eq. (4).

    ``L = CE(y, G_adap) + λ·CE(y, G_c)``: one cross-entropy per output
    (``fused`` and ``gating_classifier``, both pre-softmax) with
    ``loss_weights`` 1 and λ. λ = 0 is stage 2 of Algorithm 1 (fusion
    weights only), λ = 1 stage 3 (paper Sec. IV-A). Reports top-1 accuracy
    of ``fused`` (``fused_accuracy``), of the gating classifier and of each
    stream. Targets: :func:`gated_targets`.

    Raises:
        ValueError: for a negative λ.
    """
    if lam < 0:
        raise ValueError(f"the loss weight lambda must be >= 0, got {lam!r}")
    accuracy = lambda: [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]  # noqa: E731
    model.compile(
        optimizer=optimizer or make_optimizer(),
        loss={"fused": classification_loss(), "gating_classifier": classification_loss()},
        loss_weights={"fused": 1.0, "gating_classifier": float(lam)},
        metrics={name: accuracy() for name in ("fused", "gating_classifier", "rgb", "flow")},
    )
    return model


def gated_targets(labels) -> Dict[str, object]:
    """The label for every output of a gated model (Keras asks for one per output
    when metrics are compiled; ``fusion_weights`` has neither loss nor metric)."""
    return {name: labels for name in OUTPUTS}


def stage_callbacks(
    checkpoint: str,
    monitor: str,
    *,
    patience: int = 10,
    lr_patience: int = 4,
    min_learning_rate: float = 1e-4,
    log_csv: Optional[str] = None,
) -> List[keras.callbacks.Callback]:
    """Best-epoch ``.keras`` checkpoint, lr ÷10 on plateau (to ``min_learning_rate``),
    early stopping with the best weights restored, optional CSV log.

    Raises:
        ValueError: if ``checkpoint`` does not end in ``.keras``.
    """
    if not str(checkpoint).endswith(".keras"):
        raise ValueError(f"checkpoint path must end in .keras, got {checkpoint!r}")
    folder = os.path.dirname(os.path.abspath(checkpoint))
    os.makedirs(folder, exist_ok=True)
    callbacks = [
        keras.callbacks.ModelCheckpoint(checkpoint, monitor=monitor, mode="max", save_best_only=True),
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode="max", factor=0.1, patience=lr_patience, min_lr=min_learning_rate
        ),
        keras.callbacks.EarlyStopping(
            monitor=monitor, mode="max", patience=patience, restore_best_weights=True
        ),
    ]
    if log_csv:
        callbacks.append(keras.callbacks.CSVLogger(log_csv))
    return callbacks


@dataclasses.dataclass
class StageConfig:
    """Everything one stage of Algorithm 1 needs (the ``gated-tsn train`` options).

    Attributes:
        stage: ``"rgb"``, ``"flow"`` (stage 1), ``"gate"`` (stage 2, λ=0) or
            ``"joint"`` (stage 3).
        data_dir: a prepared dataset (``frames/``, ``classes.txt``, lists).
        out: the ``.keras`` checkpoint to write (best validation epoch).
        train_list, val_list: list files; default ``data_dir/train.txt`` and
            ``data_dir/val.txt`` (no validation list: the training accuracy is
            monitored instead, and a warning says so).
        epochs: upper bound; early stopping usually ends sooner.
        batch_size: videos per step; default 32 for streams, 4 for the gated
            model (paper Sec. IV-A).
        num_segments: K (paper: 3; 1 is the original two-stream network).
        input_size: crop side (224 in the paper).
        new_length: flow frames per snippet L (5).
        learning_rate, min_learning_rate: 1e-3 → 1e-4 on plateau.
        patience, lr_patience: epochs without improvement before stopping /
            dividing the learning rate by 10.
        accumulate: gradient accumulation steps (Caffe's ``iter_size``).
        weight_decay: on kernels (5e-4).
        seed: data order, sampling and augmentation.
        backbone, backbone_weights, partial_bn, dropout: for stream stages.
        init_from: an RGB ``.keras`` stream to initialise a flow stream from
            (cross-modality) or an RGB stream from.
        rgb, flow: trained stream checkpoints (stage ``gate``).
        fusion_layer, feature_fusion, gate_activation, gate_dropout,
        fusion_initializer: the gating ConvNet (see :func:`GatedTSN`).
        resume: the gate checkpoint to go on from (stage ``joint``).
        lam: λ of eq. (4); default 0 for ``gate`` and 1 for ``joint``.
        verbose: Keras ``fit`` verbosity (1: progress bar).
    """

    stage: str
    data_dir: str
    out: str
    train_list: Optional[str] = None
    val_list: Optional[str] = None
    epochs: int = 80
    batch_size: Optional[int] = None
    num_segments: int = 3
    input_size: int = 224
    new_length: int = 5
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-4
    patience: int = 10
    lr_patience: int = 4
    accumulate: Optional[int] = None
    weight_decay: float = 5e-4
    seed: Optional[int] = None
    backbone: str = "bn_inception"
    backbone_weights: Optional[str] = None
    partial_bn: bool = True
    dropout: Optional[float] = None
    init_from: Optional[str] = None
    rgb: Optional[str] = None
    flow: Optional[str] = None
    fusion_layer: Optional[str] = None
    feature_fusion: str = "conv"
    gate_activation: str = "relu"
    gate_dropout: float = 0.8
    fusion_initializer: str = "xavier"
    resume: Optional[str] = None
    lam: Optional[float] = None
    verbose: int = 1


def _require_file(path: Optional[str], what: str) -> str:
    if not path:
        raise ValueError(f"{what} is required")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: no such file {path!r}")
    return path


def load_model(path: str) -> keras.Model:
    """Loads a ``.keras`` model of this package (its layers are registered on import).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
    """
    import keras_gated_tsn.layers  # noqa: F401  (registers the custom layers)

    _require_file(path, "model")
    return keras.models.load_model(path)


def build_stage_model(config: StageConfig, num_classes: int) -> keras.Model:
    """The model a stage trains, compiled (new, initialised or resumed)."""
    from keras_gated_tsn.models import TSN, GatedTSN, init_from_rgb

    optimizer = make_optimizer(
        config.learning_rate, weight_decay=config.weight_decay,
        gradient_accumulation_steps=config.accumulate,
    )
    if config.stage in ("rgb", "flow"):
        model = TSN(
            config.backbone, config.stage, num_classes, config.num_segments, config.input_size,
            config.new_length, dropout=config.dropout, partial_bn=config.partial_bn,
            backbone_weights=config.backbone_weights,
        )
        if config.init_from:
            init_from_rgb(model, load_model(config.init_from))
        return compile_stream(model, optimizer)
    if config.stage == "gate":
        rgb = load_model(_require_file(config.rgb, "--rgb (the trained RGB stream)"))
        flow = load_model(_require_file(config.flow, "--flow (the trained flow stream)"))
        model = GatedTSN(
            rgb, flow, fusion_layer=config.fusion_layer, feature_fusion=config.feature_fusion,
            gate_activation=config.gate_activation, dropout=config.gate_dropout,
            fusion_initializer=config.fusion_initializer,
        )
        return compile_gated(model, 0.0 if config.lam is None else config.lam, optimizer)
    model = load_model(_require_file(config.resume, "--resume (the stage-2 gate checkpoint)"))
    return compile_gated(model, 1.0 if config.lam is None else config.lam, optimizer)


def run_stage(config: StageConfig):
    """Runs one stage of Algorithm 1 with ``fit()`` and writes ``config.out``.

    Returns:
        ``(model, history)``: the model with its best weights (also saved to
        ``config.out``) and the Keras ``History``.

    Raises:
        ValueError: for an unknown stage or a missing option of that stage.
        FileNotFoundError: for a missing list, class or checkpoint file.
    """
    from keras_gated_tsn.data import pipeline
    from keras_gated_tsn.data.lists import read_class_names

    if config.stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {config.stage!r}")
    data_dir = config.data_dir
    class_names = read_class_names(_require_file(os.path.join(data_dir, "classes.txt"), "classes.txt"))
    train_list = _require_file(config.train_list or os.path.join(data_dir, "train.txt"), "training list")
    val_list = config.val_list or os.path.join(data_dir, "val.txt")
    if not os.path.isfile(val_list):
        if config.val_list:
            raise FileNotFoundError(f"validation list: no such file {val_list!r}")
        val_list = None
    gated = config.stage in ("gate", "joint")
    modality = "rgb+flow" if gated else config.stage
    batch_size = config.batch_size or (4 if gated else 32)
    model = build_stage_model(config, len(class_names))
    if gated:
        size = model.get_layer("rgb").output.shape[2]
        new_length = model.get_layer("flow").output.shape[-1] // 2
    else:
        size, new_length = config.input_size, (1 if modality == "rgb" else config.new_length)

    def data(list_file, training):
        ds = pipeline.make_dataset(
            list_file, os.path.join(data_dir, "frames"), modality, num_segments=config.num_segments,
            new_length=new_length, input_size=size, batch_size=batch_size, training=training,
            seed=config.seed,
        )
        return ds.map(lambda x, y: (x, gated_targets(y))) if gated else ds

    monitor = GATED_MONITOR if gated else STREAM_MONITOR
    if val_list is None:
        monitor = monitor[len("val_"):]
        print(f"warning: no validation list in {data_dir}; monitoring training {monitor}")
    if not config.out.endswith(".keras"):
        raise ValueError(f"the output model must end in .keras, got {config.out!r}")
    stem = config.out[: -len(".keras")]
    callbacks = stage_callbacks(
        f"{stem}_best.keras", monitor, patience=config.patience, lr_patience=config.lr_patience,
        min_learning_rate=config.min_learning_rate,
        log_csv=f"{stem}_log.csv",
    )
    history = model.fit(
        data(train_list, True),
        validation_data=data(val_list, False) if val_list else None,
        epochs=config.epochs,
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipeline shuffles (seedably) itself
        verbose=config.verbose,
    )
    _save_atomically(model, config.out)
    return model, history


def _save_atomically(model: keras.Model, path: str) -> None:
    from keras_gated_tsn.atomic import atomic_path

    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
