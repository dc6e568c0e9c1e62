"""What every converter shares: source layers in a neutral form, matching them
to Keras layers by name, layout conversion per layer type, and the report.

A converter (:mod:`~keras_gated_tsn.weights.caffe`,
:mod:`~keras_gated_tsn.weights.pytorch`) reads its checkpoint into
:class:`SourceLayer` objects whose arrays are in the layout Caffe and PyTorch
share (convolution kernels ``(out, in/groups, kh, kw)``, fully connected
weights ``(out, in)``), and :func:`load_source_layers` does the rest:

* **names**: each source layer names the Keras layer it fills
  (``SourceLayer.keras_name``: the Caffe name with ``/`` replaced by ``_``,
  the PyTorch module path with ``.`` replaced by ``_``); when the model has no
  such layer, ``rename`` and then :func:`fallback_names` (ImageNet classifier
  names → ``predictions``; Caffe VGG16 names → keras.applications names) are
  tried;
* **layout**: convolution ``(out, in/g, kh, kw)`` → Keras ``(kh, kw, in/g,
  out)`` (the same transpose for grouped convolutions: both frameworks split
  input and output channels into contiguous groups); fully connected ``(out,
  in)`` → ``(in, out)``, and when the Keras ``Dense`` reads a ``Flatten`` of an
  ``(h, w, c)`` map, the input axis is permuted from Caffe's/PyTorch's
  channel-major ``(c, h, w)`` flatten order to Keras's ``(h, w, c)``; batch
  normalisation → ``[gamma, beta, moving_mean, moving_variance]``, the
  variance shifted by ``eps_source - eps_keras`` when the two epsilons differ
  (exact: BN only ever uses ``variance + eps``);
* **checks**: every source layer with weights must find a Keras layer of the
  right type and shapes — except fully connected layers when *none* of them
  has a Keras counterpart (the checkpoint's classifier and a Keras model built
  without top: skipped and reported). All problems are collected and raised
  together in one ``ValueError``; the model is changed only when there are
  none.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from keras_gated_tsn.weights.transfer import cross_modality_kernel

#: Source layer kinds.
CONV, DENSE, BN = "conv", "dense", "bn"

#: Classifier names of public ImageNet checkpoints (Caffe or PyTorch, already
#: with ``/`` and ``.`` replaced by ``_``), loaded into a Keras top named
#: ``predictions`` when the model has one and no layer of the same name.
IMAGENET_CLASSIFIER_NAMES = ("fc", "last_linear", "fc1000", "classifier", "loss3_classifier", "fc8")

#: The TSN stream classifier (Caffe ``fc-action``; ``new_fc`` in TSN PyTorch).
TSN_CLASSIFIER = "fc-action"

_VGG_CAFFE_CONV = re.compile(r"conv(\d)_(\d)$")
_VGG_CAFFE_FC = {"fc6": "fc1", "fc7": "fc2", "fc8": "predictions"}


@dataclasses.dataclass
class SourceLayer:
    """One layer with weights, read from a checkpoint.

    Attributes:
        name: its name in the checkpoint (Caffe layer name, PyTorch module path).
        kind: ``"conv"``, ``"dense"``, ``"bn"``, or another string for a layer
            type no converter handles (always an error unless skipped).
        keras_name: the Keras layer name it fills by default.
        arrays: ``conv``: ``weight`` ``(out, in/g, kh, kw)`` and optional
            ``bias`` ``(out,)``; ``dense``: ``weight`` ``(out, in)`` and
            optional ``bias``; ``bn``: ``gamma``, ``beta``, ``mean``,
            ``variance`` (each ``(C,)``) and ``eps`` (a float).
        detail: what the source called it (e.g. ``"Caffe BN"``), for messages.
        alt_names: other Keras names to try after ``keras_name`` (e.g. the
            ``Scale`` layer of a Caffe ``BatchNorm``/``Scale`` pair).
    """

    name: str
    kind: str
    keras_name: str
    arrays: Dict[str, object]
    detail: str = ""
    alt_names: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ConversionReport:
    """What a conversion did.

    Attributes:
        source: the checkpoint path.
        format: ``"caffe"`` or ``"pytorch"``.
        loaded: Keras layer name → source layer name, for every Keras layer
            that received weights.
        skipped: source layer name → reason, for layers deliberately left out
            (a classifier the Keras model has no layer for, ``skip=``).
        missing: Keras layers with weights that received none (they keep their
            initialisation; e.g. a new classifier).
        notes: anything else worth knowing (renamed layers, epsilon shifts,
            cross-modality first convolution).
        destination: the written ``.weights.h5`` (:func:`convert_weights`).
        model_kind: ``"backbone"`` or ``"tsn"`` (:func:`convert_weights`).
        load_hint: Python code that rebuilds the model the file loads into.
    """

    source: str
    format: str
    loaded: Dict[str, str] = dataclasses.field(default_factory=dict)
    skipped: Dict[str, str] = dataclasses.field(default_factory=dict)
    missing: List[str] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)
    destination: Optional[str] = None
    model_kind: Optional[str] = None
    load_hint: Optional[str] = None

    @property
    def complete(self) -> bool:
        """True when every Keras layer with weights received some."""
        return not self.missing

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [f"{self.format} checkpoint {self.source}: {len(self.loaded)} Keras layers filled"]
        if self.skipped:
            lines.append(
                "skipped source layers: "
                + "; ".join(f"{name} ({reason})" for name, reason in self.skipped.items())
            )
        if self.missing:
            lines.append(
                f"Keras layers that received no weights ({len(self.missing)}, they keep their "
                f"initialisation): {', '.join(self.missing)}"
            )
        lines.extend(self.notes)
        if self.destination:
            lines.append(f"wrote {self.destination} ({self.model_kind})")
        if self.load_hint:
            lines.append(f"load it with: {self.load_hint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def keras_layers(model) -> Dict[str, object]:
    """All layers of ``model`` by name, nested models included.

    Raises:
        ValueError: if two layers share a name (they could not be told apart).
    """
    found: Dict[str, object] = {}

    def visit(container):
        for layer in container.layers:
            if layer.name in found and found[layer.name] is not layer:
                raise ValueError(
                    f"model {model.name!r} has two layers named {layer.name!r}; weights are matched "
                    "by layer name, so names must be unique"
                )
            found[layer.name] = layer
            if hasattr(layer, "layers") and layer.layers:
                visit(layer)

    visit(model)
    return found


def fallback_names(keras_name: str, kind: str) -> List[str]:
    """Keras names to try, in order, when the model has no layer ``keras_name``.

    * an ImageNet classifier (:data:`IMAGENET_CLASSIFIER_NAMES`) → ``predictions``
      (the top of a backbone built with ``include_top=True``);
    * Caffe's VGG16 names (``conv3_2``, ``fc6``, ``fc7``, ``fc8``) →
      keras.applications' (``block3_conv2``, ``fc1``, ``fc2``, ``predictions``).
    """
    names = []
    match = _VGG_CAFFE_CONV.match(keras_name)
    if match and kind == CONV:
        names.append(f"block{match.group(1)}_conv{match.group(2)}")
    if kind == DENSE:
        if keras_name in _VGG_CAFFE_FC:
            names.append(_VGG_CAFFE_FC[keras_name])
        if keras_name in IMAGENET_CLASSIFIER_NAMES:
            names.append("predictions")
    return names


def flatten_source_shape(model, layer) -> Optional[tuple]:
    """``(h, w, c)`` when the Keras ``Dense`` ``layer`` of ``model`` reads a
    channels-last ``Flatten`` (possibly through Dropout/Activation layers),
    else ``None``. Walks the graph backwards with the layers' public ``input``
    and ``output`` tensors."""
    import keras

    passthrough = (keras.layers.Dropout, keras.layers.Activation, keras.layers.ReLU)
    producers = {}
    for candidate in keras_layers(model).values():
        try:
            output = candidate.output
        except (AttributeError, ValueError):  # never called, or called several times
            continue
        if not isinstance(output, (list, tuple, dict)):
            producers[id(output)] = candidate
    try:
        tensor = layer.input
    except (AttributeError, ValueError):
        return None
    while not isinstance(tensor, (list, tuple, dict)):
        producer = producers.get(id(tensor))
        if isinstance(producer, keras.layers.Flatten):
            shape = producer.input.shape
            if len(shape) != 4 or getattr(producer, "data_format", "channels_last") != "channels_last":
                return None
            return tuple(shape[1:])
        if not isinstance(producer, passthrough):
            return None
        tensor = producer.input
    return None


def _shapes(arrays: Sequence[np.ndarray]) -> List[tuple]:
    return [tuple(a.shape) for a in arrays]


def _conv_weights(source: SourceLayer, layer, cross_modality: bool, notes: List[str]):
    import keras

    if not isinstance(layer, keras.layers.Conv2D) or isinstance(
        layer, (keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
    ):
        raise TypeError(f"a convolution cannot fill Keras layer of type {type(layer).__name__}")
    weight = np.asarray(source.arrays["weight"], dtype=np.float32)
    if weight.ndim != 4:
        raise TypeError(f"expected a 4-D kernel (out, in/groups, kh, kw), got shape {weight.shape}")
    kernel = weight.transpose(2, 3, 1, 0)
    expected = tuple(layer.kernel.shape)
    if (
        cross_modality
        and kernel.shape != expected
        and kernel.shape[2] == 3
        and kernel.shape[:2] == expected[:2]
        and kernel.shape[3] == expected[3]
    ):
        kernel = cross_modality_kernel(kernel, expected[2])  # TSN Sec. 3.2
        notes.append(
            f"{layer.name}: RGB kernel averaged over colour and replicated to {expected[2]} input "
            "channels (TSN cross-modality initialisation)"
        )
    values = [kernel]
    bias = source.arrays.get("bias")
    if layer.use_bias:
        values.append(np.zeros(kernel.shape[-1], np.float32) if bias is None else np.ravel(bias))
    elif bias is not None and np.any(np.asarray(bias) != 0):
        raise TypeError("the checkpoint has a non-zero bias but the Keras convolution has use_bias=False")
    return values


def _dense_weights(source: SourceLayer, layer, model, notes: List[str]):
    import keras

    if not isinstance(layer, keras.layers.Dense):
        raise TypeError(f"a fully connected layer cannot fill Keras layer of type {type(layer).__name__}")
    weight = np.asarray(source.arrays["weight"], dtype=np.float32)
    if weight.ndim != 2:
        raise TypeError(f"expected a 2-D weight (out, in), got shape {weight.shape}")
    out, inputs = weight.shape
    flat = flatten_source_shape(model, layer)
    if flat is not None and None not in flat and int(np.prod(flat)) == inputs and np.prod(flat[:2]) > 1:
        height, width, channels = flat
        kernel = (
            weight.reshape(out, channels, height, width).transpose(2, 3, 1, 0).reshape(inputs, out)
        )
        notes.append(
            f"{layer.name}: input axis permuted from channel-major (c={channels}, h={height}, "
            f"w={width}) to Keras (h, w, c) flatten order"
        )
    else:
        kernel = weight.T
    values = [kernel]
    bias = source.arrays.get("bias")
    if layer.use_bias:
        values.append(np.zeros(out, np.float32) if bias is None else np.ravel(bias))
    elif bias is not None and np.any(np.asarray(bias) != 0):
        raise TypeError("the checkpoint has a non-zero bias but the Keras Dense has use_bias=False")
    return values


def _bn_weights(source: SourceLayer, layer, notes: List[str]):
    import keras

    if not isinstance(layer, keras.layers.BatchNormalization):
        raise TypeError(f"batch normalisation cannot fill Keras layer of type {type(layer).__name__}")
    arrays = {
        k: np.ravel(np.asarray(source.arrays[k], dtype=np.float32))
        for k in ("gamma", "beta", "mean", "variance")
    }
    eps = float(source.arrays.get("eps", layer.epsilon))
    variance = arrays["variance"]
    if not np.isclose(eps, layer.epsilon, rtol=1e-4, atol=0.0):
        variance = variance + np.float32(eps - layer.epsilon)
        clipped = int(np.sum(variance < 0))
        variance = np.maximum(variance, 0.0)
        note = f"{layer.name}: variance shifted by eps {eps:g} - {layer.epsilon:g} (source vs Keras epsilon)"
        if clipped:
            note += f"; {clipped} channels clipped at 0 (not exact there)"
        notes.append(note)
    values = []
    if layer.scale:
        values.append(arrays["gamma"])
    elif np.any(arrays["gamma"] != 1):
        raise TypeError("the checkpoint has a scale but the Keras BatchNormalization has scale=False")
    if layer.center:
        values.append(arrays["beta"])
    elif np.any(arrays["beta"] != 0):
        raise TypeError("the checkpoint has a shift but the Keras BatchNormalization has center=False")
    values += [arrays["mean"], variance]
    return values


def source_shapes(source: SourceLayer) -> str:
    """The shapes of a source layer's arrays, for messages."""
    parts = []
    for key, value in source.arrays.items():
        if isinstance(value, np.ndarray):
            parts.append(f"{key} {tuple(value.shape)}")
    return ", ".join(parts)


