"""Speed and peak memory of one training step, ours against PyTorch's, printed as a markdown table.

For every backbone (bn_inception, caffenet, vgg16), model (the rgb stream, the
flow stream, the gated TSN over two frozen streams), precision (float32,
mixed_float16, mixed_bfloat16) and XLA setting (jit_compile off / on), the
benchmark builds the model as a user does (``TSN(...)`` / ``GatedTSN(...)``,
partial BN, ``compile()`` with the paper's recipe: Caffe SGD with momentum,
L2 weight decay, bias lr x2 and global gradient-norm clipping at 40), feeds
``train_on_batch`` in-memory random uint8 clips (no input pipeline), runs
``--warmup`` steps (tracing, XLA compilation, first allocations), then times
``--steps`` steps one by one and reports the median: seconds per step and
videos per second (batch / median step), the fastest step (the better figure
on a machine shared with other work), and the peak memory of the timed steps.

In the same run, the same work is timed in PyTorch: a twin of our BN-Inception
rgb stream (``benchmarks/torch_twin.py`` builds it by walking the Keras graph,
layer for layer, and checks that both have the same number of weights, the
same trainable ones and, with our weights copied in, the same output), trained
with the same recipe (partial BN, SGD momentum 0.9, weight decay 5e-4 on
kernels, bias lr x2, ``clip_grad_norm_(40)``), in plain NCHW float32, in
channels_last float32, and in channels_last with bfloat16 autocast where the
CPU computes bfloat16 (AMX-BF16 / AVX512-BF16). The last column compares each
of our rgb BN-Inception rows with the fastest PyTorch row (videos/s ours /
videos/s PyTorch; above 1 we are faster).

Precisions the device cannot run fast are skipped with the reason printed
(float16 on a CPU; bfloat16 on a CPU without amx_bf16 / avx512_bf16; on a GPU
float16 below compute capability 7.0 and bfloat16 below 8.0), unless ``--all``.

Peak memory: on a CPU, the growth of the process' resident set over its size
before the model was built, at its highest during the timed steps (Linux
VmHWM, reset through /proc/self/clear_refs before the timed steps; where that
cannot be reset, the growth of ``getrusage`` max RSS, which only counts a new
high). On a GPU, ``tf.config.experimental.get_memory_info('GPU:0')['peak']``
(reset before the model is built), and ``torch.cuda.max_memory_allocated``.
In one process, memory freed by a previous configuration may be reused;
``--isolate`` runs each configuration in a process of its own.

``--breakdown`` splits our step (BN-Inception rgb stream, float32 or
``--breakdown-precision``) into its phases, each timed on its own as a
``tf.function`` (fastest of ``--steps``): forward with the loss, forward +
backward, the optimizer update with the global-norm clipping and without
(CaffeSGD, and Keras' plain SGD for scale), and the whole ``train_on_batch``;
and PyTorch's fastest configuration of the same precision the same way.

A machine shared with other work gives noisy rows, and PyTorch's OpenMP
threads suffer most (a step can take ten times longer while another process
holds a core): read the load average printed with the table, run on an idle
machine (or under ``nice -n -10``), or compare per core with ``--threads 1``.

Examples:

    # BN-Inception rgb stream at the paper's size (4 videos x 3 segments,
    # 224x224) against PyTorch, with the phase split
    python benchmarks/train_step.py --backbones bn_inception --models rgb --breakdown

    # everything, on small inputs (2 videos x 2 segments, 64x64): about 10 minutes on 2 cores
    python benchmarks/train_step.py --quick

    # the same BN-Inception comparison in bfloat16, one thread per framework
    python benchmarks/train_step.py --backbones bn_inception --models rgb --precisions mixed_bfloat16 \
        --jit off --threads 1 --breakdown --breakdown-precision mixed_bfloat16

    # only XLA, only bfloat16, no PyTorch
    python benchmarks/train_step.py --jit on --precisions mixed_bfloat16 --no-torch
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

BACKBONES = ("bn_inception", "caffenet", "vgg16")
MODELS = ("rgb", "flow", "gate")
MODEL_NAMES = {"rgb": "rgb stream", "flow": "flow stream", "gate": "gated TSN"}
FALLBACK_PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
#: The recipe's numbers (keras_gated_tsn.training.recipes), for the PyTorch step.
LEARNING_RATE, MOMENTUM, WEIGHT_DECAY, CLIP, BIAS_LR = 1e-3, 0.9, 5e-4, 40.0, 2.0


# ----------------------------------------------------------------------------- the device
def cpu_info():
    """(model name, flags) of the CPU from /proc/cpuinfo (elsewhere: platform's name, no flags)."""
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not name:
                    name = value.strip()
                elif key.strip() in ("flags", "Features"):
                    flags.update(value.split())
    except OSError:
        pass
    return name or platform.processor() or platform.machine(), flags


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def gpu_details(tf):
    """[(name, compute capability or None)] of the GPUs TensorFlow sees."""
    out = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        out.append((details.get("device_name", gpu.name), details.get("compute_capability")))
    return out


def describe_device(tf, keras, torch_module) -> str:
    name, _ = cpu_info()
    gpus = gpu_details(tf)
    where = f"GPU {', '.join(g for g, _ in gpus)}" if gpus else f"CPU {name}, {cpu_count()} cores"
    versions = f"TF {tf.__version__}, Keras {keras.__version__}"
    if torch_module is not None:
        threads = torch_module.get_num_threads()
        versions += f", torch {torch_module.__version__} ({threads} thread{'s' if threads != 1 else ''})"
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")
    intra = tf.config.threading.get_intra_op_parallelism_threads() or "default"
    inter = tf.config.threading.get_inter_op_parallelism_threads() or "default"
    return (f"device: {where}; {versions}; TF threads intra-op {intra}, inter-op {inter}; "
            f"TF_ENABLE_ONEDNN_OPTS={onednn}; python {platform.python_version()}")


def skip_reason(precision: str, tf) -> str | None:
    """Why ``precision`` would not run fast here, or None."""
    if precision == "float32":
        return None
    gpus = gpu_details(tf)
    if gpus:
        need = (7, 0) if precision == "mixed_float16" else (8, 0)
        slow = [g for g, cc in gpus if cc is not None and tuple(cc) < need]
        if slow:
            return f"{precision}: {slow[0]} has compute capability below {need[0]}.{need[1]}"
        return None
    if precision == "mixed_float16":
        return "mixed_float16: no GPU, and TensorFlow has no fast float16 kernels on a CPU"
    _, flags = cpu_info()
    if not flags & set(BF16_CPU_FLAGS):
        return f"mixed_bfloat16: the CPU has neither {' nor '.join(BF16_CPU_FLAGS)} (bfloat16 is emulated)"
    return None


def precisions_known():
    try:
        from keras_gated_tsn.precision import PRECISIONS

        return tuple(PRECISIONS)
    except ImportError:
        return FALLBACK_PRECISIONS


@contextlib.contextmanager
def policy_scope(name: str):
    """``keras_gated_tsn.precision.precision_scope`` when the package has it, else the same by hand."""
    try:
        from keras_gated_tsn.precision import precision_scope
    except ImportError:
        precision_scope = None
    if precision_scope is not None:
        with precision_scope(name, warn=False):
            yield
        return
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


# ----------------------------------------------------------------------------- memory and time
def _status_kb(key: str):
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _release_freed_memory():
    """Hands memory freed by earlier configurations back to the OS (glibc ``malloc_trim``),
    so that the resident set before a model is built is what is live."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def load_average() -> str:
    """The 1-minute load average (other work on the machine slows every row)."""
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


class PeakMemory:
    """Peak memory of a stretch of work, in MiB (see the module docstring).

    ``start()`` before the model is built, ``reset_peak()`` before the timed
    steps, ``peak_mib()`` after them.
    """

    def __init__(self, gpu: bool, torch_cuda: bool = False):
        self.gpu, self.torch_cuda = gpu, torch_cuda
        self.baseline_kb = 0
        self.method = "rss"

    def start(self):
        gc.collect()
        _release_freed_memory()
        if self.torch_cuda:
            import torch

            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        elif self.gpu:
            import tensorflow as tf

            tf.config.experimental.reset_memory_stats("GPU:0")
        self.baseline_kb = _status_kb("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self._maxrss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def reset_peak(self):
        if self.gpu or self.torch_cuda:
            return
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self.method = "hwm"
        except OSError:
            self.method = "maxrss"

    def peak_mib(self) -> float:
        if self.torch_cuda:
            import torch

            return torch.cuda.max_memory_allocated() / 2**20
        if self.gpu:
            import tensorflow as tf

            return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        if self.method == "hwm" and _status_kb("VmHWM") is not None:
            return max(_status_kb("VmHWM") - self.baseline_kb, 0) / 1024
        return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._maxrss_start, 0) / 1024


def time_steps(step, warmup: int, steps: int, before_timing=None):
    """Runs ``warmup`` untimed steps, then ``steps`` timed ones; returns their durations (s)."""
    for _ in range(warmup):
        step()
    if before_timing is not None:
        before_timing()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


# ----------------------------------------------------------------------------- ours
def random_batch(args, channels_by_input, seed=0):
    rng = np.random.default_rng(seed)
    b, k, s = args.batch_size, args.segments, args.input_size
    x = {name: rng.integers(0, 256, (b, k, s, s, c), dtype=np.uint8) for name, c in channels_by_input.items()}
    y = rng.integers(0, args.classes, (b,))
    return x, y


def build_ours(args, backbone: str, kind: str):
    """The model of ``kind`` (rgb, flow, gate) with its batch, built under the current dtype policy."""
    from keras_gated_tsn.models import TSN, GatedTSN

    common = dict(num_classes=args.classes, num_segments=args.segments, input_size=args.input_size)
    if kind in ("rgb", "flow"):
        model = TSN(backbone, kind, new_length=args.new_length, **common)
        x, y = random_batch(args, {kind: model.channels})
        return model, x[kind], y
    rgb = TSN(backbone, "rgb", **common)
    flow = TSN(backbone, "flow", new_length=args.new_length, **common)
    model = GatedTSN(rgb, flow)
    del rgb, flow
    x, y = random_batch(args, {"rgb": 3, "flow": 2 * args.new_length})
    return model, x, y


def measure_ours(args, backbone: str, kind: str, precision: str, jit: bool) -> dict:
    """One row: build, compile with the recipe, warm up, time ``train_on_batch``."""
    import keras
    import tensorflow as tf

    keras.backend.clear_session()
    memory = PeakMemory(gpu=bool(tf.config.list_physical_devices("GPU")))
    memory.start()
    with policy_scope(precision):
        model, x, y = build_ours(args, backbone, kind)
        model.compile(jit_compile=jit)  # the paper's recipe (recipes.make_optimizer)
    x = tf.nest.map_structure(tf.convert_to_tensor, x)
    y = tf.convert_to_tensor(y)
    times = time_steps(lambda: model.train_on_batch(x, y), args.warmup, args.steps, memory.reset_peak)
    peak = memory.peak_mib()
    del model
    keras.backend.clear_session()
    gc.collect()
    return _row(args, MODEL_NAMES[kind], backbone, precision, f"jit_compile={jit}", times, peak, ours=True)


def _row(args, model, backbone, precision, mode, times, peak, ours):
    step = statistics.median(times)
    return dict(model=model, backbone=backbone, precision=precision, mode=mode, step=step, fastest=min(times),
                videos=args.batch_size / step, peak=peak, ours=ours)


# ----------------------------------------------------------------------------- PyTorch
def torch_configs(args, torch):
    """[(label, memory format, autocast dtype or None)] to run, and skip notes."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    configs = [("NCHW", torch.contiguous_format, None), ("channels_last", torch.channels_last, None)]
    notes = []
    if device == "cuda":
        configs.append(("channels_last", torch.channels_last, torch.float16))
        configs.append(("channels_last", torch.channels_last, torch.bfloat16))
    else:
        _, flags = cpu_info()
        if flags & set(BF16_CPU_FLAGS) or args.all:
            configs.append(("channels_last", torch.channels_last, torch.bfloat16))
        else:
            notes.append("PyTorch bfloat16 autocast skipped: the CPU has no amx_bf16 / avx512_bf16")
    return device, configs, notes


def build_twin(args, check: bool = True):
    """Our BN-Inception rgb stream and its PyTorch twin, checked to be the same network."""
    import keras
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_twin import TorchTwin, check_twin, count_keras

    from keras_gated_tsn.models import TSN

    keras.backend.clear_session()
    with policy_scope("float32"):
        model = TSN("bn_inception", "rgb", num_classes=args.classes, num_segments=args.segments,
                    input_size=args.input_size)
    twin = TorchTwin(model).freeze_like_keras()
    clip = np.random.default_rng(1).integers(0, 256, (1, 1, args.input_size, args.input_size, 3), dtype=np.uint8)
    diff = check_twin(model, twin, clip if check else None)
    total, trainable = count_keras(model)
    note = (f"PyTorch twin of tsn_rgb_bn_inception: {total:,} weights ({trainable:,} trainable) in both; "
            f"inference output with our weights copied: max relative difference {diff:.1e}")
    del model
    keras.backend.clear_session()
    torch.manual_seed(0)
    for module in twin.modules():  # fresh weights (reset_parameters), as our model starts from
        if hasattr(module, "reset_parameters") and module is not twin:
            module.reset_parameters()
    return twin, note


def torch_step_fn(twin, args, device, memory_format, autocast_dtype, torch):
    """The PyTorch training step (closure) on one random batch."""
    import torch.nn.functional as F

    twin = twin.to(device).set_memory_format(memory_format).train()
    optimizer = torch.optim.SGD(
        twin.param_groups(LEARNING_RATE, WEIGHT_DECAY, BIAS_LR), lr=LEARNING_RATE, momentum=MOMENTUM, foreach=True
    )
    x, y = random_batch(args, {"rgb": 3})
    x, y = torch.from_numpy(x["rgb"]).to(device), torch.from_numpy(y).to(device)
    params = [p for p in twin.parameters() if p.requires_grad]

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            scores = twin(x)
        loss = F.cross_entropy(scores.float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP, foreach=True)
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return loss

    return step, optimizer, x, y, params


def measure_torch(args, twin, device, label, memory_format, autocast_dtype) -> dict:
    import copy

    import torch

    memory = PeakMemory(gpu=False, torch_cuda=device == "cuda")
    memory.start()
    model = copy.deepcopy(twin)
    step, *_ = torch_step_fn(model, args, device, memory_format, autocast_dtype, torch)
    times = time_steps(step, args.warmup, args.steps, memory.reset_peak)
    peak = memory.peak_mib()
    del model, step
    gc.collect()
    precision = "float32" if autocast_dtype is None else f"{str(autocast_dtype).split('.')[-1]} autocast"
    return _row(args, "rgb stream, PyTorch", "bn_inception", precision, f"eager, {label}", times, peak, ours=False)


# ----------------------------------------------------------------------------- phase split
def breakdown(args, precision: str, jit: bool, twin=None, torch_config=None):
    """Seconds per phase of our BN-Inception rgb step under ``precision`` (and of
    PyTorch's ``torch_config`` step): forward with the loss, forward + backward,
    the optimizer update with and without global-norm clipping, the whole step; printed as a table."""
    import keras
    import tensorflow as tf

    from keras_gated_tsn.models import TSN
    from keras_gated_tsn.training import recipes

    keras.backend.clear_session()
    with policy_scope(precision):
        model = TSN("bn_inception", "rgb", num_classes=args.classes, num_segments=args.segments,
                    input_size=args.input_size)
        model.compile(jit_compile=jit)
    x, y = random_batch(args, {"rgb": 3})
    x, y = tf.convert_to_tensor(x["rgb"]), tf.convert_to_tensor(y)
    loss_fn = recipes.classification_loss()
    variables = model.trainable_variables
    model.optimizer.build(variables)
    unclipped = recipes.make_optimizer(clip_gradients=None)
    unclipped.build(variables)
    plain = keras.optimizers.SGD(learning_rate=1e-3, momentum=MOMENTUM)
    plain.build(variables)

    @tf.function(jit_compile=jit)
    def forward(x, y):
        return loss_fn(y, model(x, training=True))

    @tf.function(jit_compile=jit)
    def gradients(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, variables)

    grads = gradients(x, y)

    @tf.function(jit_compile=jit)
    def update_clipped(grads):
        model.optimizer.apply(grads, variables)  # the step's own optimizer: clipping included

    @tf.function(jit_compile=jit)
    def update(grads):
        unclipped.apply(grads, variables)

    @tf.function(jit_compile=jit)
    def update_plain(grads):
        plain.apply(grads, variables)

    def run(fn):
        def call():
            out = fn()
            tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
        return min(time_steps(call, args.warmup, args.steps))

    ours = {
        "forward (loss)": run(lambda: forward(x, y)),
        "forward + backward (gradients)": run(lambda: gradients(x, y)),
        "optimizer update with global-norm clipping": run(lambda: update_clipped(grads)),
        "optimizer update (CaffeSGD, no clip)": run(lambda: update(grads)),
        "optimizer update (keras SGD, for scale)": run(lambda: update_plain(grads)),
        "whole train_on_batch": run(lambda: model.train_on_batch(x, y)),
    }
    del model
    keras.backend.clear_session()
    theirs = {}
    label = ""
    if twin is not None and torch_config is not None:
        import copy

        import torch
        import torch.nn.functional as F

        device, (label, memory_format, autocast_dtype) = torch_config
        model = copy.deepcopy(twin)
        step, optimizer, tx, ty, params = torch_step_fn(model, args, device, memory_format, autocast_dtype, torch)
        sync = (lambda: torch.cuda.synchronize()) if device == "cuda" else (lambda: None)
        autocast = lambda: torch.autocast(device, dtype=autocast_dtype, enabled=autocast_dtype is not None)  # noqa

        def fwd():
            with autocast():
                loss = F.cross_entropy(model(tx).float(), ty)
            sync()
            return loss

        def fwd_bwd():
            optimizer.zero_grad(set_to_none=True)
            fwd().backward()
            sync()

        fwd_bwd()

        def clip_and_update():
            torch.nn.utils.clip_grad_norm_(params, CLIP, foreach=True)
            optimizer.step()
            sync()

        def update_only():
            optimizer.step()
            sync()

        tr = lambda fn: min(time_steps(fn, args.warmup, args.steps))  # noqa: E731
        theirs = {
            "forward (loss)": tr(fwd),
            "forward + backward (gradients)": tr(fwd_bwd),
            "optimizer update with global-norm clipping": tr(clip_and_update),
            "optimizer update (CaffeSGD, no clip)": tr(update_only),
            "whole train_on_batch": tr(step),
        }
        torch_precision = "float32" if autocast_dtype is None else f"{str(autocast_dtype).split('.')[-1]} autocast"
        label = f"PyTorch {label}, {torch_precision}"
        del model
    print(f"\n| phase (BN-Inception rgb, {precision}, jit_compile={jit}; fastest of {args.steps}) | ours s "
          f"| {label or 'PyTorch'} s |")
    print("|---|---:|---:|")
    for phase, seconds in ours.items():
        other = f"{theirs[phase]:.3f}" if phase in theirs else "—"
        print(f"| {phase} | {seconds:.3f} | {other} |")
    back = ours["forward + backward (gradients)"] - ours["forward (loss)"]
    other = ""
    if theirs:
        other = f"{theirs['forward + backward (gradients)'] - theirs['forward (loss)']:.3f}"
    print(f"| backward alone (difference) | {back:.3f} | {other or '—'} |")


# ----------------------------------------------------------------------------- main
def print_table(args, rows):
    torch_rows = [r for r in rows if not r["ours"]]
    best = max(torch_rows, key=lambda r: r["videos"]) if torch_rows else None
    shape = f"{args.batch_size} videos x {args.segments} segments, {args.input_size}x{args.input_size}"
    print(f"\n| model ({shape}) | backbone | precision | graph / layout | s/step | fastest s | videos/s "
          f"| peak MiB | ours/PyTorch-best |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = "—"
        comparable = r["backbone"] == "bn_inception" and r["model"].startswith("rgb stream")
        if best is not None and comparable:
            ratio = f"{r['videos'] / best['videos']:.2f}"
        print(f"| {r['model']} | {r['backbone']} | {r['precision']} | {r['mode']} | {r['step']:.3f} "
              f"| {r['fastest']:.3f} | {r['videos']:.2f} | {r['peak']:.0f} | {ratio} |")
    if best is not None:
        print(f"\nPyTorch best: {best['mode']}, {best['precision']} ({best['videos']:.2f} videos/s); "
              "the last column is videos/s over it (PyTorch rows: over the best PyTorch row).")


def run_isolated(args, config) -> dict:
    """One configuration in a fresh process (clean memory figures)."""
    argv = [sys.executable, os.path.abspath(__file__), "--_one", json.dumps(config)] + args._passthrough
    out = subprocess.run(argv, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"configuration {config} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", choices=BACKBONES, default=list(BACKBONES),
                        help="backbones to measure (default: all)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                        help="rgb / flow stream, gate = GatedTSN over both (frozen) streams (default: all)")
    parser.add_argument("--precisions", nargs="+", choices=FALLBACK_PRECISIONS, default=None,
                        help="Keras dtype policies (default: all, minus those the device cannot run fast)")
    parser.add_argument("--jit", choices=("off", "on", "both"), default="both",
                        help="compile(jit_compile=...): off, on (XLA) or both (default)")
    parser.add_argument("--all", action="store_true",
                        help="also run the precisions the device cannot run fast")
    parser.add_argument("--batch-size", type=int, default=None, help="videos per step (default 4; --quick 2)")
    parser.add_argument("--segments", type=int, default=None, help="TSN segments K (default 3; --quick 2)")
    parser.add_argument("--input-size", type=int, default=None, help="crop side (default 224; --quick 64)")
    parser.add_argument("--new-length", type=int, default=5, help="flow frames per snippet L (2L channels)")
    parser.add_argument("--classes", type=int, default=101)
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2; --quick 1)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps, median reported (default 3; --quick 2)")
    parser.add_argument("--quick", action="store_true",
                        help="small inputs and few steps: 2 videos x 2 segments, 64x64, 1 + 2 steps")
    parser.add_argument("--no-torch", dest="torch", action="store_false", help="skip the PyTorch rows")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip comparing the PyTorch twin's output with ours "
                             "(the weight counts are still compared)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the phases of the BN-Inception rgb step, ours and PyTorch's best")
    parser.add_argument("--breakdown-precision", choices=FALLBACK_PRECISIONS, default="float32",
                        help="precision of --breakdown (PyTorch: its fastest row of the same kind)")
    parser.add_argument("--breakdown-jit", choices=("off", "on", "both"), default="off",
                        help="jit_compile of --breakdown (default off)")
    parser.add_argument("--isolate", action="store_true",
                        help="one process per configuration (clean peak memory, slower)")
    parser.add_argument("--threads", type=int, default=None,
                        help="cores to use: TF intra-op and inter-op threads, torch.set_num_threads "
                             "(default: TF's and PyTorch's own choice, all cores)")
    parser.add_argument("--inter-op-threads", type=int, default=None,
                        help="TF inter-op threads, how many ops run at once (default: --threads, else TF's choice)")
    parser.add_argument("--_one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = dict(batch_size=2, segments=2, input_size=64, warmup=1, steps=2)
    full = dict(batch_size=4, segments=3, input_size=224, warmup=2, steps=3)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args._passthrough = [f"--batch-size={args.batch_size}", f"--segments={args.segments}",
                         f"--input-size={args.input_size}", f"--new-length={args.new_length}",
                         f"--classes={args.classes}", f"--warmup={args.warmup}", f"--steps={args.steps}"]
    args._passthrough += [f"--threads={args.threads}"] if args.threads else []
    args._passthrough += [f"--inter-op-threads={args.inter_op_threads}"] if args.inter_op_threads else []
    return args


def set_threads(args, tf, torch_module=None):
    """``--threads`` / ``--inter-op-threads`` for TensorFlow (before it runs anything) and PyTorch."""
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads or args.threads)
        if torch_module is not None:
            torch_module.set_num_threads(args.threads)
    elif args.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)


