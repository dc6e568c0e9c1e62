"""Classification metrics over video-level scores or predictions (pure NumPy).

Every function accepts either scores of shape (N, C) (any real dtype; the
prediction is the arg-max, ties going to the lowest class index as in
``np.argmax``) or integer predictions of shape (N,), together with integer
ground-truth labels of shape (N,) in ``[0, C)``. Accuracies are fractions in
``[0, 1]``; multiply by 100 for the percentages of the paper's tables.

The paper (Tables I-V) reports top-1 accuracy on UCF101; TSN additionally
reports mean class accuracy (mean of per-class recall), which differs from
top-1 when the classes are imbalanced.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = [
    "confusion_matrix",
    "mean_class_accuracy",
    "per_class_accuracy",
    "predictions",
    "score_report",
    "top1_accuracy",
    "topk_accuracy",
]


def predictions(scores_or_preds) -> np.ndarray:
    """Predicted classes from scores or predictions.

    Args:
        scores_or_preds: (N, C) real scores (pre- or post-softmax), or (N,)
            integer predictions.

    Returns:
        (N,) int64 predicted class indices; for scores the arg-max over C, ties
        to the lowest index.

    Raises:
        ValueError: not 1-D integers or 2-D reals, or NaN scores.
    """
    array = np.asarray(scores_or_preds)
    if array.ndim == 2:
        if array.dtype.kind not in "fiub":
            raise ValueError(f"scores must be real numbers, got dtype {array.dtype}")
        if array.shape[1] < 1:
            raise ValueError(f"scores must have shape (N, C) with C >= 1, got {array.shape}")
        if array.dtype.kind == "f" and np.isnan(array).any():
            raise ValueError("scores contain NaN")
        return np.argmax(array, axis=1).astype(np.int64)
    if array.ndim == 1:
        if array.size and array.dtype.kind not in "iu":
            raise ValueError(f"1-D predictions must be integers, got dtype {array.dtype}")
        return array.astype(np.int64)
    raise ValueError(f"expected (N, C) scores or (N,) predictions, got shape {array.shape}")


def _labels(labels, n: int) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(f"labels must have shape (N,) = ({n},), got {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers, got dtype {array.dtype}")
    if n == 0:
        raise ValueError("accuracy of an empty set (N = 0) is undefined")
    if array.min() < 0:
        raise ValueError(f"labels must be >= 0, got {int(array.min())}")
    return array.astype(np.int64)


def top1_accuracy(scores_or_preds, labels) -> float:
    """Fraction of videos whose predicted class is the label.

    Args:
        scores_or_preds: (N, C) scores or (N,) integer predictions.
        labels: (N,) integer ground truth, 0-based.

    Returns:
        Top-1 accuracy in [0, 1].

    Raises:
        ValueError: shapes disagree, N = 0, or non-integer labels.
    """
    preds = predictions(scores_or_preds)
    truth = _labels(labels, preds.shape[0])
    return float(np.mean(preds == truth))


def topk_accuracy(scores, labels, k: int = 5) -> float:
    """Fraction of videos whose label is among the ``k`` highest scores.

    Ties are ranked as ``np.argmax`` breaks them (equal scores: lower class
    index first), so ``topk_accuracy(s, y, 1) == top1_accuracy(s, y)``.

    Args:
        scores: (N, C) real scores.
        labels: (N,) integer ground truth in ``[0, C)``.
        k: int >= 1; values above C count every video as correct.

    Returns:
        Top-k accuracy in [0, 1].

    Raises:
        ValueError: ``k < 1``, shapes disagree, N = 0, labels >= C, NaN scores.
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape (N, C), got {scores.shape}")
    predictions(scores)  # dtype / NaN checks
    truth = _labels(labels, scores.shape[0])
    num_classes = scores.shape[1]
    if truth.max() >= num_classes:
        raise ValueError(f"labels must be < C = {num_classes}, got {int(truth.max())}")
    true_score = scores[np.arange(scores.shape[0]), truth][:, None]
    index = np.arange(num_classes)[None, :]
    ahead = (scores > true_score) | ((scores == true_score) & (index < truth[:, None]))
    rank = ahead.sum(axis=1)
    return float(np.mean(rank < k))


