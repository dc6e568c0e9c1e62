"""``gated-tsn prepare``: frames and optical flow from class folders of videos."""

from __future__ import annotations

import argparse
import os
import sys

from keras_gated_tsn.cli.common import int_at_least, positive_float, quality
from keras_gated_tsn.cli.split import add_split_arguments, check_split_arguments, write_lists
from keras_gated_tsn.data.flow import FLOW_METHODS
from keras_gated_tsn.data.prepare import DEFAULT_BOUND, DEFAULT_SIZE, EXTRACT_MODALITIES

NAME = "prepare"
HELP = "extract RGB frames and optical flow from class folders of videos"

DESCRIPTION = """\
Extract RGB frames and optical flow from a folder of videos, as TSN does.

SRC holds one folder per class with the videos in it (UCF101 / HMDB51 layout):
  SRC/<class>/<video>.avi   (.avi .mp4 .mkv .webm .mov .mpg .mpeg .m4v)
Classes are the folder names sorted case-insensitively (label = index, the
order of UCF101's classInd.txt); a video's id is its file name without
extension and must be unique.

OUT receives:
  OUT/frames/<video>/img_00001.jpg ...     RGB frames resized to W x H
  OUT/frames/<video>/flow_x_00001.jpg ...  flow from frame i to i+1,
  OUT/frames/<video>/flow_y_00001.jpg ...  one fewer pair than frames
                                           (clipped at +-BOUND px, 128 = still)
  OUT/classes.txt                          class names, line i = label i
  OUT/all.txt                              "<video> <num_frames> <label>" lines
  OUT/prepare.json                         the settings of the extraction
  OUT/failed.txt                           videos that failed, with the reason

Each video is written to a hidden temporary folder and renamed when complete:
a run killed at any moment (or stopped with Ctrl-C) goes on where it stopped
when the same command runs again, skipping finished videos. A run into OUT
with other settings (size, flow, bound, quality, modality) than OUT records is
refused: one folder never mixes resolutions. Frames stream through, so long
videos need no more memory than short ones. Video files beside the class
folders and class folders without videos are reported. Videos that cannot be
decoded are reported and skipped; the exit status is then 1 (2 for a bad SRC
or arguments, 130 for Ctrl-C).

With --splits (the official UCF101 / HMDB51 split files, which do not ship
with the package) the class labels follow the split files' class list and
the lists of every split are written after the extraction (DATA/splits/N/,
and split --split as DATA/train.txt, val.txt, test.txt): the same as running
`gated-tsn split` afterwards. With --test-fraction a dataset of your own gets
a seeded stratified split instead."""

