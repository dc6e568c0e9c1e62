"""The ``gated-tsn`` command: prepare, train, evaluate, fuse, demo.

Each subcommand has its own ``--help``. TensorFlow is imported only by the
subcommands that need it, so ``gated-tsn --help`` and ``gated-tsn fuse`` start
fast.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import List, Optional

from keras_gated_tsn import __version__
from keras_gated_tsn.data.prepare import add_prepare_parser
from keras_gated_tsn.fusion import add_fuse_parser
from keras_gated_tsn.weights.convert import add_convert_parser

DESCRIPTION = """\
Gated two-stream action recognition (Zhu, Zou & Zhu, "Learning Gating ConvNet
for Two-Stream based Methods in Action Recognition").

The method, end to end:
  gated-tsn prepare VIDEOS/ DATA/                 frames + optical flow + list files
  gated-tsn split DATA/ --splits SPLITS/ --split 1 train/val/test lists (UCF101, HMDB51)
  gated-tsn train --stage rgb  --data DATA/ --out rgb.keras
  gated-tsn train --stage flow --data DATA/ --out flow.keras --init-from rgb.keras
  gated-tsn train --stage gate --data DATA/ --out gate.keras --rgb rgb.keras --flow flow.keras
  gated-tsn train --stage joint --data DATA/ --out gated.keras --resume gate.keras
  gated-tsn evaluate --data DATA/ --list DATA/test.txt --model gated.keras --out test.npz
  gated-tsn fuse test.npz --val-scores val.npz    fixed / weighted / SCI / gated table

Or all of it on the embedded sample clips: gated-tsn demo
Pretrained Caffe / PyTorch checkpoints: gated-tsn convert-weights SRC DST --arch ...
"""


def _exits_2_on_bad_input(command: str):
    """Turns the errors bad input raises (ValueError, FileNotFoundError) into
    ``gated-tsn COMMAND: error: ...`` on stderr and exit status 2."""

    def wrap(run):
        @functools.wraps(run)
        def wrapped(args) -> int:
            try:
                return run(args)
            except (ValueError, FileNotFoundError) as error:
                print(f"gated-tsn {command}: error: {error}", file=sys.stderr)
                return 2

        return wrapped

    return wrap


def _add_train_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train one stage of Algorithm 1 (rgb, flow, gate, joint) with Keras fit()",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Train one stage of the gated TSN (paper Algorithm 1, Sec. IV-A):

  rgb, flow  stage 1: a TSN stream (K segments, partial BN, dropout 0.8/0.7);
             a flow stream can start from an RGB model (--init-from: the first
             conv is averaged over colour and replicated to 2L channels)
  gate       stage 2: streams frozen, gating ConvNet trained for the fusion
             weights only (lambda = 0)
  joint      stage 3: fusion weights and the gating classifier together,
             loss CE(fused) + lambda * CE(gating), lambda = 1

SGD, momentum 0.9, gradient norm clipped at 40, weight decay 5e-4 (kernels),
lr 1e-3 divided by 10 on plateau down to 1e-4, early stopping on validation
accuracy. Writes OUT (best epoch), OUT_best.keras during training and
OUT_log.csv.""",
        epilog="example: gated-tsn train --stage rgb --data ucf101/ --train-list ucf101/train.txt "
        "--val-list ucf101/val.txt --out models/rgb.keras",
    )
    parser.add_argument("--stage", required=True, choices=("rgb", "flow", "gate", "joint"))
    parser.add_argument("--data", required=True, help="prepared dataset folder (frames/, classes.txt)")
    parser.add_argument("--out", required=True, help="output model, .keras")
    parser.add_argument("--train-list", help="default DATA/train.txt")
    parser.add_argument("--val-list", help="default DATA/val.txt (if present)")
    parser.add_argument("--epochs", type=int, default=80, help="upper bound (default 80)")
    parser.add_argument("--batch-size", type=int, help="videos per step (default 32 streams, 4 gate)")
    parser.add_argument("--segments", type=int, default=3, help="K segments (default 3; 1 = two-stream)")
    parser.add_argument("--input-size", type=int, default=224, help="crop side in pixels (default 224)")
    parser.add_argument("--new-length", type=int, default=5, help="flow frames per snippet L (default 5)")
    parser.add_argument("--lr", type=float, default=1e-3, help="initial learning rate (default 1e-3)")
    parser.add_argument("--min-lr", type=float, default=1e-4, help="lowest learning rate (default 1e-4)")
    parser.add_argument("--patience", type=int, default=10, help="early-stopping patience in epochs")
    parser.add_argument("--lr-patience", type=int, default=4, help="epochs before lr / 10")
    parser.add_argument("--accumulate", type=int, help="gradient accumulation steps (Caffe iter_size)")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, help="seed for data order, sampling and augmentation")
    stream = parser.add_argument_group("streams (--stage rgb / flow)")
    stream.add_argument("--backbone", default="bn_inception", choices=("bn_inception", "caffenet", "vgg16"))
    stream.add_argument("--backbone-weights", help="'imagenet' or a backbone weights file to start from "
                        "(see weights/README.md)")
    stream.add_argument("--init-from", help="RGB .keras model to initialise from (cross-modality for flow)")
    stream.add_argument("--no-partial-bn", action="store_true", help="train every BN layer")
    stream.add_argument("--dropout", type=float, help="default 0.8 (rgb) / 0.7 (flow)")
    gate = parser.add_argument_group("gate (--stage gate / joint)")
    gate.add_argument("--rgb", help="trained RGB stream .keras (stage gate)")
    gate.add_argument("--flow", help="trained flow stream .keras (stage gate)")
    gate.add_argument("--resume", help="stage-2 gate .keras to continue (stage joint)")
    gate.add_argument("--fusion-layer", help="feature layer to fuse (default: the backbone's, "
                      "inception_4e_output / conv4 / block5_conv2)")
    gate.add_argument("--feature-fusion", default="conv", choices=("conv", "concat"))
    gate.add_argument("--gate-activation", default="relu", choices=("relu", "softmax"))
    gate.add_argument("--gate-dropout", type=float, default=0.8)
    gate.add_argument("--fusion-init", default="xavier", choices=("xavier", "identity"))
    gate.add_argument("--lam", type=float, help="lambda of eq. (4) (default 0 gate, 1 joint)")
    parser.set_defaults(func=_run_train)
    return parser


