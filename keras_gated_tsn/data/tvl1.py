"""TV-L1 optical flow in TensorFlow, batched, matching OpenCV's ``DualTVL1OpticalFlow``.

The duality-based TV-L1 method of Zach, Pock and Bischof (2007, "A duality based
approach for realtime TV-L1 optical flow", DAGM, Sec. 3-4), in the form of
Sanchez, Meinhardt-Llopis and Facciolo (IPOL 2013, "TV-L1 Optical Flow
Estimation", Sec. 2-4, Algorithm 1) as OpenCV implements it in
``cv2.optflow.DualTVL1OpticalFlow`` (opencv_contrib ``modules/optflow/src/tvl1flow.cpp``),
the flow of TSN's ``dense_flow`` extraction and of ``--flow tvl1``. This module
follows OpenCV step by step, so that its flow matches OpenCV's to a few
thousandths of a pixel on average (mean end-point error on real 340x256
frames: ``benchmarks/flow.py``, ``benchmarks/README.md``), and runs many frame
pairs at once in one ``tf.function``, on a GPU when TensorFlow sees one. It
needs TensorFlow alone (``pip install``; no CUDA build of OpenCV).

What OpenCV does, and so what this does, for each pair ``(I0, I1)`` (0-255):

- **Pyramid** (``scales`` levels): level ``s`` is
  ``cv2.resize(level[s - 1], None, fx=scale_step, fy=scale_step, INTER_LINEAR)``:
  size ``round(w * scale_step) x round(h * scale_step)``, destination pixel
  ``d`` sampled at ``(d + 0.5) / scale_step - 0.5`` (clamped to the image),
  i.e. plain bilinear sampling, no smoothing. A level under 16 pixels on a
  side ends the pyramid and is not used.
- **Per level**, coarsest first: the centred differences ``(I1[x+1] - I1[x-1]) / 2``
  of ``I1`` (the missing neighbour replaced by the border pixel, so half a
  one-sided difference on the border); then ``warps`` times:
  - warp ``I1`` and both derivatives by the current flow ``u0`` with bicubic
    interpolation (Keys' kernel, ``a = -0.75``: ``cv2.remap(..., INTER_CUBIC)``;
    samples outside the image are 0, OpenCV's default ``BORDER_CONSTANT``);
  - linearise the data term: ``rho(u) = I1w + grad I1w . (u - u0) - I0``
    (IPOL eq. 14);
  - up to ``outer_iterations`` rounds, each starting with a
    ``median_filtering`` x ``median_filtering`` median filter of the flow
    (``cv2.medianBlur``, edges replicated), of up to ``inner_iterations`` steps:
    thresholding ``v = u + clip(-rho(u) / |grad I1w|^2, -lambda*theta, lambda*theta) * grad I1w``
    (eq. 21), ``u = v + theta * div p`` (eq. 22), ``p = (p + tau/theta * grad u) / (1 + tau/theta * |grad u|)``
    (eq. 23-24, forward differences that are 0 on the last row / column and
    their adjoint, the backward divergence);
  - **stopping**: the warp ends as soon as a step changes the flow by
    ``sum((u_new - u)^2) <= epsilon^2 * h * w`` (summed over the level).
  The dual variables ``p`` start at 0 on each level and are kept across its warps.
- **Upsampling**: the flow is resized to the next finer level (``INTER_LINEAR``
  to the size) and multiplied by ``1 / scale_step`` (OpenCV's factor, not the
  exact ratio of the sizes).

**Per-pair stopping is exact, by masking**, not a fixed iteration count: all
pairs of a batch iterate together, a pair whose update has fallen under
``epsilon`` is frozen (neither its flow nor its dual variables change again
in that warp, and later median filters of the warp skip it) while the others
go on, and a loop ends when every pair has stopped or its count is reached.
So every pair gets exactly the iterations OpenCV gives it, and its flow does
not depend on the rest of the batch (bit for bit with XLA on the CPU). A
fixed count was not chosen because it would neither match nor be fast: on
real 340x256 frames OpenCV ended a warp after 31 steps on average (13 to 123,
6 pairs measured) of the ``10 * 30`` allowed, so running them all would cost
about ten times more and converge further than OpenCV does. A batch runs as
long as its slowest pair.

**Execution.** All loops are ``tf.while_loop``; nothing in them uses NumPy,
and the only value that crosses to the host is a loop condition (one boolean
every ``check_every`` steps). With XLA (``jit_compile``, the default) a step
fuses into a few kernels; on the CPU an XLA executable runs on one core, so
by default each pair is its own call (one compiled shape whatever the batch
size) and ``threads`` calls run at once, one per core. The first call on a
new frame size traces and compiles (10-20 s on 2 CPU cores).

Known differences from OpenCV, all far below the EPE of the tests:
floating-point rounding and summation order (``tf.reduce_sum`` instead of
OpenCV's running float sum in the stopping test; the upsampled flow differs
by up to 5e-5 px from ``cv2.resize``'s); and where ``0 < |grad I1w|^2 <= FLT_EPSILON``
and ``|rho| <= lambda * theta * |grad I1w|^2``, OpenCV leaves ``v = u`` and this
moves it by ``+-lambda * theta * grad I1w`` (under 2e-5 px). Chaotic
amplification of these makes a few pixels differ by more (up to several
pixels at a motion boundary) while the mean stays at a few thousandths of a
pixel. Matched against OpenCV 5.0, whose ``remap`` uses the exact fractional
position; OpenCV 4.x rounds it to 1/32 pixel (``INTER_TAB_SIZE``), so its flow
is slightly different (not measured here). Not implemented: ``useInitialFlow``.

Example::

    from keras_gated_tsn.data.tvl1 import TVL1Flow

    tvl1 = TVL1Flow()                             # OpenCV's defaults; build once, reuse
    gray = np.stack(gray_frames)                  # (T, 256, 340) uint8, one video
    flow = tvl1(gray[:-1], gray[1:]).numpy()      # (T - 1, 256, 340, 2) float32 pixels, x then y
"""

