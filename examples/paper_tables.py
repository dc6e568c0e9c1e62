"""What the table scripts of examples/ share: options, the smoke dataset,
stream training once per table, gate variants, markdown and CSV output.

Every table script runs in two modes:

* ``--smoke``: the embedded sample clips (cut into sub-clips, DIS flow at
  128x96), 64x64 crops, one epoch per stage, a short test protocol. It shows
  that every row builds, trains and evaluates; its accuracies are not results.
* ``--data DATA``: a prepared dataset (``gated-tsn prepare``, with its lists),
  the paper's settings (80 epochs at most per stage with early stopping, the
  25-frame x 10-crop test); ``--rgb``/``--flow`` reuse trained streams.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

#: --smoke: crop side, frames x crops of the test protocol.
SMOKE_INPUT_SIZE, SMOKE_FRAMES, SMOKE_CROPS = 64, 2, 1


def add_common_arguments(parser: argparse.ArgumentParser, *, streams: bool = True) -> None:
    """The options every table script takes."""
    parser.add_argument("--smoke", action="store_true", help="run on the embedded sample clips (minutes, on a CPU)")
    parser.add_argument("--data", help="a prepared dataset (frames/, classes.txt, train.txt, val.txt, test.txt)")
    parser.add_argument("--out", help="output folder (default: the script's name)")
    parser.add_argument("--epochs", type=int, help="epochs per stage at most (default 80, --smoke 1)")
    parser.add_argument("--input-size", type=int, help="crop side (default 224, --smoke 64)")
    parser.add_argument("--backbone-weights", help="ImageNet start of streams and gate, e.g. imagenet "
                        "(see weights/README.md)")
    parser.add_argument("--frames", type=int, help="test snippets per video (default 25, --smoke 2)")
    parser.add_argument("--crops", type=int, choices=(1, 3, 5, 10), help="test crops (default 10, --smoke 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every stage (default 0)")
    if streams:
        parser.add_argument("--rgb", help="a trained RGB stream (.keras) to reuse instead of training one")
        parser.add_argument("--flow", help="a trained flow stream (.keras) to reuse instead of training one")


def check_mode(parser: argparse.ArgumentParser, args) -> None:
    """Refuses a run without ``--smoke`` or ``--data``, and half a pair of streams."""
    if not args.smoke and not args.data:
        parser.error("give --data DATA (a prepared dataset) or --smoke")
    if bool(getattr(args, "rgb", None)) != bool(getattr(args, "flow", None)):
        parser.error("give both --rgb and --flow (trained streams), or neither")


def smoke_dataset(out: str) -> str:
    """The embedded sample clips as a prepared dataset under ``out`` (see
    :func:`keras_gated_tsn.datasets.prepare_sample_dataset`)."""
    from keras_gated_tsn.datasets import prepare_sample_dataset

    return str(prepare_sample_dataset(out, 16, (128, 96), progress=False))


def run_options(args) -> Dict:
    """The :func:`~keras_gated_tsn.training.runner.run_algorithm1` options of a mode."""
    options = {
        "epochs": args.epochs or (1 if args.smoke else 80),
        "seed": args.seed,
        "backbone_weights": args.backbone_weights,
        "test_frames": args.frames or (SMOKE_FRAMES if args.smoke else 25),
        "test_crops": args.crops or (SMOKE_CROPS if args.smoke else 10),
        "progress": False,
        "verbose": 2,
    }
    if args.input_size or args.smoke:
        options["input_size"] = args.input_size or SMOKE_INPUT_SIZE
    if args.smoke:  # from scratch on a few dozen clips: no partial BN, every batch an update
        options.update(batch_size=4, iter_size=1, partial_bn=False)
    return options


def train_streams(data_dir: str, out: str, args, options: Dict) -> Dict[str, str]:
    """Stage 1 once for the whole table (the rows vary the gate only), or the
    streams given with ``--rgb`` / ``--flow``."""
    from keras_gated_tsn.training.runner import run_algorithm1

    if getattr(args, "rgb", None):
        return {"rgb": args.rgb, "flow": args.flow}
    print("\n=== stage 1: the two streams, shared by every row ===", flush=True)
    result = run_algorithm1(data_dir, os.path.join(out, "streams"), stages=("rgb", "flow"), evaluate_lists=(),
                            **_training_only(options))
    return result.models


def _training_only(options: Dict) -> Dict:
    return {k: v for k, v in options.items() if k not in ("test_frames", "test_crops", "progress")}


def gated_accuracy(
    data_dir: str,
    out: str,
    streams: Dict[str, str],
    options: Dict,
    stages: Sequence[str] = ("gate",),
    gate_model: Optional[str] = None,
    **gate_options,
) -> Tuple[float, Dict[str, str]]:
    """Trains a gate variant (stage 2, or stage 3 from ``gate_model``) over
    fixed streams, scores the test list and returns ``(top-1 % of the gated
    fusion, the model files)``."""
    from keras_gated_tsn.training.runner import run_algorithm1

    stage_options = {"gate": {**streams, **gate_options}}
    if gate_model:
        stage_options["joint"] = {"gate_model": gate_model}
    result = run_algorithm1(
        data_dir, out, stages=stages, evaluate_lists=("test",), stage_options=stage_options,
        gate_init=options.get("backbone_weights") or "rgb", **options,
    )
    top1 = next(row["top1"] for row in result.rows if row["method"] == "gated")
    return top1, result.models


def format_table(rows: Sequence[Dict], first: Tuple[str, str], columns: Sequence[Tuple[str, str]]) -> str:
    """A markdown table: ``first = (key, title)`` of the row label, then the
    ``(key, title)`` columns as percentages (``-`` where not run)."""
    lines = [f"| {first[1]} | " + " | ".join(title for _, title in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for row in rows:
        cells = ["-" if row.get(key) is None else f"{row[key]:.2f}" for key, _ in columns]
        lines.append(f"| {row[first[0]]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(path: str, rows: Sequence[Dict], fields: Sequence[str]) -> str:
    """Writes ``rows`` (the ``fields`` of each) as CSV, atomically."""
    from keras_gated_tsn.atomic import atomic_write

    def write(handle):
        writer = csv.DictWriter(handle, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(path, write)
    return path


def finish(title: str, table: str, path: str, smoke: bool, started: float) -> None:
    """The closing lines of a table script."""
    print(f"\n{title}\n\n{table}\n\nwritten to {path}")
    if smoke:
        print(f"Smoke run on the embedded sample clips in {(time.time() - started) / 60:.1f} min: it shows "
              "every row builds, trains and evaluates; its accuracies are not a result.")


def output_folder(args, default: str) -> str:
    out = os.path.abspath(args.out or default)
    os.makedirs(out, exist_ok=True)
    return out


__all__: List[str] = [
    "add_common_arguments", "check_mode", "finish", "format_table", "gated_accuracy", "output_folder",
    "run_options", "smoke_dataset", "train_streams", "write_csv",
]
