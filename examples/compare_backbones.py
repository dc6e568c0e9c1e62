"""Table III of the gated TSN paper: fusion methods across backbones and
two-stream methods.

For each backbone (CaffeNet, VGG16, BN-Inception) and each two-stream method
(the original two-stream ConvNet, K=1 segment in training; TSN, K=3): train
the RGB and flow streams, train the gating ConvNet (Algorithm 1, stage 2),
score the validation and test videos with the 25-frame x 10-crop protocol, and
fuse with the weighted average (weight grid-searched on validation), SCI and
the gate. Prints Table III's layout (rows: architecture, columns: fusion
method) as markdown and writes it as CSV.

    python examples/compare_backbones.py --smoke
        the embedded sample clips, small inputs, one epoch per stage
        (a smoke run that every row builds, trains and evaluates; 5 minutes
        on 2 CPU cores)

    python examples/compare_backbones.py --data ucf101/ --out table3/ \\
        --backbone-weights imagenet
        a prepared dataset with train.txt, val.txt and test.txt lists
        (gated-tsn prepare + gated-tsn split), the paper's settings
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import paper_tables

METHODS = (("two-stream", 1), ("TSN", 3))
COLUMNS = (("gated", "gated fusion"), ("weighted", "weighted ave"), ("sci", "SCI"))
#: --smoke: crop side per backbone (CaffeNet's flattened pool5 needs >= 67).
SMOKE_INPUT_SIZE = {"caffenet": 99, "vgg16": 64, "bn_inception": 64}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="run on the embedded sample clips")
    parser.add_argument("--data", help="prepared dataset (frames/, classes.txt, train/val/test.txt)")
    parser.add_argument("--out", default="compare_backbones", help="output folder")
    parser.add_argument("--backbones", nargs="+", default=["caffenet", "vgg16", "bn_inception"])
    parser.add_argument("--epochs", type=int, help="epochs per stage (default 80, --smoke 1)")
    parser.add_argument("--input-size", type=int, help="crop side for every backbone (default: backbone's)")
    parser.add_argument("--backbone-weights", help="e.g. imagenet (see weights/README.md)")
    parser.add_argument("--frames", type=int, help="test snippets per video (default 25, --smoke 5)")
    parser.add_argument("--crops", type=int, choices=(1, 3, 5, 10), help="test crops (default 10, --smoke 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.smoke and not args.data:
        parser.error("give --data DATA (a prepared dataset) or --smoke")
    return args


def run(args) -> list:
    from keras_gated_tsn.backbones import get_backbone
    from keras_gated_tsn.training.runner import run_algorithm1

    out = paper_tables.output_folder(args, "compare_backbones")
    data_dir = paper_tables.smoke_dataset(out) if args.smoke else args.data
    epochs = args.epochs or (1 if args.smoke else 80)
    frames = args.frames or (5 if args.smoke else 25)
    crops = args.crops or (1 if args.smoke else 10)

    rows = []
    for method, segments in METHODS:
        for backbone in args.backbones:
            spec = get_backbone(backbone)
            size = args.input_size or (SMOKE_INPUT_SIZE[backbone] if args.smoke else spec.default_input_size)
            tag = f"{backbone}_{method.lower().replace('-', '')}"
            started = time.time()
            print(f"\n=== {spec.display_name} ({method}, K={segments}, {size}x{size}) ===", flush=True)
            smoke = {"batch_size": 4, "iter_size": 1, "partial_bn": False} if args.smoke else {}  # from scratch
            result = run_algorithm1(
                data_dir, os.path.join(out, tag), stages=("rgb", "flow", "gate"),
                test_frames=frames, test_crops=crops, progress=False,
                epochs=epochs, num_segments=segments, input_size=size, backbone=backbone,
                backbone_weights=args.backbone_weights, gate_init=args.backbone_weights or "rgb",
                seed=args.seed, verbose=2, **smoke,
            )
            table = {row["method"]: row for row in result.rows}
            rows.append({
                "architecture": f"{spec.display_name} ({method})",
                **{name: table[name]["top1"] for name, _ in COLUMNS},
                "minutes": round((time.time() - started) / 60, 1),
            })
            print(format_table(rows), flush=True)
    return rows


def format_table(rows) -> str:
    return paper_tables.format_table(rows, ("architecture", "Architectures"), COLUMNS)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.time()
    rows = run(args)
    path = paper_tables.write_csv(os.path.join(os.path.abspath(args.out), "table3.csv"), rows,
                                  ["architecture"] + [n for n, _ in COLUMNS] + ["minutes"])
    paper_tables.finish("Table III layout (top-1 %, test videos):", format_table(rows), path, args.smoke, start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
