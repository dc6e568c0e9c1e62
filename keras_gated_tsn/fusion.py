"""Late-fusion comparators over score files, and the ``gated-tsn fuse`` command.

Each comparator is a pure NumPy function of a
:class:`~keras_gated_tsn.evaluation.scores.ScoreFile` returning video-level
scores of shape (N, C); the predicted class is their arg-max. They reproduce
the fusion methods the paper compares (Zhu, Zou, Zhu, "Learning Gating ConvNet
for Two-Stream based Methods in Action Recognition", Sec. IV-B, Table III):

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
  ``w_rgb * G_rgb + w_flow * G_flow`` (eq. (2)) averaged over views.

This module imports NumPy only (no TensorFlow), so ``gated-tsn fuse`` starts fast.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import textwrap
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from keras_gated_tsn.evaluation.metrics import mean_class_accuracy, top1_accuracy
from keras_gated_tsn.atomic import atomic_write
from keras_gated_tsn.evaluation.scores import ScoreFile, load_scores

__all__ = [
    "DEFAULT_WEIGHT_GRID",
    "METHOD_DESCRIPTIONS",
    "ROW_FIELDS",
    "TSN_WEIGHTS",
    "add_fuse_parser",
    "average",
    "default_out_prefix",
    "fusion_table",
    "format_markdown",
    "gated",
    "grid_search_curve",
    "grid_search_weight",
    "run_fuse",
    "sci_fusion",
    "sci_stream_scores",
    "softmax",
    "sparsity_concentration_index",
    "stream_scores",
    "weighted_average",
    "weighted_tsn",
    "write_csv",
    "write_json",
]

#: TSN's fixed spatial:temporal weights (Wang et al., ECCV 2016; paper Sec. IV-D, Fig. 3).
TSN_WEIGHTS: Tuple[float, float] = (1.0, 1.5)

#: alpha in {0.00, 0.05, ..., 1.00} for alpha * S_rgb + (1 - alpha) * S_flow.
DEFAULT_WEIGHT_GRID: np.ndarray = np.round(np.arange(0, 1.0001, 0.05), 2)

#: Keys of a fusion-table row, in column order.
ROW_FIELDS: Tuple[str, ...] = ("method", "rgb_weight", "flow_weight", "top1", "mean_class_accuracy", "note")

#: One line per fusion-table row, in table order (also the ``fuse --help`` text).
METHOD_DESCRIPTIONS: Dict[str, str] = {
    "rgb": "spatial (RGB) stream alone: pre-softmax scores averaged over the test views",
    "flow": "temporal (optical flow) stream alone: pre-softmax scores averaged over the test views",
    "average": "evenly averaged pre-softmax scores of the two streams, 1:1",
    "weighted": "alpha*S_rgb + (1-alpha)*S_flow, alpha grid-searched (0, 0.05, ..., 1) for top-1 "
    "on the VALIDATION score file (paper Sec. IV-B); needs --val-scores, never tuned on test",
    "weighted_tsn": "TSN's fixed weights, spatial:temporal = 1:1.5",
    "sci": "per-view softmax probabilities weighted by their sparsity concentration index "
    "(Sun et al., FstCN), then the two streams averaged 1:1",
    "gated": "gating ConvNet: per-view w_rgb*G_rgb + w_flow*G_flow (paper eq. (2)) averaged over "
    "views; only when the score file has gate outputs",
}

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


# --------------------------------------------------------------------- table
def _row(method: str, rgb_weight=None, flow_weight=None, top1=None, mca=None, note: str = "") -> Dict[str, Any]:
    return {
        "method": method,
        "rgb_weight": None if rgb_weight is None else float(rgb_weight),
        "flow_weight": None if flow_weight is None else float(flow_weight),
        "top1": top1,
        "mean_class_accuracy": mca,
        "note": note,
    }


def _scored_row(method, scores, labels, rgb_weight=None, flow_weight=None, note="") -> Dict[str, Any]:
    return _row(
        method,
        rgb_weight,
        flow_weight,
        100.0 * top1_accuracy(scores, labels),
        100.0 * mean_class_accuracy(scores, labels, num_classes=scores.shape[1]),
        note,
    )


def _check_same_classes(test_sf: ScoreFile, val_sf: ScoreFile) -> None:
    a, b = test_sf.class_names, val_sf.class_names
    if a.shape != b.shape:
        raise ValueError(
            f"the validation and test score files have different class lists "
            f"({b.shape[0]} vs {a.shape[0]} classes)"
        )
    differ = np.flatnonzero(a != b)
    if differ.size:
        i = int(differ[0])
        raise ValueError(
            f"the validation and test score files have different class lists: "
            f"class {i} is {str(b[i])!r} in validation, {str(a[i])!r} in test"
        )


def fusion_table(test_sf: ScoreFile, val_sf: Optional[ScoreFile] = None) -> List[Dict[str, Any]]:
    """Top-1 and mean class accuracy of every fusion comparator on a test score file.

    The paper's Table III comparison (gated vs. weighted average vs. SCI) plus
    the single streams, even averaging and TSN's 1:1.5 preset.

    Rows, in this order (:data:`METHOD_DESCRIPTIONS`): ``rgb``, ``flow``,
    ``average``, ``weighted``, ``weighted_tsn``, ``sci``, and ``gated`` when
    ``test_sf`` has fused scores. A row that cannot be computed stays in the
    table with ``top1 = mean_class_accuracy = None`` and the reason in
    ``note``: ``weighted`` without ``val_sf`` (its weight is never tuned on the
    test set), and every row needing a stream the score file lacks.

    Args:
        test_sf: the test score file.
        val_sf: optional validation score file for the ``weighted`` row's grid
            search; same class list as ``test_sf``.

    Returns:
        List of dicts with keys :data:`ROW_FIELDS`: ``method`` (str),
        ``rgb_weight`` / ``flow_weight`` (float, or None where not a fixed
        weight), ``top1`` / ``mean_class_accuracy`` (float percent in
        [0, 100], or None when skipped), ``note`` (str, possibly empty).

    Raises:
        ValueError: invalid score files, no test videos, or the class lists of
            validation and test differ.
    """
    test_sf.validate()
    if test_sf.num_videos == 0:
        raise ValueError("the test score file has no videos")
    if val_sf is not None:
        val_sf.validate()
        _check_same_classes(test_sf, val_sf)
    labels = test_sf.labels
    have = set(test_sf.streams)
    both = have == {"rgb", "flow"}
    missing = ", ".join(repr(s) for s in ("rgb", "flow") if s not in have)
    skip_two = f"skipped: needs both streams, the score file has no {missing} scores"
    rows: List[Dict[str, Any]] = []

    for stream in ("rgb", "flow"):
        if stream in have:
            rows.append(_scored_row(stream, stream_scores(test_sf, stream), labels, note=""))
        else:
            rows.append(_row(stream, note=f"skipped: the score file has no {stream!r} scores"))

    if both:
        rows.append(_scored_row("average", average(test_sf), labels, 1.0, 1.0))
    else:
        rows.append(_row("average", 1.0, 1.0, note=skip_two))

    if not both:
        rows.append(_row("weighted", note=skip_two))
    elif val_sf is None:
        rows.append(
            _row(
                "weighted",
                note="skipped: needs a validation score file (--val-scores) to grid-search "
                "the weight; it is never tuned on the test set",
            )
        )
    elif set(val_sf.streams) != {"rgb", "flow"}:
        rows.append(_row("weighted", note="skipped: the validation score file lacks a stream"))
    elif val_sf.num_videos == 0:
        rows.append(_row("weighted", note="skipped: the validation score file has no videos"))
    else:
        alpha = grid_search_weight(val_sf)
        val_top1 = 100.0 * top1_accuracy(weighted_average(val_sf, alpha, 1.0 - alpha), val_sf.labels)
        rows.append(
            _scored_row(
                "weighted",
                weighted_average(test_sf, alpha, 1.0 - alpha),
                labels,
                alpha,
                1.0 - alpha,
                note=f"alpha = {alpha:g} grid-searched on the validation score file "
                f"({val_sf.num_videos} videos, validation top-1 {val_top1:.2f}%)",
            )
        )

    if both:
        rows.append(_scored_row("weighted_tsn", weighted_tsn(test_sf), labels, *TSN_WEIGHTS, note="TSN preset 1:1.5"))
        if test_sf.num_classes >= 2:
            rows.append(
                _scored_row(
                    "sci", sci_fusion(test_sf), labels, note="crop-level SCI weighting, then streams averaged 1:1"
                )
            )
        else:
            rows.append(_row("sci", note="skipped: SCI needs at least 2 classes"))
    else:
        rows.append(_row("weighted_tsn", *TSN_WEIGHTS, note=skip_two))
        rows.append(_row("sci", note=skip_two))

    if test_sf.fused is not None:
        rows.append(_scored_row("gated", gated(test_sf), labels, note=_gate_weight_note(test_sf)))
    return rows


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


# -------------------------------------------------------------------- output
def _fmt_weight(value) -> str:
    return "-" if value is None else f"{value:g}"


def _fmt_percent(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_markdown(rows: Sequence[Dict[str, Any]]) -> str:
    """A Markdown table of fusion-table rows.

    Args:
        rows: rows as returned by :func:`fusion_table`.

    Returns:
        The table text (header, separator, one line per row, trailing newline);
        accuracies in percent with 2 decimals, ``-`` where not available.
    """
    header = ["Method", "RGB weight", "Flow weight", "Top-1 (%)", "Mean class acc. (%)", "Note"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---:", "---:", "---:", "---:", "---"]) + "|",
    ]
    for row in rows:
        cells = [
            str(row["method"]),
            _fmt_weight(row.get("rgb_weight")),
            _fmt_weight(row.get("flow_weight")),
            _fmt_percent(row.get("top1")),
            _fmt_percent(row.get("mean_class_accuracy")),
            str(row.get("note") or "").replace("|", "\\|"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: str | os.PathLike, rows: Sequence[Dict[str, Any]]) -> str:
    """Writes rows as CSV (header :data:`ROW_FIELDS`; empty cell for None), atomically.

    Accuracies are written in percent at full precision.

    Args:
        path: destination file; its folder must exist.
        rows: rows as returned by :func:`fusion_table`.

    Returns:
        ``path`` as a string.

    Raises:
        OSError: the folder does not exist or is not writable.
    """
    path = os.fspath(path)

    def write(handle):
        writer = csv.DictWriter(handle, fieldnames=list(ROW_FIELDS), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in ROW_FIELDS})

    atomic_write(path, write, binary=False)
    return path


def write_json(path: str | os.PathLike, rows: Sequence[Dict[str, Any]]) -> str:
    """Writes rows as a JSON list of objects (None as null), atomically.

    Args:
        path: destination file; its folder must exist.
        rows: rows as returned by :func:`fusion_table`.

    Returns:
        ``path`` as a string.

    Raises:
        OSError: the folder does not exist or is not writable.
        ValueError: a value is NaN or not JSON-serializable.
    """
    path = os.fspath(path)
    text = json.dumps([dict(row) for row in rows], indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda handle: handle.write(text), binary=False)
    return path


# ----------------------------------------------------------------------- CLI
_FUSE_DESCRIPTION = """\
Compare late-fusion methods on a test score file (.npz written by the
evaluation step: per-view pre-softmax scores of the RGB and flow streams and,
for a gated model, its fused scores and gate weights). Prints a Markdown table
of top-1 and mean class accuracy (%) and writes it as PREFIX.csv and PREFIX.json.

