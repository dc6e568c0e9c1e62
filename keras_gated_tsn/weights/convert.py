"""Checkpoint file → Keras ``.weights.h5``: :func:`convert_weights` and the
``gated-tsn convert-weights`` subcommand (:func:`add_convert_parser`,
:func:`run_convert`).

This module imports neither TensorFlow nor torch at import time, so the CLI's
``--help`` stays fast; :func:`convert_weights` imports them when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Iterable, List, Mapping, Optional

#: Backbones a checkpoint can be converted into (``--arch``).
ARCHS = ("bn_inception", "caffenet", "vgg16")
MODALITIES = ("rgb", "flow")

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


def _save_weights_atomically(model, dst: str) -> None:
    from keras_gated_tsn.atomic import atomic_path

    with atomic_path(dst, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)


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
):
    """Converts a Caffe or PyTorch checkpoint into a Keras ``.weights.h5``.

    Builds the Keras model the checkpoint belongs to, fills it
    (:func:`~keras_gated_tsn.weights.caffe.convert_caffe` /
    :func:`~keras_gated_tsn.weights.pytorch.convert_pytorch` rules) and saves
    its weights to ``dst`` atomically (a temporary file beside it, then a
    rename):

    * a checkpoint with a TSN classifier (Caffe ``fc-action``, PyTorch
      ``new_fc``) becomes a **TSN stream**
      (:func:`keras_gated_tsn.models.TSN`, ``num_classes`` from the
      classifier) unless ``include_top=False``;
    * anything else becomes the **backbone**
      (``get_backbone_module(arch).BUILDER``), by default without top
      (``include_top=None`` → ``False``): the file then loads with
      ``BNInception(include_top=False, input_shape=..., weights=dst)`` and
      ``TSN(..., backbone_weights=dst)``. ``include_top=True`` keeps the
      checkpoint's ImageNet classifier (``classes`` from its shape).

    Args:
        src: ``.caffemodel``, or ``.pth``/``.pth.tar`` (see
            :func:`checkpoint_format`).
        dst: the output, ending in ``.weights.h5``; its folder must exist.
        arch: ``"bn_inception"``, ``"caffenet"`` or ``"vgg16"``.
        modality: ``"rgb"`` (3 input channels) or ``"flow"``
            (``2 * new_length`` channels).
        input_size: side of the model's input (default the backbone's
            ``DEFAULT_INPUT_SIZE``; the fully connected layers of CaffeNet and
            VGG16 fix it, BN-Inception's weights do not depend on it).
        new_length: L, stacked flow frames (TSN: 5, so 10 channels).
        classes: classifier width; default the checkpoint's.
        include_top: see above.
        num_segments: K recorded in a TSN stream's name (weights do not
            depend on it).
        rename: checkpoint layer name → Keras layer name.
        skip: checkpoint layer names to leave out.
        cross_modality: a flow model's first convolution from a 3-channel RGB
            kernel (TSN's cross-modality initialisation).
        allow_pickle: PyTorch files that need full unpickling (trusted files
            only).

    Returns:
        The :class:`~keras_gated_tsn.weights.common.ConversionReport`, with
        ``destination``, ``model_kind`` and ``load_hint`` set.

    Raises:
        ValueError: unknown ``arch``/``modality``, ``dst`` not ``.weights.h5``,
            a checkpoint that does not fit the model (layers and shapes named),
            a bad or unreadable checkpoint; nothing is written then.
        ImportError: a PyTorch checkpoint without torch installed.
        OSError: unreadable source or unwritable destination folder.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    skip = list(skip)
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    if not dst.endswith(".weights.h5"):
        raise ValueError(f"the destination must end in .weights.h5, got {dst!r}")
    if not isinstance(new_length, int) or new_length < 1:
        raise ValueError(f"new_length must be a positive int, got {new_length!r}")
    if classes is not None and (not isinstance(classes, int) or classes < 1):
        raise ValueError(f"classes must be a positive int or None, got {classes!r}")
    if not os.path.isfile(src):
        raise FileNotFoundError(f"no such checkpoint: {src}")
    if not os.path.isdir(os.path.dirname(os.path.abspath(dst))):
        raise FileNotFoundError(f"the destination folder of {dst} does not exist")

    from keras_gated_tsn.backbones import get_backbone_module
    from keras_gated_tsn.weights.common import (
        DENSE,
        TSN_CLASSIFIER,
        ConversionReport,
        load_source_layers,
    )

    try:
        module = get_backbone_module(arch)
    except ModuleNotFoundError as error:
        raise ValueError(f"backbone {arch!r} is not available in this installation: {error}") from error
    fmt = checkpoint_format(src)
    sources, notes = _read_sources(src, fmt, allow_pickle)
    rename = dict(rename or {})

    def target_name(source):
        return rename.get(source.name, rename.get(source.keras_name, source.keras_name))

    tsn_classifier = next((s for s in sources if target_name(s) == TSN_CLASSIFIER), None)
    dense = [s for s in sources if s.kind == DENSE and s.name not in skip and s.keras_name not in skip]
    size = input_size or module.DEFAULT_INPUT_SIZE
    channels = 3 if modality == "rgb" else 2 * new_length

    if tsn_classifier is not None and include_top is not False:
        from keras_gated_tsn.models import TSN

        num_classes = classes or int(tsn_classifier.arrays["weight"].shape[0])
        model = TSN(
            backbone=arch, modality=modality, num_classes=num_classes, num_segments=num_segments,
            input_size=size, new_length=new_length,
        )
        kind = "tsn stream"
        hint = (
            f"model = keras_gated_tsn.models.TSN(backbone={arch!r}, modality={modality!r}, "
            f"num_classes={num_classes}, input_size={size}, new_length={new_length}); "
            f"model.load_weights({dst!r})"
        )
    else:
        top = bool(include_top)
        kwargs = {}
        if top:
            if not dense:
                raise ValueError(
                    f"{src} has no fully connected classifier; convert with include_top=False"
                )
            kwargs["classes"] = classes or int(dense[-1].arrays["weight"].shape[0])
        model = module.BUILDER(
            include_top=top, weights=None, input_shape=(size, size, channels), **kwargs
        )
        kind = "backbone"
        extra = f", classes={kwargs['classes']}" if top else ""
        hint = (
            f"keras_gated_tsn.backbones.get_backbone_module({arch!r}).BUILDER(include_top={top}, "
            f"input_shape=({size}, {size}, {channels}){extra}, weights={dst!r})"
        )
        if not top:
            hint += f"  or  TSN(backbone={arch!r}, modality={modality!r}, ..., backbone_weights={dst!r})"

    report = ConversionReport(source=src, format=fmt, notes=list(notes))
    load_source_layers(
        model, sources, report=report, rename=rename, skip=skip, cross_modality=cross_modality
    )
    _save_weights_atomically(model, dst)
    report.destination, report.model_kind, report.load_hint = dst, kind, hint
    return report


_EPILOG = """\
known checkpoints (none is downloaded; see weights/README.md for where they come from):

  TSN ImageNet BN-Inception (Caffe), the streams' initialisation:
    gated-tsn convert-weights bn_inception_rgb_init.caffemodel bn_inception_imagenet.weights.h5 --arch bn_inception
    gated-tsn convert-weights bn_inception_flow_init.caffemodel bn_inception_flow_imagenet.weights.h5 --arch bn_inception --modality flow
  TSN UCF101 reference models (Caffe, fc-action: 101 classes) -> TSN streams:
    gated-tsn convert-weights tsn_bn_inception_rgb_reference_ucf101_split_1.caffemodel tsn_rgb_ucf101_split1.weights.h5 --arch bn_inception
    gated-tsn convert-weights tsn_bn_inception_flow_reference_ucf101_split_1.caffemodel tsn_flow_ucf101_split1.weights.h5 --arch bn_inception --modality flow
  BVLC CaffeNet (legacy V1 .caffemodel; --include-top keeps fc6-fc8):
    gated-tsn convert-weights bvlc_reference_caffenet.caffemodel caffenet_imagenet.weights.h5 --arch caffenet
  VGG16 (Caffe VGG_ILSVRC_16_layers; names mapped to keras.applications'):
    gated-tsn convert-weights VGG_ILSVRC_16_layers.caffemodel vgg16.weights.h5 --arch vgg16
  PyTorch BN-Inception ImageNet state dict (TSN PyTorch 'fc' / pretrainedmodels 'last_linear'):
    gated-tsn convert-weights bn_inception-9f5701afb96c8044.pth bn_inception_imagenet.weights.h5 --arch bn_inception
  ... its RGB kernel spread over 2L flow channels (TSN cross-modality initialisation):
    gated-tsn convert-weights bn_inception-9f5701afb96c8044.pth bn_inception_flow.weights.h5 --arch bn_inception --modality flow --cross-modality
  TSN PyTorch training checkpoint (module.base_model.*, module.new_fc) -> TSN stream:
    gated-tsn convert-weights ucf101_bninception__flow_model_best.pth.tar tsn_flow.weights.h5 --arch bn_inception --modality flow

A backbone file loads with BNInception(include_top=False, input_shape=(224, 224, C),
weights=FILE) and TSN(..., backbone_weights=FILE); a TSN stream file with
TSN(...).load_weights(FILE). The command prints the exact call."""


def add_convert_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``convert-weights`` on an ``argparse`` subparsers object; the
    parser's defaults include ``func=run_convert``.

    Returns:
        The ``convert-weights`` sub-parser.
    """
    parser = subparsers.add_parser(
        "convert-weights",
        help="convert a Caffe .caffemodel or PyTorch .pth checkpoint to a Keras .weights.h5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Convert a Caffe .caffemodel or a PyTorch .pth/.pth.tar checkpoint into the
.weights.h5 of this package's Keras model: layers are matched by name (Caffe
'inception_3a/1x1' -> Keras 'inception_3a_1x1'), kernels transposed to Keras
layout, BN turned into [gamma, beta, moving_mean, moving_variance]. A
checkpoint with a TSN classifier (Caffe 'fc-action', PyTorch 'new_fc') becomes
a TSN stream; any other becomes the backbone, without its ImageNet classifier
unless --include-top. Every checkpoint layer with weights must find its Keras
layer with the same shapes, or nothing is written and every mismatch is listed.""",
        epilog=_EPILOG,
    )
    parser.add_argument("src", metavar="SRC", help="checkpoint: .caffemodel, .pth, .pth.tar")
    parser.add_argument("dst", metavar="DST", help="output file, must end in .weights.h5")
    parser.add_argument("--arch", required=True, choices=ARCHS, help="backbone architecture")
    parser.add_argument(
        "--modality", choices=MODALITIES, default="rgb",
        help="rgb (3 channels) or flow (2 x --new-length channels) (default: %(default)s)",
    )
    parser.add_argument(
        "--new-length", type=int, default=5, metavar="L",
        help="stacked flow frames per snippet; flow input has 2L channels (default: %(default)s)",
    )
    parser.add_argument(
        "--input-size", type=int, metavar="S",
        help="model input side in pixels (default: the backbone's DEFAULT_INPUT_SIZE: "
        "224 for BN-Inception and VGG16, 227 for CaffeNet)",
    )
    parser.add_argument(
        "--classes", type=int, metavar="N", help="classifier width (default: the checkpoint's)"
    )
    parser.add_argument(
        "--include-top", action=argparse.BooleanOptionalAction, default=None,
        help="keep the ImageNet classifier in a backbone file (default: no; a TSN checkpoint "
        "gives a TSN stream unless --no-include-top)",
    )
    parser.add_argument(
        "--cross-modality", action="store_true",
        help="fill a flow model's first conv from a 3-channel RGB kernel (channel mean, replicated)",
    )
    parser.add_argument(
        "--rename", action="append", default=[], metavar="SRC_NAME=KERAS_NAME",
        help="map a checkpoint layer to a differently named Keras layer (repeatable)",
    )
    parser.add_argument(
        "--skip", action="append", default=[], metavar="SRC_NAME",
        help="leave a checkpoint layer out (repeatable)",
    )
    parser.add_argument(
        "--allow-pickle", action="store_true",
        help="PyTorch only: allow full unpickling for checkpoints holding more than tensors "
        "(runs code from the file: trusted files only)",
    )
    parser.set_defaults(func=run_convert)
    return parser


def _parse_renames(items: List[str]) -> dict:
    renames = {}
    for item in items:
        source, sep, target = item.partition("=")
        if not sep or not source or not target:
            raise ValueError(f"--rename expects SRC_NAME=KERAS_NAME, got {item!r}")
        renames[source] = target
    return renames


def run_convert(args: argparse.Namespace) -> int:
    """Runs ``gated-tsn convert-weights`` from parsed arguments.

    Returns:
        0 when the file is written (the report goes to stdout), 2 when the
        checkpoint, options or destination are wrong (the reason goes to
        stderr and nothing is written).
    """
    try:
        report = convert_weights(
            args.src, args.dst, args.arch,
            modality=args.modality, input_size=args.input_size, new_length=args.new_length,
            classes=args.classes, include_top=args.include_top,
            rename=_parse_renames(args.rename), skip=args.skip,
            cross_modality=args.cross_modality, allow_pickle=args.allow_pickle,
        )
    except (ValueError, ImportError, OSError) as error:
        print(f"gated-tsn convert-weights: error: {error}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0
