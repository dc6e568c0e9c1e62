"""``gated-tsn demo``: the whole method on the embedded sample clips.

prepare → train (rgb, flow, gate λ=0, joint λ=1) → evaluate → fuse, on the
six sample clips shipped with the package, cut into short sub-clips, through
the same Algorithm-1 runner as everything else
(:func:`keras_gated_tsn.training.runner.run_algorithm1`). The input size is
reduced, flow is DIS and every stage runs a few epochs, so that it finishes on
two CPU cores. The numbers it prints come from three classes and about fifty
one-second sub-clips, with networks trained from scratch: a smoke run that
shows every step works, not an accuracy claim.
"""

from __future__ import annotations

import argparse
import os
import time

from keras_gated_tsn.cli.common import int_at_least

NAME = "demo"
HELP = "the whole method on the embedded sample clips (smoke run, about 5 min on 2 CPU cores)"
DESCRIPTION = """\
Runs prepare -> train (rgb, flow, gate, joint) -> evaluate -> fuse on the six
sample clips shipped with the package (UCF101 / HMDB51, cut into sub-clips),
with a reduced input size and DIS flow so that it finishes on a laptop CPU.
Its accuracies are a smoke run on a handful of clips, not an accuracy claim."""

#: Demo preset: small frames and crops, few epochs, short clips. Trained from
#: scratch (no pretrained weights can be downloaded here), so every BN layer
#: trains (partial BN assumes pretrained statistics), one learning rate for
#: every stage (the paper's gate rate: faster rates make the from-scratch
#: streams confidently wrong on held-out clips, and a gate facing two
#: confidently wrong experts learns to switch both ReLU weights off, paper
#: Sec. III-B), and no gradient accumulation (a few dozen training sub-clips
#: would give less than one update per epoch at the recipe's 4 x 32).
PRESET = {
    "frames_per_clip": 16,
    "frame_size": (128, 96),
    "input_size": 96,
    "epochs": 12,
    "learning_rate": 0.001,
    "partial_bn": False,
    "batch_size": 4,
    "iter_size": 1,
    "num_segments": 3,
    "test_frames": 25,
    "test_crops": 10,
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``demo`` on an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        NAME, help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="gated_tsn_demo", help="output folder (default ./gated_tsn_demo)")
    parser.add_argument("--epochs", type=int_at_least(1), default=None,
                        help=f"epochs per stage (default {PRESET['epochs']})")
    parser.add_argument("--input-size", type=int_at_least(32), default=None,
                        help=f"crop side in pixels (default {PRESET['input_size']})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data pipelines (default 0)")
    return parser


def run_demo(out_dir: str, *, seed: int = 0, **overrides) -> int:
    """Runs the demo into ``out_dir`` and prints the fusion table.

    Args:
        out_dir: output folder (videos, dataset, models, scores, table).
        seed: seed of the data pipelines.
        **overrides: keys of :data:`PRESET` (e.g. ``epochs``, ``input_size``).

    Returns:
        The exit status, 0.

    Raises:
        ValueError: for an unknown override.
        RuntimeError: if a sample clip could not be extracted.
    """
    from keras_gated_tsn.datasets import prepare_sample_dataset
    from keras_gated_tsn.fusion import format_markdown
    from keras_gated_tsn.training.runner import run_algorithm1

    unknown = set(overrides) - set(PRESET)
    if unknown:
        raise ValueError(f"unknown demo settings {sorted(unknown)}; known: {sorted(PRESET)}")
    settings = {**PRESET, **overrides}
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    start = time.time()
    print("\n[prepare] cutting the six sample clips into sub-clips; frames and DIS flow", flush=True)
    data_dir = prepare_sample_dataset(out_dir, settings["frames_per_clip"], settings["frame_size"])
    lr = settings["learning_rate"]
    result = run_algorithm1(
        str(data_dir), out_dir,
        test_frames=settings["test_frames"], test_crops=settings["test_crops"],
        log=lambda line: print(line, flush=True),
        epochs=settings["epochs"], num_segments=settings["num_segments"], input_size=settings["input_size"],
        seed=seed, patience=settings["epochs"], lr_patience=max(2, settings["epochs"] // 3),
        learning_rate=lr, min_learning_rate=lr / 10, partial_bn=settings["partial_bn"],
        batch_size=settings["batch_size"], iter_size=settings["iter_size"],
    )
    print()
    print(format_markdown(result.rows))
    minutes = (time.time() - start) / 60
    print(
        f"\nSmoke run finished in {minutes:.1f} min. These numbers come from 3 classes "
        "and a few dozen one-second sub-clips of six videos, with networks trained from scratch "
        "for a few epochs: they show that every step runs, not how well the method works.\n"
        f"Outputs in {out_dir}:\n"
        f"  dataset/  frames, flow, classes.txt, train/val/test lists\n"
        f"  models/   rgb.keras flow.keras gate.keras joint.keras (+ training logs)\n"
        f"  scores/   val.npz test.npz (per-view scores and fusion weights)\n"
        f"  fusion_table.csv, fusion_table.json"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """Runs the demo with the options given."""
    overrides = {k: v for k, v in (("epochs", args.epochs), ("input_size", args.input_size)) if v is not None}
    return run_demo(args.out, seed=args.seed, **overrides)
