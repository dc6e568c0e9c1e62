"""Caffe ``.caffemodel`` → a built Keras model.

Reads the binary ``NetParameter`` with the schema of
:mod:`keras_gated_tsn.weights.caffe_pb` (V2 ``layer`` messages, and the
deprecated V1/V0 ``layers`` of old files such as BVLC's CaffeNet) and fills the
Keras layers of the same name (``/`` → ``_``).

Layer types and their blobs:

* ``Convolution``: weight ``(out, in/group, kh, kw)``, bias ``(out,)`` →
  Keras ``Conv2D`` ``(kh, kw, in/group, out)`` (grouped convolutions included);
* ``InnerProduct``: weight ``(out, in)`` (legacy files: ``(1, 1, out, in)``),
  bias → Keras ``Dense`` ``(in, out)``, its input axis permuted from Caffe's
  ``(c, h, w)`` flatten order when the ``Dense`` reads a ``Flatten``;
* ``BN`` (TSN's layer, yjxiong/caffe fork): four blobs, each ``C`` values
  (stored ``(1, C)`` or ``(1, C, 1, 1)``): **scale, shift, running mean,
  running variance**, computing ``scale * (x - mean) / sqrt(var + eps) +
  shift`` (``eps`` from ``bn_param``, default 1e-5). This is what the fork's
  ``bn_layer.cpp`` allocates (``blobs_[0]`` slope, ``[1]`` bias, ``[2]`` moving
  average mean, ``[3]`` moving average variance) and uses at test time or when
  ``frozen``. → Keras ``BatchNormalization`` ``[gamma, beta, moving_mean,
  moving_variance]``;
* ``BatchNorm`` (BVLC) with the ``Scale`` layer that follows it: blobs
  ``mean·s, var·s, s`` (``s`` the moving-average scale factor; Caffe divides
  by it, 0 meaning 0) and Scale's ``gamma`` (and ``beta`` with
  ``bias_term``); the pair fills the Keras BN named after the ``BatchNorm``
  layer (or, failing that, after the ``Scale`` layer). A ``BatchNorm``
  without ``Scale`` gets gamma 1, beta 0.

Channel order is kept: Caffe networks take BGR, and so do this package's
backbones (their preprocessing converts RGB to BGR), so no flip is needed.
Layers without blobs (ReLU, pooling, LRN, concat, dropout) are ignored.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, List, Mapping, Optional

import numpy as np

from keras_gated_tsn.weights import caffe_pb
from keras_gated_tsn.weights.common import (
    BN,
    CONV,
    DENSE,
    ConversionReport,
    SourceLayer,
    load_source_layers,
)


@dataclasses.dataclass
class CaffeLayer:
    """One layer of a ``.caffemodel``: name, type string, blobs (float32
    arrays in Caffe's shapes), bottoms, tops and, for BN layers, epsilon."""

    name: str
    type: str
    blobs: List[np.ndarray]
    bottom: List[str]
    top: List[str]
    eps: Optional[float] = None


def caffe_to_keras_name(name: str) -> str:
    """This package's Keras name of a Caffe layer: ``/`` replaced by ``_``."""
    return name.replace("/", "_")


def read_caffemodel(path) -> List[CaffeLayer]:
    """Parses a binary ``.caffemodel`` into its layers, in file order.

    Raises:
        ValueError: if the file is not a ``NetParameter`` this schema can read
            (naming the file), or a blob's data does not fill its shape.
        OSError: if the file cannot be read.
    """
    path = os.fspath(path)
    with open(path, "rb") as handle:
        payload = handle.read()
    net = caffe_pb.NetParameter()
    try:
        net.ParseFromString(payload)
    except Exception as error:  # google.protobuf.message.DecodeError and friends
        raise ValueError(f"{path}: not a binary Caffe NetParameter (.caffemodel): {error}") from error
    layers: List[CaffeLayer] = []
    for layer in net.layer:
        eps = None
        if layer.type == "BN":
            eps = layer.bn_param.eps
        elif layer.type == "BatchNorm":
            eps = layer.batch_norm_param.eps
        layers.append(
            CaffeLayer(
                name=layer.name,
                type=layer.type,
                blobs=[caffe_pb.blob_to_array(b, f"{path}: layer {layer.name!r}") for b in layer.blobs],
                bottom=list(layer.bottom),
                top=list(layer.top),
                eps=eps,
            )
        )
    for layer in net.layers:  # V1 (and V0 nested in it)
        if layer.HasField("layer"):
            v0 = layer.layer
            name, kind, blobs = v0.name, _V0_TYPES.get(v0.type, v0.type), v0.blobs
        else:
            name, blobs = layer.name, layer.blobs
            kind = caffe_pb.V1_LAYER_TYPES.get(layer.type, f"V1 type {layer.type}")
        layers.append(
            CaffeLayer(
                name=name,
                type=kind,
                blobs=[caffe_pb.blob_to_array(b, f"{path}: layer {name!r}") for b in blobs],
                bottom=list(layer.bottom),
                top=list(layer.top),
            )
        )
    if not layers and payload:
        raise ValueError(f"{path}: no Caffe layers found (is it a .caffemodel, not a .prototxt?)")
    return layers


_V0_TYPES = {"conv": "Convolution", "innerproduct": "InnerProduct"}


def _vector(array: np.ndarray, name: str, what: str, channels: Optional[int] = None) -> np.ndarray:
    values = np.ravel(array).astype(np.float32)
    if channels is not None and values.size != channels:
        raise ValueError(f"Caffe layer {name!r}: {what} has {values.size} values, expected {channels}")
    return values


def _fc_weight(array: np.ndarray) -> np.ndarray:
    shape = array.shape
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    return array.reshape(shape)


def caffe_source_layers(layers: Iterable[CaffeLayer]) -> List[SourceLayer]:
    """The layers with weights as :class:`SourceLayer` (see the module doc).

    Raises:
        ValueError: for a BN layer without running statistics, or blobs whose
            number or size do not fit the layer type.
    """
    layers = list(layers)
    sources: List[SourceLayer] = []
    scale_for: dict = {}
    # Pair each BatchNorm with the Scale layer that consumes its output.
    producers = {}
    for index, layer in enumerate(layers):
        if layer.type == "BatchNorm" and layer.top:
            producers[layer.top[0]] = index
        elif layer.type == "Scale" and layer.bottom and layer.bottom[0] in producers:
            scale_for[producers.pop(layer.bottom[0])] = index
        elif layer.top:
            for top in layer.top:
                producers.pop(top, None)
    consumed_scales = set(scale_for.values())

    for index, layer in enumerate(layers):
        if not layer.blobs or index in consumed_scales:
            continue
        name, blobs = layer.name, layer.blobs
        keras_name = caffe_to_keras_name(name)
        detail = f"Caffe {layer.type}"
        if layer.type in ("Convolution", "InnerProduct"):
            weight = blobs[0] if layer.type == "Convolution" else _fc_weight(blobs[0])
            arrays = {"weight": weight}
            if len(blobs) > 1:
                arrays["bias"] = _vector(blobs[1], name, "bias", weight.shape[0])
            kind = CONV if layer.type == "Convolution" else DENSE
            sources.append(SourceLayer(name, kind, keras_name, arrays, detail))
        elif layer.type == "BN":
            if len(blobs) != 4:
                raise ValueError(
                    f"Caffe BN layer {name!r} has {len(blobs)} blobs; expected 4 (scale, shift, "
                    "running mean, running variance)"
                )
            channels = blobs[0].size
            gamma, beta, mean, variance = (
                _vector(b, name, what, channels)
                for b, what in zip(blobs, ("scale", "shift", "running mean", "running variance"))
            )
            arrays = {"gamma": gamma, "beta": beta, "mean": mean, "variance": variance, "eps": layer.eps}
            sources.append(SourceLayer(name, BN, keras_name, arrays, detail))
        elif layer.type == "BatchNorm":
            if len(blobs) != 3:
                raise ValueError(
                    f"Caffe BatchNorm layer {name!r} has {len(blobs)} blobs; expected 3 "
                    "(mean, variance, scale factor)"
                )
            factor = float(np.ravel(blobs[2])[0])
            factor = 0.0 if factor == 0 else 1.0 / factor
            mean = _vector(blobs[0], name, "mean") * factor
            variance = _vector(blobs[1], name, "variance", mean.size) * factor
            gamma, beta = np.ones_like(mean), np.zeros_like(mean)
            if index in scale_for:
                scale = layers[scale_for[index]]
                gamma = _vector(scale.blobs[0], scale.name, "scale", mean.size)
                if len(scale.blobs) > 1:
                    beta = _vector(scale.blobs[1], scale.name, "bias", mean.size)
                detail = f"Caffe BatchNorm+Scale ({scale.name!r})"
            arrays = {"gamma": gamma, "beta": beta, "mean": mean, "variance": variance, "eps": layer.eps}
            alt = [caffe_to_keras_name(layers[scale_for[index]].name)] if index in scale_for else []
            sources.append(SourceLayer(name, BN, keras_name, arrays, detail, alt))
        else:
            arrays = {f"blob{i}": b for i, b in enumerate(blobs)}
            sources.append(SourceLayer(name, layer.type, keras_name, arrays, detail))
    return sources


def convert_caffe(
    caffemodel_path,
    keras_model,
    *,
    rename: Optional[Mapping[str, str]] = None,
    skip: Iterable[str] = (),
    cross_modality: bool = False,
    allow_partial: bool = False,
) -> ConversionReport:
    """Fills ``keras_model`` in place from a ``.caffemodel``.

    Each Caffe layer with weights fills the Keras layer of the same name with
    ``/`` replaced by ``_`` (``inception_3a/1x1_bn`` → ``inception_3a_1x1_bn``);
    Caffe's VGG16 names and ImageNet classifier names fall back to
    keras.applications' (see :func:`keras_gated_tsn.weights.common.fallback_names`).
    A checkpoint's fully connected layers are skipped (and reported) when the
    Keras model has a layer for none of them (a backbone built without top).

    Args:
        caffemodel_path: the binary ``.caffemodel``.
        keras_model: a built Keras model (a backbone of
            :mod:`keras_gated_tsn.backbones`, a TSN stream, ...).
        rename: Caffe layer name → Keras layer name, for names that differ.
        skip: Caffe layer names to leave out.
        cross_modality: fill a Keras first convolution with more input
            channels (a flow model) from a 3-channel RGB kernel by TSN's
            cross-modality initialisation, instead of failing.
        allow_partial: accept a checkpoint that fills only some of the Keras
            layers with weights (by default an error naming the others).

    Returns:
        A :class:`~keras_gated_tsn.weights.common.ConversionReport`
        (``missing`` lists the Keras layers that received no weights).

    Raises:
        ValueError: a Caffe layer with weights has no Keras layer, a layer type
            does not fit, or shapes differ (all named, with both shapes); the
            checkpoint leaves Keras layers with weights unfilled (named; unless
            ``allow_partial``); the file is not a ``.caffemodel``. The model is
            unchanged then.
        OSError: the file cannot be read.
    """
    path = os.fspath(caffemodel_path)
    sources = caffe_source_layers(read_caffemodel(path))
    report = ConversionReport(source=path, format="caffe")
    return load_source_layers(
        keras_model, sources, report=report, rename=rename, skip=skip,
        cross_modality=cross_modality, allow_partial=allow_partial,
    )


def write_caffemodel(path, layers: Iterable[CaffeLayer], name: str = "net", legacy: bool = False) -> None:
    """Writes ``layers`` as a binary ``.caffemodel`` (this package's schema).

    For tests and for making small files by hand. ``legacy`` writes the V1
    ``layers`` field (Convolution and InnerProduct only) with legacy 4-D blob
    shapes, as old files such as BVLC's CaffeNet have.
    """
    net = caffe_pb.NetParameter(name=name)
    v1_codes = {kind: code for code, kind in caffe_pb.V1_LAYER_TYPES.items()}
    for layer in layers:
        if legacy:
            if layer.type not in v1_codes:
                raise ValueError(f"legacy files hold only {sorted(v1_codes)} layers, got {layer.type!r}")
            message = net.layers.add(name=layer.name, type=v1_codes[layer.type])
            blobs = []
            for i, blob in enumerate(layer.blobs):
                if layer.type == "InnerProduct":
                    blob = blob.reshape((1, 1) + blob.shape) if i == 0 else blob.reshape(1, 1, 1, -1)
                elif i == 1:
                    blob = blob.reshape(1, 1, 1, -1)
                blobs.append(caffe_pb.blob_from_array(blob, legacy=True))
        else:
            message = net.layer.add(name=layer.name, type=layer.type)
            blobs = [caffe_pb.blob_from_array(b) for b in layer.blobs]
            if layer.eps is not None and layer.type == "BN":
                message.bn_param.eps = layer.eps
            elif layer.eps is not None and layer.type == "BatchNorm":
                message.batch_norm_param.eps = layer.eps
        message.bottom.extend(layer.bottom)
        message.top.extend(layer.top)
        message.blobs.extend(blobs)
    from keras_gated_tsn.atomic import atomic_write

    atomic_write(path, lambda handle: handle.write(net.SerializeToString()), binary=True)
