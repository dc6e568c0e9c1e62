"""``gated-tsn split``: train / val / test lists from the official UCF101 / HMDB51 split files."""

from __future__ import annotations

import argparse
import os
from typing import List

from keras_gated_tsn.cli.common import ratio
from keras_gated_tsn.data.splits import DATASETS

NAME = "split"
HELP = "write train/val/test list files: official UCF101 / HMDB51 splits, or a seeded split of your own dataset"
DESCRIPTION = """\
Matches DATA/all.txt (written by `gated-tsn prepare`) against the official split
files in SPLITS (UCF101: classInd.txt, trainlist0N.txt, testlist0N.txt; HMDB51:
<class>_test_splitN.txt) and writes, for every split N the folder has,
DATA/splits/N/train.txt, test.txt (and val.txt), and split --split (default 1)
also as DATA/train.txt, test.txt, val.txt, which `gated-tsn train` reads by
default. Videos of a split that were not prepared, or whose extraction failed
(DATA/failed.txt), are counted, the first named, and all listed in
split_missing.txt beside the lists ("<video> <train|test> <reason>").

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


def add_split_arguments(parser: argparse.ArgumentParser, *, title: str = "split") -> None:
    """The split options ``split`` and ``prepare`` share (``prepare`` makes the
    lists right after extraction)."""
    group = parser.add_argument_group(title)
    group.add_argument("--splits", metavar="DIR",
                       help="folder of the official split files (UCF101: classInd.txt, trainlist0N.txt, "
                            "testlist0N.txt; HMDB51: <class>_test_splitN.txt); the lists of every split "
                            "found are written to DATA/splits/N/")
    group.add_argument("--dataset", choices=DATASETS,
                       help="which dataset's split files --splits holds (default: told by the file names)")
    group.add_argument("--split", type=int, default=1, choices=(1, 2, 3),
                       help="the split whose lists also go to DATA/train.txt, val.txt, test.txt, "
                            "what `train` reads by default (default 1)")
    val = group.add_mutually_exclusive_group()
    val.add_argument("--val-from-test", action="store_true",
                     help="val.txt = the test list (the authors' protocol; see `gated-tsn split --help`)")
    val.add_argument("--val-fraction", type=ratio, default=0.0, metavar="F",
                     help="val.txt: F of each class's training videos with --splits, F of each class without")
    group.add_argument("--test-fraction", type=ratio, metavar="T",
                       help="without --splits: the share of each class that goes to test.txt (a seeded split)")
    group.add_argument("--seed", type=int, default=0, help="without --splits: the shuffling seed (default 0)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``split`` on an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        NAME, help=HELP, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", help="prepared dataset folder (all.txt, classes.txt)")
    add_split_arguments(parser)
    return parser


def check_split_arguments(args: argparse.Namespace) -> None:
    """Refuses contradictory split options, before any work.

    Raises:
        ValueError: saying which options do not go together.
    """
    if args.splits is None:
        if args.dataset is not None:
            raise ValueError(f"--dataset {args.dataset} needs --splits: the folder of its official split files "
                             "(they do not ship with the package)")
        if args.val_from_test:
            raise ValueError("--val-from-test needs --splits; with --test-fraction use --val-fraction")
    elif args.test_fraction is not None:
        raise ValueError("--test-fraction is for datasets without official splits; the split files fix the test set")


def write_lists(args: argparse.Namespace, data_dir: str, failed=None) -> List[str]:
    """Writes the list files the split options ask for; returns what to print.

    With ``--splits``: every split of the folder into ``DATA/splits/<N>/``
    (``train.txt``, ``val.txt``, ``test.txt``, ``split_missing.txt``) and
    split ``--split`` also into ``DATA/``. With ``--test-fraction``: a seeded
    stratified split into ``DATA/``.

    Args:
        args: the parsed split options.
        data_dir: the prepared dataset (``all.txt``, ``classes.txt``).
        failed: video id -> reason of failed extractions; ``None`` reads
            ``DATA/failed.txt``.

    Raises:
        ValueError, FileNotFoundError: for bad split files or options.
    """
    from keras_gated_tsn.data.layout import ALL_LIST, CLASSES_FILE, FAILED_LIST, SPLIT_MISSING, SPLITS_DIR
    from keras_gated_tsn.data.lists import read_class_names, read_list_file
    from keras_gated_tsn.data.splits import (
        available_splits,
        load_split,
        official_split_lists,
        read_failed_videos,
        seeded_split_lists,
        write_split_lists,
    )

    check_split_arguments(args)
    records = read_list_file(os.path.join(data_dir, ALL_LIST))
    class_names = read_class_names(os.path.join(data_dir, CLASSES_FILE))
    if args.splits is None:
        if args.test_fraction is None:
            raise ValueError("give --splits (the official split files) or --test-fraction (a seeded split)")
        lists = seeded_split_lists(records, class_names, test_fraction=args.test_fraction,
                                   val_fraction=args.val_fraction, seed=args.seed)
        write_split_lists(data_dir, lists)
        return [f"{lists.describe()} of {len(records)} videos in {len(class_names)} classes, written to {data_dir}"]
    if failed is None:
        failed = read_failed_videos(os.path.join(data_dir, FAILED_LIST))
    dataset, numbers = available_splits(args.splits, args.dataset)
    if args.split not in numbers:
        raise FileNotFoundError(f"{args.splits} has no {dataset} split {args.split} (it has splits "
                                f"{', '.join(map(str, numbers))})")
    lines = []
    for number in numbers:
        lists = official_split_lists(
            records, class_names, load_split(args.splits, number, dataset),
            val_from_test=args.val_from_test, val_fraction=args.val_fraction, failed=failed,
        )
        folder = os.path.join(data_dir, SPLITS_DIR, str(number))
        write_split_lists(folder, lists)
        targets = [folder]
        if number == args.split:
            write_split_lists(data_dir, lists)
            targets.append(data_dir)
        lines.append(f"{lists.describe()}; written to {' and '.join(targets)}"
                     + (f" (missing videos listed in {os.path.join(folder, SPLIT_MISSING)})" if lists.missing else ""))
    return lines


def run(args: argparse.Namespace) -> int:
    """Writes the lists and prints their sizes; bad input raises (exit 2)."""
    for line in write_lists(args, args.data):
        print(line)
    return 0
