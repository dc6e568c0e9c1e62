"""Training and inference throughput of the streams and the gated TSN, and of the
tf.data pipeline, printed as a markdown table.

    python benchmarks/throughput.py --input-size 224 --batch-size 8 --steps 5
    python benchmarks/throughput.py --data DATA/ --list DATA/train.txt   # pipeline on your frames

Models are measured on random uint8 clips (K segments, 3 or 2L channels) after
one warm-up step (graph tracing is excluded). The pipeline is measured on a
prepared dataset; without ``--data`` it prepares the embedded sample clips
(16-frame sub-clips, DIS flow, 340x256 frames) in a temporary folder first.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np


def _time_steps(step, steps: int) -> float:
    step()  # warm-up: tracing and first allocation
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def bench_models(args):
    import keras

    from keras_gated_tsn.models import TSN, GatedTSN

    rng = np.random.default_rng(0)
    b, k, s = args.batch_size, args.segments, args.input_size
    clips = {
        "rgb": rng.integers(0, 256, (b, k, s, s, 3), dtype=np.uint8),
        "flow": rng.integers(0, 256, (b, k, s, s, 10), dtype=np.uint8),
    }
    labels = rng.integers(0, args.classes, (b,))
    rgb = TSN("bn_inception", "rgb", args.classes, k, s)
    flow = TSN("bn_inception", "flow", args.classes, k, s)
    gated = GatedTSN(rgb, flow)
    for model in (rgb, flow, gated):
        model.compile()  # the paper's recipe (CaffeSGD, eq. (4) with lambda = 1 for the gate)
    rows = []
    for name, model, x, y in (
        ("rgb stream", rgb, clips["rgb"], labels),
        ("flow stream", flow, clips["flow"], labels),
        ("gated TSN (streams frozen)", gated, clips, labels),
    ):
        train = _time_steps(lambda: model.train_on_batch(x, y), args.steps)
        infer = _time_steps(lambda: model.predict_on_batch(x), args.steps)
        rows.append((name, b / train, b / infer))
        keras.backend.clear_session(free_memory=False)
    print(f"\n| model ({s}x{s}, K={k}, batch {b}) | train videos/s | inference videos/s |")
    print("|---|---:|---:|")
    for name, train, infer in rows:
        print(f"| {name} | {train:.2f} | {infer:.2f} |")


def bench_pipeline(args):
    from keras_gated_tsn.data import pipeline
    from keras_gated_tsn.data.lists import write_list_file

    if args.data:
        data_dir, list_file = args.data, args.list or os.path.join(args.data, "train.txt")
    else:
        from keras_gated_tsn.data.lists import read_list_file
        from keras_gated_tsn.datasets import prepare_sample_dataset

        data_dir = str(prepare_sample_dataset(tempfile.mkdtemp(prefix="kgt_bench_"), 16, (340, 256), progress=False))
        list_file = os.path.join(data_dir, "bench.txt")
        write_list_file(list_file, read_list_file(os.path.join(data_dir, "all.txt")))
    print(f"\n| pipeline ({args.input_size}x{args.input_size}, K={args.segments}, L=5, batch {args.batch_size}) | videos/s |")
    print("|---|---:|")
    for modality in ("rgb", "flow", "rgb+flow"):
        ds = pipeline.make_dataset(
            list_file, os.path.join(data_dir, "frames"), modality, num_segments=args.segments,
            input_size=args.input_size, batch_size=args.batch_size, training=True, repeat=True,
        )
        iterator = iter(ds)
        next(iterator)
        start, videos = time.perf_counter(), 0
        for _ in range(args.steps * 4):
            x, y = next(iterator)
            videos += int(y.shape[0])
        print(f"| training, {modality} | {videos / (time.perf_counter() - start):.1f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--segments", type=int, default=3)
    parser.add_argument("--classes", type=int, default=101)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--data", help="prepared dataset for the pipeline benchmark")
    parser.add_argument("--list", help="list file (default DATA/train.txt)")
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args()
    import tensorflow as tf

    devices = [d.device_type for d in tf.config.list_physical_devices()]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, devices {devices}, TF {tf.__version__}")
    if not args.skip_models:
        bench_models(args)
    if not args.skip_pipeline:
        bench_pipeline(args)


if __name__ == "__main__":
    main()
