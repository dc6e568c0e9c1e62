"""``gated-tsn evaluate``: every test view (25 frames x 10 crops) scored into a score file."""

from __future__ import annotations

import argparse
import os

from keras_gated_tsn.cli.common import int_at_least
from keras_gated_tsn.precision import PRECISIONS

NAME = "evaluate"
HELP = "score every test view (25 frames x 10 crops) into a score file"
DESCRIPTION = """\
The test protocol of the paper (Sec. IV-A): per video, FRAMES snippets uniformly
spaced, CROPS crops each (4 corners + centre and their flips), an RGB frame and
the flow stack starting at the same point. All views of a video go through the
network in one batch (the views of --videos-per-batch videos together). Writes
a score file (.npz) with per-view pre-softmax scores of each stream and, for a
gated model, the fused scores, the gating classifier's scores and the fusion
weights; `gated-tsn fuse` turns it into the fusion table. Input size and flow
length come from the models themselves.

It prints top-1, top-5 and mean class accuracy of every score array (views
averaged) and writes them, with per-class accuracy and the confusion matrix,
to OUT_metrics.json (OUT without .npz).

Long lists: scores are written every --flush-every videos to OUT.partial/;
a killed or interrupted run started again with the same command scores only
the videos after them. A partial run of other settings (list, models, frames,
crops, precision) is refused; --restart discards it.

A multi-task stream (MultiTaskTSN: one classifier per dataset, two-stream
ConvNets Sec. 4) given as --rgb or --flow is scored through one head, --head
NAME: the plain stream of the shared trunk and that dataset's classifier."""
EPILOG = """\
examples:
  gated-tsn evaluate --data ucf101/ --list ucf101/test.txt --model models/gated.keras --out scores/test.npz
  gated-tsn evaluate --data ucf101/ --list ucf101/test.txt --rgb rgb.keras --flow flow.keras --out streams.npz
  gated-tsn evaluate --data hmdb51/ --list hmdb51/test.txt --flow multitask.keras --head hmdb51 --out flow.npz"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``evaluate`` on an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        NAME, help=HELP, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="prepared dataset folder")
    parser.add_argument("--list", required=True, help="list file of the videos to score")
    parser.add_argument("--out", required=True, help="score file to write (.npz)")
    parser.add_argument("--model", help="gated .keras model (scores streams, fused, gate classifier, weights), or a "
                        "convolutional two-stream fusion model (its fused scores; with temporal fusion a view "
                        "holds its T snippets and --frames is T), or a GCF-Net (one view of its clips, "
                        "centre-cropped)")
    parser.add_argument("--rgb", help="RGB stream .keras (without --model): a TSN, or a multi-task stream "
                        "(MultiTaskTSN) with --head")
    parser.add_argument("--flow", help="flow stream .keras (without --model): a TSN, or a multi-task stream "
                        "(MultiTaskTSN) with --head")
    parser.add_argument("--head", metavar="NAME", help="the head (dataset) of a MultiTaskTSN --rgb / --flow to "
                        "score: the stream of its shared trunk and that head's classifier")
    parser.add_argument("--frames", type=int_at_least(1), default=25, help="snippets per video (default 25)")
    parser.add_argument("--crops", type=int, default=10, choices=(1, 3, 5, 10), help="crops per snippet (default 10)")
    parser.add_argument(
        "--precision", default="float32", choices=PRECISIONS,
        help="dtype policy to score under (default float32; mixed_bfloat16 on a CPU with AMX / AVX512-BF16, "
        "mixed_float16 on a GPU); the scores are float32 either way",
    )
    parser.add_argument("--jit-compile", action="store_true", help="compile the scoring step with XLA")
    parser.add_argument("--videos-per-batch", type=int_at_least(1), default=1, metavar="B",
                        help="videos whose views share one forward pass (default 1: 250 views; "
                        "raise it to keep a GPU busy)")
    parser.add_argument("--flush-every", type=int_at_least(1), default=50, metavar="N",
                        help="write the scores so far every N videos to OUT.partial/ (default 50)")
    parser.add_argument("--restart", action="store_true",
                        help="discard the scores of an unfinished run of OUT and start over")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def metrics_path(out: str) -> str:
    """``OUT_metrics.json`` beside the score file ``OUT`` (``.npz`` dropped)."""
    stem = out[: -len(".npz")] if out.lower().endswith(".npz") else out
    return stem + "_metrics.json"


def run(args: argparse.Namespace) -> int:
    """Scores the list, writes the score file and its metrics; bad input raises (exit 2)."""
    import json

    from keras_gated_tsn.atomic import atomic_write
    from keras_gated_tsn.data.layout import CLASSES_FILE, frames_source, read_layout
    from keras_gated_tsn.data.lists import read_class_names
    from keras_gated_tsn.evaluation.metrics import score_report
    from keras_gated_tsn.evaluation.protocol import evaluate_to_file
    from keras_gated_tsn.models import TSN, ConvTwoStreamFusion, GatedTSN, GCFNet, MultiTaskTSN, with_precision
    from keras_gated_tsn.training.stages import load_model

    if not (args.model or args.rgb or args.flow):
        raise ValueError("give --model (gated) or --rgb and/or --flow (streams)")
    class_names = read_class_names(os.path.join(args.data, CLASSES_FILE))

    def loaded(path, kind):
        return load_model(path, kind) if path else None

    def prepared(model):
        if model is None:
            return None
        model = with_precision(model, args.precision)
        model.jit_compile = args.jit_compile
        return model

    # All models loaded (and --head checked) before any scoring.
    models = {"model": loaded(args.model, (GatedTSN, ConvTwoStreamFusion, GCFNet)),
              "rgb": loaded(args.rgb, (TSN, MultiTaskTSN)), "flow": loaded(args.flow, (TSN, MultiTaskTSN))}
    multitask = [name for name in ("rgb", "flow") if isinstance(models[name], MultiTaskTSN)]
    if args.head is not None and not multitask:
        raise ValueError(f"--head {args.head} names a head of a multi-task stream (MultiTaskTSN), but "
                         "neither --rgb nor --flow is one")
    for name in multitask:
        model, path = models[name], getattr(args, name)
        if args.head is None:
            raise ValueError(f"--{name} {path} is a multi-task stream (MultiTaskTSN) with the heads "
                             f"{', '.join(model.heads)}: give --head NAME to score one of them")
        if args.head not in model.heads:
            raise ValueError(f"--{name} {path} has no head {args.head!r}; its heads are "
                             f"{', '.join(model.heads)}")
        models[name] = model.head_stream(args.head)

    identity = {"precision": args.precision}
    for name in ("model", "rgb", "flow"):
        path = getattr(args, name)
        if path:
            status = os.stat(path)
            identity[f"{name}_file"] = [os.path.abspath(path), status.st_size, status.st_mtime_ns]
    if args.head is not None:
        identity["head"] = args.head
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    scores = evaluate_to_file(
        args.out, args.list, frames_source(args.data), class_names,
        gated_model=prepared(models["model"]),
        rgb_model=prepared(models["rgb"]),
        flow_model=prepared(models["flow"]),
        num_frames=args.frames, crops=args.crops, progress=args.progress,
        videos_per_batch=args.videos_per_batch, flush_every=args.flush_every, restart=args.restart,
        run_identity=identity, **read_layout(args.data).pipeline_templates(),
    )
    report = score_report(scores)
    report_path = metrics_path(args.out)
    atomic_write(report_path, lambda handle: handle.write(json.dumps(
        {"class_names": scores.class_names.tolist(), "num_videos": scores.num_videos, "scores": report}) + "\n"))
    print(f"scored {scores.num_videos} videos x {scores.num_views} views; wrote {args.out}")
    print("| scores | top-1 (%) | top-5 (%) | mean class accuracy (%) |")
    print("|---|---:|---:|---:|")
    for field, values in report.items():
        print(f"| {field} | {100 * values['top1']:.2f} | {100 * values['top5']:.2f} | "
              f"{100 * values['mean_class_accuracy']:.2f} |")
    print(f"per-class accuracy and confusion matrices: {report_path}")
    return 0
