"""Dense optical flow and its 8-bit encoding.

The temporal stream of TSN (and of the gated TSN, paper Sec. III) takes stacks
of optical-flow fields. Following TSN's extraction (``dense_flow``), the flow
between frame ``i`` and ``i + 1`` is computed on grayscale frames with TV-L1
(OpenCV's ``DualTVL1OpticalFlow``, default parameters), clipped at
``+-bound`` pixels (``bound = 20``) and stored as two 8-bit JPEG images, one per
component, mapped linearly so that 128 means no motion:

    v = round(255 * (f + bound) / (2 * bound)),  clipped to [0, 255]

DIS (``cv2.DISOpticalFlow``, medium preset) is offered as a much faster
alternative (about 100x on a CPU) of somewhat lower quality. ``tvl1-tf`` is
the same TV-L1 in TensorFlow (:class:`keras_gated_tsn.data.tvl1.TVL1Flow`),
batched over frame pairs, on a GPU when TensorFlow sees one: OpenCV's flow to
a mean end-point error of about 0.006 px (``benchmarks/README.md``).
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = [
    "FLOW_METHODS",
    "TensorFlowTVL1",
    "compute_flow",
    "create_flow_algorithm",
    "decode_flow",
    "encode_flow",
]

#: The optical-flow methods :func:`create_flow_algorithm` knows.
FLOW_METHODS = ("tvl1", "dis", "tvl1-tf")

#: Set in ``prepare``'s worker processes: one CPU core each, so the TensorFlow
#: TV-L1 runs one pair at a time there instead of one per core.
SINGLE_CORE = False


class TensorFlowTVL1:
    """:class:`keras_gated_tsn.data.tvl1.TVL1Flow` behind OpenCV's ``calc``.

    ``calc(prev, next, None)`` as a ``cv2.DenseOpticalFlow`` (one pair), and
    :meth:`calc_pairs` for many pairs in one call, which is how it is fast
    (on the CPU one pair per core at once; on a GPU a batch per call).
    ``pairs_per_call`` is how many pairs a caller should gather.
    """

    def __init__(self, single_core: bool = False):
        from keras_gated_tsn.data.tvl1 import TVL1Flow

        self.flow = TVL1Flow(threads=1) if single_core else TVL1Flow()
        self.pairs_per_call = max(4 * self.flow.threads, self.flow.batch_size)

    def calc(self, prev: np.ndarray, next: np.ndarray, flow=None) -> np.ndarray:  # noqa: A002 - cv2's names
        """The flow of one pair, ``(H, W, 2)`` float32 (see :func:`compute_flow`)."""
        return self.flow(prev[None], next[None])[0].numpy()

    def calc_pairs(self, prevs: Sequence[np.ndarray], nexts: Sequence[np.ndarray]) -> np.ndarray:
        """The flows of many pairs, ``(N, H, W, 2)`` float32."""
        return self.flow(np.stack(prevs), np.stack(nexts)).numpy()


@functools.lru_cache(maxsize=2)
def _tensorflow_tvl1(single_core: bool) -> TensorFlowTVL1:
    # One per process: it compiles once per frame size (10-20 s on a CPU).
    return TensorFlowTVL1(single_core)


def _check_method(method: str) -> str:
    if method not in FLOW_METHODS:
        raise ValueError(
            f"unknown optical-flow method {method!r}; expected one of "
            + ", ".join(repr(m) for m in FLOW_METHODS)
        )
    return method


def create_flow_algorithm(method: str = "tvl1") -> "cv2.DenseOpticalFlow":
    """Creates the OpenCV dense optical-flow object for ``method``.

    Create it once per video (or per worker) and pass it to
    :func:`compute_flow` for every frame pair: construction allocates buffers.
    The objects keep no state from one pair to the next. ``"tvl1-tf"`` gives
    the process's one :class:`TensorFlowTVL1` (compiled once per frame size).

    Args:
        method: ``"tvl1"``: ``cv2.optflow.DualTVL1OpticalFlow_create()`` with
            OpenCV's defaults (tau 0.25, lambda 0.15, 5 scales, 5 warps), as
            TSN; about 1 s per 340x256 pair on one CPU core. ``"dis"``:
            ``cv2.DISOpticalFlow_create(DISOPTICAL_FLOW_PRESET_MEDIUM)``, about
            10 ms per pair. ``"tvl1-tf"``: :class:`TensorFlowTVL1`, the same
            TV-L1 in TensorFlow (about 5 pairs/s on 2 CPU cores).

    Returns:
        A ``cv2.DenseOpticalFlow`` whose ``calc(prev, next, None)`` returns
        the flow.

    Raises:
        ValueError: if ``method`` is not one of :data:`FLOW_METHODS`.
    """
    _check_method(method)
    if method == "tvl1":
        return cv2.optflow.DualTVL1OpticalFlow_create()
    if method == "tvl1-tf":
        return _tensorflow_tvl1(SINGLE_CORE)
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def compute_flow(
    prev_gray: np.ndarray,
    next_gray: np.ndarray,
    method: str = "tvl1",
    algorithm: Optional["cv2.DenseOpticalFlow"] = None,
) -> np.ndarray:
    """Dense optical flow from one grayscale frame to the next.

    Args:
        prev_gray: frame ``i``, ``uint8`` of shape ``(H, W)``, 0-255.
        next_gray: frame ``i + 1``, same dtype and shape.
        method: ``"tvl1"`` or ``"dis"`` (see :func:`create_flow_algorithm`);
            used only when ``algorithm`` is ``None``.
        algorithm: an object from :func:`create_flow_algorithm` to reuse
            (recommended when computing many pairs); ``None`` creates one.

    Returns:
        ``float32`` array of shape ``(H, W, 2)``: the displacement in pixels,
        ``[..., 0]`` horizontal (x, positive to the right) and ``[..., 1]``
        vertical (y, positive downwards), such that
        ``next[y + fy, x + fx] ~ prev[y, x]``.

    Raises:
        ValueError: if ``method`` is unknown, or the frames are not 2-D
            ``uint8`` arrays of the same shape.
    """
    if algorithm is None:
        algorithm = create_flow_algorithm(method)
    for name, frame in (("prev_gray", prev_gray), ("next_gray", next_gray)):
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 2:
            raise ValueError(
                f"{name} must be a uint8 array of shape (H, W) (grayscale), got "
                + (f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else repr(type(frame)))
            )
    if prev_gray.shape != next_gray.shape:
        raise ValueError(
            f"prev_gray and next_gray differ in shape: {prev_gray.shape} vs {next_gray.shape}"
        )
    flow = algorithm.calc(prev_gray, next_gray, None)
    return np.asarray(flow, dtype=np.float32)


def _check_bound(bound: float) -> float:
    bound = float(bound)
    if not (bound > 0 and np.isfinite(bound)):
        raise ValueError(f"bound must be a positive number of pixels, got {bound!r}")
    return bound


def encode_flow(flow: np.ndarray, bound: float = 20.0) -> Tuple[np.ndarray, np.ndarray]:
    """Maps a flow field to two 8-bit images, TSN style.

    Each component ``f`` (pixels) becomes ``round(255 * (f + bound) / (2 * bound))``
    clipped to ``[0, 255]``: ``-bound`` and below give 0, ``+bound`` and above
    255, no motion 128 (127.5 rounds to even, as OpenCV's ``cvRound`` in
    TSN's ``dense_flow``). One step is ``2 * bound / 255`` pixels (0.157 px for
    ``bound = 20``). NaN is treated as no motion.

    Args:
        flow: ``float`` array of shape ``(H, W, 2)``, pixels, ``[..., 0]`` = x.
        bound: clipping bound in pixels, > 0.

    Returns:
        ``(x, y)``: two ``uint8`` arrays of shape ``(H, W)``, values 0-255.

    Raises:
        ValueError: if ``flow`` is not ``(H, W, 2)`` or ``bound`` is not positive.
    """
    bound = _check_bound(bound)
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {flow.shape}")
    scaled = (np.nan_to_num(flow.astype(np.float32), nan=0.0) + bound) * (255.0 / (2.0 * bound))
    encoded = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(encoded[..., 0]), np.ascontiguousarray(encoded[..., 1])


def decode_flow(x: np.ndarray, y: np.ndarray, bound: float = 20.0) -> np.ndarray:
    """Inverts :func:`encode_flow` (up to its quantisation).

    ``f = v * 2 * bound / 255 - bound``: 0 gives ``-bound``, 255 gives
    ``+bound``; 128 gives ``bound / 255`` (0.078 px for ``bound = 20``), not
    exactly 0. Values that were clipped stay at ``+-bound``.

    Args:
        x: ``uint8`` (or any numeric) array ``(H, W)``, encoded x component.
        y: same shape, encoded y component.
        bound: the bound used to encode, pixels, > 0.

    Returns:
        ``float32`` array of shape ``(H, W, 2)`` in pixels, within
        ``[-bound, bound]``.

    Raises:
        ValueError: if ``x`` and ``y`` differ in shape or ``bound`` is not positive.
    """
    bound = _check_bound(bound)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in shape: {x.shape} vs {y.shape}")
    scale = np.float32(2.0 * bound / 255.0)
    return np.stack([x, y], axis=-1) * scale - np.float32(bound)