@_exits_2_on_bad_input("train")
def _run_train(args) -> int:
    from keras_gated_tsn.training import StageConfig, run_stage

    config = StageConfig(
        stage=args.stage, data_dir=args.data, out=args.out, train_list=args.train_list,
        val_list=args.val_list, epochs=args.epochs, batch_size=args.batch_size,
        num_segments=args.segments, input_size=args.input_size, new_length=args.new_length,
        learning_rate=args.lr, min_learning_rate=args.min_lr, patience=args.patience,
        lr_patience=args.lr_patience, accumulate=args.accumulate, weight_decay=args.weight_decay,
        seed=args.seed, backbone=args.backbone, backbone_weights=args.backbone_weights,
        partial_bn=not args.no_partial_bn, dropout=args.dropout, init_from=args.init_from,
        rgb=args.rgb, flow=args.flow, fusion_layer=args.fusion_layer,
        feature_fusion=args.feature_fusion, gate_activation=args.gate_activation,
        gate_dropout=args.gate_dropout, fusion_initializer=args.fusion_init,
        resume=args.resume, lam=args.lam,
    )
    _, history = run_stage(config)
    epochs = len(history.history.get("loss", []))
    print(f"trained stage {args.stage} for {epochs} epochs; model written to {args.out}")
    return 0


