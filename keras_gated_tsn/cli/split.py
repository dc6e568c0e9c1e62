"""``gated-tsn split``: train / val / test lists from the official UCF101 / HMDB51 split files."""

from __future__ import annotations

import argparse
import os

from keras_gated_tsn.cli.common import ratio

NAME = "split"
HELP = "write train/val/test list files: official UCF101 / HMDB51 splits, or a seeded split of your own dataset"
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

Without either, no val.txt is written (training then monitors training accuracy).

A dataset of your own (class folders, no official split files): leave out
--splits and give --test-fraction. Each class is then divided in the same
proportions, shuffled with --seed (same seed, same lists):

  --test-fraction T   about T of each class's videos go to test.txt
  --val-fraction F    about F of each class's videos go to val.txt (of the
                      whole class, not of its training part)"""
EPILOG = """\
examples:
  gated-tsn split ucf101/ --splits ucfTrainTestlist/ --split 1 --val-from-test
  gated-tsn split ucf101/ --splits ucfTrainTestlist/ --split 1 --val-fraction 0.1
  gated-tsn split mydata/ --test-fraction 0.2 --val-fraction 0.1 --seed 0"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``split`` on an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        NAME, help=HELP, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", help="prepared dataset folder (all.txt, classes.txt)")
    parser.add_argument("--splits", help="folder of the official split files (UCF101, HMDB51)")
    parser.add_argument("--split", type=int, default=1, choices=(1, 2, 3), help="split number (default 1)")
    val = parser.add_mutually_exclusive_group()
    val.add_argument("--val-from-test", action="store_true",
                     help="val.txt = the test list (the authors' protocol; see above)")
    val.add_argument("--val-fraction", type=ratio, default=0.0, metavar="F",
                     help="val.txt: F of each class's training videos with --splits, F of each class without (see above)")
    parser.add_argument("--test-fraction", type=ratio, metavar="T",
                        help="without --splits: the share of each class that goes to test.txt")
    parser.add_argument("--seed", type=int, default=0, help="without --splits: the shuffling seed (default 0)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Writes the lists and prints their sizes; bad input raises (exit 2)."""
    from keras_gated_tsn.atomic import atomic_write
    from keras_gated_tsn.data.layout import ALL_LIST, CLASSES_FILE, list_file
    from keras_gated_tsn.data.lists import read_class_names, read_list_file, write_list_file
    from keras_gated_tsn.data.splits import hold_out_validation, load_split, split_records, stratified_split

    records = read_list_file(os.path.join(args.data, ALL_LIST))
    class_names = read_class_names(os.path.join(args.data, CLASSES_FILE))
    if args.splits is None:
        if args.test_fraction is None:
            raise ValueError("give --splits (the official split files) or --test-fraction (a seeded split)")
        if args.val_from_test:
            raise ValueError("--val-from-test needs --splits; with --test-fraction use --val-fraction")
        train, val, test = stratified_split(
            records, class_names, test_fraction=args.test_fraction, val_fraction=args.val_fraction, seed=args.seed,
        )
        for name, part in (("train", train), ("val", val), ("test", test)):
            path = os.path.join(args.data, list_file(name))
            if part:
                write_list_file(path, part)
            elif os.path.isfile(path):
                os.remove(path)  # a val.txt of an earlier split would be silently used
        print(
            f"seeded split (seed {args.seed}) of {len(records)} videos in {len(class_names)} classes: "
            f"train {len(train)}, val {len(val)}, test {len(test)} videos written to {args.data}"
        )
        return 0
    if args.test_fraction is not None:
        raise ValueError("--test-fraction is for datasets without official splits; the split files fix the test set")
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
    missing_path = os.path.join(args.data, "split_missing.txt")
    if missing:
        atomic_write(missing_path, lambda handle: handle.write("".join(f"{stem}\n" for stem in missing)))
    elif os.path.isfile(missing_path):
        os.remove(missing_path)
    print(
        f"{split.dataset} split {split.split}: train {len(train)}, val {len(val)}, test {len(test)} videos "
        f"written to {args.data}" + (f"; val.txt is {source}" if val else "; no val.txt")
        + f"; {len(missing)} videos of the split were not prepared"
        + (f" ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}; all listed in {missing_path})"
           if missing else "")
    )
    return 0
