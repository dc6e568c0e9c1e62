"""``gated-tsn plot``: the paper's figures (Figs. 2-4) and the confusion matrix, as PNG files."""

from __future__ import annotations

import argparse
import os

from keras_gated_tsn.cli.common import int_at_least, non_negative_float

NAME = "plot"
HELP = "draw the paper's figures from score files: fusion weights, top-5 bars, t-SNE, confusion matrix"
DESCRIPTION = """\
Draw the paper's figures as PNG files (matplotlib), from the score files of
`gated-tsn evaluate` (scores averaged over each video's views):

  weights    Fig. 2: the gate's two weights per video (x: temporal, y: spatial)
             and a histogram of the spatial share w_rgb / (w_rgb + w_flow); one
             column per score file (e.g. --titles "without MTL" "with MTL")
  top5       Fig. 3: for chosen videos (--videos, or --count videos where the
             gate is right and the fixed weights are wrong first), the top-5
             classes of the spatial and temporal streams, of fixed-weight fusion
             (--fixed-weights, TSN's 1 1.5) and of gated fusion, with the
             weights each used; yellow = ground truth, green / orange = right /
             wrong top-1 of a fusion
  tsne       Fig. 4: t-SNE of the gating ConvNet's last features (the pooled
             inception_5b map for BN-Inception), one panel per --model, on the
             videos of --list (centre crop, --frames snippets averaged)
  confusion  the confusion matrix of one score array (--field), rows = truth"""
EPILOG = """\
examples:
  gated-tsn plot weights no_mtl.npz mtl.npz --titles "without MTL" "with MTL" --out fig2.png
  gated-tsn plot top5 test.npz --count 4 --out fig3.png
  gated-tsn plot tsne --model gate.keras gated.keras --titles "without MTL" "with MTL" \\
      --data ucf101/ --list ucf101/val.txt --out fig4.png
  gated-tsn plot confusion test.npz --field fused --out confusion.png"""

FIGURES = ("weights", "top5", "tsne", "confusion")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``plot`` on an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        NAME, help=HELP, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("figure", choices=FIGURES, help="which figure (see above)")
    parser.add_argument("scores", nargs="*", metavar="SCORES",
                        help="score file(s) (.npz): several for weights, one for top5 and confusion")
    parser.add_argument("--out", required=True, help="the PNG file to write")
    parser.add_argument("--titles", nargs="+", metavar="TITLE", help="weights / tsne: a title per panel")
    parser.add_argument("--videos", nargs="+", metavar="VIDEO", help="top5: the videos to show")
    parser.add_argument("--count", type=int_at_least(1), default=4, help="top5 without --videos: how many (default 4)")
    parser.add_argument("--fixed-weights", type=non_negative_float, nargs=2, default=[1.0, 1.5],
                        metavar=("RGB", "FLOW"), help="top5: the fixed-weight fusion shown (default TSN's 1 1.5)")
    parser.add_argument("--field", default="fused", choices=("rgb", "flow", "fused", "gating_classifier"),
                        help="confusion: which scores (default fused)")
    parser.add_argument("--counts", action="store_true", help="confusion: video counts instead of row fractions")
    parser.add_argument("--model", nargs="+", metavar="MODEL", help="tsne: gated .keras model(s), a panel each")
    parser.add_argument("--data", help="tsne: the prepared dataset folder")
    parser.add_argument("--list", help="tsne: the list file of the videos to embed")
    parser.add_argument("--frames", type=int_at_least(1), default=3, help="tsne: snippets per video (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="tsne: random state of the embedding (default 0)")
    return parser


def _one_score_file(args):
    if len(args.scores) != 1:
        raise ValueError(f"plot {args.figure} takes one score file, got {len(args.scores)}")
    from keras_gated_tsn.evaluation.scores import load_scores

    return load_scores(args.scores[0])


def run(args: argparse.Namespace) -> int:
    """Draws the figure and says where it is; bad input raises (exit 2)."""
    from keras_gated_tsn import plots
    from keras_gated_tsn.evaluation.scores import load_scores

    if args.figure == "weights":
        if not args.scores:
            raise ValueError("plot weights needs at least one score file of a gated model")
        path = plots.plot_fusion_weights([load_scores(p) for p in args.scores], args.out, titles=args.titles)
        what = f"fusion weights of {len(args.scores)} score file(s)"
    elif args.figure == "top5":
        scores = _one_score_file(args)
        videos = args.videos or plots.choose_top5_videos(scores, args.count, tuple(args.fixed_weights))
        path = plots.plot_top5(scores, videos, args.out, fixed_weights=tuple(args.fixed_weights))
        what = f"top-5 predictions of {', '.join(videos)}"
    elif args.figure == "confusion":
        scores = _one_score_file(args)
        path = plots.plot_confusion_matrix(scores, args.out, field=args.field, normalize=not args.counts)
        what = f"confusion matrix of {args.field} over {scores.num_videos} videos"
    else:
        if args.scores:
            raise ValueError("plot tsne reads no score file: give --model, --data and --list")
        missing = [flag for flag, value in (("--model", args.model), ("--data", args.data), ("--list", args.list))
                   if not value]
        if missing:
            raise ValueError(f"plot tsne needs {', '.join(missing)}")
        from keras_gated_tsn.data.layout import CLASSES_FILE, frames_source, read_layout
        from keras_gated_tsn.data.lists import read_class_names
        from keras_gated_tsn.evaluation.features import gating_features
        from keras_gated_tsn.models import GatedTSN
        from keras_gated_tsn.training.stages import load_model

        class_names = read_class_names(os.path.join(args.data, CLASSES_FILE))
        sets = []
        for model_path in args.model:
            features, labels, _ = gating_features(load_model(model_path, GatedTSN), args.list,
                                                  frames_source(args.data), num_frames=args.frames,
                                                  **read_layout(args.data).pipeline_templates())
            sets.append((features, labels))
        titles = args.titles or [os.path.basename(p) for p in args.model]
        path = plots.plot_tsne(sets, args.out, class_names, titles=titles, seed=args.seed)
        what = f"t-SNE of the gating features of {len(sets[0][0])} videos"
    print(f"wrote {path}: {what}")
    return 0
