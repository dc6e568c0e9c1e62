"""One fusion table for every system of the papers, settings chosen on the validation list.

    python examples/fusion_comparison.py --smoke                     # the sample clips, minutes on a CPU
    python examples/fusion_comparison.py --data ucf101/ --backbone-weights imagenet

Over the same two trained streams (trained here, or given with ``--rgb`` /
``--flow``) it trains and scores, on the dataset's ``val`` and ``test`` lists:

* the gated TSN (stages 2 and 3 of Algorithm 1), whose score files also give
  the late fusions of the table: rgb, flow, average, weighted (weight tuned on
  val), TSN's 1:1.5, SCI, the linear SVM on L2-normalised softmax scores (C
  tuned on val; Simonyan & Zisserman 2014), gated;
* convolutional two-stream fusion (Feichtenhofer et al. 2016) for each
  spatial fusion of ``--conv-fusions`` at the streams' last conv layer, over
  ``--snippets`` snippets tau in [1, 10] frames apart: the variant with the
  best validation top-1 is the table's ``conv_fusion`` row;
* GCF-Net's head (Hsiao et al. 2020) over the RGB stream's backbone, a clip
  being one TSN snippet (``--clips`` clips), for each sparsity weight lambda
  of ``--gcf-lambdas``: the best on validation is the ``gcf_net`` row.

Every number is the test list's; every choice is made on the validation list
(the table's ``note`` and ``tuned_on`` columns say which). ``--smoke``
accuracies show that every row builds, trains and evaluates; they are not
results. Writes ``OUT/fusion_table.csv`` / ``.json`` and the models and
score files of every row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import paper_tables  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    paper_tables.add_common_arguments(parser)
    parser.add_argument("--conv-fusions", nargs="+", default=["sum", "conv"],
                        choices=("sum", "max", "concat", "conv", "bilinear"),
                        help="spatial fusions of convolutional two-stream fusion to compare on val "
                             "(default: sum conv)")
    parser.add_argument("--temporal-fusion", default="pool3d", choices=("none", "pool3d", "conv3d_pool3d"),
                        help="its temporal fusion (default pool3d; conv3d_pool3d needs --conv-fusions conv)")
    parser.add_argument("--snippets", type=int, default=None, help="T snippets per video (default 5, --smoke 3)")
    parser.add_argument("--clips", type=int, default=None, help="GCF-Net clips per video (default 10, --smoke 3)")
    parser.add_argument("--gcf-lambdas", nargs="+", type=float, default=[1e-4, 0.0],
                        help="GCF-Net attention sparsity weights to compare on val (default: 1e-4 0)")
    parser.add_argument("--batch-size", type=int, default=None, help="videos per step (default 8, --smoke 4)")
    return parser


def _fit(model, dataset, epochs: int) -> None:
    model.fit(dataset, epochs=epochs, verbose=2)


def _validation_top1(score_file: str) -> float:
    from keras_gated_tsn.evaluation.scores import load_scores

    scores = load_scores(score_file)
    return float((scores.fused.mean(axis=1).argmax(axis=1) == scores.labels).mean() * 100.0)


def _score(model, data_dir: str, out: str, name: str, options) -> dict:
    """``{list: score file}`` of ``model`` on val and test (the evaluate protocol)."""
    from keras_gated_tsn.data.layout import CLASSES_FILE, frames_source
    from keras_gated_tsn.data.lists import read_class_names
    from keras_gated_tsn.evaluation.protocol import evaluate_to_file

    classes = read_class_names(os.path.join(data_dir, CLASSES_FILE))
    files = {}
    for split in ("val", "test"):
        path = os.path.join(out, "scores", f"{name}_{split}.npz")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        evaluate_to_file(path, os.path.join(data_dir, f"{split}.txt"), frames_source(data_dir), classes,
                         gated_model=model, num_frames=options["test_frames"], crops=options["test_crops"],
                         progress=False, restart=True, log=lambda line: None)
        files[split] = path
    return files


def _best_on_validation(candidates: dict) -> tuple:
    """``(name, test file, val top-1)`` of the candidate with the best validation top-1."""
    scored = {name: (_validation_top1(files["val"]), files["test"]) for name, files in candidates.items()}
    name = max(scored, key=lambda key: scored[key][0])
    return name, scored[name][1], scored[name][0]


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    paper_tables.check_mode(parser, args)
    started = time.time()

    import keras

    from keras_gated_tsn.data import pipeline
    from keras_gated_tsn.data.clips import make_clip_dataset
    from keras_gated_tsn.data.layout import frames_source
    from keras_gated_tsn.evaluation.scores import load_scores
    from keras_gated_tsn.fusion.table import fusion_table, write_csv, write_json
    from keras_gated_tsn.models import ConvTwoStreamFusion, GCFNet
    from keras_gated_tsn.training.runner import run_algorithm1
    from keras_gated_tsn.training.stages import load_model

    out = paper_tables.output_folder(args, "fusion_comparison")
    data_dir = paper_tables.smoke_dataset(os.path.join(out, "data")) if args.smoke else args.data
    options = paper_tables.run_options(args)
    epochs = options["epochs"]
    batch = args.batch_size or (4 if args.smoke else 8)
    snippets = args.snippets or (3 if args.smoke else 5)
    clips = args.clips or (3 if args.smoke else 10)
    streams = paper_tables.train_streams(data_dir, out, args, options)

    print("\n=== the gated TSN (stages 2 and 3) and the late fusions ===", flush=True)
    gated = run_algorithm1(
        data_dir, os.path.join(out, "gated"), stages=("gate", "joint"), evaluate_lists=("val", "test"),
        stage_options={"gate": dict(streams)}, gate_init=options.get("backbone_weights") or "rgb", **options,
    )
    rgb, flow = load_model(streams["rgb"]), load_model(streams["flow"])
    frames = frames_source(data_dir)
    train_list = os.path.join(data_dir, "train.txt")
    size = rgb.input_size

    print("\n=== convolutional two-stream fusion, one variant per spatial fusion ===", flush=True)
    conv_runs = {}
    for fusion in args.conv_fusions:
        keras.utils.set_random_seed(args.seed)
        model = ConvTwoStreamFusion(rgb, flow, spatial_fusion=fusion, temporal_fusion=args.temporal_fusion,
                                    num_snippets=snippets, snippet_stride=10)
        model.compile()
        _fit(model, pipeline.make_dataset(
            train_list, frames, "rgb+flow", num_segments=snippets, new_length=flow.new_length, input_size=size,
            batch_size=batch, seed=args.seed, snippet_stride=(1, 10), drop_remainder=True), epochs)
        path = os.path.join(out, "conv_fusion", f"{fusion}.keras")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        model.save(path)
        conv_runs[fusion] = _score(model, data_dir, out, f"conv_fusion_{fusion}", options)

    print("\n=== GCF-Net's head over the RGB stream's backbone, one run per lambda ===", flush=True)
    gcf_runs = {}
    for lam in args.gcf_lambdas:
        keras.utils.set_random_seed(args.seed)
        model = GCFNet(rgb.backbone, num_classes=rgb.num_classes, num_clips=clips, clip_length=1, input_size=size,
                       class_names=rgb.class_names)
        model.init_from(rgb)
        model.compile(sparsity_weight=lam)
        _fit(model, make_clip_dataset(train_list, frames, num_clips=clips, clip_length=1, input_size=size,
                                      batch_size=batch, seed=args.seed, drop_remainder=True), epochs)
        name = f"lambda_{lam:g}"
        path = os.path.join(out, "gcf_net", f"{name}.keras")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        model.save(path)
        gcf_runs[name] = _score(model, data_dir, out, f"gcf_net_{name}", options)

    conv_name, conv_test, conv_val = _best_on_validation(conv_runs)
    gcf_name, gcf_test, gcf_val = _best_on_validation(gcf_runs)
    rows = fusion_table(load_scores(gated.scores["test"]), load_scores(gated.scores["val"]),
                        extra={"conv_fusion": conv_test, "gcf_net": gcf_test})
    notes = {"conv_fusion": f"{conv_name} fusion, chosen on val (top-1 {conv_val:.2f})",
             "gcf_net": f"{gcf_name}, chosen on val (top-1 {gcf_val:.2f})"}
    for row in rows:
        if row["method"] in notes:
            row["note"] = notes[row["method"]]
            row["tuned_on"] = "val"
    csv_path = write_csv(os.path.join(out, "fusion_table.csv"), rows)
    write_json(os.path.join(out, "fusion_table.json"), rows)
    table = paper_tables.format_table(rows, ("method", "method"),
                                      [("top1", "top-1 %"), ("mean_class_accuracy", "mean class %")])
    with open(os.path.join(out, "choices.json"), "w", encoding="utf-8") as handle:
        json.dump({"conv_fusion": {k: _validation_top1(v["val"]) for k, v in conv_runs.items()},
                   "gcf_net": {k: _validation_top1(v["val"]) for k, v in gcf_runs.items()}}, handle, indent=1)
    paper_tables.finish("Every system of the papers on the test list (settings chosen on val)", table, csv_path,
                        args.smoke, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
