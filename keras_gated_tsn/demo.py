"""``gated-tsn demo``: the whole method on the embedded sample clips.

prepare → train (rgb, flow, gate λ=0, joint λ=1) → evaluate → fuse, on the
six sample clips shipped with the package, cut into short sub-clips. The
input size is reduced, flow is DIS and every stage runs a few epochs, so that
it finishes on two CPU cores. The numbers it prints come from three classes
and about fifty one-second sub-clips, with networks trained from scratch:
a smoke run that shows every step works, not an accuracy claim.
"""

from __future__ import annotations

import dataclasses
import os
import time

from keras_gated_tsn.data.lists import write_list_file

#: Demo preset: small frames and crops, few epochs, short test protocol.
PRESET = {
    "frames_per_clip": 16,
    "frame_size": (128, 96),
    "input_size": 96,
    "epochs": 12,
    # Trained from scratch (no pretrained weights can be downloaded here), so
    # every BN layer trains: partial BN assumes pretrained statistics. The
    # learning rate is the paper's: faster rates make the from-scratch streams
    # confidently wrong on held-out clips, and a gate facing two confidently
    # wrong experts learns to switch both ReLU weights off (paper Sec. III-B).
    "learning_rate": 0.001,
    "partial_bn": False,
    "batch_size": 4,
    "num_segments": 3,
    "test_frames": 25,
    "test_crops": 10,
}


def _banner(step: int, total: int, text: str) -> None:
    print(f"\n[{step}/{total}] {text}", flush=True)


def prepare_sample_dataset(out_dir: str, frames_per_clip: int, frame_size):
    """Cuts the embedded clips into sub-clips and prepares them (DIS flow) with
    the sample train/val/test lists, under ``out_dir/videos`` and ``out_dir/dataset``.

    Returns:
        ``(data_dir, report)``; ``data_dir`` is None when a clip failed (the
        report says which).
    """
    from keras_gated_tsn.data.prepare import prepare_dataset
    from keras_gated_tsn.datasets import build_sample_videos, sample_split

    videos = build_sample_videos(os.path.join(out_dir, "videos"), frames_per_clip=frames_per_clip)
    data_dir = os.path.join(out_dir, "dataset")
    report = prepare_dataset(videos, data_dir, flow="dis", size=tuple(frame_size))
    print(report.summary())
    if not report.ok:
        return None, report
    split = sample_split(report.records)
    for name, records in split.items():
        write_list_file(os.path.join(data_dir, f"{name}.txt"), records)
    print(", ".join(f"{name}: {len(records)} sub-clips" for name, records in split.items()))
    return data_dir, report


def run_demo(out_dir: str, *, seed: int = 0, **overrides) -> int:
    """Runs the demo into ``out_dir`` and prints the fusion table.

    Args:
        out_dir: output folder (videos, dataset, models, scores, table).
        seed: seed of the data pipelines.
        **overrides: keys of :data:`PRESET` (e.g. ``epochs``, ``input_size``).

    Returns:
        The exit status: 0, or 1 if extraction failed for some clip.

    Raises:
        ValueError: for an unknown override.
    """
    unknown = set(overrides) - set(PRESET)
    if unknown:
        raise ValueError(f"unknown demo settings {sorted(unknown)}; known: {sorted(PRESET)}")
    settings = {**PRESET, **overrides}
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    start = time.time()
    total = 7

    _banner(1, total, "cutting the six sample clips into sub-clips; gated-tsn prepare: frames and DIS flow")
    data_dir, report = prepare_sample_dataset(out_dir, settings["frames_per_clip"], settings["frame_size"])
    if data_dir is None:
        return 1

    from keras_gated_tsn.training import StageConfig, run_stage

    models_dir = os.path.join(out_dir, "models")
    base = StageConfig(
        stage="rgb", data_dir=data_dir, out="", epochs=settings["epochs"],
        num_segments=settings["num_segments"], input_size=settings["input_size"],
        seed=seed, patience=settings["epochs"], lr_patience=max(2, settings["epochs"] // 3),
        learning_rate=settings["learning_rate"], min_learning_rate=settings["learning_rate"] / 10,
        partial_bn=settings["partial_bn"],
    )
    paths = {stage: os.path.join(models_dir, f"{stage}.keras") for stage in ("rgb", "flow", "gate", "joint")}
    stages = [
        ("rgb", "stage 1: the RGB stream (TSN, K=3)", {}),
        ("flow", "stage 1: the flow stream, initialised from RGB (cross-modality)",
         {"init_from": paths["rgb"]}),
        ("gate", "stage 2: gating ConvNet, fusion weights only (lambda = 0)",
         {"rgb": paths["rgb"], "flow": paths["flow"]}),
        ("joint", "stage 3: fusion weights + gating classifier (lambda = 1)",
         {"resume": paths["gate"]}),
    ]
    for step, (stage, text, extra) in enumerate(stages, start=2):
        _banner(step, total, f"gated-tsn train --stage {stage}: {text}")
        config = dataclasses.replace(
            base, stage=stage, out=paths[stage], batch_size=settings["batch_size"], **extra
        )
        run_stage(config)

    from keras_gated_tsn.evaluation.protocol import evaluate
    from keras_gated_tsn.evaluation.scores import save_scores
    from keras_gated_tsn.data.lists import read_class_names
    from keras_gated_tsn.training import load_model

    _banner(6, total, f"gated-tsn evaluate: {settings['test_frames']} frames x {settings['test_crops']} crops per video")
    class_names = read_class_names(os.path.join(data_dir, "classes.txt"))
    gated = load_model(paths["joint"])
    scores_dir = os.path.join(out_dir, "scores")
    os.makedirs(scores_dir, exist_ok=True)
    score_paths = {}
    for name in ("val", "test"):
        scores = evaluate(
            os.path.join(data_dir, f"{name}.txt"), os.path.join(data_dir, "frames"), class_names,
            gated_model=gated, num_frames=settings["test_frames"], crops=settings["test_crops"],
        )
        score_paths[name] = save_scores(os.path.join(scores_dir, f"{name}.npz"), scores)

    from keras_gated_tsn import fusion
    from keras_gated_tsn.evaluation.scores import load_scores

    _banner(7, total, "gated-tsn fuse: fixed, weighted, SCI and gated fusion on the test sub-clips")
    rows = fusion.fusion_table(load_scores(score_paths["test"]), load_scores(score_paths["val"]))
    prefix = os.path.join(out_dir, "fusion_table")
    fusion.write_csv(prefix + ".csv", rows)
    fusion.write_json(prefix + ".json", rows)
    print()
    print(fusion.format_markdown(rows))
    minutes = (time.time() - start) / 60
    print(
        f"\nSmoke run finished in {minutes:.1f} min. These numbers come from {len(class_names)} classes "
        "and a few dozen one-second sub-clips of six videos, with networks trained from scratch "
        "for a few epochs: they show that every step runs, not how well the method works.\n"
        f"Outputs in {out_dir}:\n"
        f"  dataset/  frames, flow, classes.txt, train/val/test lists\n"
        f"  models/   rgb.keras flow.keras gate.keras joint.keras (+ training logs)\n"
        f"  scores/   val.npz test.npz (per-view scores and fusion weights)\n"
        f"  fusion_table.csv, fusion_table.json"
    )
    return 0
