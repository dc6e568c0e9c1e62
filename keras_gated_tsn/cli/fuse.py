"""``gated-tsn fuse``: the fusion table of a test score file (Table III's comparison),
with rows for the score files of other models (``--extra NAME=FILE``)."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

NAME = "fuse"
HELP = "compare late-fusion methods (average, weighted, SCI, SVM, gated, ...) on a score file"
DESCRIPTION = """\
Compare late-fusion methods on a test score file (.npz written by `gated-tsn
evaluate`: per-view pre-softmax scores of the RGB and flow streams and, for a
gated model, its fused scores, gating classifier scores and gate weights).
Prints a Markdown table of top-1 and mean class accuracy (%) and writes it as
PREFIX.csv and PREFIX.json.

A method that tunes a setting does so on --val-scores only, never on the test
scores; its note says which setting it picked and its tuned_on column on which
videos: "test list" when the validation videos are the test videos (the
authors' protocol), so the number is optimistic.

Other models join the same table with --extra NAME=FILE: FILE is that model's
score file of the same test videos (e.g. a convolutional-fusion model or a
GCF-Net that writes its per-view output as 'fused', or a single-stream model),
reported as the row NAME.

rows:
"""
EPILOG = """\
example: the table, its weight and SVM tuned on a validation list's score file
  gated-tsn fuse scores/ucf101_split1_test.npz --val-scores scores/ucf101_split1_val.npz \\
      --out results/split1_fusion

example: the same, with two other models' score files of the same test videos as rows
  gated-tsn fuse scores/ucf101_split1_test.npz --val-scores scores/ucf101_split1_val.npz \\
      --extra conv_fusion=scores/conv_fusion_test.npz --extra gcf_net=scores/gcf_test.npz
"""


def default_out_prefix(scores_path) -> str:
    """``<folder>/<stem>_fusion`` for a score file ``<folder>/<stem>.npz``."""
    scores_path = os.fspath(scores_path)
    folder = os.path.dirname(scores_path)
    stem = os.path.basename(scores_path)
    if stem.lower().endswith(".npz"):
        stem = stem[: -len(".npz")]
    return os.path.join(folder, stem + "_fusion")


def extra_argument(text: str):
    """An argparse ``type`` for ``--extra``: ``NAME=FILE`` -> ``(NAME, FILE)``."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE (e.g. conv_fusion=conv.npz), got {text!r}")
    return name, path


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``fuse`` on an ``argparse`` subparsers object; its help lists
    every registered comparator."""
    from keras_gated_tsn.fusion import registered_comparators

    rows = "".join(
        textwrap.fill(item.description, width=88, initial_indent=f"  {item.name:<18} ",
                      subsequent_indent=" " * 21, break_on_hyphens=False) + "\n"
        for item in registered_comparators()
    )
    parser = subparsers.add_parser(
        NAME, help=HELP, description=DESCRIPTION + rows, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scores", help="test score file (.npz)")
    tuned = ", ".join(repr(item.name) for item in registered_comparators() if item.uses_validation)
    parser.add_argument(
        "--val-scores", default=None, metavar="FILE",
        help=f"validation score file (.npz) on which the rows that tune a setting ({tuned}) tune it; "
        "without it those rows are skipped",
    )
    parser.add_argument(
        "--extra", action="append", default=[], type=extra_argument, metavar="NAME=FILE",
        help="add the row NAME for another model's score file FILE of the same test videos (its 'fused' "
        "scores, or its only stream, averaged over views); repeat for more models",
    )
    parser.add_argument(
        "--out", default=None, metavar="PREFIX",
        help="write PREFIX.csv and PREFIX.json (default: <scores folder>/<scores stem>_fusion)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Loads the score files, prints the table, writes CSV and JSON; bad input raises (exit 2)."""
    from keras_gated_tsn.evaluation.scores import load_scores
    from keras_gated_tsn.fusion import format_markdown, fusion_table, write_csv, write_json

    test_sf = load_scores(args.scores)
    val_sf = load_scores(args.val_scores) if args.val_scores else None
    if val_sf is not None:
        shared = sorted(set(test_sf.video_ids.tolist()) & set(val_sf.video_ids.tolist()))
        if shared:
            print(
                f"warning: {len(shared)} of the {val_sf.num_videos} validation videos are test videos "
                f"({', '.join(shared[:3])}{', ...' if len(shared) > 3 else ''}): the settings tuned on "
                f"{args.val_scores} are tuned on the test list, and their rows are marked so in tuned_on",
                file=sys.stderr,
            )
    rows = fusion_table(test_sf, val_sf, extra=args.extra)
    prefix = args.out or default_out_prefix(args.scores)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    csv_path, json_path = write_csv(prefix + ".csv", rows), write_json(prefix + ".json", rows)
    extra = "".join(f"\n  extra row {name}: {path}" for name, path in args.extra)
    print(
        f"Fusion on {args.scores}: {test_sf.num_videos} videos, {test_sf.num_classes} classes, "
        f"{test_sf.num_views} views per video{extra}\n"
    )
    print(format_markdown(rows))
    print(f"Wrote {csv_path}")
    print(f"Wrote {json_path}")
    return 0
