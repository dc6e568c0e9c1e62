"""Table I of the gated TSN paper: the gating ConvNet's output activation
(softmax or ReLU) x the fusion of the two streams' inception_4e maps (conv or
concatenation), gated-fusion top-1 on the test list.

The streams are trained once (or given with --rgb/--flow) and frozen; each
row trains one gating ConvNet (Algorithm 1, stage 2: fusion weights only) and
scores the test list with the test protocol. "Concatenation" is the authors'
concatenation network (feature_fusion="concat_height", gating_three_2_concat);
--concat channels uses the channel concatenation of eq. (8) instead.

    python examples/table1_gate_activation.py --smoke
        the embedded sample clips (a smoke run: every cell builds, trains and
        evaluates; the accuracies are not results)

    python examples/table1_gate_activation.py --data ucf101/ --rgb rgb.keras --flow flow.keras \\
        --backbone-weights imagenet
        UCF101 split 1 prepared with gated-tsn prepare --splits (the paper's setting)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import paper_tables

ACTIVATIONS = ("softmax", "relu")
FUSIONS = {"conv": ("conv", "Conv fusion of inception4e"),
           "concat": ("concat_height", "Concatenation fusion of inception4e")}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    paper_tables.add_common_arguments(parser)
    parser.add_argument("--activations", nargs="+", choices=ACTIVATIONS, default=list(ACTIVATIONS),
                        help="the columns (default both)")
    parser.add_argument("--fusions", nargs="+", choices=tuple(FUSIONS), default=list(FUSIONS),
                        help="the rows (default both)")
    parser.add_argument("--concat", choices=("height", "channels"), default="height",
                        help="concatenation: the authors' network (height, default) or eq. (8) (channels)")
    args = parser.parse_args(argv)
    paper_tables.check_mode(parser, args)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.time()
    out = paper_tables.output_folder(args, "table1")
    data_dir = paper_tables.smoke_dataset(out) if args.smoke else args.data
    options = paper_tables.run_options(args)
    streams = paper_tables.train_streams(data_dir, out, args, options)
    rows = []
    for fusion in args.fusions:
        feature_fusion, title = FUSIONS[fusion]
        if fusion == "concat" and args.concat == "channels":
            feature_fusion, title = "concat", "Channel concatenation of inception4e"
        row = {"input": title}
        for activation in args.activations:
            print(f"\n=== {title}, {activation} ===", flush=True)
            row[activation], _ = paper_tables.gated_accuracy(
                data_dir, os.path.join(out, f"{fusion}_{activation}"), streams, options,
                feature_fusion=feature_fusion, gate_activation=activation, fusion_layer="inception_4e_output",
            )
        rows.append(row)
    columns = [(a, {"softmax": "Softmax", "relu": "ReLU"}[a]) for a in args.activations]
    table = paper_tables.format_table(rows, ("input", "Input for gating ConvNet"), columns)
    path = paper_tables.write_csv(os.path.join(out, "table1.csv"), rows, ["input", *args.activations])
    paper_tables.finish("Table I layout (gated TSN top-1 %, test videos):", table, path, args.smoke, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
