"""Table IV of the gated TSN paper: gated fusion (Algorithm 1, stage 2) and
gated fusion with the gating ConvNet's classification branch (stage 3, the
multi-task loss of eq. (4)) on the three splits, and their mean.

Each split is a whole run of Algorithm 1 on that split's lists: the two
streams, the gate, the joint model, each scored on the split's test list.
With --data the lists are DATA/splits/N/ (written by `gated-tsn prepare
--splits` or `gated-tsn split`); --smoke makes three seeded stratified splits
of the embedded sample clips instead.

    python examples/table4_splits.py --smoke
    python examples/table4_splits.py --data ucf101/ --backbone-weights imagenet
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import paper_tables

COLUMNS = (("gated", "gated fusion"), ("joint", "+gating ConvNet classification"))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    paper_tables.add_common_arguments(parser, streams=False)
    parser.add_argument("--splits", nargs="+", type=int, default=[1, 2, 3], metavar="N",
                        help="the splits to run (default 1 2 3)")
    args = parser.parse_args(argv)
    paper_tables.check_mode(parser, args)
    return args


def split_data(data_dir: str, out: str, number: int, smoke: bool) -> str:
    """A dataset folder whose train/val/test lists are split ``number``'s: the
    frames are linked, classes.txt and the lists copied."""
    import shutil

    from keras_gated_tsn.data.layout import ALL_LIST, CLASSES_FILE, FRAMES_DIR, SPLITS_DIR, list_file
    from keras_gated_tsn.data.lists import read_class_names, read_list_file
    from keras_gated_tsn.data.splits import seeded_split_lists, write_split_lists

    folder = os.path.join(out, f"split{number}", "data")
    os.makedirs(folder, exist_ok=True)
    frames = os.path.join(folder, FRAMES_DIR)
    if not os.path.exists(frames):
        os.symlink(os.path.abspath(os.path.join(data_dir, FRAMES_DIR)), frames)
    shutil.copy(os.path.join(data_dir, CLASSES_FILE), os.path.join(folder, CLASSES_FILE))
    if smoke:
        records = read_list_file(os.path.join(data_dir, ALL_LIST))
        classes = read_class_names(os.path.join(data_dir, CLASSES_FILE))
        write_split_lists(folder, seeded_split_lists(records, classes, test_fraction=0.3, seed=number))
        return folder
    source = os.path.join(data_dir, SPLITS_DIR, str(number))
    if not os.path.isfile(os.path.join(source, list_file("train"))):
        raise SystemExit(f"no lists of split {number} in {source}: run `gated-tsn split {data_dir} --splits DIR` "
                         "(or `gated-tsn prepare ... --splits DIR`) first")
    for name in ("train", "val", "test"):
        path = os.path.join(source, list_file(name))
        target = os.path.join(folder, list_file(name))
        if os.path.isfile(path):
            shutil.copy(path, target)
        elif os.path.isfile(target):
            os.remove(target)
    return folder


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.time()
    out = paper_tables.output_folder(args, "table4")
    data_dir = paper_tables.smoke_dataset(out) if args.smoke else args.data
    options = paper_tables.run_options(args)
    rows = []
    for number in args.splits:
        folder = split_data(data_dir, out, number, args.smoke)
        run_dir = os.path.join(out, f"split{number}")
        print(f"\n=== split {number}: stage 1 ===", flush=True)
        streams = paper_tables.train_streams(folder, run_dir, args, options)
        print(f"\n=== split {number}: stage 2 (gated fusion) ===", flush=True)
        gated, models = paper_tables.gated_accuracy(folder, os.path.join(run_dir, "gate"), streams, options)
        print(f"\n=== split {number}: stage 3 (+ gating classification) ===", flush=True)
        joint, _ = paper_tables.gated_accuracy(folder, os.path.join(run_dir, "joint"), streams, options,
                                               stages=("joint",), gate_model=models["gate"])
        rows.append({"split": f"split {number}", "gated": gated, "joint": joint})
    if len(rows) > 1:
        rows.append({"split": "mean", **{key: sum(row[key] for row in rows) / len(rows) for key, _ in COLUMNS}})
    table = paper_tables.format_table(rows, ("split", "split"), COLUMNS)
    path = paper_tables.write_csv(os.path.join(out, "table4.csv"), rows, ["split", "gated", "joint"])
    paper_tables.finish("Table IV layout (gated TSN top-1 %, test videos of each split):", table, path,
                        args.smoke, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