from __future__ import annotations

import concurrent.futures
import math
import numbers
import os
import threading
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

__all__ = ["TVL1Flow", "opencv_tvl1_defaults"]

#: OpenCV's ``cv2.optflow.DualTVL1OpticalFlow_create()`` defaults (its getters,
#: checked by a test against the installed OpenCV), under this module's names.
_DEFAULTS = dict(
    tau=0.25, lambda_=0.15, theta=0.3, scales=5, warps=5, epsilon=0.01,
    inner_iterations=30, outer_iterations=10, scale_step=0.8, gamma=0.0, median_filtering=5,
)

#: A pyramid level narrower or lower than this ends the pyramid (OpenCV's rule).
_MIN_LEVEL_SIZE = 16

#: Keys' cubic-convolution parameter of ``cv2.INTER_CUBIC``.
_CUBIC_A = -0.75

#: ``std::numeric_limits<float>::epsilon()``: OpenCV's threshold on ``|grad I1w|^2``.
_FLT_EPSILON = float(np.finfo(np.float32).eps)

#: ``1 / |grad I1w|^2`` used where that is at most ``_FLT_EPSILON``: the thresholding
#: then gives ``+-lambda * theta`` unless ``rho`` is 0, OpenCV's outer branches.
_FLAT_INVERSE = 1e30


def opencv_tvl1_defaults() -> Dict[str, float]:
    """The default parameters of :class:`TVL1Flow`, under its argument names.

    They are the getters of ``cv2.optflow.DualTVL1OpticalFlow_create()``
    (``getTau()`` ... ``getMedianFiltering()``), the flow TSN extracts.

    Returns:
        A new dict: ``tau`` 0.25, ``lambda_`` 0.15, ``theta`` 0.3, ``scales`` 5,
        ``warps`` 5, ``epsilon`` 0.01, ``inner_iterations`` 30,
        ``outer_iterations`` 10, ``scale_step`` 0.8, ``gamma`` 0.0,
        ``median_filtering`` 5.
    """
    return dict(_DEFAULTS)


# --------------------------------------------------------------------------- geometry (NumPy, at trace time)


def _pyramid_sizes(height: int, width: int, scales: int, scale_step: float) -> List[Tuple[int, int]]:
    """``(h, w)`` of the levels OpenCV uses, finest first.

    ``cv2.resize(src, Size(), fx, fy)`` makes ``cvRound(w * fx) x cvRound(h * fy)``
    (nearest integer, ties to even, as Python's ``round``); the first level
    under 16 pixels on a side is dropped and ends the pyramid.
    """
    sizes = [(height, width)]
    for _ in range(1, scales):
        h, w = sizes[-1]
        h, w = int(round(h * scale_step)), int(round(w * scale_step))
        if h < _MIN_LEVEL_SIZE or w < _MIN_LEVEL_SIZE:
            break
        sizes.append((h, w))
    return sizes


