"""PyTorch ``.pth`` / ``.pth.tar`` state dicts → a built Keras model.

Two kinds of checkpoint are understood:

* **ImageNet BN-Inception state dicts** as TSN's PyTorch code and
  ``pretrainedmodels`` distribute them (``bn_inception-*.pth``): one entry per
  parameter, keyed ``<module>.<param>`` where the module is the Caffe layer
  name with ``/`` replaced by ``_`` (``conv1_7x7_s2.weight``,
  ``conv1_7x7_s2_bn.running_var``, ``inception_3a_1x1_bn.bias``), and the
  classifier ``fc`` (TSN PyTorch) or ``last_linear`` (``pretrainedmodels``);
* **TSN PyTorch training checkpoints**: a dict with ``state_dict`` (and
  ``epoch``, ``arch``, ``best_prec1``), keys prefixed ``module.`` (DataParallel)
  and ``base_model.``, the new classifier ``new_fc`` (or, trained without
  dropout, ``base_model.fc``) → the stream's ``fc-action``.

Parameters map as: convolution ``weight`` ``(out, in/groups, kh, kw)`` and
``bias`` → Keras ``Conv2D``; ``Linear`` ``weight`` ``(out, in)`` and ``bias`` →
``Dense``; ``BatchNorm2d`` ``weight``/``bias``/``running_mean``/``running_var``
→ ``[gamma, beta, moving_mean, moving_variance]`` (PyTorch's default eps 1e-5,
which the state dict does not record; ``num_batches_tracked`` is ignored).
Module paths with dots map to Keras names with ``_``.

``torch`` is imported only when a file is read: ``pip install
keras_gated_tsn[torch]``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np

from keras_gated_tsn.weights.common import (
    BN,
    CONV,
    DENSE,
    TSN_CLASSIFIER,
    ConversionReport,
    SourceLayer,
    load_source_layers,
)

#: PyTorch's BatchNorm default epsilon (not stored in state dicts).
TORCH_BN_EPS = 1e-5
_IGNORED_PARAMS = ("num_batches_tracked",)
_TORCH_MISSING = (
    "reading PyTorch checkpoints needs the torch package: pip install keras_gated_tsn[torch] "
    "(or pip install torch)"
)


def _import_torch():
    try:
        import torch
    except ImportError as error:
        raise ImportError(_TORCH_MISSING) from error
    return torch


def load_state_dict(path, *, allow_pickle: bool = False) -> Tuple["OrderedDict[str, np.ndarray]", dict]:
    """Reads a ``.pth``/``.pth.tar`` file into NumPy arrays.

    Args:
        path: the checkpoint: a state dict, or a dict holding one under
            ``state_dict`` (TSN PyTorch training checkpoints).
        allow_pickle: unpickle arbitrary objects (``torch.load(...,
            weights_only=False)``). Only for files you trust: unpickling runs
            code. By default only tensors and plain containers are read.

    Returns:
        ``(state, meta)``: parameter name → float32 array in file order, and
        the checkpoint's other plain entries (``epoch``, ``arch``, ...).

    Raises:
        ImportError: torch is not installed (the message says how to get it).
        ValueError: the file holds no tensors, or needs unpickling and
            ``allow_pickle`` is false (the message says so).
        OSError: the file cannot be read.
    """
    torch = _import_torch()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such checkpoint: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as error:
        if not allow_pickle and "weights_only" in str(error):
            raise ValueError(
                f"{path}: the checkpoint holds objects other than tensors; if you trust the file, "
                "convert with allow_pickle=True (CLI: --allow-pickle). Details: "
                f"{str(error).splitlines()[0]}"
            ) from error
        raise ValueError(f"{path}: not a PyTorch checkpoint torch.load can read: {error}") from error
    meta = {}
    if hasattr(checkpoint, "state_dict") and callable(checkpoint.state_dict):
        checkpoint = checkpoint.state_dict()
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        meta = {
            k: v for k, v in checkpoint.items()
            if k != "state_dict" and isinstance(v, (str, int, float, bool))
        }
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path}: expected a state dict (a mapping), got {type(checkpoint).__name__}")
    state: "OrderedDict[str, np.ndarray]" = OrderedDict()
    for key, value in checkpoint.items():
        if isinstance(value, torch.Tensor):
            state[str(key)] = value.detach().cpu().to(torch.float32).numpy()
    if not state:
        raise ValueError(f"{path}: no tensors found (keys: {list(checkpoint)[:10]})")
    return state, meta


def _normalise_keys(state: Mapping[str, np.ndarray]) -> Tuple["OrderedDict[str, np.ndarray]", bool]:
    """Strips ``module.``/``base_model.`` and names the TSN classifier; returns
    ``(state, is_tsn)``."""
    stripped = OrderedDict()
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module."):]
        stripped[key] = value
    is_tsn = any(key.startswith("base_model.") for key in stripped)
    if not is_tsn:
        return stripped, False
    has_new_fc = any(key.startswith("new_fc.") for key in stripped)
    renamed = OrderedDict()
    for key, value in stripped.items():
        if key.startswith("base_model."):
            key = key[len("base_model."):]
            if not has_new_fc and key.startswith("fc."):
                key = TSN_CLASSIFIER + key[len("fc"):]
        elif key.startswith("new_fc."):
            key = TSN_CLASSIFIER + key[len("new_fc"):]
        renamed[key] = value
    return renamed, True


def pytorch_source_layers(state: Mapping[str, np.ndarray]) -> Tuple[List[SourceLayer], bool]:
    """The modules with weights as :class:`SourceLayer`; also whether the
    checkpoint is a TSN one (``base_model.`` keys).

    Raises:
        ValueError: for a BatchNorm module without running statistics.
    """
    state, is_tsn = _normalise_keys(state)
    modules: "OrderedDict[str, Dict[str, np.ndarray]]" = OrderedDict()
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        if param in _IGNORED_PARAMS:
            continue
        modules.setdefault(module, {})[param] = value
    sources = []
    for module, params in modules.items():
        keras_name = module.replace(".", "_")
        weight = params.get("weight")
        if "running_mean" in params or "running_var" in params:
            if "running_mean" not in params or "running_var" not in params:
                raise ValueError(f"BatchNorm module {module!r} lacks running_mean or running_var")
            mean = params["running_mean"].ravel()
            arrays = {
                "gamma": params.get("weight", np.ones_like(mean)).ravel(),
                "beta": params.get("bias", np.zeros_like(mean)).ravel(),
                "mean": mean,
                "variance": params["running_var"].ravel(),
                "eps": TORCH_BN_EPS,
            }
            sources.append(SourceLayer(module, BN, keras_name, arrays, "PyTorch BatchNorm"))
        elif weight is not None and weight.ndim in (2, 4) and set(params) <= {"weight", "bias"}:
            kind = CONV if weight.ndim == 4 else DENSE
            detail = "PyTorch Conv2d" if kind == CONV else "PyTorch Linear"
            sources.append(SourceLayer(module, kind, keras_name, dict(params), detail))
        else:
            shapes = {k: v.shape for k, v in params.items()}
            sources.append(SourceLayer(module, f"PyTorch module {shapes}", keras_name, dict(params)))
    return sources, is_tsn


def convert_pytorch(
    path,
    keras_model,
    *,
    rename: Optional[Mapping[str, str]] = None,
    skip: Iterable[str] = (),
    cross_modality: bool = False,
    allow_pickle: bool = False,
    allow_partial: bool = False,
) -> ConversionReport:
    """Fills ``keras_model`` in place from a PyTorch checkpoint.

    Module ``conv1_7x7_s2`` fills Keras layer ``conv1_7x7_s2``; an ImageNet
    classifier ``fc``/``last_linear`` fills ``predictions`` when the model has
    that top and is skipped (reported) when it has no fully connected layer for
    it; a TSN checkpoint's ``new_fc`` fills ``fc-action``.

    Args:
        path: ``.pth`` / ``.pth.tar`` file (see the module doc).
        keras_model: a built Keras model.
        rename: module path (or its ``.``→``_`` Keras name) → Keras layer name.
        skip: module paths to leave out.
        cross_modality: fill a flow model's first convolution from a 3-channel
            RGB kernel by TSN's cross-modality initialisation.
        allow_pickle: see :func:`load_state_dict`.
        allow_partial: accept a checkpoint that fills only some of the Keras
            layers with weights (by default an error naming the others).

    Returns:
        A :class:`~keras_gated_tsn.weights.common.ConversionReport`.

    Raises:
        ImportError: torch is missing ("pip install keras_gated_tsn[torch]").
        ValueError: a module with weights has no Keras layer, types or shapes
            differ (all named, with both shapes), or the checkpoint leaves Keras
            layers with weights unfilled (named; unless ``allow_partial``); the
            model is unchanged then.
    """
    path = os.fspath(path)
    state, meta = load_state_dict(path, allow_pickle=allow_pickle)
    sources, _ = pytorch_source_layers(state)
    report = ConversionReport(source=path, format="pytorch")
    if meta:
        report.notes.append("checkpoint metadata: " + ", ".join(f"{k}={v!r}" for k, v in meta.items()))
    return load_source_layers(
        keras_model, sources, report=report, rename=rename, skip=skip, cross_modality=cross_modality,
        allow_partial=allow_partial,
    )
