"""What the model classes share: argument checks, compiling from a config, changing the precision."""

from __future__ import annotations

import keras
import numpy as np

from keras_gated_tsn.precision import check_precision


class BuildsFromSpecs:
    """Mixin for the zoo's models: ``fit()`` under a strategy builds from the input's specs.

    Keras 3's TensorFlow trainer builds a model under a ``tf.distribute``
    strategy by drawing the first batch and reducing it across replicas
    (``TensorFlowTrainer._maybe_symbolic_build``). Under
    ``MultiWorkerMirroredStrategy`` that fails on ``(x, y)`` batches ("Attempt
    to convert a value (PerReplica...) to a Tensor", keras-team/keras#20585)
    and costs a batch and a collective op on every ``fit()``. Only shapes and
    dtypes are needed: this builds from the dataset's ``element_spec``, which
    is the same on every worker, without reading data.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        dataset = getattr(iterator, "data_adapter", None)
        if getattr(self, "_distribute_strategy", None) is None or dataset is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        specs = keras.tree.map_structure(_local_spec, dataset.get_tf_dataset().element_spec)
        specs = _cropped(self, specs, spec=True)
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=specs)

    # Keras then averages each step's logs over the workers with
    # ``strategy.reduce("MEAN", value, axis=0)``, which fails on the scalar
    # metric values ("Invalid reduction dimension 0 for input with 0
    # dimensions", tensorflow/tensorflow#72388). Under several workers the
    # logs leave the step as shape (1,), which that reduction averages over
    # the replicas into a scalar.

    # A batch of ``make_dataset(..., augment_on="device")`` (whole frames, crop
    # boxes, flips) is cropped here, inside the compiled step, on the device it
    # runs on (keras_gated_tsn.data.device_crops).

    def train_step(self, data):
        return _logs_for_workers(self, super().train_step(_cropped(self, data)))

    def test_step(self, data):
        return _logs_for_workers(self, super().test_step(_cropped(self, data)))

    def compile_from_config(self, config):
        """Loading a ``.keras`` file: its saved compile arguments given to the
        model's own ``compile`` (:func:`compile_from_config`)."""
        compile_from_config(self, config)

    @property
    def precision(self) -> str:
        """The dtype policy the whole model was built under (one of
        :data:`keras_gated_tsn.precision.PRECISIONS`), its ``dtype`` config."""
        return self.dtype_policy.name


def _cropped(model, data, spec: bool = False):
    """``data`` = ``(x, y, ...)`` with an uncropped ``x`` (or its spec) cropped
    to the model's input size; anything else unchanged."""
    from keras_gated_tsn.data import device_crops

    if not isinstance(data, (tuple, list)) or not data or not device_crops.is_uncropped(data[0]):
        return data
    crop = device_crops.output_spec if spec else device_crops.apply
    return (crop(data[0], model.input_size), *data[1:])


class PlainLabels:
    """Mixin for multi-output models: ``fit(x, labels)`` with plain integer
    labels ``(B,)``, given to every output named by ``label_outputs`` (Keras
    asks for one target per compiled output); a dict of targets is taken as
    it is."""

    label_outputs = ()

    def _targets(self, y):
        if y is None or isinstance(y, dict):
            return y
        return {name: y for name in self.label_outputs}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return super().compute_loss(x, self._targets(y), y_pred, sample_weight, training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, self._targets(y), y_pred, sample_weight)


class TwoStreams:
    """Mixin for models built from two recorded TSN stream configs
    (``rgb_stream_config``, ``flow_stream_config``): what they share."""

    @property
    def num_classes(self) -> int:
        return int(self.rgb_stream_config["num_classes"])

    @property
    def class_names(self):
        """The class names the streams were trained with (list of ``num_classes``
        str), or None when neither stream knows them."""
        names = self.rgb_stream_config.get("class_names") or self.flow_stream_config.get("class_names")
        return list(names) if names else None

    @property
    def input_size(self) -> int:
        return int(self.rgb_stream_config["input_size"])

    @property
    def new_length(self) -> int:
        return int(self.flow_stream_config["new_length"])


