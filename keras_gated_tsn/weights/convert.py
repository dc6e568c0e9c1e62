"""Checkpoint file → Keras file: :func:`convert_weights`.

A Caffe ``.caffemodel`` or PyTorch ``.pth`` becomes the ``.weights.h5`` of a
backbone or a TSN stream, or a whole TSN stream model (``.keras``) that
``gated-tsn train --stage gate`` and ``evaluate`` take as they are. torch is
imported only for PyTorch files.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping, Optional

from keras_gated_tsn.atomic import save_atomically
from keras_gated_tsn.layers.preprocessing import MODALITIES

_PYTORCH_SUFFIXES = (".pth", ".pt", ".pth.tar", ".tar", ".ckpt")


def checkpoint_format(path) -> str:
    """``"caffe"`` or ``"pytorch"``, from the file name (``.caffemodel``;
    ``.pth``, ``.pt``, ``.pth.tar``, ``.tar``, ``.ckpt``) or, failing that,
    the first bytes (PyTorch files are zip archives or pickles)."""
    name = os.fspath(path).lower()
    if name.endswith(".caffemodel"):
        return "caffe"
    if name.endswith(_PYTORCH_SUFFIXES):
        return "pytorch"
    with open(path, "rb") as handle:
        head = handle.read(2)
    return "pytorch" if head in (b"PK", b"\x80\x02") or head[:1] == b"\x80" else "caffe"


def _read_sources(src: str, fmt: str, allow_pickle: bool):
    if fmt == "caffe":
        from keras_gated_tsn.weights.caffe import caffe_source_layers, read_caffemodel

        return caffe_source_layers(read_caffemodel(src)), []
    from keras_gated_tsn.weights.pytorch import load_state_dict, pytorch_source_layers

    state, meta = load_state_dict(src, allow_pickle=allow_pickle)
    sources, _ = pytorch_source_layers(state)
    notes = ["checkpoint metadata: " + ", ".join(f"{k}={v!r}" for k, v in meta.items())] if meta else []
    return sources, notes


def convert_weights(
    src,
    dst,
    arch: str,
    *,
    modality: str = "rgb",
    input_size: Optional[int] = None,
    new_length: int = 5,
    classes: Optional[int] = None,
    include_top: Optional[bool] = None,
    num_segments: int = 3,
    rename: Optional[Mapping[str, str]] = None,
    skip: Iterable[str] = (),
    cross_modality: bool = False,
    allow_pickle: bool = False,
    allow_partial: bool = False,
):
    """Converts a Caffe or PyTorch checkpoint into a Keras file.

    Builds the Keras model the checkpoint belongs to, fills it
    (:func:`~keras_gated_tsn.weights.caffe.convert_caffe` /
    :func:`~keras_gated_tsn.weights.pytorch.convert_pytorch` rules) and saves
    it to ``dst`` atomically (a temporary file beside it, then a rename): its
    weights for ``.weights.h5``, the whole model for ``.keras`` (a TSN stream
    only: the file then carries its configuration and goes straight into
    ``gated-tsn train --stage gate --rgb/--flow`` and ``evaluate``):

    * a checkpoint with a TSN classifier (Caffe ``fc-action``, PyTorch
      ``new_fc``) becomes a **TSN stream**
      (:func:`keras_gated_tsn.models.TSN`, ``num_classes`` from the
      classifier) unless ``include_top=False``;
    * anything else becomes the **backbone**
      (``get_backbone(arch).builder``), by default without top
      (``include_top=None`` → ``False``): the file then loads with
      ``BNInception(include_top=False, input_shape=..., weights=dst)`` and
      ``TSN(..., backbone_weights=dst)``. ``include_top=True`` keeps the
      checkpoint's ImageNet classifier (``classes`` from its shape).

    Every Keras layer with weights must be filled: a checkpoint that fills
    none (an empty file) or only part of the model is an error naming the
    layers it leaves out, unless ``allow_partial``.

    Args:
        src: ``.caffemodel``, or ``.pth``/``.pth.tar`` (see
            :func:`checkpoint_format`).
        dst: the output, ending in ``.weights.h5`` or (TSN checkpoints)
            ``.keras``; its folder must exist.
        arch: a registered backbone (``"bn_inception"``, ``"caffenet"``,
            ``"vgg16"``).
        modality: ``"rgb"`` (3 input channels) or ``"flow"``
            (``2 * new_length`` channels).
        input_size: side of the model's input (default the backbone's
            ``DEFAULT_INPUT_SIZE``; the fully connected layers of CaffeNet and
            VGG16 fix it, BN-Inception's weights do not depend on it).
        new_length: L, stacked flow frames (TSN: 5, so 10 channels).
        classes: classifier width; default the checkpoint's.
        include_top: see above.
        num_segments: K recorded in a TSN stream's config (weights do not
            depend on it).
        rename: checkpoint layer name → Keras layer name.
        skip: checkpoint layer names to leave out.
        cross_modality: a flow model's first convolution from a 3-channel RGB
            kernel (TSN's cross-modality initialisation).
        allow_pickle: PyTorch files that need full unpickling (trusted files
            only).
        allow_partial: write a model the checkpoint fills only in part.

    Returns:
        The :class:`~keras_gated_tsn.weights.common.ConversionReport`, with
        ``destination``, ``model_kind`` and ``load_hint`` set.

    Raises:
        ValueError: unknown ``arch``/``modality``, ``dst`` neither
            ``.weights.h5`` nor ``.keras``, ``.keras`` for a checkpoint without
            TSN classifier, a checkpoint that does not fit the model (layers
            and shapes named) or fills only part of it, a bad or unreadable
            checkpoint; nothing is written then.
        ImportError: a PyTorch checkpoint without torch installed.
        OSError: unreadable source or unwritable destination folder.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    skip = list(skip)
    from keras_gated_tsn.backbones import get_backbone

    spec = get_backbone(arch)
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    if not dst.endswith((".weights.h5", ".keras")):
        raise ValueError(f"the destination must end in .weights.h5 or .keras, got {dst!r}")
    if not isinstance(new_length, int) or new_length < 1:
        raise ValueError(f"new_length must be a positive int, got {new_length!r}")
    if classes is not None and (not isinstance(classes, int) or classes < 1):
        raise ValueError(f"classes must be a positive int or None, got {classes!r}")
    if not os.path.isfile(src):
        raise FileNotFoundError(f"no such checkpoint: {src}")
    if not os.path.isdir(os.path.dirname(os.path.abspath(dst))):
        raise FileNotFoundError(f"the destination folder of {dst} does not exist")

    from keras_gated_tsn.weights.common import DENSE, TSN_CLASSIFIER, ConversionReport, load_source_layers

    fmt = checkpoint_format(src)
    sources, notes = _read_sources(src, fmt, allow_pickle)
    rename = dict(rename or {})

    def target_name(source):
        return rename.get(source.name, rename.get(source.keras_name, source.keras_name))

    kept = [s for s in sources if s.name not in skip and s.keras_name not in skip]
    tsn_classifier = next((s for s in kept if target_name(s) == TSN_CLASSIFIER), None)
    dense = [s for s in kept if s.kind == DENSE]
    size = input_size or spec.default_input_size
    channels = 3 if modality == "rgb" else 2 * new_length

    if tsn_classifier is not None and include_top is not False:
        from keras_gated_tsn.models import TSN

        num_classes = classes or int(tsn_classifier.arrays["weight"].shape[0])
        model = TSN(
            backbone=arch, modality=modality, num_classes=num_classes, num_segments=num_segments,
            input_size=size, new_length=new_length,
        )
        kind = "tsn stream"
        if dst.endswith(".keras"):
            hint = f"keras.saving.load_model({dst!r}) (after import keras_gated_tsn), or --rgb/--flow {dst}"
        else:
            hint = (
                f"model = keras_gated_tsn.models.TSN(backbone={arch!r}, modality={modality!r}, "
                f"num_classes={num_classes}, input_size={size}, new_length={new_length}); "
                f"model.load_weights({dst!r})"
            )
    else:
        if dst.endswith(".keras"):
            raise ValueError(
                f"{src} has no TSN classifier (Caffe fc-action, PyTorch new_fc), so it is a backbone, not a "
                "stream: convert it to a .weights.h5 file and start a stream from it (--backbone-weights)"
            )
        top = bool(include_top)
        kwargs = {}
        if top:
            if not dense:
                raise ValueError(
                    f"{src} has no fully connected classifier; convert with include_top=False"
                )
            kwargs["classes"] = classes or int(dense[-1].arrays["weight"].shape[0])
        model = spec.builder(
            include_top=top, weights=None, input_shape=(size, size, channels), **kwargs
        )
        kind = "backbone"
        extra = f", classes={kwargs['classes']}" if top else ""
        hint = (
            f"keras_gated_tsn.backbones.get_backbone({arch!r}).builder(include_top={top}, "
            f"input_shape=({size}, {size}, {channels}){extra}, weights={dst!r})"
        )
        if not top:
            hint += f"  or  TSN(backbone={arch!r}, modality={modality!r}, ..., backbone_weights={dst!r})"

    report = ConversionReport(source=src, format=fmt, notes=list(notes))
    load_source_layers(
        model, sources, report=report, rename=rename, skip=skip, cross_modality=cross_modality,
        allow_partial=allow_partial,
    )
    save_atomically(model, dst)
    report.destination, report.model_kind, report.load_hint = dst, kind, hint
    return report
