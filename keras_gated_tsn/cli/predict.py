"""``gated-tsn predict``: the top-5 classes of raw video files with a trained model."""

from __future__ import annotations

import argparse
import json
import sys

from keras_gated_tsn.cli.common import int_at_least, positive_float
from keras_gated_tsn.data.flow import FLOW_METHODS

NAME = "predict"
HELP = "top-5 classes of raw video files with a trained model (frames and flow computed on the fly)"
DESCRIPTION = """\
Predict the action class of video files with a trained model (.keras from
`gated-tsn train`: a gated model, or an RGB or flow stream). No `prepare`
needed: each video's frames and optical flow are extracted on the fly, for
the test protocol's snippets only, into a temporary folder, and scored as
`gated-tsn evaluate` scores them (FRAMES snippets uniformly spaced x CROPS
crops, scores averaged over the views). For a gated model it shows the gated
fusion's top classes, the gate's fusion weights (w_rgb, w_flow) and each
stream's top class.

Class names come from the model (kept by `gated-tsn train`) or --classes.
Extract the flow as the model's training frames were (--flow, --size): TV-L1
at 340x256 by default, as `gated-tsn prepare`. A video that cannot be read is
reported and the others go on (exit status 1)."""
EPILOG = """\
examples:
  gated-tsn predict clip.avi --model gated.keras
  gated-tsn predict videos/*.mp4 --model rgb.keras --frames 5 --crops 1 --json > predictions.json
  gated-tsn predict clip.avi --model gated.keras --flow dis     # fast flow, lower quality

TV-L1 costs about 1 s per frame pair on a CPU core: 25 snippets x 5 pairs is
about 2 minutes a video; --flow dis takes about a second."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``predict`` on an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        NAME, help=HELP, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video file(s)")
    parser.add_argument("--model", required=True, help="trained .keras model: gated, or an RGB or flow stream")
    parser.add_argument("--classes", metavar="FILE",
                        help="class names, one per line (a dataset's classes.txt); default: the model's own")
    parser.add_argument("--top", type=int_at_least(1), default=5, help="classes to show (default 5)")
    parser.add_argument("--frames", type=int_at_least(1), default=25, help="snippets per video (default 25)")
    parser.add_argument("--crops", type=int, default=10, choices=(1, 3, 5, 10), help="crops per snippet (default 10)")
    parser.add_argument("--flow", choices=FLOW_METHODS, default="tvl1",
                        help="optical flow, as the training frames were extracted (default %(default)s)")
    parser.add_argument("--size", type=int_at_least(2), nargs=2, default=[340, 256], metavar=("W", "H"),
                        help="frame size the video is resized to, as the training frames (default 340 256)")
    parser.add_argument("--bound", type=positive_float, default=20.0, metavar="PX",
                        help="flow clipping bound in pixels (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    return parser


def _format(prediction) -> str:
    header = (f"{prediction.video}: {prediction.num_frames} frames, {prediction.views} views, "
              f"{prediction.seconds:.1f} s")
    if prediction.fusion_weights is not None:
        rgb, flow = prediction.fusion_weights
        header += f"; fusion weights w_rgb {rgb:.3f}, w_flow {flow:.3f}"
    lines = [header]
    width = max(len(name) for name, _ in prediction.top)
    for rank, (name, probability) in enumerate(prediction.top, start=1):
        lines.append(f"  {rank}. {name:<{width}}  {100 * probability:6.2f}%")
    for stream, top in prediction.streams.items():
        name, probability = top[0]
        lines.append(f"  {stream} stream alone: {name} ({100 * probability:.2f}%)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Prints each video's top classes; exit 1 if a video could not be read."""
    from keras_gated_tsn.data.lists import read_class_names
    from keras_gated_tsn.evaluation.predict import predict_videos
    from keras_gated_tsn.models import TSN, GatedTSN
    from keras_gated_tsn.training.stages import load_model

    model = load_model(args.model, (GatedTSN, TSN))
    class_names = read_class_names(args.classes) if args.classes else None
    failed = []

    def on_error(video, error):
        failed.append(video)
        print(f"gated-tsn predict: cannot read {video}: {getattr(error, 'reason', error)}", file=sys.stderr)

    results = []
    for prediction in predict_videos(
        args.videos, model, class_names=class_names, num_frames=args.frames, crops=args.crops, top=args.top,
        flow=args.flow, size=tuple(args.size), bound=args.bound, on_error=on_error,
    ):
        if args.json:
            results.append(prediction.to_json())
        else:
            print(_format(prediction), flush=True)
    if args.json:
        print(json.dumps({"model": args.model, "predictions": results, "failed": failed}, indent=2))
    return 1 if failed else 0