def _linear_resize_taps(src: int, dst: int, scale: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two taps of ``cv::resize``'s ``INTER_LINEAR`` along one axis of ``src`` -> ``dst`` pixels.

    Destination pixel ``d`` samples ``x = (d + 0.5) * scale - 0.5`` (double,
    rounded to float, as OpenCV): weight ``1 - frac(x)`` on ``floor(x)`` and
    ``frac(x)`` on the next pixel; ``x`` under 0 or past ``src - 1`` takes the
    border pixel. ``scale`` is source pixels per destination pixel: ``1 / fx``
    for a resize by a factor, ``src / dst`` for a resize to a size.

    Returns:
        ``(left, right, frac)``: int32 and int32 source indices and the float32
        weight of ``right``, each of shape ``(dst,)``.
    """
    x = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    left = np.floor(x).astype(np.int64)
    frac = (x - left.astype(np.float32)).astype(np.float32)
    frac[left < 0] = 0.0
    left[left < 0] = 0
    past = left >= src - 1
    frac[past] = 0.0
    left[past] = src - 1
    right = np.minimum(left + 1, src - 1)
    return left.astype(np.int32), right.astype(np.int32), frac


def _median_network(n: int) -> Tuple[List[Tuple[str, int, int]], int]:
    """A min/max network whose output is the median of ``n`` (odd) inputs.

    Batcher's odd-even merge sort on the next power of two, whose extra inputs
    are ``+inf`` (the comparators that touch them resolve here), keeping only
    the operations the middle output depends on (202 for ``n = 25``).

    Returns:
        ``(ops, out)``: node ``n + k`` is ``ops[k] = (kind, a, b)``, ``kind``
        ``"min"`` or ``"max"`` of nodes ``a, b < n + k`` (nodes ``0 .. n - 1``
        are the inputs); ``out`` is the median's node.
    """
    size = 1 << max(0, (n - 1).bit_length())
    comparators = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        comparators.append((i + j, i + j + k))
            k //= 2
        p *= 2
    inf = -1
    wires = list(range(n)) + [inf] * (size - n)
    index: Dict[Tuple[str, int, int], int] = {}
    ops: List[Tuple[str, int, int]] = []

    def node(kind, a, b):
        key = (kind, min(a, b), max(a, b))
        if key not in index:
            index[key] = n + len(ops)
            ops.append(key)
        return index[key]

    for lo, hi in comparators:
        a, b = wires[lo], wires[hi]
        if b == inf:  # min(a, inf) = a stays low, inf stays high
            continue
        if a == inf:
            wires[lo], wires[hi] = b, inf
            continue
        wires[lo], wires[hi] = node("min", a, b), node("max", a, b)
    out = wires[n // 2]
    needed, stack = set(), [out]
    while stack:
        v = stack.pop()
        if v >= n and v not in needed:
            needed.add(v)
            stack += list(ops[v - n][1:])
    order = sorted(needed)
    renumber = {i: i for i in range(n)}
    renumber.update({old: n + k for k, old in enumerate(order)})
    kept = [(ops[v - n][0], renumber[ops[v - n][1]], renumber[ops[v - n][2]]) for v in order]
    return kept, renumber[out]


# --------------------------------------------------------------------------- TensorFlow pieces


def _resize(x: tf.Tensor, src: Tuple[int, int], dst: Tuple[int, int], scale: Tuple[float, float]) -> tf.Tensor:
    """``cv2.resize(INTER_LINEAR)`` of every ``(h, w)`` map of ``x (..., h, w)``: columns, then rows.

    ``scale`` is ``(rows, cols)`` source pixels per destination pixel (see
    :func:`_linear_resize_taps`). Two gathers and a lerp per axis, the
    arithmetic of OpenCV's float path.
    """
    for axis, size_in, size_out, factor in ((-1, src[1], dst[1], scale[1]), (-2, src[0], dst[0], scale[0])):
        left, right, frac = _linear_resize_taps(size_in, size_out, factor)
        frac = tf.constant(frac if axis == -1 else frac[:, np.newaxis])
        x = tf.gather(x, left, axis=axis) * (1.0 - frac) + tf.gather(x, right, axis=axis) * frac
    return x


def _pad_edge(x: tf.Tensor, r: int) -> tf.Tensor:
    """Pads the last two axes of ``x`` by ``r`` pixels, replicating the border pixels."""
    x = tf.concat([x[..., :1, :]] * r + [x] + [x[..., -1:, :]] * r, axis=-2)
    return tf.concat([x[..., :1]] * r + [x] + [x[..., -1:]] * r, axis=-1)


def _centered_gradient(image: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """OpenCV's ``centeredGradient`` of ``(N, h, w)``: ``(I[x+1] - I[x-1]) / 2``, the
    missing neighbour on the border replaced by the border pixel."""
    padded = _pad_edge(image, 1)
    dx = 0.5 * (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2])
    dy = 0.5 * (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1])
    return dx, dy


def _cubic_weights(t: tf.Tensor) -> List[tf.Tensor]:
    """Keys' kernel (``a = -0.75``) for taps ``-1, 0, 1, 2`` at fraction ``t`` (OpenCV's ``interpolateCubic``)."""
    a = _CUBIC_A
    t1, s = t + 1.0, 1.0 - t
    w0 = ((a * t1 - 5.0 * a) * t1 + 8.0 * a) * t1 - 4.0 * a
    w1 = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    w2 = ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0
    return [w0, w1, w2, 1.0 - w0 - w1 - w2]


def _warp_bicubic(stack: tf.Tensor, flow_x: tf.Tensor, flow_y: tf.Tensor) -> tf.Tensor:
    """``cv2.remap(channel, x + flow_x, y + flow_y, INTER_CUBIC)`` of every channel.

    Args:
        stack: ``(N, h, w, C)`` float32 images.
        flow_x, flow_y: ``(N, h, w)`` float32 displacements in pixels.

    Returns:
        ``(N, h, w, C)`` float32: each channel at ``(x + flow_x, y + flow_y)``,
        4x4 bicubic taps, a tap outside the image counting as 0
        (``BORDER_CONSTANT``, value 0).
    """
    shape = tf.shape(flow_x)
    n, h, w = shape[0], shape[1], shape[2]
    channels = stack.shape[-1]
    hp, wp = h + 2, w + 2
    # A ring of zeros; every tap index is clamped into [-1, size], i.e. onto the ring when outside.
    flat = tf.reshape(tf.pad(stack, [[0, 0], [1, 1], [1, 1], [0, 0]]), [-1, channels])
    wf, hf = tf.cast(w, tf.float32), tf.cast(h, tf.float32)
    xs = tf.range(wf)[tf.newaxis, tf.newaxis, :] + flow_x
    ys = tf.range(hf)[tf.newaxis, :, tf.newaxis] + flow_y
    # Beyond these every tap is outside anyway; clipping keeps the integer cast defined.
    xs = tf.clip_by_value(xs, -3.0, wf + 2.0)
    ys = tf.clip_by_value(ys, -3.0, hf + 2.0)
    x0, y0 = tf.floor(xs), tf.floor(ys)
    wx = tf.stack(_cubic_weights(xs - x0), axis=-1)[..., tf.newaxis]  # (N, h, w, 4, 1)
    wy = _cubic_weights(ys - y0)
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    cols = tf.stack([tf.clip_by_value(x0 + (j - 1), -1, w) + 1 for j in range(4)], axis=-1)  # (N, h, w, 4)
    base = tf.range(n)[:, tf.newaxis, tf.newaxis] * (hp * wp)
    out = None
    for i in range(4):
        row = tf.clip_by_value(y0 + (i - 1), -1, h) + 1
        taps = tf.gather(flat, (base + row * wp)[..., tf.newaxis] + cols)  # (N, h, w, 4, C)
        term = wy[i][..., tf.newaxis] * tf.reduce_sum(wx * taps, axis=-2)
        out = term if out is None else out + term
    return out


def _median_filter(u: tf.Tensor, size: int, network) -> tf.Tensor:
    """``cv2.medianBlur(map, size)`` of every ``(h, w)`` map of ``u (..., h, w)``, edges replicated."""
    h, w = u.shape[-2], u.shape[-1]
    padded = _pad_edge(u, size // 2)
    values = [padded[..., i : i + h, j : j + w] for i in range(size) for j in range(size)]
    ops, out = network
    for kind, a, b in ops:
        values.append((tf.minimum if kind == "min" else tf.maximum)(values[a], values[b]))
    return values[out]


# --------------------------------------------------------------------------- argument checks


def _check_number(name, value, *, integer=False, low=None, low_open=False, high=None, high_open=False):
    """``value`` as a float (or int), else a ``ValueError`` that quotes it and the range."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and (isinstance(value, numbers.Integral) if integer else math.isfinite(float(value)))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = [f"{'>' if low_open else '>='} {low}"] if low is not None else []
        bounds += [f"{'<' if high_open else '<='} {high}"] if high is not None else []
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} {' and '.join(bounds)}, got {value!r}")
    return int(value) if integer else float(value)


