"""``gated-tsn convert-weights``: Caffe / PyTorch checkpoints into Keras files."""

from __future__ import annotations

import argparse
from typing import List

from keras_gated_tsn.backbones import backbone_names
from keras_gated_tsn.cli.common import int_at_least
from keras_gated_tsn.layers.preprocessing import MODALITIES

NAME = "convert-weights"
HELP = "convert a Caffe .caffemodel or PyTorch .pth checkpoint to a Keras .weights.h5 or .keras stream"

EPILOG = """\
known checkpoints (none is downloaded; see weights/README.md for where they come from):

  TSN ImageNet BN-Inception (Caffe), the streams' initialisation:
    gated-tsn convert-weights bn_inception_rgb_init.caffemodel bn_inception_imagenet.weights.h5 --arch bn_inception
    gated-tsn convert-weights bn_inception_flow_init.caffemodel bn_inception_flow_imagenet.weights.h5 --arch bn_inception --modality flow
  TSN UCF101 reference models (Caffe, fc-action: 101 classes) -> TSN streams the gate stage takes as they are:
    gated-tsn convert-weights tsn_bn_inception_rgb_reference_ucf101_split_1.caffemodel rgb.keras --arch bn_inception
    gated-tsn convert-weights tsn_bn_inception_flow_reference_ucf101_split_1.caffemodel flow.keras --arch bn_inception --modality flow
    gated-tsn train --stage gate --data ucf101/ --out gate.keras --rgb rgb.keras --flow flow.keras
  BVLC CaffeNet (legacy V1 .caffemodel; --include-top keeps fc6-fc8):
    gated-tsn convert-weights bvlc_reference_caffenet.caffemodel caffenet_imagenet.weights.h5 --arch caffenet
  VGG16 (Caffe VGG_ILSVRC_16_layers; names mapped to keras.applications'):
    gated-tsn convert-weights VGG_ILSVRC_16_layers.caffemodel vgg16.weights.h5 --arch vgg16
  PyTorch BN-Inception ImageNet state dict (TSN PyTorch 'fc' / pretrainedmodels 'last_linear'):
    gated-tsn convert-weights bn_inception-9f5701afb96c8044.pth bn_inception_imagenet.weights.h5 --arch bn_inception
  ... its RGB kernel spread over 2L flow channels (TSN cross-modality initialisation):
    gated-tsn convert-weights bn_inception-9f5701afb96c8044.pth bn_inception_flow.weights.h5 --arch bn_inception --modality flow --cross-modality
  TSN PyTorch training checkpoint (module.base_model.*, module.new_fc) -> TSN stream:
    gated-tsn convert-weights ucf101_bninception__flow_model_best.pth.tar flow.keras --arch bn_inception --modality flow

A backbone file loads with BNInception(include_top=False, input_shape=(224, 224, C),
weights=FILE) and TSN(..., backbone_weights=FILE); a TSN stream .weights.h5 with
TSN(...).load_weights(FILE); a .keras stream with keras.saving.load_model(FILE).
The command prints the exact call."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``convert-weights`` on an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        NAME,
        help=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Convert a Caffe .caffemodel or a PyTorch .pth/.pth.tar checkpoint into a Keras
file of this package: layers are matched by name (Caffe 'inception_3a/1x1' ->
Keras 'inception_3a_1x1'), kernels transposed to Keras layout, BN turned into
[gamma, beta, moving_mean, moving_variance]. A checkpoint with a TSN classifier
(Caffe 'fc-action', PyTorch 'new_fc') becomes a TSN stream (DST .keras: the
whole model, which `gated-tsn train --stage gate` and `evaluate` take as is;
DST .weights.h5: its weights); any other becomes the backbone (.weights.h5),
without its ImageNet classifier unless --include-top. Every checkpoint layer
with weights must find its Keras layer with the same shapes, and every Keras
layer with weights must be filled (unless --allow-partial), or nothing is
written and every problem is listed.""",
        epilog=EPILOG,
    )
    parser.add_argument("src", metavar="SRC", help="checkpoint: .caffemodel, .pth, .pth.tar")
    parser.add_argument(
        "dst", metavar="DST",
        help="output: .weights.h5 (weights), or .keras (a whole TSN stream, ready for train --stage gate)",
    )
    parser.add_argument("--arch", required=True, choices=backbone_names(), help="backbone architecture")
    parser.add_argument(
        "--modality", choices=MODALITIES, default="rgb",
        help="rgb (3 channels) or flow (2 x --new-length channels) (default: %(default)s)",
    )
    parser.add_argument(
        "--new-length", type=int_at_least(1), default=5, metavar="L",
        help="stacked flow frames per snippet; flow input has 2L channels (default: %(default)s)",
    )
    parser.add_argument(
        "--input-size", type=int_at_least(1), metavar="S",
        help="model input side in pixels (default: the backbone's DEFAULT_INPUT_SIZE: "
        "224 for BN-Inception and VGG16, 227 for CaffeNet)",
    )
    parser.add_argument(
        "--classes", type=int_at_least(1), metavar="N", help="classifier width (default: the checkpoint's)"
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
    parser.add_argument(
        "--allow-partial", action="store_true",
        help="write the file even when the checkpoint fills only some of the model's layers (the rest keep "
        "their random initialisation); by default that is an error listing them",
    )
    parser.add_argument(
        "--segments", type=int_at_least(1), default=3, metavar="K",
        help="K recorded in a TSN stream's config (default: %(default)s)",
    )
    return parser


def _parse_renames(items: List[str]) -> dict:
    renames = {}
    for item in items:
        source, sep, target = item.partition("=")
        if not sep or not source or not target:
            raise ValueError(f"--rename expects SRC_NAME=KERAS_NAME, got {item!r}")
        renames[source] = target
    return renames


def run(args: argparse.Namespace) -> int:
    """Converts and prints the report; bad input raises (exit 2, nothing written)."""
    from keras_gated_tsn.weights.convert import convert_weights

    report = convert_weights(
        args.src, args.dst, args.arch,
        modality=args.modality, input_size=args.input_size, new_length=args.new_length,
        classes=args.classes, include_top=args.include_top, num_segments=args.segments,
        rename=_parse_renames(args.rename), skip=args.skip,
        cross_modality=args.cross_modality, allow_pickle=args.allow_pickle, allow_partial=args.allow_partial,
    )
    print(report.summary())
    return 0