rows:
"""

_FUSE_EPILOG = """\
example:
  gated-tsn fuse scores/ucf101_split1_test.npz --val-scores scores/ucf101_split1_val.npz \\
      --out results/split1_fusion
"""


def add_fuse_parser(subparsers) -> argparse.ArgumentParser:
    """Registers the ``fuse`` subcommand on an argparse ``subparsers`` object.

    Sets ``func=run_fuse`` as the parser's default, so a CLI can dispatch with
    ``args.func(args)``.

    Args:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.

    Returns:
        The ``fuse`` sub-parser.
    """
    rows = "".join(
        textwrap.fill(text, width=88, initial_indent=f"  {name:<13} ", subsequent_indent=" " * 16, break_on_hyphens=False) + "\n"
        for name, text in METHOD_DESCRIPTIONS.items()
    )
    parser = subparsers.add_parser(
        "fuse",
        help="compare late-fusion methods (average, weighted, SCI, gated) on a score file",
        description=_FUSE_DESCRIPTION + rows,
        epilog=_FUSE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scores", help="test score file (.npz)")
    parser.add_argument(
        "--val-scores",
        default=None,
        metavar="FILE",
        help="validation score file (.npz) on which the 'weighted' row's weight is grid-searched; "
        "without it that row is skipped",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="PREFIX",
        help="write PREFIX.csv and PREFIX.json (default: <scores folder>/<scores stem>_fusion)",
    )
    parser.set_defaults(func=run_fuse)
    return parser


def default_out_prefix(scores_path: str | os.PathLike) -> str:
    """``<folder>/<stem>_fusion`` for a score file ``<folder>/<stem>.npz``."""
    scores_path = os.fspath(scores_path)
    folder = os.path.dirname(scores_path)
    stem = os.path.basename(scores_path)
    if stem.lower().endswith(".npz"):
        stem = stem[: -len(".npz")]
    return os.path.join(folder, stem + "_fusion")


def run_fuse(args: argparse.Namespace) -> int:
    """Runs ``gated-tsn fuse``: loads the score files, prints the table, writes CSV/JSON.

    Args:
        args: parsed arguments with ``scores``, ``val_scores`` and ``out``.

    Returns:
        0 on success; 2 (message on stderr) when a score file is missing or
        invalid, the validation and test class lists differ, or the outputs
        cannot be written.
    """
    try:
        test_sf = load_scores(args.scores)
        val_sf = load_scores(args.val_scores) if getattr(args, "val_scores", None) else None
        rows = fusion_table(test_sf, val_sf)
    except (FileNotFoundError, ValueError) as err:
        print(f"gated-tsn fuse: error: {err}", file=sys.stderr)
        return 2
    prefix = getattr(args, "out", None) or default_out_prefix(args.scores)
    csv_path, json_path = prefix + ".csv", prefix + ".json"
    try:
        folder = os.path.dirname(os.path.abspath(prefix))
        os.makedirs(folder, exist_ok=True)
        write_csv(csv_path, rows)
        write_json(json_path, rows)
    except OSError as err:
        print(f"gated-tsn fuse: error: cannot write {prefix}.csv/.json: {err}", file=sys.stderr)
        return 2
    print(
        f"Fusion on {args.scores}: {test_sf.num_videos} videos, {test_sf.num_classes} classes, "
        f"{test_sf.num_views} views per video"
    )
    print()
    print(format_markdown(rows))
    print(f"Wrote {csv_path}")
    print(f"Wrote {json_path}")
    return 0
