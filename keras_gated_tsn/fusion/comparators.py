"""Late-fusion comparators over score files, one registry.

Each comparator is a pure NumPy function of a test
:class:`~keras_gated_tsn.evaluation.scores.ScoreFile` (and, for the ones that
tune a setting, a validation score file) returning video-level scores of shape
(N, C); the predicted class is their arg-max. A comparator is registered once
with :func:`register_comparator` and then appears in the fusion table
(:mod:`keras_gated_tsn.fusion.table`), the ``gated-tsn fuse`` help and its
outputs. The ones here reproduce the methods the paper compares (Zhu, Zou,
Zhu, "Learning Gating ConvNet for Two-Stream based Methods in Action
Recognition", Sec. IV-B, Table III):

* single streams: the mean over the test views of the pre-softmax scores
  (Sec. IV-A, "Network Testing": "all predictions of crops in a video are
  averaged");
* evenly averaged and weighted averaged pre-softmax scores, eq. (2) with fixed
  weights, the weight grid-searched on a validation set; TSN's spatial:temporal
  = 1:1.5 (Wang et al.) as a named preset;
* SCI fusion: crop-level softmax probabilities weighted by their sparsity
  concentration index (Sun et al., FstCN, ICCV 2015, the paper's ref. [8]),
  then the two streams averaged 1:1 ("average fusion is added in stream level
  after its crop level probability fusion");
* gated fusion: the gating ConvNet's per-view fused scores
  ``w_rgb * G_rgb + w_flow * G_flow`` (eq. (2)) averaged over views;
* the gating ConvNet's own classifier (eq. (3)), the multi-task branch.

The linear-SVM fusion of Simonyan & Zisserman's two-stream ConvNets lives in
:mod:`keras_gated_tsn.fusion.svm` (it needs scikit-learn, imported lazily) and
registers itself from ``keras_gated_tsn.fusion``.

This module imports NumPy only (no TensorFlow).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from keras_gated_tsn.evaluation.scores import ScoreFile

#: TSN's fixed spatial:temporal weights (Wang et al., ECCV 2016; paper Sec. IV-D, Fig. 3).
TSN_WEIGHTS: Tuple[float, float] = (1.0, 1.5)

#: alpha in {0.00, 0.05, ..., 1.00} for alpha * S_rgb + (1 - alpha) * S_flow.
DEFAULT_WEIGHT_GRID: np.ndarray = np.round(np.arange(0, 1.0001, 0.05), 2)

_SCI_CHUNK = 128  # videos per block in the SCI computation (bounds float64 temporaries)


# --------------------------------------------------------------- comparators
def stream_scores(sf: ScoreFile, stream: str) -> np.ndarray:
    """Video-level scores of one stream: the mean of its per-view pre-softmax scores.

    Paper Sec. IV-A ("Network Testing"): the predictions of all crops of a
    video are averaged into the video-level result.

    Args:
        sf: the score file.
        stream: ``"rgb"`` or ``"flow"``.

    Returns:
        (N, C) float64 pre-softmax scores.

    Raises:
        ValueError: unknown stream, or the score file lacks it.
    """
    return np.mean(sf.stream(stream), axis=1, dtype=np.float64)


def weighted_average(sf: ScoreFile, rgb_weight: float, flow_weight: float) -> np.ndarray:
    """Fixed-weight fusion ``rgb_weight * S_rgb + flow_weight * S_flow``.

    ``S_rgb`` and ``S_flow`` are the view-averaged pre-softmax scores
    (:func:`stream_scores`); this is the paper's eq. (2) with weights fixed for
    every video, fused before softmax as in Sec. IV-B ("the predictions of the
    two streams before Softmax normalization are fused"). Only the ratio of the
    weights changes the arg-max.

    Args:
        sf: score file with both streams.
        rgb_weight: weight of the spatial stream, finite, >= 0.
        flow_weight: weight of the temporal stream, finite, >= 0; not both 0.

    Returns:
        (N, C) float64 fused pre-softmax scores.

    Raises:
        ValueError: a weight is negative or not finite, both are 0, or a stream
            is missing.
    """
    weights = np.array([rgb_weight, flow_weight], dtype=np.float64)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or not np.any(weights > 0):
        raise ValueError(
            f"fusion weights must be finite, >= 0 and not both 0, got rgb={rgb_weight!r}, flow={flow_weight!r}"
        )
    return weights[0] * stream_scores(sf, "rgb") + weights[1] * stream_scores(sf, "flow")


def average(sf: ScoreFile) -> np.ndarray:
    """Evenly averaged fusion, :func:`weighted_average` with weights 1:1.

    Returns:
        (N, C) float64 pre-softmax scores (the sum of the two streams' scores).
    """
    return weighted_average(sf, 1.0, 1.0)


def weighted_tsn(sf: ScoreFile) -> np.ndarray:
    """TSN's preset fusion, spatial:temporal = 1:1.5 (:data:`TSN_WEIGHTS`).

    Returns:
        (N, C) float64 pre-softmax scores.
    """
    return weighted_average(sf, *TSN_WEIGHTS)


def _check_grid(grid) -> np.ndarray:
    alphas = np.asarray(grid, dtype=np.float64).ravel()
    if alphas.size == 0 or not np.all(np.isfinite(alphas)) or alphas.min() < 0 or alphas.max() > 1:
        raise ValueError(f"grid must be a non-empty sequence of weights in [0, 1], got {grid!r}")
    return alphas


def _grid_correct_counts(val_sf: ScoreFile, alphas: np.ndarray) -> np.ndarray:
    if val_sf.num_videos == 0:
        raise ValueError("cannot grid-search a weight on an empty validation score file")
    s_rgb = stream_scores(val_sf, "rgb")
    s_flow = stream_scores(val_sf, "flow")
    labels = val_sf.labels
    return np.array(
        [np.count_nonzero(np.argmax(a * s_rgb + (1.0 - a) * s_flow, axis=1) == labels) for a in alphas],
        dtype=np.int64,
    )


def grid_search_curve(val_sf: ScoreFile, grid=DEFAULT_WEIGHT_GRID) -> Tuple[np.ndarray, np.ndarray]:
    """Validation top-1 of ``alpha * S_rgb + (1 - alpha) * S_flow`` for each alpha.

    Args:
        val_sf: VALIDATION score file with both streams.
        grid: 1-D weights alpha in [0, 1].

    Returns:
        ``(alphas, top1)``: two (G,) float64 arrays, top-1 in [0, 1].

    Raises:
        ValueError: bad grid, a stream missing, or no videos.
    """
    alphas = _check_grid(grid)
    return alphas, _grid_correct_counts(val_sf, alphas) / val_sf.num_videos


def grid_search_weight(val_sf: ScoreFile, grid=DEFAULT_WEIGHT_GRID) -> float:
    """The RGB weight alpha maximising validation top-1 of ``alpha*S_rgb + (1-alpha)*S_flow``.

    Paper Sec. IV-B (Table III): "the best weight is selected with grid search
    on the validation set". Use a validation score file, never the test one:
    a weight tuned on test inflates the comparison with gated fusion. Ties in
    accuracy go to the alpha closest to 0.5, then to the lower alpha.

    Args:
        val_sf: VALIDATION score file with both streams.
        grid: 1-D weights alpha in [0, 1]; default 0, 0.05, ..., 1.

    Returns:
        alpha in [0, 1]; the flow weight is ``1 - alpha``.

    Raises:
        ValueError: bad grid, a stream missing, or no videos.
    """
    alphas = _check_grid(grid)
    counts = _grid_correct_counts(val_sf, alphas)
    distance = np.round(np.abs(alphas - 0.5), 9)  # 0.45 and 0.55 tie exactly
    best = min(range(alphas.size), key=lambda i: (-counts[i], distance[i], alphas[i]))
    return float(alphas[best])


def softmax(scores, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (the maximum is subtracted before ``exp``).

    Args:
        scores: real array of pre-softmax scores.
        axis: the class axis.

    Returns:
        float64 probabilities of the same shape, summing to 1 along ``axis``.
    """
    x = np.asarray(scores, dtype=np.float64)
    x = x - np.max(x, axis=axis, keepdims=True)
    np.exp(x, out=x)
    x /= np.sum(x, axis=axis, keepdims=True)
    return x


def sparsity_concentration_index(probs, axis: int = -1) -> np.ndarray:
    """SCI(p) = (C * max_i p_i - 1) / (C - 1) of probability vectors.

    Sun et al., "Human Action Recognition using Factorized Spatio-Temporal
    Convolutional Networks" (FstCN, ICCV 2015), cited by the paper as [8]: 0 for
    a uniform distribution, 1 for a one-hot one, so confident (sparse) crop
    predictions get more weight.

    Args:
        probs: probabilities, summing to 1 along ``axis``; ``C = probs.shape[axis] >= 2``.
        axis: the class axis.

    Returns:
        float64 array with ``axis`` removed, values clipped to [0, 1].

    Raises:
        ValueError: fewer than 2 classes.
    """
    p = np.asarray(probs, dtype=np.float64)
    c = p.shape[axis]
    if c < 2:
        raise ValueError(f"the sparsity concentration index needs C >= 2 classes, got C = {c}")
    return np.clip((c * np.max(p, axis=axis) - 1.0) / (c - 1.0), 0.0, 1.0)


def sci_stream_scores(sf: ScoreFile, stream: str) -> np.ndarray:
    """SCI-weighted crop-level probability fusion of one stream.

    For each video, with per-view probabilities ``p_v = softmax(scores_v)`` and
    ``s_v = SCI(p_v)``, returns ``sum_v s_v p_v / sum_v s_v``; when every
    ``s_v`` is 0 (all views uniform) the plain mean of ``p_v``.

    Args:
        sf: the score file.
        stream: ``"rgb"`` or ``"flow"``.

    Returns:
        (N, C) float64 probabilities, rows summing to 1.

    Raises:
        ValueError: unknown or missing stream, or C < 2.
    """
    scores = sf.stream(stream)
    n, _, c = scores.shape
    out = np.empty((n, c), dtype=np.float64)
    for start in range(0, n, _SCI_CHUNK):
        p = softmax(scores[start : start + _SCI_CHUNK], axis=-1)  # (n', V, C)
        s = sparsity_concentration_index(p, axis=-1)  # (n', V)
        total = s.sum(axis=1)  # (n',)
        weighted = np.einsum("nv,nvc->nc", s, p)
        plain = p.mean(axis=1)
        safe = np.where(total > 0, total, 1.0)[:, None]
        out[start : start + _SCI_CHUNK] = np.where(total[:, None] > 0, weighted / safe, plain)
    return out


def sci_fusion(sf: ScoreFile) -> np.ndarray:
    """SCI fusion of the two streams, as the paper runs it in Table III.

    Each stream's crop-level probabilities are fused with SCI weights
    (:func:`sci_stream_scores`), then "average fusion is added in stream level
    after its crop level probability fusion" (paper Sec. IV-B): the two
    streams' video probabilities are averaged 1:1.

    Args:
        sf: score file with both streams, C >= 2.

    Returns:
        (N, C) float64 probabilities, rows summing to 1.

    Raises:
        ValueError: a stream is missing, or C < 2.
    """
    return 0.5 * (sci_stream_scores(sf, "rgb") + sci_stream_scores(sf, "flow"))


def gated(sf: ScoreFile) -> np.ndarray:
    """Gated fusion: the gating ConvNet's per-view fused scores averaged over views.

    The per-view fused scores are ``w_rgb * G_rgb + w_flow * G_flow`` with the
    gate's sample-specific weights (paper Sec. III-A, eq. (2); Sec. IV-A: the
    gated fusion is applied to each frame/flow pair, then all crops averaged).

    Args:
        sf: score file with the ``fused`` field.

    Returns:
        (N, C) float64 pre-softmax scores.

    Raises:
        ValueError: the score file has no ``fused`` scores.
    """
    if sf.fused is None:
        raise ValueError("the score file has no 'fused' scores (it was written without a gating ConvNet)")
    return np.mean(sf.fused, axis=1, dtype=np.float64)


def gating_classifier(sf: ScoreFile) -> np.ndarray:
    """The gating ConvNet's classification branch alone, averaged over views.

    Its per-view pre-softmax scores ``G_c`` (eq. (3)); the branch the paper's
    multi-task learning adds (Sec. III-B, Table IV).

    Returns:
        (N, C) float64 pre-softmax scores.

    Raises:
        ValueError: the score file has no ``gating_classifier`` scores.
    """
    if sf.gating_classifier is None:
        raise ValueError("the score file has no 'gating_classifier' scores (it was written without a gate)")
    return np.mean(sf.gating_classifier, axis=1, dtype=np.float64)


# ------------------------------------------------------------------ registry
class Skipped(Exception):
    """Raised by a comparator that cannot run on the given score files; its
    message becomes the table row's note."""


@dataclasses.dataclass
class Fused:
    """What a comparator returns.

    Attributes:
        scores: (N, C) float video-level scores (pre-softmax or probabilities).
        rgb_weight, flow_weight: the fixed weights used, where there are some.
        note: what the table shows beside the row (the tuned setting...).
    """

    scores: np.ndarray
    rgb_weight: Optional[float] = None
    flow_weight: Optional[float] = None
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Comparator:
    """A registered comparator.

    Attributes:
        name: the table's ``method`` column.
        description: one line for the ``fuse --help`` text.
        needs: score-file fields the test (and validation) file must hold.
        fuse: ``fuse(test_sf, val_sf) -> Fused``; ``val_sf`` may be None (and
            is None unless ``uses_validation``); raises :class:`Skipped` when
            it cannot run.
        uses_validation: it tunes a setting on the validation score file (the
            table then says on which videos, and the note which setting).
    """

    name: str
    description: str
    needs: Tuple[str, ...]
    fuse: Callable[[ScoreFile, Optional[ScoreFile]], Fused]
    uses_validation: bool = False


_COMPARATORS: Dict[str, Comparator] = {}


def register_comparator(name: str, description: str, *, needs: Tuple[str, ...] = ("rgb", "flow"),
                        uses_validation: bool = False, before: Optional[str] = None):
    """Decorator: registers ``fuse(test_sf, val_sf) -> Fused`` as comparator ``name``.

    Rows of the fusion table come in registration order, or just before the
    row ``before`` where given (a comparator registered from another module,
    such as :mod:`keras_gated_tsn.fusion.svm`, can so sit beside the fusions
    it competes with instead of after the gate's rows).

    The fusion table hands ``val_sf`` only to a comparator registered with
    ``uses_validation=True`` (the others get None), so a setting is never
    tuned without the table saying on which videos; no comparator may read
    ``test_sf.labels``.

    Raises:
        ValueError: if ``name`` is taken, or ``before`` is not a registered name.
    """

    def register(fuse):
        if name in _COMPARATORS:
            raise ValueError(f"a fusion comparator named {name!r} is already registered")
        if before is not None and before not in _COMPARATORS:
            raise ValueError(
                f"cannot register {name!r} before {before!r}: no such comparator; registered: {list(_COMPARATORS)}"
            )
        comparator = Comparator(name, description, tuple(needs), fuse, uses_validation)
        if before is None:
            _COMPARATORS[name] = comparator
        else:
            items = list(_COMPARATORS.items())
            at = [key for key, _ in items].index(before)
            items.insert(at, (name, comparator))
            _COMPARATORS.clear()
            _COMPARATORS.update(items)
        return fuse

    return register


def registered_comparators() -> Tuple[Comparator, ...]:
    """The registered comparators, in table order."""
    return tuple(_COMPARATORS.values())


def get_comparator(name: str) -> Comparator:
    """The comparator registered as ``name``.

    Raises:
        ValueError: for an unknown name, listing the registered ones.
    """
    if name not in _COMPARATORS:
        raise ValueError(f"unknown fusion comparator {name!r}; registered: {list(_COMPARATORS)}")
    return _COMPARATORS[name]


@register_comparator("rgb", "spatial (RGB) stream alone: pre-softmax scores averaged over the test views",
                     needs=("rgb",))
def _rgb(test_sf, val_sf):
    return Fused(stream_scores(test_sf, "rgb"))


@register_comparator("flow", "temporal (optical flow) stream alone: pre-softmax scores averaged over the test views",
                     needs=("flow",))
def _flow(test_sf, val_sf):
    return Fused(stream_scores(test_sf, "flow"))


@register_comparator("average", "evenly averaged pre-softmax scores of the two streams, 1:1")
def _average(test_sf, val_sf):
    return Fused(average(test_sf), 1.0, 1.0)


@register_comparator(
    "weighted",
    "alpha*S_rgb + (1-alpha)*S_flow, alpha grid-searched (0, 0.05, ..., 1) for top-1 on the VALIDATION "
    "score file (paper Sec. IV-B); needs --val-scores; the tuned_on column says which videos it was tuned on",
    uses_validation=True,
)
def _weighted(test_sf, val_sf):
    if val_sf is None:
        raise Skipped(
            "skipped: needs a validation score file (--val-scores) to grid-search the weight; "
            "it is never tuned on the test scores themselves"
        )
    if val_sf.num_videos == 0:
        raise Skipped("skipped: the validation score file has no videos")
    alpha = grid_search_weight(val_sf)
    val_top1 = 100.0 * float(
        np.mean(np.argmax(weighted_average(val_sf, alpha, 1.0 - alpha), axis=1) == val_sf.labels)
    )
    return Fused(
        weighted_average(test_sf, alpha, 1.0 - alpha), alpha, 1.0 - alpha,
        note=f"alpha = {alpha:g} grid-searched on the validation score file "
        f"({val_sf.num_videos} videos, validation top-1 {val_top1:.2f}%)",
    )


@register_comparator("weighted_tsn", "TSN's fixed weights, spatial:temporal = 1:1.5")
def _weighted_tsn(test_sf, val_sf):
    return Fused(weighted_tsn(test_sf), *TSN_WEIGHTS, note="TSN preset 1:1.5")


@register_comparator(
    "sci",
    "per-view softmax probabilities weighted by their sparsity concentration index (Sun et al., FstCN), "
    "then the two streams averaged 1:1",
)
def _sci(test_sf, val_sf):
    if test_sf.num_classes < 2:
        raise Skipped("skipped: SCI needs at least 2 classes")
    return Fused(sci_fusion(test_sf), note="crop-level SCI weighting, then streams averaged 1:1")


@register_comparator(
    "gated",
    "gating ConvNet: per-view w_rgb*G_rgb + w_flow*G_flow (paper eq. (2)) averaged over views; "
    "only when the score file has gate outputs",
    needs=("fused",),
)
def _gated(test_sf, val_sf):
    return Fused(gated(test_sf), note=_gate_weight_note(test_sf))


@register_comparator(
    "gating_classifier",
    "the gating ConvNet's own classification branch G_c (eq. (3)), averaged over views; only when the "
    "score file has gate outputs",
    needs=("gating_classifier",),
)
def _gating_classifier(test_sf, val_sf):
    return Fused(gating_classifier(test_sf), note="the gate's multi-task classification branch alone")


def _gate_weight_note(sf: ScoreFile) -> str:
    if sf.fusion_weights is None:
        return "sample-specific gate weights (not stored in the score file)"
    per_video = np.mean(sf.fusion_weights, axis=1, dtype=np.float64)  # (N, 2)
    mean = per_video.mean(axis=0)
    std = per_video.std(axis=0)
    return (
        f"gate weights (mean +/- std over {sf.num_videos} test videos, views averaged): "
        f"w_rgb {mean[0]:.3f} +/- {std[0]:.3f}, w_flow {mean[1]:.3f} +/- {std[1]:.3f}"
    )
