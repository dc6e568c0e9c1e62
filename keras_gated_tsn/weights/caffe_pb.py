"""The part of Caffe's ``caffe.proto`` a weight converter needs, built at import.

A ``.caffemodel`` is a binary ``caffe.NetParameter`` protocol buffer. Rather
than shipping a generated ``caffe_pb2.py`` (or needing ``protoc``), this module
describes the few messages and fields the converter reads in a
``FileDescriptorProto`` written in Python, adds it to a private descriptor pool
(so it never clashes with a ``caffe_pb2`` a user may have imported) and asks the
``protobuf`` runtime for the message classes. Fields not described here are
skipped by the parser (protobuf keeps them as unknown fields), so files from
any Caffe fork parse.

Field numbers are those of Caffe's public ``src/caffe/proto/caffe.proto``
(BVLC, and the yjxiong/caffe fork TSN used for its ``BN`` layer):

=====================  ==========================================================
``NetParameter``       ``name`` 1, ``layers`` 2 (V1, deprecated), ``layer`` 100
``LayerParameter``     ``name`` 1, ``type`` 2, ``bottom`` 3, ``top`` 4,
                       ``blobs`` 7, ``bn_param`` 137 (yjxiong fork),
                       ``batch_norm_param`` 139 (BVLC)
``V1LayerParameter``   ``layer`` 1 (V0), ``bottom`` 2, ``top`` 3, ``name`` 4,
                       ``type`` 5 (enum ``LayerType``, read as an int), ``blobs`` 6
``V0LayerParameter``   ``name`` 1, ``type`` 2 (a string), ``blobs`` 50
``BlobProto``          ``num`` 1, ``channels`` 2, ``height`` 3, ``width`` 4
                       (legacy 4-D shape), ``data`` 5 (packed float),
                       ``shape`` 7, ``double_data`` 8 (packed double)
``BlobShape``          ``dim`` 1 (packed int64)
``BNParameter``        ``eps`` 4 (default 1e-5)
``BatchNormParameter`` ``eps`` 3 (default 1e-5)
=====================  ==========================================================

The message classes are ``NetParameter``, ``LayerParameter``,
``V1LayerParameter``, ``V0LayerParameter``, ``BlobProto``, ``BlobShape``,
``BNParameter`` and ``BatchNormParameter``; they also serialise, which is how
the tests write ``.caffemodel`` files (see :func:`blob_from_array`).
"""

from __future__ import annotations

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "caffe"

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_TYPES = {
    "string": _F.TYPE_STRING,
    "float": _F.TYPE_FLOAT,
    "double": _F.TYPE_DOUBLE,
    "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64,
    "bool": _F.TYPE_BOOL,
}

# message -> [(field name, number, label, type or message name, packed, default)]
_SCHEMA = {
    "BlobShape": [("dim", 1, _REPEATED, "int64", True, None)],
    "BlobProto": [
        ("num", 1, _OPTIONAL, "int32", False, "0"),
        ("channels", 2, _OPTIONAL, "int32", False, "0"),
        ("height", 3, _OPTIONAL, "int32", False, "0"),
        ("width", 4, _OPTIONAL, "int32", False, "0"),
        ("data", 5, _REPEATED, "float", True, None),
        ("shape", 7, _OPTIONAL, "BlobShape", False, None),
        ("double_data", 8, _REPEATED, "double", True, None),
    ],
    "BNParameter": [("eps", 4, _OPTIONAL, "float", False, "1e-05")],
    "BatchNormParameter": [("eps", 3, _OPTIONAL, "float", False, "1e-05")],
    "LayerParameter": [
        ("name", 1, _OPTIONAL, "string", False, None),
        ("type", 2, _OPTIONAL, "string", False, None),
        ("bottom", 3, _REPEATED, "string", False, None),
        ("top", 4, _REPEATED, "string", False, None),
        ("blobs", 7, _REPEATED, "BlobProto", False, None),
        ("bn_param", 137, _OPTIONAL, "BNParameter", False, None),
        ("batch_norm_param", 139, _OPTIONAL, "BatchNormParameter", False, None),
    ],
    "V0LayerParameter": [
        ("name", 1, _OPTIONAL, "string", False, None),
        ("type", 2, _OPTIONAL, "string", False, None),
        ("blobs", 50, _REPEATED, "BlobProto", False, None),
    ],
    "V1LayerParameter": [
        ("layer", 1, _OPTIONAL, "V0LayerParameter", False, None),
        ("bottom", 2, _REPEATED, "string", False, None),
        ("top", 3, _REPEATED, "string", False, None),
        ("name", 4, _OPTIONAL, "string", False, None),
        ("type", 5, _OPTIONAL, "int32", False, None),
        ("blobs", 6, _REPEATED, "BlobProto", False, None),
    ],
    "NetParameter": [
        ("name", 1, _OPTIONAL, "string", False, None),
        ("layers", 2, _REPEATED, "V1LayerParameter", False, None),
        ("layer", 100, _REPEATED, "LayerParameter", False, None),
    ],
}

