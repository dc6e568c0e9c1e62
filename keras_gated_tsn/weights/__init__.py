"""Weights: transfer between models, registered pretrained files, converters.

* :mod:`~keras_gated_tsn.weights.transfer`: copy by layer name, TSN's
  cross-modality kernel, stacked-input kernels (the one place weights move
  between Keras models);
* :mod:`~keras_gated_tsn.weights.pretrained`: ``weights="imagenet"`` and
  weight files of the backbones;
* :func:`convert_caffe` / :func:`convert_pytorch` fill a built Keras model in
  place and return a :class:`ConversionReport`;
* :func:`convert_weights` builds the right model (a backbone, or a TSN stream
  when the checkpoint carries TSN's classifier) and writes a ``.weights.h5``
  or a ``.keras`` stream.

Layers are matched by name (Caffe ``/`` → ``_``), kernels transposed to Keras
layout, BN converted to ``[gamma, beta, moving_mean, moving_variance]``; see
:mod:`keras_gated_tsn.weights.common` for the rules and ``weights/README.md``
for the public checkpoints they were written for.

The converter names below load their module on first use (torch only for
PyTorch files).
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
    "copy_weights_by_name": "keras_gated_tsn.weights.transfer",
    "cross_modality_kernel": "keras_gated_tsn.weights.transfer",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS)
