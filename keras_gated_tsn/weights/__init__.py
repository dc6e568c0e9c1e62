"""Weight converters: Caffe ``.caffemodel`` and PyTorch ``.pth`` → Keras.

* :func:`convert_caffe` / :func:`convert_pytorch` fill a built Keras model in
  place and return a :class:`ConversionReport`;
* :func:`convert_weights` builds the right model (a backbone, or a TSN stream
  when the checkpoint carries TSN's classifier) and writes a ``.weights.h5``;
* :func:`add_convert_parser` / :func:`run_convert`: the ``gated-tsn
  convert-weights`` subcommand.

Layers are matched by name (Caffe ``/`` → ``_``), kernels transposed to Keras
layout, BN converted to ``[gamma, beta, moving_mean, moving_variance]``; see
:mod:`keras_gated_tsn.weights.common` for the rules and ``weights/README.md``
for the public checkpoints they were written for.

Importing this package is cheap (no TensorFlow, no torch): the names below
load their module on first use.
"""

import importlib

_EXPORTS = {
    "ConversionReport": "keras_gated_tsn.weights.common",
    "SourceLayer": "keras_gated_tsn.weights.common",
    "convert_caffe": "keras_gated_tsn.weights.caffe",
    "read_caffemodel": "keras_gated_tsn.weights.caffe",
    "write_caffemodel": "keras_gated_tsn.weights.caffe",
    "CaffeLayer": "keras_gated_tsn.weights.caffe",
    "convert_pytorch": "keras_gated_tsn.weights.pytorch",
    "load_state_dict": "keras_gated_tsn.weights.pytorch",
    "convert_weights": "keras_gated_tsn.weights.convert",
    "checkpoint_format": "keras_gated_tsn.weights.convert",
    "add_convert_parser": "keras_gated_tsn.weights.convert",
    "run_convert": "keras_gated_tsn.weights.convert",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS)
