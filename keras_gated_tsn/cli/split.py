"""``gated-tsn split``: train / val / test lists from the official UCF101 / HMDB51 split files."""

from __future__ import annotations

import argparse
import os

from keras_gated_tsn.cli.common import ratio

NAME = "split"
HELP = "write train/val/test list files from the official UCF101 / HMDB51 split files"
DESCRIPTION = """\
Matches DATA/all.txt (written by `gated-tsn prepare`) against the official split
files in SPLITS (UCF101: classInd.txt, trainlist0N.txt, testlist0N.txt; HMDB51:
<class>_test_splitN.txt) and writes DATA/train.txt and DATA/test.txt. Videos of
the split that were not prepared are counted and reported.

DATA/val.txt is what `gated-tsn train` early-stops on and what `gated-tsn fuse`
grid-searches the fusion weight on. Choose it knowingly:

  --val-from-test     val.txt = the test list. This is what the authors did
                      (their Caffe solver validated on the test videos); the
                      numbers are then tuned on the list they are reported on,
                      and `gated-tsn fuse` marks such rows (tuned_on: test list).
  --val-fraction F    the last F of each class's training videos (in name order,
                      so mostly whole UCF101 groups) move to val.txt. An honest
                      held-out set, but only for streams trained on the rest:
                      streams trained on the whole training split (TSN's
                      released models) score near 100% on it, which makes early
                      stopping and the weight search meaningless.

Without either, no val.txt is written (training then monitors training accuracy)."""
EPILOG = """\
examples:
  gated-tsn split ucf101/ --splits ucfTrainTestlist/ --split 1 --val-from-test
  gated-tsn split ucf101/ --splits ucfTrainTestlist/ --split 1 --val-fraction 0.1"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``split`` on an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        NAME, help=HELP, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", help="prepared dataset folder (all.txt, classes.txt)")
    parser.add_argument("--splits", required=True, help="folder of the official split files")
    parser.add_argument("--split", type=int, default=1, choices=(1, 2, 3), help="split number (default 1)")
    val = parser.add_mutually_exclusive_group()
    val.add_argument("--val-from-test", action="store_true",
                     help="val.txt = the test list (the authors' protocol; see above)")
    val.add_argument("--val-fraction", type=ratio, default=0.0, metavar="F",
                     help="hold out F of each class's training videos as val.txt (see above)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Writes the lists and prints their sizes; bad input raises (exit 2)."""
    from keras_gated_tsn.data.layout import ALL_LIST, CLASSES_FILE, list_file
    from keras_gated_tsn.data.lists import read_class_names, read_list_file, write_list_file
    from keras_gated_tsn.data.splits import hold_out_validation, load_split, split_records

    records = read_list_file(os.path.join(args.data, ALL_LIST))
    class_names = read_class_names(os.path.join(args.data, CLASSES_FILE))
    split = load_split(args.splits, args.split)
    train, test, missing = split_records(records, split, class_names)
    val = []
    val_path = os.path.join(args.data, list_file("val"))
    if args.val_from_test:
        val, source = test, "the test list (as the authors)"
    elif args.val_fraction > 0:
        train, val = hold_out_validation(train, args.val_fraction)
        source = f"{args.val_fraction:g} of each class's training videos"
    if val:
        write_list_file(val_path, val)
    elif os.path.isfile(val_path):
        os.remove(val_path)  # a val.txt of an earlier split would be silently used
    write_list_file(os.path.join(args.data, list_file("train")), train)
    write_list_file(os.path.join(args.data, list_file("test")), test)
    print(
        f"{split.dataset} split {split.split}: train {len(train)}, val {len(val)}, test {len(test)} videos "
        f"written to {args.data}" + (f"; val.txt is {source}" if val else "; no val.txt")
        + f"; {len(missing)} videos of the split were not prepared"
    )
    return 0