def load_source_layers(
    model,
    sources: Iterable[SourceLayer],
    *,
    report: ConversionReport,
    rename: Optional[Mapping[str, str]] = None,
    skip: Iterable[str] = (),
    cross_modality: bool = False,
    fallback: Callable[[str, str], List[str]] = fallback_names,
    allow_partial: bool = False,
) -> ConversionReport:
    """Fills the layers of ``model`` from ``sources`` in place (see the module doc).

    Args:
        model: a built Keras model.
        sources: the checkpoint's layers.
        report: filled in and returned.
        rename: source layer name (or its default Keras name) → Keras layer
            name, tried before the built-in fallbacks.
        skip: source layer names (or their default Keras names) to leave out.
        cross_modality: a 3-channel first convolution fills a Keras
            convolution with more input channels by TSN's cross-modality
            initialisation (channel mean, replicated) instead of failing.
        fallback: source Keras name, kind → other Keras names to try.
        allow_partial: accept a checkpoint that leaves some Keras layers with
            weights unfilled (they keep their initialisation and are listed in
            ``report.missing``); by default that is an error.

    Returns:
        ``report``.

    Raises:
        ValueError: listing every source layer with weights that has no Keras
            layer, every type mismatch and every shape mismatch (layer names
            and both shapes), or else, unless ``allow_partial``, every Keras
            layer the checkpoint does not fill (an empty checkpoint fills none);
            the model is unchanged then.
    """
    rename = dict(rename or {})
    skip = set(skip)
    layers = keras_layers(model)
    sources = list(sources)
    plan = []  # (source, keras layer)
    unmatched: List[SourceLayer] = []
    targets: Dict[str, str] = {}
    for source in sources:
        if source.name in skip or source.keras_name in skip:
            report.skipped[source.name] = "skip requested"
            continue
        candidates = []
        for key in (source.name, source.keras_name):
            if key in rename:
                candidates.append(rename[key])
        candidates.append(source.keras_name)
        candidates += source.alt_names
        candidates += fallback(source.keras_name, source.kind)
        target = next((name for name in candidates if name in layers), None)
        if target is None:
            unmatched.append(source)
            continue
        if target in targets:
            raise ValueError(
                f"source layers {targets[target]!r} and {source.name!r} both map to Keras layer "
                f"{target!r}; pass rename= or skip= to disambiguate"
            )
        targets[target] = source.name
        if target != source.keras_name:
            report.notes.append(f"{source.name} -> Keras layer {target!r}")
        plan.append((source, layers[target]))

    problems: List[str] = []
    any_dense_matched = any(source.kind == DENSE for source, _ in plan)
    for source in unmatched:
        if source.kind == DENSE and not any_dense_matched:
            report.skipped[source.name] = (
                f"fully connected {source_shapes(source)}: the Keras model has no layer for it "
                "(built without this classifier/top)"
            )
        else:
            problems.append(
                f"{source.detail or source.kind} layer {source.name!r} ({source_shapes(source)}) has "
                f"no Keras layer named {source.keras_name!r} in model {model.name!r}"
            )

    assignments = []
    for source, layer in plan:
        notes: List[str] = []
        try:
            if source.kind == CONV:
                values = _conv_weights(source, layer, cross_modality, notes)
            elif source.kind == DENSE:
                values = _dense_weights(source, layer, model, notes)
            elif source.kind == BN:
                values = _bn_weights(source, layer, notes)
            else:
                raise TypeError(f"no converter for {source.detail or source.kind} layers")
        except TypeError as error:
            problems.append(f"{source.name!r} -> Keras {layer.name!r}: {error}")
            continue
        expected = _shapes(layer.get_weights())
        got = _shapes(values)
        if expected != got:
            hint = ""
            if source.kind == CONV and expected and len(expected[0]) == 4 and expected[0][2] != got[0][2]:
                have, want = got[0][2], expected[0][2]
                if have == 3:
                    advice = (
                        "an RGB kernel into a model with more input channels: pass cross_modality=True "
                        "(CLI --cross-modality) for TSN's cross-modality initialisation, or build an "
                        "RGB model (--modality rgb)"
                    )
                elif have % 2 == 0:
                    advice = (
                        f"a flow kernel: build a flow model with new_length={have // 2} "
                        f"(--modality flow --new-length {have // 2})"
                    )
                else:
                    advice = "the model's input channels differ from the checkpoint's"
                hint = f" (input channels {have} vs {want}: {advice})"
            problems.append(
                f"{source.detail or source.kind} layer {source.name!r} -> Keras {layer.name!r}: "
                f"checkpoint shapes {source_shapes(source)} (in Keras layout {got}) but the Keras "
                f"layer has {expected}{hint}"
            )
            continue
        assignments.append((source, layer, values, notes))

    filled = {layer.name for _, layer, _, _ in assignments}
    missing = [
        name for name, layer in layers.items()
        if layer.weights and name not in filled and not (hasattr(layer, "layers") and layer.layers)
    ]
    if missing and not allow_partial and not problems:
        total = len(missing) + len(filled)
        problems.append(
            f"the checkpoint fills {len(filled)} of the {total} Keras layers with weights; these would keep "
            f"their random initialisation: {', '.join(missing)} (pass allow_partial=True, CLI "
            "--allow-partial, to convert a part on purpose)"
        )
    if problems:
        raise ValueError(
            f"cannot convert {report.source} into model {model.name!r}:\n  - " + "\n  - ".join(problems)
        )
    for source, layer, values, notes in assignments:
        dtypes = [w.dtype for w in layer.get_weights()]
        layer.set_weights([np.asarray(v).astype(d) for v, d in zip(values, dtypes)])
        report.loaded[layer.name] = source.name
        report.notes.extend(notes)
    report.missing = missing
    return report