def confusion_matrix(preds, labels, num_classes: Optional[int] = None) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Args:
        preds: (N, C) scores or (N,) integer predictions.
        labels: (N,) integer ground truth, 0-based.
        num_classes: C; default: the score width for 2-D input, else
            ``max(preds, labels) + 1``.

    Returns:
        (C, C) int64 matrix ``M`` with ``M[i, j]`` = number of videos of class
        ``i`` predicted as ``j`` (rows: truth, columns: prediction).

    Raises:
        ValueError: shapes disagree, N = 0, or a class index >= ``num_classes``.
    """
    width = np.asarray(preds).shape[1] if np.asarray(preds).ndim == 2 else None
    pred = predictions(preds)
    truth = _labels(labels, pred.shape[0])
    if num_classes is None:
        num_classes = width if width is not None else int(max(pred.max(), truth.max())) + 1
    num_classes = int(num_classes)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if pred.min() < 0 or pred.max() >= num_classes or truth.max() >= num_classes:
        raise ValueError(
            f"class indices must lie in [0, {num_classes}): predictions in "
            f"[{int(pred.min())}, {int(pred.max())}], labels in [{int(truth.min())}, {int(truth.max())}]"
        )
    flat = truth * num_classes + pred
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def mean_class_accuracy(preds, labels, num_classes: Optional[int] = None) -> float:
    """Mean over classes of per-class recall, as TSN reports it.

    Per-class recall is the fraction of the videos of that class predicted
    correctly; the mean runs over the classes that occur in ``labels`` only
    (a class absent from the test set has no recall).

    Args:
        preds: (N, C) scores or (N,) integer predictions.
        labels: (N,) integer ground truth, 0-based.
        num_classes: C, see :func:`confusion_matrix`.

    Returns:
        Mean class accuracy in [0, 1]. Equals top-1 accuracy when every class
        has the same number of videos.

    Raises:
        ValueError: as :func:`confusion_matrix`.
    """
    matrix = confusion_matrix(preds, labels, num_classes)
    counts = matrix.sum(axis=1)
    present = counts > 0
    recall = np.diag(matrix)[present] / counts[present]
    return float(np.mean(recall))


def per_class_accuracy(preds, labels, num_classes: Optional[int] = None) -> np.ndarray:
    """Recall of every class: the fraction of its videos predicted correctly.

    Args:
        preds: (N, C) scores or (N,) integer predictions.
        labels: (N,) integer ground truth, 0-based.
        num_classes: C, see :func:`confusion_matrix`.

    Returns:
        (C,) float64 in [0, 1]; NaN for a class with no video in ``labels``.

    Raises:
        ValueError: as :func:`confusion_matrix`.
    """
    matrix = confusion_matrix(preds, labels, num_classes)
    counts = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.diag(matrix) / np.maximum(counts, 1), np.nan)


def score_report(scores, fields=None) -> dict:
    """Video-level metrics of each score array of a score file.

    Each field's per-view pre-softmax scores are averaged over the views (the
    test protocol's consensus, paper Sec. IV-A), then scored against the labels.

    Args:
        scores: a :class:`~keras_gated_tsn.evaluation.scores.ScoreFile`.
        fields: the score arrays to report (default: every one present of
            ``rgb``, ``flow``, ``fused``, ``gating_classifier``).

    Returns:
        ``{field: {"top1", "top5", "mean_class_accuracy": float in [0, 1],
        "per_class_accuracy": list of C floats (None for a class without
        test videos), "confusion_matrix": C x C nested list of int counts
        (rows: truth, columns: prediction)}}``, JSON-serializable.

    Raises:
        ValueError: as :func:`confusion_matrix`, or a field that is absent.
    """
    from keras_gated_tsn.evaluation.scores import SCORE_FIELDS

    fields = [f for f in SCORE_FIELDS if getattr(scores, f) is not None] if fields is None else list(fields)
    report = {}
    for field in fields:
        value = getattr(scores, field)
        if value is None:
            raise ValueError(f"the score file has no {field!r} scores")
        video_scores = np.asarray(value, dtype=np.float64).mean(axis=1)
        num_classes = video_scores.shape[1]
        per_class = per_class_accuracy(video_scores, scores.labels, num_classes)
        report[field] = {
            "top1": top1_accuracy(video_scores, scores.labels),
            "top5": topk_accuracy(video_scores, scores.labels, k=min(5, num_classes)),
            "mean_class_accuracy": mean_class_accuracy(video_scores, scores.labels, num_classes),
            "per_class_accuracy": [None if np.isnan(v) else float(v) for v in per_class],
            "confusion_matrix": confusion_matrix(video_scores, scores.labels, num_classes).tolist(),
        }
    return report