class RecordsBackboneWeights:
    """Mixin: ``from_config`` of a model whose config records the
    ``backbone_weights`` it started from. A loaded model takes its weights from
    its file: it is built without looking for the original files, and keeps
    the name for provenance."""

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        provenance = config.pop("backbone_weights", None)
        model = cls(**config)
        model.backbone_weights = provenance
        return model


def _logs_for_workers(model, logs):
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is None or keras.backend.backend() != "tensorflow":
        return logs
    import tensorflow as tf

    if not (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()  # Keras' own test for this reduction
    ):
        return logs
    return {name: tf.reshape(value, (1,)) for name, value in logs.items()}


def _local_spec(spec):
    """One replica's ``tf.TensorSpec`` of a distributed dataset's ``PerReplicaSpec``."""
    value_specs = getattr(spec, "_value_specs", None)  # tf.distribute's PerReplicaSpec
    return value_specs[0] if value_specs else spec


def compile_from_config(model, config) -> None:
    """``keras.Model.compile_from_config`` for models with their own ``compile``:
    the saved optimizer, losses, loss weights and metrics, deserialized and
    given to that ``compile`` (explicit values win over its ``"auto"``
    defaults), and the optimizer built so its saved state can be loaded."""
    model.compile(**keras.saving.deserialize_keras_object(config))
    if model.built:
        model.optimizer.build(model.trainable_variables)


def with_precision(model, dtype):
    """``model`` (a :class:`~keras_gated_tsn.models.TSN` or
    :class:`~keras_gated_tsn.models.GatedTSN`) under another dtype policy.

    A new model of the same class and config built under ``dtype``, holding
    ``model``'s weights (variables are float32 under every policy, so they copy
    as they are); ``model`` itself when it already has that policy. For a
    model loaded from a ``.keras`` file, which keeps the policy it was saved
    with: e.g. a gate trained in float32 resumed under ``mixed_bfloat16``. The
    copy is not compiled (optimizer state does not carry over).

    Args:
        model: a model of this package (``get_config()`` has ``"dtype"``).
        dtype: one of :data:`keras_gated_tsn.precision.PRECISIONS`.

    Returns:
        A model of ``type(model)`` whose ``precision`` is ``dtype``.

    Raises:
        ValueError: for a ``dtype`` not in ``PRECISIONS``.
    """
    dtype = check_precision(dtype)
    if model.dtype_policy.name == dtype:
        return model
    copy = type(model).from_config({**model.get_config(), "dtype": dtype})
    copy.set_weights(model.get_weights())
    for attribute in ("backbone_weights", "gate_init"):  # provenance, as a loaded model keeps it
        if hasattr(model, attribute):
            setattr(copy, attribute, getattr(model, attribute))
    return copy


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int if it is an int >= ``minimum``.

    Raises:
        ValueError: quoting ``name`` and ``value`` otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_class_names(class_names, num_classes: int):
    """``class_names`` as a list of ``num_classes`` distinct non-empty strings, or None.

    Raises:
        ValueError: for a count other than ``num_classes``, a repeated or
            empty name, or a name that is not a string.
    """
    if class_names is None:
        return None
    if isinstance(class_names, str):
        raise ValueError(f"class_names must be a sequence of names, got the string {class_names!r}")
    names = list(class_names)
    if len(names) != int(num_classes):
        raise ValueError(f"class_names has {len(names)} names for {num_classes} classes")
    bad = [name for name in names if not isinstance(name, str) or not name]
    if bad:
        raise ValueError(f"class names must be non-empty strings, got {bad[0]!r}")
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"class names repeat: {', '.join(repeated[:5])}")
    return names


def check_ratio(name: str, value) -> float:
    """``value`` as a float if it is a ratio in [0, 1) (dropout).

    Raises:
        ValueError: quoting ``name`` and ``value`` otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def check_choice(name: str, value, choices) -> str:
    """``value`` if it is one of ``choices``.

    Raises:
        ValueError: quoting ``name``, ``value`` and the choices otherwise.
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value