def _add_evaluate_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="score every test view (25 frames x 10 crops) into a score file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
The test protocol of the paper (Sec. IV-A): per video, FRAMES snippets uniformly
spaced, CROPS crops each (4 corners + centre and their flips), an RGB frame and
the flow stack starting at the same point. All views of a video go through the
network in one batch. Writes a score file (.npz) with per-view pre-softmax
scores of each stream and, for a gated model, the fused scores and the fusion
weights; `gated-tsn fuse` turns it into the accuracy table.""",
        epilog="example: gated-tsn evaluate --data ucf101/ --list ucf101/test.txt "
        "--model models/gated.keras --out scores/test.npz",
    )
    parser.add_argument("--data", required=True, help="prepared dataset folder")
    parser.add_argument("--list", required=True, help="list file of the videos to score")
    parser.add_argument("--out", required=True, help="score file to write (.npz)")
    parser.add_argument("--model", help="gated .keras model (scores streams, fused, weights)")
    parser.add_argument("--rgb", help="RGB stream .keras (without --model)")
    parser.add_argument("--flow", help="flow stream .keras (without --model)")
    parser.add_argument("--frames", type=int, default=25, help="snippets per video (default 25)")
    parser.add_argument("--crops", type=int, default=10, choices=(1, 5, 10), help="crops per snippet")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.set_defaults(func=_run_evaluate)
    return parser


@_exits_2_on_bad_input("evaluate")
def _run_evaluate(args) -> int:
    from keras_gated_tsn.data.lists import read_class_names
    from keras_gated_tsn.evaluation.protocol import evaluate
    from keras_gated_tsn.evaluation.scores import save_scores
    from keras_gated_tsn.training import load_model

    if not (args.model or args.rgb or args.flow):
        raise ValueError("give --model (gated) or --rgb and/or --flow (streams)")
    class_names = read_class_names(os.path.join(args.data, "classes.txt"))
    scores = evaluate(
        args.list, os.path.join(args.data, "frames"), class_names,
        gated_model=load_model(args.model) if args.model else None,
        rgb_model=load_model(args.rgb) if args.rgb else None,
        flow_model=load_model(args.flow) if args.flow else None,
        num_frames=args.frames, crops=args.crops, progress=args.progress,
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_scores(args.out, scores)
    print(f"scored {scores.num_videos} videos x {scores.num_views} views; wrote {args.out}")
    return 0


def _add_split_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "split",
        help="write train/val/test list files from the official UCF101 / HMDB51 split files",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Matches DATA/all.txt (written by `gated-tsn prepare`) against the official split
files in SPLITS (UCF101: classInd.txt, trainlist0N.txt, testlist0N.txt; HMDB51:
<class>_test_splitN.txt) and writes DATA/train.txt and DATA/test.txt. With
--val-fraction F, the last F of each class's training videos (in name order, so
mostly whole UCF101 groups) go to DATA/val.txt instead, for early stopping and
for the weight grid search of `gated-tsn fuse`. Videos of the split that were
not prepared are counted and reported.""",
        epilog="example: gated-tsn split ucf101/ --splits ucfTrainTestlist/ --split 1 --val-fraction 0.1",
    )
    parser.add_argument("data", help="prepared dataset folder (all.txt, classes.txt)")
    parser.add_argument("--splits", required=True, help="folder of the official split files")
    parser.add_argument("--split", type=int, default=1, choices=(1, 2, 3))
    parser.add_argument("--val-fraction", type=float, default=0.0, help="of each class's training videos")
    parser.set_defaults(func=_run_split)
    return parser


@_exits_2_on_bad_input("split")
def _run_split(args) -> int:
    from keras_gated_tsn.data.lists import read_class_names, read_list_file, write_list_file
    from keras_gated_tsn.data.splits import load_split, split_records

    if not 0.0 <= args.val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    records = read_list_file(os.path.join(args.data, "all.txt"))
    class_names = read_class_names(os.path.join(args.data, "classes.txt"))
    split = load_split(args.splits, args.split)
    train, test, missing = split_records(records, split, class_names)
    val = []
    if args.val_fraction > 0:
        by_class = {}
        for record in sorted(train, key=lambda r: r.video):
            by_class.setdefault(record.label, []).append(record)
        held = set()
        for videos in by_class.values():
            count = int(round(len(videos) * args.val_fraction))
            held.update(r.video for r in videos[len(videos) - count :])
        val = [r for r in train if r.video in held]
        train = [r for r in train if r.video not in held]
        write_list_file(os.path.join(args.data, "val.txt"), val)
    write_list_file(os.path.join(args.data, "train.txt"), train)
    write_list_file(os.path.join(args.data, "test.txt"), test)
    print(
        f"{split.dataset} split {split.split}: train {len(train)}, val {len(val)}, test {len(test)} videos "
        f"written to {args.data}; {len(missing)} videos of the split were not prepared"
    )
    return 0


def _add_demo_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="the whole method on the embedded sample clips (smoke run, about 5 min on 2 CPU cores)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Runs prepare -> train (rgb, flow, gate, joint) -> evaluate -> fuse on the six
sample clips shipped with the package (UCF101 / HMDB51, cut into sub-clips),
with a reduced input size and DIS flow so that it finishes on a laptop CPU.
Its accuracies are a smoke run on a handful of clips, not an accuracy claim.""",
    )
    parser.add_argument("--out", default="gated_tsn_demo", help="output folder (default ./gated_tsn_demo)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per stage (default: demo preset)")
    parser.add_argument("--input-size", type=int, default=None, help="crop side (default: demo preset)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=_run_demo)
    return parser


def _run_demo(args) -> int:
    from keras_gated_tsn.demo import run_demo

    overrides = {k: v for k, v in (("epochs", args.epochs), ("input_size", args.input_size)) if v is not None}
    return run_demo(args.out, seed=args.seed, **overrides)


def build_parser() -> argparse.ArgumentParser:
    """The ``gated-tsn`` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="gated-tsn", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_prepare_parser(subparsers)
    _add_split_parser(subparsers)
    _add_train_parser(subparsers)
    _add_evaluate_parser(subparsers)
    add_fuse_parser(subparsers)
    _add_demo_parser(subparsers)
    add_convert_parser(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``gated-tsn``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
