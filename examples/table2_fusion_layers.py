"""Table II of the gated TSN paper: the layer whose feature maps of both
streams enter the gating ConvNet x the way they are fused (concatenation or
conv fusion), gated-fusion top-1 on the test list.

The paper's rows conv1, conv2, inception3c, inception4e and inception5b are
BN-Inception's stage outputs pool1_3x3_s2, pool2_3x3_s2, inception_3c_output,
inception_4e_output and inception_5b_output (the gating ConvNet is the
backbone after that layer, so with inception5b it is the pooling and the two
heads alone); --layers takes any of the backbone's FEATURE_LAYERS (e.g. the
inception_4a ... 4d outputs). The streams are trained once (or given with
--rgb/--flow); each cell trains one gating ConvNet (stage 2).

    python examples/table2_fusion_layers.py --smoke
    python examples/table2_fusion_layers.py --data ucf101/ --rgb rgb.keras --flow flow.keras \\
        --backbone-weights imagenet
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import paper_tables

#: The paper's rows: its name -> BN-Inception's layer.
PAPER_LAYERS = {
    "conv1": "pool1_3x3_s2",
    "conv2": "pool2_3x3_s2",
    "inception3c": "inception_3c_output",
    "inception4e": "inception_4e_output",
    "inception5b": "inception_5b_output",
}
FUSIONS = {"concat": ("concat_height", "concatenation fusion"), "conv": ("conv", "conv fusion")}


def parse_args(argv=None):
    from keras_gated_tsn.backbones.bn_inception import FEATURE_LAYERS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    paper_tables.add_common_arguments(parser)
    parser.add_argument("--layers", nargs="+", default=list(PAPER_LAYERS), metavar="LAYER",
                        help="rows: the paper's names (" + ", ".join(PAPER_LAYERS) + ", the default) or "
                        "BN-Inception feature layers (" + ", ".join(FEATURE_LAYERS) + ")")
    parser.add_argument("--fusions", nargs="+", choices=tuple(FUSIONS), default=list(FUSIONS),
                        help="the columns (default both)")
    args = parser.parse_args(argv)
    paper_tables.check_mode(parser, args)
    unknown = [layer for layer in args.layers if layer not in PAPER_LAYERS and layer not in FEATURE_LAYERS]
    if unknown:
        parser.error(f"unknown layer(s) {', '.join(unknown)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.time()
    out = paper_tables.output_folder(args, "table2")
    data_dir = paper_tables.smoke_dataset(out) if args.smoke else args.data
    options = paper_tables.run_options(args)
    streams = paper_tables.train_streams(data_dir, out, args, options)
    rows = []
    for name in args.layers:
        layer = PAPER_LAYERS.get(name, name)
        row = {"layer": name if layer == name else f"{name} ({layer})"}
        for fusion in args.fusions:
            feature_fusion, title = FUSIONS[fusion]
            print(f"\n=== {layer}, {title} ===", flush=True)
            row[fusion], _ = paper_tables.gated_accuracy(
                data_dir, os.path.join(out, f"{layer}_{fusion}"), streams, options,
                fusion_layer=layer, feature_fusion=feature_fusion,
            )
        rows.append(row)
    columns = [(fusion, FUSIONS[fusion][1]) for fusion in args.fusions]
    table = paper_tables.format_table(rows, ("layer", "Input layer for gating ConvNet"), columns)
    path = paper_tables.write_csv(os.path.join(out, "table2.csv"), rows, ["layer", *args.fusions])
    paper_tables.finish("Table II layout (gated TSN top-1 %, test videos):", table, path, args.smoke, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