#: ``V1LayerParameter.LayerType`` values of the layers that carry weights,
#: mapped to the V2 type strings (caffe.proto, ``enum LayerType``).
V1_LAYER_TYPES = {4: "Convolution", 14: "InnerProduct", 39: "Deconvolution"}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="keras_gated_tsn/caffe_subset.proto", package=PACKAGE, syntax="proto2"
    )
    for message_name, fields in _SCHEMA.items():
        message = proto.message_type.add(name=message_name)
        for name, number, label, kind, packed, default in fields:
            field = message.field.add(name=name, number=number, label=label)
            if kind in _TYPES:
                field.type = _TYPES[kind]
            else:
                field.type = _F.TYPE_MESSAGE
                field.type_name = f".{PACKAGE}.{kind}"
            if packed:
                field.options.packed = True
            if default is not None:
                field.default_value = default
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())


def _message_class(name: str):
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


BlobShape = _message_class("BlobShape")
BlobProto = _message_class("BlobProto")
BNParameter = _message_class("BNParameter")
BatchNormParameter = _message_class("BatchNormParameter")
LayerParameter = _message_class("LayerParameter")
V0LayerParameter = _message_class("V0LayerParameter")
V1LayerParameter = _message_class("V1LayerParameter")
NetParameter = _message_class("NetParameter")


def blob_shape(blob) -> tuple:
    """The shape of a ``BlobProto``: ``shape.dim`` if set, else the legacy
    ``(num, channels, height, width)``."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)


def blob_to_array(blob, where: str = "blob") -> np.ndarray:
    """A ``BlobProto`` as a float32 array of its shape.

    Raises:
        ValueError: if the number of values does not match the shape (``where``
            names the layer in the message).
    """
    shape = blob_shape(blob)
    if len(blob.data):
        values = np.asarray(blob.data, dtype=np.float32)
    else:
        values = np.asarray(blob.double_data, dtype=np.float64).astype(np.float32)
    if values.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"{where}: {values.size} values do not fill the declared shape {shape}")
    return values.reshape(shape)


def blob_from_array(array, legacy: bool = False):
    """A ``BlobProto`` holding ``array`` (float32) with its shape.

    Args:
        array: up to 4-D for ``legacy``, any rank otherwise.
        legacy: write the deprecated ``num/channels/height/width`` fields
            (left-padded with 1s) instead of ``shape``, as old files do.
    """
    array = np.asarray(array, dtype=np.float32)
    blob = BlobProto()
    if legacy:
        if array.ndim > 4:
            raise ValueError(f"a legacy blob holds at most 4 axes, got shape {array.shape}")
        dims = (1,) * (4 - array.ndim) + array.shape
        blob.num, blob.channels, blob.height, blob.width = (int(d) for d in dims)
    else:
        blob.shape.dim.extend(int(d) for d in array.shape)
    # ``data`` (field 5, packed) written as its wire bytes: tag, length,
    # little-endian float32 values (much faster than extending the field).
    payload = array.astype("<f4").tobytes()
    blob.MergeFromString(b"\x2a" + _varint(len(payload)) + payload)
    return blob


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


__all__ = [
    "BlobShape", "BlobProto", "BNParameter", "BatchNormParameter", "LayerParameter",
    "V0LayerParameter", "V1LayerParameter", "NetParameter", "V1_LAYER_TYPES",
    "blob_shape", "blob_to_array", "blob_from_array",
]
