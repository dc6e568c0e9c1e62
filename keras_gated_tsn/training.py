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