EPILOG = """\
examples:
  gated-tsn prepare UCF-101/ data/ucf101 --workers 8 --splits ucfTrainTestlist/ --val-from-test
  gated-tsn prepare hmdb51/ data/hmdb51 --workers 8 --dataset hmdb51 --splits testTrainMulti_7030_splits/
  gated-tsn prepare videos/ out/ --flow dis --test-fraction 0.2 --val-fraction 0.1   # fast flow, own split
  gated-tsn prepare videos/ rgb_only/ --modality rgb                                   # frames only

At 340x256 on this project's 2-core CPU: OpenCV TV-L1 0.84 pairs/s on one core,
tvl1-tf 4.5 pairs/s (with --workers 1: it uses every core itself), DIS 82
pairs/s (benchmarks/flow.py)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``prepare`` on an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        NAME,
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", metavar="SRC", help="folder with one sub-folder of videos per class")
    parser.add_argument("out", metavar="OUT", help="output folder (created; must not be inside SRC)")
    parser.add_argument(
        "--flow",
        choices=FLOW_METHODS,
        default="tvl1",
        help="optical flow: tvl1 (OpenCV's Dual TV-L1, TSN's; about 1 pair/s per CPU core), tvl1-tf (the "
        "same TV-L1 in TensorFlow, batched, on the GPU when there is one; 0.006 px from OpenCV's) or dis "
        "(fast, lower quality) (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int_at_least(1),
        default=1,
        metavar="N",
        help="parallel processes, one video each; 1 runs in-process (default: %(default)s)",
    )
    parser.add_argument(
        "--size",
        type=int_at_least(2),
        nargs=2,
        default=list(DEFAULT_SIZE),
        metavar=("W", "H"),
        help="frame width and height in pixels, aspect ratio ignored (default: 340 256)",
    )
    parser.add_argument(
        "--bound",
        type=positive_float,
        default=DEFAULT_BOUND,
        metavar="PX",
        help="flow clipping bound in pixels, mapped to 0 and 255 (default: %(default)s)",
    )
    parser.add_argument(
        "--jpeg-quality",
        type=quality,
        default=95,
        metavar="Q",
        help="JPEG quality 0-100 of frames and flow (default: %(default)s)",
    )
    parser.add_argument(
        "--modality",
        choices=EXTRACT_MODALITIES,
        default="rgb+flow",
        help="rgb+flow: frames and flow (both streams); rgb: frames only, for spatial-only work "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--format",
        choices=("frames", "tfrecord"),
        default="frames",
        help="frames: the JPEG frame folders; tfrecord: also sharded TFRecord files in OUT/tfrecord/ "
        "(read with interleaved parallel reads: for data on remote storage; train and evaluate read them "
        "when OUT/frames/ is absent) (default: %(default)s)",
    )
    parser.add_argument(
        "--shards",
        type=int_at_least(1),
        metavar="N",
        help="with --format tfrecord: the number of shards (default: about 256 MiB each)",
    )
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="do not show the progress bar",
    )
    add_split_arguments(parser, title="lists (optional; `gated-tsn split` does the same afterwards)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Runs ``gated-tsn prepare`` and prints a summary (then the lists and
    TFRecord shards asked for).

    Returns:
        The exit status: 0 if every video is extracted, 1 if some failed
        (each listed on stderr with its reason, all in ``OUT/failed.txt``),
        130 on Ctrl-C (what is finished is kept); a bad source folder or
        argument raises (the CLI's error path: message, exit 2).
    """
    from keras_gated_tsn.data.prepare import PrepareInterrupted, prepare_dataset
    from keras_gated_tsn.data.splits import available_splits, load_split

    check_split_arguments(args)
    if args.shards is not None and args.format != "tfrecord":
        raise ValueError("--shards is for --format tfrecord")
    class_names = None
    if args.splits is not None:  # labels follow the official class list; bad split files fail before any work
        dataset, numbers = available_splits(args.splits, args.dataset)
        if args.split not in numbers:
            raise FileNotFoundError(f"{args.splits} has no {dataset} split {args.split} (it has splits "
                                    f"{', '.join(map(str, numbers))})")
        class_names = load_split(args.splits, numbers[0], dataset).class_names
    try:
        report = prepare_dataset(
            args.src,
            args.out,
            flow=args.flow,
            workers=args.workers,
            size=tuple(args.size),
            bound=args.bound,
            jpeg_quality=args.jpeg_quality,
            progress=args.progress,
            modality=args.modality,
            class_names=class_names,
        )
    except PrepareInterrupted as interrupted:
        print(f"gated-tsn prepare: {interrupted}", file=sys.stderr)
        return 130
    lines = report.summary().splitlines()
    print(lines[0])
    for line in lines[1:]:
        print(line, file=sys.stderr)
    if args.splits is not None or args.test_fraction is not None:
        failed = {os.path.splitext(os.path.basename(path))[0]: reason for path, reason in report.failed}
        for line in write_lists(args, args.out, failed=failed):
            print(line)
    if args.format == "tfrecord":
        from keras_gated_tsn.data.layout import FRAMES_DIR, TFRECORD_DIR
        from keras_gated_tsn.data.tfrecord import write_tfrecords

        target = os.path.join(args.out, TFRECORD_DIR)
        index = write_tfrecords(os.path.join(args.out, FRAMES_DIR), report.records, target,
                                num_shards=args.shards, modality=args.modality, overwrite=True)
        print(f"wrote {len(index['shards'])} TFRecord shard(s) of {len(report.records)} videos to {target}")
    return 0 if report.ok else 1