def main(argv=None):
    args = parse_args(argv)
    import keras
    import tensorflow as tf

    if args._one:  # a child of --isolate
        set_threads(args, tf)
        config = json.loads(args._one)
        if config["kind"] == "ours":
            row = measure_ours(args, config["backbone"], config["model"], config["precision"], config["jit"])
        else:
            import torch

            set_threads(args, tf, torch)
            twin, _ = build_twin(args, check=False)
            device, configs, _ = torch_configs(args, torch)
            row = measure_torch(args, twin, device, *configs[config["index"]])
        print(json.dumps(row))
        return

    torch = None
    if args.torch:
        try:
            import torch
        except ImportError:
            print("PyTorch is not installed: no PyTorch rows (pip install -e '.[dev]')")
    set_threads(args, tf, torch)
    print(describe_device(tf, keras, torch))
    start_load = load_average()
    known = precisions_known()
    precisions = [p for p in (args.precisions or known) if p in known]
    notes = []
    runnable = []
    for precision in precisions:
        reason = skip_reason(precision, tf)
        if reason and not args.all:
            notes.append(f"skipped {reason} (--all runs it)")
        else:
            runnable.append(precision)
    jits = {"off": [False], "on": [True], "both": [False, True]}[args.jit]
    print(f"{args.batch_size} videos x {args.segments} segments, {args.input_size}x{args.input_size}, "
          f"{args.warmup} warm-up + {args.steps} timed steps (median), precisions {runnable}, jit {jits}")
    for note in notes:
        print(note)

    rows = []
    for backbone in args.backbones:
        for kind in args.models:
            for precision in runnable:
                for jit in jits:
                    label = f"{backbone} {kind} {precision} jit={jit}"
                    print(f"  measuring {label} ...", flush=True)
                    config = dict(kind="ours", backbone=backbone, model=kind, precision=precision, jit=jit)
                    try:
                        row = (run_isolated(args, config) if args.isolate
                               else measure_ours(args, backbone, kind, precision, jit))
                    except Exception as error:  # one failing configuration does not stop the table
                        print(f"  {label} failed: {type(error).__name__}: {str(error)[:300]}")
                        continue
                    rows.append(row)

    twin = torch_config = None
    if torch is not None:
        twin, note = build_twin(args, check=args.check)
        notes.append(note)
        device, configs, torch_notes = torch_configs(args, torch)
        notes.extend(torch_notes)
        torch_rows = []
        for index, (label, memory_format, autocast_dtype) in enumerate(configs):
            print(f"  measuring PyTorch {label} {autocast_dtype or 'float32'} ...", flush=True)
            if args.isolate:
                row = run_isolated(args, dict(kind="torch", index=index))
            else:
                row = measure_torch(args, twin, device, label, memory_format, autocast_dtype)
            torch_rows.append((row, (device, configs[index])))
            rows.append(row)
        wanted = {"float32": "float32", "mixed_bfloat16": "bfloat16 autocast",
                  "mixed_float16": "float16 autocast"}[args.breakdown_precision]
        same_kind = [r for r in torch_rows if r[0]["precision"] == wanted]
        if same_kind:
            torch_config = max(same_kind, key=lambda r: r[0]["videos"])[1]

    print()
    print(describe_device(tf, keras, torch))
    print(f"load average (1 min) at the start {start_load}, at the end {load_average()}; "
          f"{cpu_count()} cores")
    print_table(args, rows)
    for note in notes:
        print(f"- {note}")
    if args.breakdown:
        for jit in {"off": [False], "on": [True], "both": [False, True]}[args.breakdown_jit]:
            breakdown(args, args.breakdown_precision, jit, twin, torch_config)


if __name__ == "__main__":
    main()
