"""Optical flow at 340x256: speed and agreement with OpenCV's TV-L1, printed as markdown tables.

On the same real frame pairs (pairs of consecutive frames of the videos in
``../shared/data/clips``, or of the embedded sample clips when that folder is
missing, resized to 340x256 with ``cv2.resize(INTER_LINEAR)`` and turned
grayscale with ``cv2.cvtColor(BGR2GRAY)``, as ``gated-tsn prepare`` does),
the benchmark times

- OpenCV's TV-L1 (``cv2.optflow.DualTVL1OpticalFlow_create()``, default
  parameters: the reference) on 1 thread and on all threads,
- OpenCV's DIS (medium preset, ``--flow dis``) and Farneback (OpenCV's sample
  parameters 0.5, 3, 15, 3, 5, 1.2), for scale,
- our TensorFlow TV-L1 (``keras_gated_tsn.data.tvl1.TVL1Flow``, default
  parameters) at each ``--batch-sizes`` value, with XLA and without (``--jit``),

and prints pairs/s and the mean end-point error (EPE, pixels: the mean over
all pixels of all pairs of ``|flow - flow_opencv_tvl1|``) of each against the
reference, then the EPE per video. Our first call on a new shape traces the
graph (and with XLA compiles it); that time is shown apart and not counted in
pairs/s. The numbers of a machine shared with other work are noisy: the load
average is printed with the table.

Examples:

    python benchmarks/flow.py                                   # 9 videos x 3 pairs, ~8 min on 2 cores
    python benchmarks/flow.py --pairs-per-video 1 --jit on      # quicker
    python benchmarks/flow.py --batch-sizes 16 64 128 --skip-opencv-single   # on a GPU
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import time

import numpy as np

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> str:
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def find_videos(data: str | None) -> list:
    """Video files: ``DATA/clips/**`` (default ``../shared/data``), else the embedded sample clips."""
    from keras_gated_tsn.data.video import VIDEO_EXTENSIONS

    folder = pathlib.Path(data) if data else REPO_ROOT.parent / "shared" / "data"
    if (folder / "clips").is_dir():
        return sorted(p for p in (folder / "clips").rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
    if data:
        raise SystemExit(f"no clips/ folder in {folder}")
    from keras_gated_tsn.datasets import sample_clips

    print(f"(no {folder / 'clips'}: using the embedded sample clips)")
    return sorted(clip.path for clip in sample_clips())


def load_pairs(videos, pairs_per_video: int, start: int, stride: int, size):
    """``(names, prev, next)``: of each video, the pairs (frame ``i``, frame ``i + 1``) for
    ``i = start, start + stride, ...`` (``pairs_per_video`` of them, fewer in a short video;
    0-based frame indices)."""
    import cv2

    from keras_gated_tsn.data.video import iter_frames_bgr

    wanted = {start + k * stride for k in range(pairs_per_video)}
    names, prev, nxt = [], [], []
    for path in videos:
        last = None
        for index, frame in enumerate(iter_frames_bgr(path, size)):
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            if index - 1 in wanted:
                names.append(path.stem)
                prev.append(last)
                nxt.append(gray)
            last = gray
            if index > max(wanted):
                break
    return names, np.stack(prev), np.stack(nxt)


def epe(flow: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mean end-point error of each pair, pixels: ``(N, H, W, 2)`` twice -> ``(N,)``."""
    return np.sqrt(np.square(flow - reference).sum(-1)).mean(axis=(1, 2))


def time_opencv(compute, prev, nxt, threads=None):
    import cv2

    previous = cv2.getNumThreads()
    if threads is not None:
        cv2.setNumThreads(threads)
    try:
        start = time.perf_counter()
        flows = np.stack([compute(a, b) for a, b in zip(prev, nxt)])
        return flows, time.perf_counter() - start
    finally:
        cv2.setNumThreads(previous)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="folder with clips/ (default ../shared/data, else the embedded samples)")
    parser.add_argument("--videos", type=int, default=None, help="at most this many videos (default all)")
    parser.add_argument("--pairs-per-video", type=int, default=3, help="pairs per video (default 3)")
    parser.add_argument("--start", type=int, default=10, help="first pair: frames START, START+1 (0-based, default 10)")
    parser.add_argument("--stride", type=int, default=15, help="frames from one pair to the next (default 15)")
    parser.add_argument("--size", default="340x256", help="WIDTHxHEIGHT the frames are resized to")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="our pairs per device call (default 1 2 4 on a CPU, 8 32 64 on a GPU)")
    parser.add_argument("--jit", choices=("on", "off", "both"), default="both", help="XLA for ours")
    parser.add_argument("--threads", type=int, default=None,
                        help="our concurrent device calls (default: TVL1Flow's, the cores on a CPU)")
    parser.add_argument("--skip-opencv-single", action="store_true", help="skip OpenCV TV-L1 on 1 thread")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    import cv2
    import tensorflow as tf

    from keras_gated_tsn.data import flow as flow_lib
    from keras_gated_tsn.data.tvl1 import TVL1Flow

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
        device = f"GPU {', '.join(names)}"
    else:
        device = f"CPU {cpu_name()}, {cpu_count()} cores, no GPU"
    batch_sizes = args.batch_sizes or ([8, 32, 64] if gpus else [1, 2, 4])
    print(f"device: {device}; TF {tf.__version__}, OpenCV {cv2.__version__} "
          f"({cv2.getNumThreads()} threads by default); python {platform.python_version()}; "
          f"{datetime.date.today().isoformat()}")

    videos = find_videos(args.data)[: args.videos]
    names, prev, nxt = load_pairs(videos, args.pairs_per_video, args.start, args.stride, (width, height))
    firsts = ", ".join(str(args.start + k * args.stride) for k in range(args.pairs_per_video))
    print(f"{len(names)} pairs, {width}x{height}, from {len(set(names))} videos "
          f"(frames i, i + 1 for i = {firsts}, 0-based)")
    start_load = load_average()

    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    rows = []  # (method, pairs/s, first-call s or None, EPE)
    reference, seconds = time_opencv(lambda a, b: tvl1.calc(a, b, None), prev, nxt, threads=cpu_count())
    rows.append((f"OpenCV TV-L1, {cpu_count()} threads", len(names) / seconds, None, 0.0))
    if not args.skip_opencv_single:
        single, seconds = time_opencv(lambda a, b: tvl1.calc(a, b, None), prev, nxt, threads=1)
        rows.insert(0, ("OpenCV TV-L1, 1 thread", len(names) / seconds, None, float(epe(single, reference).mean())))
    per_video = {}
    dis = flow_lib.create_flow_algorithm("dis")
    flows, seconds = time_opencv(lambda a, b: dis.calc(a, b, None), prev, nxt)
    rows.append(("OpenCV DIS (medium)", len(names) / seconds, None, float(epe(flows, reference).mean())))
    per_video["OpenCV DIS (medium)"] = epe(flows, reference)
    flows, seconds = time_opencv(
        lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0), prev, nxt)
    rows.append(("OpenCV Farneback", len(names) / seconds, None, float(epe(flows, reference).mean())))
    per_video["OpenCV Farneback"] = epe(flows, reference)

    jits = {"on": [True], "off": [False], "both": [True, False]}[args.jit]
    for jit in jits:
        for batch in batch_sizes:
            ours = TVL1Flow(batch_size=batch, jit_compile=jit, threads=args.threads)
            start = time.perf_counter()
            ours(prev[:batch], nxt[:batch]).numpy()  # trace (and compile) once
            first = time.perf_counter() - start
            start = time.perf_counter()
            flows = ours(prev, nxt).numpy()
            seconds = time.perf_counter() - start
            label = f"ours, batch {batch}, {'XLA' if jit else 'no XLA'}, {ours.threads} thread(s)"
            rows.append((label, len(names) / seconds, first, float(epe(flows, reference).mean())))
            per_video.setdefault(f"ours ({'XLA' if jit else 'no XLA'})", epe(flows, reference))
            print(f"  {label}: {len(names) / seconds:.2f} pairs/s", flush=True)

    print(f"\n| method ({width}x{height}, {len(names)} real pairs) | pairs/s | first call s | "
          f"EPE vs OpenCV TV-L1 px |")
    print("|---|---:|---:|---:|")
    for method, rate, first, error in rows:
        print(f"| {method} | {rate:.2f} | {'' if first is None else f'{first:.1f}'} | {error:.4f} |")

    labels = list(per_video)
    print("\n| video (pairs) | " + " | ".join(f"EPE {label}" for label in labels) + " |")
    print("|---|" + "---:|" * len(labels))
    names_array = np.array(names)
    for video in dict.fromkeys(names):
        mask = names_array == video
        cells = " | ".join(f"{per_video[label][mask].mean():.4f}" for label in labels)
        print(f"| {video} ({mask.sum()}) | {cells} |")
    print(f"| all ({len(names)}) | " + " | ".join(f"{per_video[label].mean():.4f}" for label in labels) + " |")
    print(f"\nload average (1 min) at the start {start_load}, at the end {load_average()}")


if __name__ == "__main__":
    main()
