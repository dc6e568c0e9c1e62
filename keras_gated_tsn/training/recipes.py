"""The training recipe of the paper and of the authors' Caffe solvers, in Keras terms.

* :class:`CaffeSGD`: SGD with momentum that updates a weight as Caffe's
  ``SGDSolver`` does: L2 weight decay added to the gradient before momentum
  (kernels only: ``decay_mult: 0`` for biases and BN), biases at twice the
  learning rate (``lr_mult: 2``);
* :func:`make_optimizer`: it, with the gradient clipping and accumulation of
  Caffe's ``clip_gradients`` and ``iter_size``;
* :data:`STAGE_RECIPES`: learning rate, batch size and accumulation per stage
  of Algorithm 1 (streams: TSN's learning rates, batch 32; gate: batch 4 x 32);
* losses, metrics and the callbacks of a stage.

Sources: gated TSN paper Sec. IV-A ("Network Training"); the authors'
``gating_three_2_solver.prototxt`` (base_lr 0.001, momentum 0.9,
weight_decay 0.0005, iter_size 32) and ``gating_three_2_concat_solver``
(clip_gradients 40); TSN (Wang et al. 2016, Sec. 4.1) for the streams'
learning rates (RGB 0.001, flow 0.005, each divided by 10 twice).
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional

import keras
from keras import ops

#: SGD momentum (paper Sec. IV-A; every solver).
MOMENTUM = 0.9
#: Caffe L2 weight decay on kernels (the authors' solvers).
WEIGHT_DECAY = 5e-4
#: Caffe ``clip_gradients``: the global L2 norm of the gradient (paper Sec. IV-A: 40).
CLIP_GRADIENTS = 40.0
#: Caffe ``lr_mult`` of every bias in the prototxts (weights 1, biases 2).
BIAS_LR_MULTIPLIER = 2.0


@dataclasses.dataclass(frozen=True)
class StageRecipe:
    """The defaults of one stage of Algorithm 1.

    Attributes:
        learning_rate: the initial learning rate.
        min_learning_rate: the lowest the plateau schedule goes (÷10 steps).
        batch_size: videos per step.
        iter_size: gradient accumulation steps (Caffe ``iter_size``); the
            effective batch is ``batch_size * iter_size``.
        gating_loss_weight: λ of eq. (4) (gated stages only).
        weight_decay: L2 decay on kernels added to the gradient.
        clip_gradients: global gradient-norm clip, or None.
        bias_lr_multiplier: learning-rate factor of the biases.
        lr_scale: factor from the stated learning rate to the one applied
            (PyTorch's SGD dampening d: 1 - d; see
            :func:`keras_gated_tsn.models.gcf_net.paper_optimizer`).
    """

    learning_rate: float
    min_learning_rate: float
    batch_size: int
    iter_size: int = 1
    gating_loss_weight: Optional[float] = None
    weight_decay: float = WEIGHT_DECAY
    clip_gradients: Optional[float] = CLIP_GRADIENTS
    bias_lr_multiplier: float = BIAS_LR_MULTIPLIER
    lr_scale: float = 1.0


#: Per stage: streams with TSN's learning rates (RGB 1e-3, flow 5e-3, each
#: divided by 10 twice) at batch 32 (paper Sec. IV-A); the gate at batch 4
#: with 32 accumulated steps (the authors' ``iter_size: 32``), lr 1e-3 → 1e-4,
#: λ = 0 for stage 2 and 1 for stage 3.
STAGE_RECIPES = {
    "rgb": StageRecipe(learning_rate=1e-3, min_learning_rate=1e-5, batch_size=32),
    "flow": StageRecipe(learning_rate=5e-3, min_learning_rate=5e-5, batch_size=32),
    "gate": StageRecipe(learning_rate=1e-3, min_learning_rate=1e-4, batch_size=4, iter_size=32,
                        gating_loss_weight=0.0),
    "joint": StageRecipe(learning_rate=1e-3, min_learning_rate=1e-4, batch_size=4, iter_size=32,
                         gating_loss_weight=1.0),
    # Convolutional two-stream fusion (Feichtenhofer et al. 2016, Sec. 3.5):
    # "finetuned with a batch size of 96 and a learning rate starting from
    # 1e-3 which is reduced by a factor of 10 as soon as the validation
    # accuracy saturates".
    "conv-fusion": StageRecipe(learning_rate=1e-3, min_learning_rate=1e-5, batch_size=96),
    # GCF-Net (Hsiao et al. 2020, Sec. 3.3): SGD with momentum 0.9, dampening
    # 0.9, weight decay 1e-3, mini-batch 128; "for fine-tuning, we start with a
    # learning rate of 0.01", reduced by 10 on plateau (3 times from scratch).
    # PyTorch's SGD: no bias multiplier, no clipping.
    "gcf": StageRecipe(learning_rate=1e-2, min_learning_rate=1e-5, batch_size=128, weight_decay=1e-3,
                       clip_gradients=None, bias_lr_multiplier=1.0, lr_scale=0.1),
    # The two-stream ConvNets' multi-task stream (Sec. 4), trained as the
    # zoo's TSN streams: the flow stream's recipe (an RGB one takes the rgb
    # stage's, see :func:`stage_recipe`).
    "multitask": StageRecipe(learning_rate=5e-3, min_learning_rate=5e-5, batch_size=32),
}
STAGES = tuple(STAGE_RECIPES)
#: The stages of Algorithm 1 (the gated TSN), in order.
ALGORITHM1_STAGES = ("rgb", "flow", "gate", "joint")
#: The stages of the other systems of the papers.
OTHER_STAGES = tuple(stage for stage in STAGES if stage not in ALGORITHM1_STAGES)


def stage_recipe(stage: str, modality: Optional[str] = None) -> StageRecipe:
    """The :class:`StageRecipe` of ``stage`` (one of :data:`STAGES`).

    Args:
        stage: the stage.
        modality: for ``"multitask"``, the stream's modality: ``"rgb"`` takes
            the rgb stage's recipe, ``"flow"`` (or None) the flow stage's.

    Raises:
        ValueError: for another stage.
    """
    if stage not in STAGE_RECIPES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if stage == "multitask" and modality == "rgb":
        return STAGE_RECIPES["rgb"]
    return STAGE_RECIPES[stage]


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class CaffeSGD(keras.optimizers.SGD):
    """SGD with momentum that updates each weight as Caffe's ``SGDSolver``.

    For a variable ``w`` with gradient ``g`` (after Keras' accumulation and
    clipping), learning rate ``lr`` and momentum ``μ``::

        g' = g + caffe_weight_decay · w        kernels only (Caffe Regularize, L2)
        lr' = lr · bias_lr_multiplier           biases only (Caffe lr_mult: 2)
        v  = μ · v - lr' · g'                   (Caffe: v = μv + lr'g', w -= v)
        w  = w + v

    Keras' own ``weight_decay`` is decoupled (``w -= lr · wd · w`` outside
    the momentum), which at μ = 0.9 acts about 10 times more weakly than
    Caffe's; it is left unset here. A variable is a kernel when its name is
    ``kernel`` (convolutions, fully connected layers) and a bias when it is
    ``bias``; BN scale and shift (``gamma``, ``beta``) get neither, as the
    prototxts' ``decay_mult: 0``, ``lr_mult: 1``.

    Args:
        learning_rate: float or schedule (Caffe ``base_lr``).
        momentum: in [0, 1] (0.9).
        caffe_weight_decay: L2 coefficient >= 0 (Caffe ``weight_decay``, 5e-4).
        bias_lr_multiplier: > 0 (Caffe ``lr_mult`` of biases, 2).
        **kwargs: ``keras.optimizers.SGD`` arguments (``global_clipnorm``,
            ``gradient_accumulation_steps``, ...).

    Raises:
        ValueError: for a negative decay or a non-positive multiplier.
    """

    def __init__(
        self,
        learning_rate=1e-3,
        momentum: float = MOMENTUM,
        caffe_weight_decay: float = WEIGHT_DECAY,
        bias_lr_multiplier: float = BIAS_LR_MULTIPLIER,
        name: str = "caffe_sgd",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, momentum=momentum, name=name, **kwargs)
        if not caffe_weight_decay >= 0:
            raise ValueError(f"caffe_weight_decay must be >= 0, got {caffe_weight_decay!r}")
        if not bias_lr_multiplier > 0:
            raise ValueError(f"bias_lr_multiplier must be > 0, got {bias_lr_multiplier!r}")
        self.caffe_weight_decay = float(caffe_weight_decay)
        self.bias_lr_multiplier = float(bias_lr_multiplier)

    def update_step(self, gradient, variable, learning_rate):
        # Any backend: Caffe's update in keras.ops, after Keras' clipping.
        kind = _variable_kind(variable)
        if kind == "kernel" and self.caffe_weight_decay:
            gradient = ops.add(
                ops.cast(gradient, variable.dtype),
                ops.multiply(variable, ops.cast(self.caffe_weight_decay, variable.dtype)),
            )
        elif kind == "bias" and self.bias_lr_multiplier != 1.0:
            learning_rate = ops.multiply(learning_rate, self.bias_lr_multiplier)
        super().update_step(gradient, variable, learning_rate)

    # TensorFlow: the same update in fewer passes over the weights, and
    # gradient accumulation that works under tf.distribute.
    #
    # Keras scales every gradient by the clipping factor, then adds the decay,
    # then updates the momentum and the weight with separate ops (about 9 ops
    # and 6 passes over each kernel: 30 ms of a 330 ms BN-Inception step on 2
    # cores). Here the norm is one fused ``L2Loss`` per gradient, the clipping
    # factor joins the (scalar) learning rate, and momentum and weight are one
    # ``ResourceApplyKerasMomentum`` (``accum = μ·accum - lr·g; w += accum``,
    # Keras' SGD exactly): 1 op per bias or BN weight, 3 per kernel.
    #
    # Under several replicas the gradients are summed across them first, in
    # the replica context, and every replica then applies the same update to
    # its own copy of the weights (TensorFlow's "sync-free" update). So the
    # clipping sees the global gradient, as on one device (Keras clips each
    # replica's share before the sum), and accumulation works: Keras applies
    # accumulated gradients inside a ``cond`` on the step count, where a
    # cross-replica sum or ``merge_call`` cannot run ("merge_call called while
    # defining a new graph"), so Keras' accumulation fails under
    # MirroredStrategy and MultiWorkerMirroredStrategy.

    def _fused_update_applies(self) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and self.momentum != 0
            and not (self.clipnorm or self.clipvalue or self.use_ema or self.weight_decay)
        )

    def _backend_apply_gradients(self, grads, trainable_variables):
        if not self._fused_update_applies():
            return super()._backend_apply_gradients(grads, trainable_variables)
        import tensorflow as tf

        variables = [v.value if isinstance(v, keras.Variable) else v for v in trainable_variables]
        grads = [g for g, _ in self._all_reduce_sum_gradients(list(zip(grads, variables)))]
        if not self.gradient_accumulation_steps:
            self._fused_caffe_updates(grads, variables)
            return
        steps = self.gradient_accumulation_steps
        accumulators = [
            self._accumulated_gradients[self._get_variable_index(v)].value for v in trainable_variables
        ]
        for accumulator, gradient in zip(accumulators, grads):
            tf.raw_ops.AssignAddVariableOp(resource=accumulator.handle, value=tf.cast(gradient, accumulator.dtype))

        def update():
            totals = [
                tf.raw_ops.ReadVariableOp(resource=a.handle, dtype=a.dtype) / steps for a in accumulators
            ]
            self._fused_caffe_updates(totals, variables)
            for accumulator in accumulators:
                tf.raw_ops.AssignVariableOp(
                    resource=accumulator.handle, value=tf.zeros(accumulator.shape, accumulator.dtype)
                )

        tf.cond(tf.equal((self._iterations + 1) % steps, 0), update, lambda: None)

    def _fused_caffe_updates(self, grads, variables) -> None:
        import tensorflow as tf

        clip_scale = tf.constant(1.0, "float32")
        if self.global_clipnorm:
            norm = tf.sqrt(tf.add_n([2.0 * tf.nn.l2_loss(tf.cast(g, "float32")) for g in grads]))
            # min(1, clip / norm), and NaN when the norm is not finite, as Keras.
            clip_scale = self.global_clipnorm * tf.minimum(1.0 / norm, 1.0 / self.global_clipnorm)
            clip_scale = clip_scale + (norm - norm)
        learning_rate = tf.convert_to_tensor(self.learning_rate)
        for gradient, variable in zip(grads, variables):
            dtype = variable.dtype
            gradient = tf.cast(gradient, dtype)
            scale = tf.cast(clip_scale, dtype)
            rate = tf.cast(learning_rate, dtype)
            kind = _variable_kind(variable)
            if kind == "kernel" and self.caffe_weight_decay:
                gradient = gradient * scale + variable * tf.cast(self.caffe_weight_decay, dtype)
            else:
                if kind == "bias":
                    rate = rate * self.bias_lr_multiplier
                rate = rate * scale
            momentum = self.momentums[self._get_variable_index(variable)].value
            # .handle is this replica's copy under a strategy.
            tf.raw_ops.ResourceApplyKerasMomentum(
                var=variable.handle,
                accum=momentum.handle,
                lr=rate,
                grad=gradient,
                momentum=tf.cast(self.momentum, dtype),
                use_locking=False,
                use_nesterov=bool(self.nesterov),
            )

    def get_config(self):
        return {
            **super().get_config(),
            "caffe_weight_decay": self.caffe_weight_decay,
            "bias_lr_multiplier": self.bias_lr_multiplier,
        }


def _variable_kind(variable) -> str:
    """``kernel``, ``bias``, ``gamma``, ... from a Keras or TensorFlow variable's name.

    The TensorFlow backend hands optimizers the backend variable
    (``"model/fc/kernel:0"``); Keras' own variables are named ``"kernel"``.
    """
    return variable.name.rsplit("/", 1)[-1].split(":", 1)[0]


def make_optimizer(
    learning_rate: float = 1e-3,
    *,
    momentum: float = MOMENTUM,
    weight_decay: float = WEIGHT_DECAY,
    clip_gradients: Optional[float] = CLIP_GRADIENTS,
    iter_size: int = 1,
    bias_lr_multiplier: float = BIAS_LR_MULTIPLIER,
) -> CaffeSGD:
    """The papers' SGD as Caffe runs it: :class:`CaffeSGD` with clipping and accumulation.

    ``iter_size`` > 1 accumulates the gradients of that many batches before
    one update (Keras ``gradient_accumulation_steps``; the update uses their
    mean, as Caffe's ``Normalize`` does). ``clip_gradients`` scales the whole
    gradient down when its global L2 norm exceeds it (Keras
    ``global_clipnorm``; Keras' ``clipnorm`` would clip each variable on its
    own). Caffe clips the *sum* of the ``iter_size`` gradients before dividing
    by ``iter_size`` (``SGDSolver::ApplyUpdate``: ``ClipGradients`` before
    ``Normalize``), so the same update needs ``global_clipnorm =
    clip_gradients / iter_size`` on Keras' mean.

    Args:
        learning_rate: > 0 (or a Keras schedule).
        momentum: in [0, 1].
        weight_decay: Caffe L2 decay on kernels, >= 0 (0 turns it off).
        clip_gradients: > 0, or None for no clipping.
        iter_size: int >= 1.
        bias_lr_multiplier: > 0.

    Returns:
        A :class:`CaffeSGD`.

    Raises:
        ValueError: for a value out of range (quoted).
    """
    if isinstance(learning_rate, (int, float)) and not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    if clip_gradients is not None and not clip_gradients > 0:
        raise ValueError(f"clip_gradients must be > 0 or None, got {clip_gradients!r}")
    if isinstance(iter_size, bool) or not isinstance(iter_size, int) or iter_size < 1:
        raise ValueError(f"iter_size must be an int >= 1, got {iter_size!r}")
    return CaffeSGD(
        learning_rate=float(learning_rate) if isinstance(learning_rate, (int, float)) else learning_rate,
        momentum=float(momentum),
        caffe_weight_decay=float(weight_decay),
        bias_lr_multiplier=float(bias_lr_multiplier),
        global_clipnorm=None if clip_gradients is None else float(clip_gradients) / iter_size,
        gradient_accumulation_steps=iter_size if iter_size > 1 else None,
    )


def classification_loss() -> keras.losses.Loss:
    """Cross-entropy on pre-softmax scores with integer labels (eq. (4)'s terms)."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def accuracy_metric() -> keras.metrics.Metric:
    """Top-1 accuracy on scores with integer labels, named ``accuracy``."""
    return keras.metrics.SparseCategoricalAccuracy(name="accuracy")


def stage_callbacks(
    monitor: str,
    *,
    patience: int = 10,
    lr_patience: int = 4,
    min_learning_rate: float = 1e-4,
) -> List[keras.callbacks.Callback]:
    """The schedule of a stage: lr ÷10 on plateau (down to ``min_learning_rate``)
    and early stopping, both on ``monitor`` (higher is better).

    Paper Sec. IV-A: "the learning rate is initialized as 0.001 and decreases
    to 0.0001 when there is no more increase in accuracy. The model is
    selected by early stopping." The best epoch's weights are kept by
    :class:`~keras_gated_tsn.training.checkpoints.TrainingState` (on disk, so
    a resumed run still ends with them), not by ``EarlyStopping``.

    Raises:
        ValueError: for a negative patience or a non-positive floor.
    """
    for name, value in (("patience", patience), ("lr_patience", lr_patience)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if not min_learning_rate > 0:
        raise ValueError(f"min_learning_rate must be > 0, got {min_learning_rate!r}")
    return [
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode="max", factor=0.1, patience=lr_patience, min_lr=min_learning_rate
        ),
        keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=patience),
    ]