def _cpu_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------- the public class


class TVL1Flow:
    """Batched TV-L1 optical flow: OpenCV's ``DualTVL1OpticalFlow`` in TensorFlow.

    Zach, Pock, Bischof (2007); IPOL 2013 (Sanchez et al.), Algorithm 1 with
    OpenCV's pyramid, warping, stopping test and median filter: see the module
    docstring. The first eleven arguments are OpenCV's parameters with its
    defaults (``cv2.optflow.DualTVL1OpticalFlow_create()``); the four
    keyword-only ones say how it runs and change the result at most by
    rounding (XLA or not). Build one object and reuse it:
    a ``tf.function`` is traced once per frame size ``(H, W)``, and (with XLA)
    compiled once per batch shape.

    Args:
        tau: time step of the dual update, > 0 (OpenCV ``tau``; Chambolle's
            projection is proven to converge for ``tau <= 1/8``, OpenCV and
            TSN use 0.25).
        lambda_: weight of the data term, > 0; smaller gives smoother flow (OpenCV ``lambda``).
        theta: coupling between ``u`` and ``v``, > 0 (OpenCV ``theta``).
        scales: pyramid levels, >= 1 (OpenCV ``nscales``); fewer are used when a
            level would be under 16 pixels on a side.
        warps: warpings per level, >= 1 (OpenCV ``warps``).
        epsilon: stopping threshold, >= 0: a warp ends when a step's squared
            change of the flow summed over the level is at most
            ``epsilon^2 * h * w`` (OpenCV ``epsilon``); 0 runs every step.
        inner_iterations: steps per round, >= 1 (OpenCV ``innerIterations``).
        outer_iterations: rounds per warp, >= 1, each after a median filter
            (OpenCV ``outerIterations``).
        scale_step: size ratio of two levels, in (0, 1) (OpenCV ``scaleStep``).
        gamma: weight of the illumination-change term, >= 0, 0 turns it off
            (OpenCV ``gamma``; its extra unknown is not returned).
        median_filtering: side of the median filter applied to the flow at the
            start of each round: 0 or 1 = off, 3 or 5 (OpenCV ``medianFiltering``;
            ``cv2.medianBlur`` takes only 3 and 5 on float images).
        batch_size: pairs per device call, >= 1; a call's pairs are cut into
            batches of this size, the last one padded with copies of its last
            pair (they add no iteration) so that XLA compiles one shape.
            ``None``: 1 on the CPU (each pair its own call, ``threads`` at
            once), 64 on a GPU (a guess, not measured here: GPU memory grows
            by an estimated 20 MB per 340x256 pair of a batch).
        jit_compile: XLA. ``None``: yes (about 5x faster than the TensorFlow
            graph on 2 CPU cores, see ``benchmarks/README.md``, and each step
            fuses into a few kernels on a GPU), at the cost of one compilation
            per frame size and batch size (10-20 s on 2 CPU cores).
        threads: device calls run at once (Python threads), >= 1. ``None``:
            the number of CPU cores on the CPU (an XLA:CPU call uses one
            core), 1 on a GPU. Pass 1 when several processes share the CPU.
        check_every: steps between two evaluations of the stopping test by the
            loop, >= 1 (extra steps of stopped pairs are masked, so the result
            does not change). ``None``: 1 on the CPU, 5 on a GPU, where each
            evaluation is a device-to-host copy.

    Raises:
        ValueError: if an argument is out of range (the message quotes it).

    Example::

        tvl1 = TVL1Flow()
        flow = tvl1(prev_gray, next_gray)   # (N, H, W) uint8 each -> (N, H, W, 2) float32 tensor
    """

    def __init__(
        self,
        tau: float = 0.25,
        lambda_: float = 0.15,
        theta: float = 0.3,
        scales: int = 5,
        warps: int = 5,
        epsilon: float = 0.01,
        inner_iterations: int = 30,
        outer_iterations: int = 10,
        scale_step: float = 0.8,
        gamma: float = 0.0,
        median_filtering: int = 5,
        *,
        batch_size: Optional[int] = None,
        jit_compile: Optional[bool] = None,
        threads: Optional[int] = None,
        check_every: Optional[int] = None,
    ):
        self.tau = _check_number("tau", tau, low=0, low_open=True)
        self.lambda_ = _check_number("lambda_", lambda_, low=0, low_open=True)
        self.theta = _check_number("theta", theta, low=0, low_open=True)
        self.scales = _check_number("scales", scales, integer=True, low=1)
        self.warps = _check_number("warps", warps, integer=True, low=1)
        self.epsilon = _check_number("epsilon", epsilon, low=0)
        self.inner_iterations = _check_number("inner_iterations", inner_iterations, integer=True, low=1)
        self.outer_iterations = _check_number("outer_iterations", outer_iterations, integer=True, low=1)
        self.scale_step = _check_number("scale_step", scale_step, low=0, low_open=True, high=1, high_open=True)
        self.gamma = _check_number("gamma", gamma, low=0)
        if isinstance(median_filtering, bool) or median_filtering not in (0, 1, 3, 5):
            raise ValueError(
                "median_filtering must be 0 or 1 (off), 3 or 5 (the sizes cv2.medianBlur takes on "
                f"float images), got {median_filtering!r}"
            )
        self.median_filtering = int(median_filtering)
        if jit_compile is not None and not isinstance(jit_compile, bool):
            raise ValueError(f"jit_compile must be None, True or False, got {jit_compile!r}")
        on_gpu = bool(tf.config.list_logical_devices("GPU"))
        self.jit_compile = True if jit_compile is None else jit_compile
        self.batch_size = (64 if on_gpu else 1) if batch_size is None else _check_number(
            "batch_size", batch_size, integer=True, low=1)
        self.threads = (1 if on_gpu else _cpu_cores()) if threads is None else _check_number(
            "threads", threads, integer=True, low=1)
        self.check_every = (5 if on_gpu else 1) if check_every is None else _check_number(
            "check_every", check_every, integer=True, low=1)
        self._median_net = _median_network(self.median_filtering ** 2) if self.median_filtering > 1 else None
        self._functions: Dict[Tuple[int, int], object] = {}
        self._lock = threading.Lock()
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None

    def get_config(self) -> dict:
        """The constructor arguments, ``None`` ones resolved for this machine."""
        return dict(
            tau=self.tau, lambda_=self.lambda_, theta=self.theta, scales=self.scales, warps=self.warps,
            epsilon=self.epsilon, inner_iterations=self.inner_iterations,
            outer_iterations=self.outer_iterations, scale_step=self.scale_step, gamma=self.gamma,
            median_filtering=self.median_filtering, batch_size=self.batch_size,
            jit_compile=self.jit_compile, threads=self.threads, check_every=self.check_every,
        )

    def __repr__(self) -> str:
        return "TVL1Flow(" + ", ".join(f"{k}={v!r}" for k, v in self.get_config().items()) + ")"

    # ------------------------------------------------------------------ calling

    @staticmethod
    def _prepare(name: str, frames) -> tf.Tensor:
        """``frames`` as a float32 tensor ``(N, H, W)`` on OpenCV's 0-255 scale."""
        if isinstance(frames, (tf.Tensor, tf.Variable)):
            dtype, shape = np.dtype(frames.dtype.as_numpy_dtype), tuple(frames.shape)
        else:
            frames = np.asarray(frames)
            dtype, shape = frames.dtype, frames.shape
        if len(shape) != 3:
            hint = "; for one pair add a batch axis: frames[None]" if len(shape) == 2 else ""
            raise ValueError(f"{name} must be a batch of grayscale frames (N, H, W), got shape {shape}{hint}")
        if shape[1] < 3 or shape[2] < 3:
            raise ValueError(f"{name}: frames must be at least 3x3 pixels, got (H, W) = {shape[1:]}")
        if dtype == np.uint8:
            return tf.cast(tf.convert_to_tensor(frames), tf.float32)
        if not np.issubdtype(dtype, np.floating):
            raise ValueError(f"{name} must be uint8 (0-255) or float (0-1) grayscale frames, got dtype {dtype}")
        tensor = tf.cast(tf.convert_to_tensor(frames), tf.float32)
        if shape[0]:
            low, high = float(tf.reduce_min(tensor)), float(tf.reduce_max(tensor))
            if not (low >= 0.0 and high <= 1.0):  # also catches NaN
                raise ValueError(
                    f"{name}: float frames must lie in [0, 1] (OpenCV's convention: it multiplies them "
                    f"by 255), got values in [{low:g}, {high:g}]; pass uint8 for 0-255 frames"
                )
        return tensor * 255.0

    def __call__(self, prev, next) -> tf.Tensor:  # noqa: A002 - the names of cv2's calc(prev, next)
        """The flow from each frame of ``prev`` to the frame of ``next`` at the same index.

        Args:
            prev: frames ``i``, ``(N, H, W)`` grayscale: ``uint8`` 0-255, or float
                in [0, 1] (OpenCV's convention for float images); a NumPy array
                or a tensor; ``H, W >= 3``; ``N >= 0``.
            next: frames ``i + 1``, the same shape (the dtypes may differ).

        Returns:
            ``float32`` tensor ``(N, H, W, 2)`` in pixels: ``[..., 0]``
            horizontal (x, positive to the right), ``[..., 1]`` vertical (y,
            positive downwards), such that ``next[y + fy, x + fx] ~ prev[y, x]``
            (OpenCV's ``calc(prev, next)`` and
            :func:`keras_gated_tsn.data.flow.compute_flow`). ``.numpy()`` gives
            the array.

        Raises:
            ValueError: if a batch is not ``(N, H, W)`` of at least 3x3, the two
                differ in shape, the dtype is neither uint8 nor float, or float
                frames leave [0, 1].
        """
        i0 = self._prepare("prev", prev)
        i1 = self._prepare("next", next)
        if tuple(i0.shape) != tuple(i1.shape):
            raise ValueError(f"prev and next differ in shape: {tuple(i0.shape)} vs {tuple(i1.shape)}")
        n, height, width = (int(d) for d in i0.shape)
        if n == 0:
            return tf.zeros((0, height, width, 2), tf.float32)
        function = self._function(height, width)
        size = self.batch_size

        def run(start: int) -> tf.Tensor:
            a, b = i0[start : start + size], i1[start : start + size]
            count = int(a.shape[0])
            if count < size:  # pad with copies of the last pair: same iterations, one compiled shape
                a = tf.concat([a, tf.repeat(a[-1:], size - count, axis=0)], axis=0)
                b = tf.concat([b, tf.repeat(b[-1:], size - count, axis=0)], axis=0)
                return function(a, b)[:count]
            return function(a, b)

        starts = list(range(0, n, size))
        if self.threads > 1 and len(starts) > 1:
            parts = list(self._executor().map(run, starts))
        else:
            parts = [run(s) for s in starts]
        return parts[0] if len(parts) == 1 else tf.concat(parts, axis=0)

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="tvl1")
            return self._pool

    def _function(self, height: int, width: int):
        with self._lock:
            key = (height, width)
            if key not in self._functions:
                spec = tf.TensorSpec((None, height, width), tf.float32)
                self._functions[key] = tf.function(
                    self._flow, input_signature=[spec, spec], jit_compile=self.jit_compile, autograph=False
                )
            return self._functions[key]

    def __getstate__(self):  # picklable for worker processes: drop the functions, pool and lock
        state = dict(self.__dict__)
        state.update(_functions={}, _pool=None, _lock=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the graph

    def _flow(self, i0: tf.Tensor, i1: tf.Tensor) -> tf.Tensor:
        """``(N, H, W)`` float32 0-255 twice -> ``(N, H, W, 2)`` flow (OpenCV's ``calc``)."""
        sizes = _pyramid_sizes(i0.shape[1], i0.shape[2], self.scales, self.scale_step)
        pyramid = [(i0, i1)]
        by_factor = (1.0 / self.scale_step,) * 2
        for src, dst in zip(sizes[:-1], sizes[1:]):
            pyramid.append(tuple(_resize(image, src, dst, by_factor) for image in pyramid[-1]))
        components = 3 if self.gamma else 2  # u1, u2 (and u3 with gamma)
        h, w = sizes[-1]
        u = tf.zeros(tf.stack([components, tf.shape(i0)[0], h, w]), tf.float32)
        factor = tf.constant([1.0 / self.scale_step] * 2 + [1.0] * (components - 2), tf.float32)
        for level in range(len(sizes) - 1, -1, -1):
            u = self._one_level(*pyramid[level], u)
            if level:
                (h0, w0), (h, w) = sizes[level], sizes[level - 1]
                u = _resize(u, (h0, w0), (h, w), (h0 / h, w0 / w))
                u = u * factor[:, tf.newaxis, tf.newaxis, tf.newaxis]  # u3 is not scaled
        return tf.transpose(u[:2], [1, 2, 3, 0])

    def _one_level(self, i0: tf.Tensor, i1: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
        """OpenCV's ``procOneScale`` on a batch: ``u (C, N, h, w)`` -> refined ``u``."""
        h, w = i0.shape[1], i0.shape[2]
        n = tf.shape(i0)[0]
        scaled_epsilon = np.float32(self.epsilon * self.epsilon * h * w)
        l_t = np.float32(self.lambda_ * self.theta)
        taut = np.float32(self.tau / self.theta)
        theta = np.float32(self.theta)
        gamma = np.float32(self.gamma)
        inner, outer, check_every = self.inner_iterations, self.outer_iterations, self.check_every
        # Forward differences are 0 on the last column / row; so the dual variables stay 0 there,
        # and the backward divergence (zero before the first column / row) is a wrap-around roll.
        last_col = tf.constant(np.arange(w) < w - 1, tf.float32)
        last_row = tf.constant((np.arange(h) < h - 1)[:, np.newaxis], tf.float32)
        i1x, i1y = _centered_gradient(i1)
        images = tf.stack([i1, i1x, i1y], axis=-1)

        def step(active, count, u, px, py, direction, rho_c, inverse):
            """One of OpenCV's inner iterations, for the pairs active and under the count."""
            rho = rho_c + direction[0] * u[0] + direction[1] * u[1]
            if gamma:
                rho = rho + gamma * u[2]
            coefficient = tf.clip_by_value(-rho * inverse, -l_t, l_t)  # IPOL eq. 21, OpenCV's three cases
            div = (px - tf.roll(px, 1, axis=3)) + (py - tf.roll(py, 1, axis=2))
            u_new = u + coefficient[tf.newaxis] * direction + theta * div
            change = tf.reduce_sum(tf.square(u_new - u), axis=[0, 2, 3])  # (N,)
            ux = (tf.roll(u_new, -1, axis=3) - u_new) * last_col
            uy = (tf.roll(u_new, -1, axis=2) - u_new) * last_row
            norm = 1.0 + taut * tf.sqrt(tf.square(ux) + tf.square(uy))
            run = active & (count < inner)
            mask = run[tf.newaxis, :, tf.newaxis, tf.newaxis]
            u = tf.where(mask, u_new, u)
            px = tf.where(mask, (px + taut * ux) / norm, px)
            py = tf.where(mask, (py + taut * uy) / norm, py)
            active = active & ~(run & (change <= scaled_epsilon))
            return active, count + tf.cast(run, tf.int32), u, px, py

        def warp(k, u, px, py):
            warped = _warp_bicubic(images, u[0], u[1])
            i1w, i1wx, i1wy = warped[..., 0], warped[..., 1], warped[..., 2]
            grad = tf.square(i1wx) + tf.square(i1wy)
            rho_c = i1w - i1wx * u[0] - i1wy * u[1] - i0
            inverse = tf.where(grad > _FLT_EPSILON, 1.0 / grad, _FLAT_INVERSE)
            direction = tf.stack([i1wx, i1wy] + ([tf.fill(tf.shape(i1wx), gamma)] if gamma else []), axis=0)
            fields = (direction, rho_c, inverse)

            def round_(j, active, u, px, py):
                if self._median_net is not None:
                    filtered = _median_filter(u[:2], self.median_filtering, self._median_net)
                    if gamma:
                        filtered = tf.concat([filtered, u[2:]], axis=0)
                    u = tf.where(active[tf.newaxis, :, tf.newaxis, tf.newaxis], filtered, u)

                def steps(i, active, count, u, px, py):
                    state = (active, count, u, px, py)
                    for _ in range(check_every):
                        state = step(*state, *fields)
                    return (i + check_every,) + state

                _, active, _, u, px, py = tf.while_loop(
                    lambda i, active, *_: (i < inner) & tf.reduce_any(active),
                    steps, (0, active, tf.zeros([n], tf.int32), u, px, py),
                )
                return j + 1, active, u, px, py

            active = tf.ones([n], tf.bool)  # OpenCV starts every warp with error = FLT_MAX
            _, _, u, px, py = tf.while_loop(
                lambda j, active, *_: (j < outer) & tf.reduce_any(active), round_, (0, active, u, px, py)
            )
            return k + 1, u, px, py

        zeros = tf.zeros_like(u)
        _, u, _, _ = tf.while_loop(lambda k, *_: k < self.warps, warp, (0, u, zeros, zeros))
        return u
