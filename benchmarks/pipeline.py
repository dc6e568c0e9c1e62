"""Training-pipeline throughput against the JPEG-decoding bound, folder and TFRecord sources.

    python benchmarks/pipeline.py                       # the embedded sample clips at 340x256
    python benchmarks/pipeline.py --data DATA/ --list DATA/train.txt --seconds 10

For each modality (rgb, flow, rgb+flow) it measures training samples/s (one
sample = one video's K snippets) of

* ``make_dataset`` over the frame folders and over the same frames written as
  TFRecord shards (:func:`keras_gated_tsn.data.tfrecord.write_tfrecords`):
  K segments, L flow pairs, multi-scale crops of the 340x256 frames resized to
  224, flips; unseeded (the training default) unless ``--seed``;
* the **bound**: a tf.data pipeline that only reads and decodes, whole, the
  JPEG files a training sample needs (the same number of files, drawn from the
  same videos by the same sampling rule: K RGB frames; K x L x and y flow
  planes; both in the joint mode), parallel map with AUTOTUNE, batched like
  ours, prefetched. It uses TensorFlow's decoder (libjpeg-turbo) on the same
  thread pool as our pipeline, so it is what a pipeline that did nothing but
  decode could reach on these cores;
* for reference, ``cv2.imdecode`` of the same files over a process pool with
  one worker per core (OpenCV's own libjpeg-turbo build), and its CPU time per
  sample on one thread in this process: an independent decoding rate, to check
  that TensorFlow's decoder is not the slow one (it is not: the two agree within
  the noise). Ratios are taken against the tf.data bound.

and the same two with ``augment_on="device"`` ("device crops"): the host part
only (read, decode, stack the whole frames, draw the crop box and the flip),
the crop, resize and flip being left to the training step; their cost there
is printed after the table (``device_crops.apply`` compiled, on the GPU if
there is one, else on the CPU; a time on this machine's CPU, not a GPU's).

Ours decodes only the window of each flow plane its crop needs
(``tf.io.decode_and_crop_jpeg``, same pixels), which the bound does not. Each
measurement runs ``--seconds`` after a warm-up on a fresh iterator;
``--repeats`` rounds are interleaved (bound, folder, TFRecord, cv2) so that
load from other processes spreads over all of them. Printed: median samples/s,
the median of the per-round ratios ours / bound, and this process's CPU time
per sample (not inflated by other work: with all cores busy, the throughput
ratio tends to the ratio of CPU times). ``--profile`` adds the CPU time per op
type of each pipeline (TensorFlow profiler).
Without ``--data`` the embedded sample clips are cut into ``--frames-per-clip``
sub-clips and prepared at 340x256 (DIS flow) in a temporary folder first, as
``benchmarks/throughput.py`` does.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import os
import platform
import shutil
import statistics
import tempfile
import time

import numpy as np


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sample_files(records, frames_root, modality, segments, new_length, count, seed=0):
    """``count`` training samples' JPEG files as ``[(path, channels), ...]`` each,
    drawn by the TSN training rule (:func:`keras_gated_tsn.data.sampling.sample_indices`)."""
    from keras_gated_tsn.data import sampling

    rng = np.random.default_rng(seed)
    length = 1 if modality == "rgb" else new_length
    samples = []
    for i in range(count):
        record = records[rng.integers(len(records))]
        n = sampling.num_items(record.num_frames, modality)
        idx = sampling.sample_indices(n, segments, length, training=True, rng=rng)
        folder = os.path.join(frames_root, record.video)
        files = []
        if modality != "flow":
            files += [(os.path.join(folder, f"img_{i + 1:05d}.jpg"), 3) for i in idx[:, 0]]
        if modality != "rgb":
            files += [(os.path.join(folder, f"flow_{a}_{i + 1:05d}.jpg"), 1) for i in idx.reshape(-1) for a in "xy"]
        samples.append(files)
    return samples


def _bound_dataset(samples, batch_size):
    import tensorflow as tf

    channels = [c for _, c in samples[0]]
    paths = tf.constant([[p for p, _ in files] for files in samples])

    def decode(files):
        sizes = [tf.shape(tf.io.decode_jpeg(tf.io.read_file(files[i]), channels=c))[0] for i, c in enumerate(channels)]
        return tf.add_n(sizes)

    ds = tf.data.Dataset.from_tensor_slices(paths).repeat()
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


#: Our pipelines, each measured against the bound.
OURS = ("folder", "TFRecord", "folder, device crops", "TFRecord, device crops")


def _device_step_ms(ds, input_size, batches=5):
    """Milliseconds per sample of :func:`keras_gated_tsn.data.device_crops.apply`
    compiled (``tf.function``), on the first GPU if there is one, else the CPU,
    over ``batches`` batches already in memory (median of per-batch times)."""
    import tensorflow as tf

    from keras_gated_tsn.data import device_crops

    device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    iterator = iter(ds)
    with tf.device(device):
        held = [tf.nest.map_structure(tf.identity, next(iterator)[0]) for _ in range(batches)]
        step = tf.function(lambda x: device_crops.apply(x, input_size))
        tf.nest.map_structure(lambda t: t.numpy(), step(held[0]))  # trace
        times = []
        for x in held:
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), step(x))
            times.append((time.perf_counter() - start) / int(x[device_crops.FLIP].shape[0]) * 1e3)
    del iterator
    return statistics.median(times)


def _rate(ds, seconds, warmup_batches=3):
    """``(samples/s, CPU ms per sample)`` of an endless dataset of batches over
    ``seconds``, after a warm-up, on a fresh iterator (closed after, so that no
    pipeline works in the background while another is measured). The CPU time is
    this process's (all its threads), so other processes' load does not count."""
    import tensorflow as tf

    iterator = iter(ds)
    for _ in range(warmup_batches):
        next(iterator)
    start, cpu, samples = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - start < seconds:
        batch = next(iterator)
        samples += int(tf.nest.flatten(batch)[-1].shape[0])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    del iterator
    gc.collect()
    return samples / wall, cpu / samples * 1e3


def _profile(ds, batches=6, top=12):
    """Op types by CPU time per sample over a few batches (TensorFlow profiler)."""
    import collections
    import glob

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    iterator = iter(ds)
    for _ in range(3):
        next(iterator)
    logdir = tempfile.mkdtemp(prefix="kgt_profile_")
    tf.profiler.experimental.start(logdir)
    samples = 0
    for _ in range(batches):
        samples += int(tf.nest.flatten(next(iterator))[-1].shape[0])
    tf.profiler.experimental.stop()
    del iterator
    space = xplane_pb2.XSpace()
    with open(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0], "rb") as handle:
        space.ParseFromString(handle.read())
    shutil.rmtree(logdir, ignore_errors=True)
    # Kernels only: events named like TensorFlow op types (not the tf.data and executor spans around them).
    spans = ("Iterator", "Prefetch", "MapAndBatch", "Executor", "Run", "Process", "Eager", "TFE_", "DoCompute",
             "Root", "FunctionRun", "ParallelMap", "Zip", "ShuffleAndRepeat", "TensorSlice", "JPEG", "Map", "Batch",
             "Range", "FlatMap", "Take", "Setup", "Model")
    totals = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "?").split(":")[-1]
                if name and name[0].isupper() and not name.startswith(spans):
                    totals[name] += event.duration_ps / 1e9
    return [(name, ms / samples) for name, ms in totals.most_common(top)]


def _cv2_decode(files):
    import cv2

    for path, channels in files:
        with open(path, "rb") as handle:
            data = np.frombuffer(handle.read(), np.uint8)
        cv2.imdecode(data, cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE)
    return len(files)


def _cv2_cpu(samples, repeats=3) -> float:
    """CPU ms per sample of ``cv2.imdecode`` in this process on one thread (best of ``repeats``)."""
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        best = float("inf")
        for _ in range(repeats):
            start = time.process_time()
            for files in samples:
                _cv2_decode(files)
            best = min(best, (time.process_time() - start) / len(samples) * 1e3)
        return best
    finally:
        cv2.setNumThreads(threads)


def _cv2_rate(pool, samples, seconds) -> float:
    list(pool.map(_cv2_decode, samples[: 4 * os.cpu_count()]))  # warm-up
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        list(pool.map(_cv2_decode, samples, chunksize=4))
        done += len(samples)
    return done / (time.perf_counter() - start)


def _prepare(args):
    from keras_gated_tsn.data.lists import read_list_file
    from keras_gated_tsn.data.tfrecord import write_tfrecords

    if args.data:
        data_dir = args.data
        list_file = args.list or os.path.join(data_dir, "train.txt")
    else:
        from keras_gated_tsn.datasets import prepare_sample_dataset

        data_dir = str(prepare_sample_dataset(
            os.path.join(args.workdir, "samples"), args.frames_per_clip, (340, 256), progress=False
        ))
        list_file = os.path.join(data_dir, "all.txt")
    records = read_list_file(list_file)
    frames_root = os.path.join(data_dir, "frames")
    tfrecord_dir = os.path.join(args.workdir, "tfrecord")
    start = time.perf_counter()
    index = write_tfrecords(frames_root, records, tfrecord_dir, num_shards=args.shards, overwrite=True)
    written = time.perf_counter() - start
    return records, frames_root, tfrecord_dir, index, written


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="a prepared dataset (default: the embedded sample clips at 340x256)")
    parser.add_argument("--list", help="list file (default DATA/train.txt)")
    parser.add_argument("--frames-per-clip", type=int, default=16, help="sub-clip length of the sample set")
    parser.add_argument("--segments", type=int, default=3)
    parser.add_argument("--new-length", type=int, default=5)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median printed)")
    parser.add_argument("--seed", type=int, default=None, help="seeded pipelines (ordered map) instead of unseeded")
    parser.add_argument("--modalities", default="rgb,flow,rgb+flow")
    parser.add_argument("--no-cv2", action="store_true", help="skip the cv2 process-pool reference")
    parser.add_argument("--profile", action="store_true", help="also print CPU time per op type (TF profiler)")
    parser.add_argument("--workdir", help="where to prepare (default: a temporary folder, removed)")
    args = parser.parse_args()

    import tensorflow as tf

    from keras_gated_tsn.data import pipeline

    own_workdir = args.workdir is None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="kgt_pipeline_bench_")
    try:
        records, frames_root, tfrecord_dir, index, written = _prepare(args)
        cores = os.cpu_count()
        devices = [d.device_type for d in tf.config.list_physical_devices()]
        print(f"machine: {_cpu_name()}, {platform.machine()}, {cores} CPU cores, devices {devices}, "
              f"TF {tf.__version__}, cv2 {__import__('cv2').__version__}")
        print(f"data: {len(records)} videos ({sum(r.num_frames for r in records)} frames, "
              f"{records[0].num_frames} per video for most), TFRecord {index['num_shards']} shards "
              f"{index['num_bytes'] / 2**20:.1f} MiB written in {written:.1f} s")
        load_start = os.getloadavg()[0]
        pool = None if args.no_cv2 else concurrent.futures.ProcessPoolExecutor(cores)
        rows, profiles = [], {}
        for modality in args.modalities.split(","):
            samples = _sample_files(records, frames_root, modality, args.segments, args.new_length, 512)
            common = dict(
                num_segments=args.segments, new_length=None if modality == "rgb" else args.new_length,
                input_size=args.input_size, batch_size=args.batch_size, training=True, repeat=True, seed=args.seed,
            )
            candidates = {
                "bound": _bound_dataset(samples, args.batch_size),
                "folder": pipeline.make_dataset(records, frames_root, modality, **common),
                "TFRecord": pipeline.make_dataset(records, tfrecord_dir, modality, **common),
                "folder, device crops": pipeline.make_dataset(
                    records, frames_root, modality, augment_on="device", **common),
                "TFRecord, device crops": pipeline.make_dataset(
                    records, tfrecord_dir, modality, augment_on="device", **common),
            }
            rates = {name: [] for name in candidates}
            if pool is not None:
                rates["cv2"] = []
            for _ in range(args.repeats):
                for name, ds in candidates.items():
                    rates[name].append(_rate(ds, args.seconds))
                if pool is not None:
                    rates["cv2"].append((_cv2_rate(pool, samples, args.seconds), float("nan")))
            median = {name: (statistics.median(r for r, _ in values), statistics.median(c for _, c in values))
                      for name, values in rates.items()}
            # Ratios of each round's back-to-back measurements (the same load from other work), then the median.
            for name in OURS:
                median[name + "/bound"] = statistics.median(
                    ours[0] / bound[0] for ours, bound in zip(rates[name], rates["bound"]))
                median[name + "/bound cpu"] = statistics.median(
                    bound[1] / ours[1] for ours, bound in zip(rates[name], rates["bound"]))
            if pool is not None:
                median["cv2 cpu"] = _cv2_cpu(samples[:128])
            median["device step"] = _device_step_ms(candidates["folder, device crops"], args.input_size)
            rows.append((modality, len(samples[0]), median, rates))
            if args.profile:
                profiles[modality] = {name: _profile(candidates[name]) for name in ("bound", *OURS)}
        if pool is not None:
            pool.shutdown()
        load_end = os.getloadavg()[0]
        seeded = "seeded" if args.seed is not None else "unseeded"
        print(f"\nTraining samples/s ({args.input_size}x{args.input_size} crops of 340x256 frames, "
              f"K={args.segments}, L={args.new_length}, batch {args.batch_size}, {seeded}; median of "
              f"{args.repeats} x {args.seconds:g} s; load average {load_start:.2f} at the start, {load_end:.2f} "
              "at the end)\n")
        print("| modality | JPEG files / sample | pipeline | samples/s | / bound | CPU ms / sample | "
              "CPU ratio bound / ours |")
        print("|---|---:|---|---:|---:|---:|---:|")
        for modality, files, median, _ in rows:
            print(f"| {modality} | {files} | decode bound (tf.data) | {median['bound'][0]:.1f} | 1 | "
                  f"{median['bound'][1]:.2f} | 1 |")
            if "cv2" in median:
                print(f"| {modality} | {files} | cv2.imdecode, process pool | {median['cv2'][0]:.1f} | | "
                      f"{median['cv2 cpu']:.2f} (1 thread) | |")
            for name in OURS:
                print(f"| {modality} | {files} | {name} | {median[name][0]:.1f} | {median[name + '/bound']:.2f} | "
                      f"{median[name][1]:.2f} | {median[name + '/bound cpu']:.2f} |")
        print("\n(samples/s: medians over rounds; a ratio: the median of the rounds' ratios, each round measuring "
              "bound and ours back to back. CPU ms: this process's CPU time per sample, which other work does "
              "not inflate; with all cores busy, throughput ratios tend to the CPU ratio. \"device crops\": "
              "make_dataset(augment_on='device'), the host's part; the crop, resize and flip then run in the "
              "training step.)")
        step_device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
        print(f"\nthe device crops' own step (device_crops.apply in a tf.function, on the {step_device}), ms per "
              "sample: " + ", ".join(f"{modality} {median['device step']:.2f}" for modality, _, median, _ in rows))
        print("\nall rounds (samples/s):")
        for modality, _, _, rates in rows:
            print(f"  {modality}: " + "; ".join(
                f"{name} " + ", ".join(f"{r:.1f}" for r, _ in values) for name, values in rates.items()))
        for modality, by_source in profiles.items():
            print(f"\nprofile, {modality}: CPU ms per sample by op type (profiler on, so a little slower)")
            for name, ops in by_source.items():
                print(f"  {name}: " + ", ".join(f"{op} {ms:.2f}" for op, ms in ops))
    finally:
        if own_workdir:
            shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
