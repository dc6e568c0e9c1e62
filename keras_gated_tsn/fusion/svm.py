"""Linear-SVM fusion of the two streams' softmax scores (the ``svm`` row).

Simonyan & Zisserman, "Two-Stream Convolutional Networks for Action
Recognition in Videos" (NIPS 2014), Sec. 2: the softmax scores of the two
streams are combined by late fusion, either by averaging or by "training a
multi-class linear SVM [6] on stacked L2-normalised softmax scores as
features"; Sec. 6, Table 3: the SVM fusion beats averaging (87.0% vs 86.2% on
UCF-101 split 1). Their ref. [6] is Crammer & Singer's multi-class SVM, which
is what :func:`fit_svm` trains (scikit-learn's ``LinearSVC`` with
``multi_class="crammer_singer"``).

Here the SVM is trained on the VALIDATION score file's videos and labels and
applied to the test score file; its regularisation ``C`` is chosen on the
validation file as well, by stratified k-fold cross-validation within it
(:func:`fit_svm`). The test labels are never seen.

Why a module of its own: it is the one comparator that needs scikit-learn. It
is imported lazily, inside the functions that fit, so this module (like
:mod:`~keras_gated_tsn.fusion.comparators`) imports NumPy only and ``import
keras_gated_tsn.fusion`` stays cheap; ``keras_gated_tsn.fusion`` imports this
module, which registers the comparator (before the ``gated`` row, beside the
other two-stream fusions).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from keras_gated_tsn.evaluation.scores import STREAMS, ScoreFile
from keras_gated_tsn.fusion.comparators import Fused, Skipped, register_comparator, softmax

#: C values tried by cross-validation on the validation score file (log-spaced,
#: around liblinear's default C = 1; the features have unit norm per stream).
DEFAULT_C_GRID: Tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)

#: Folds of the cross-validation that picks C (fewer when the largest class of
#: the validation file has fewer videos).
DEFAULT_FOLDS: int = 5

#: C used when the validation file is too small to cross-validate (at most one
#: video per class): liblinear's default.
FALLBACK_C: float = 1.0

_SEED = 0  # fold shuffling and liblinear's coordinate order: deterministic
_MAX_ITER = 10000
_CHUNK = 128  # videos per block of the softmax (bounds the float64 temporaries)


# ------------------------------------------------------------------ features
def _mean_softmax(scores: np.ndarray) -> np.ndarray:
    n, _, c = scores.shape
    out = np.empty((n, c), dtype=np.float64)
    for start in range(0, n, _CHUNK):
        out[start : start + _CHUNK] = softmax(scores[start : start + _CHUNK], axis=-1).mean(axis=1)
    return out


def svm_features(sf: ScoreFile) -> np.ndarray:
    """The SVM's feature vector of every video: stacked L2-normalised softmax scores.

    For each stream, the per-view pre-softmax scores are turned into softmax
    probabilities, averaged over the test views (Simonyan & Zisserman, Sec. 5,
    "Testing": the class scores of the whole video are the average over the
    sampled frames and crops) and divided by their L2 norm; the RGB vector
    comes first, then the flow vector (Sec. 2: "stacked L2-normalised softmax
    scores").

    Args:
        sf: score file with both ``rgb`` and ``flow`` scores, (N, V, C) each.

    Returns:
        (N, 2C) float64; columns ``[:C]`` the RGB part, ``[C:]`` the flow
        part, each with unit L2 norm per video and values in (0, 1].

    Raises:
        ValueError: a stream is missing.
    """
    parts = []
    for stream in STREAMS:
        p = _mean_softmax(sf.stream(stream))
        parts.append(p / np.linalg.norm(p, axis=1, keepdims=True))  # norm >= 1/sqrt(C) > 0
    return np.concatenate(parts, axis=1)


# ----------------------------------------------------------------- classifier
def _check_c_grid(c_grid) -> Tuple[float, ...]:
    values = np.asarray(c_grid, dtype=np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"c_grid must be a non-empty sequence of finite C > 0, got {c_grid!r}")
    return tuple(float(c) for c in np.unique(values))  # sorted ascending


def _fit_linear_svm(x: np.ndarray, y: np.ndarray, c: float) -> Tuple[Any, bool]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    classifier = LinearSVC(C=c, multi_class="crammer_singer", max_iter=_MAX_ITER, random_state=_SEED)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        classifier.fit(x, y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return classifier, converged


def _cross_validated_top1(x: np.ndarray, y: np.ndarray, c_grid: Tuple[float, ...], folds: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=_SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the least populated class has only k members"
        splits = list(splitter.split(x, y))
    correct = np.zeros(len(c_grid), dtype=np.int64)
    for train, held in splits:
        present = np.unique(y[train])
        for i, c in enumerate(c_grid):
            if present.size < 2:  # a fold that saw a single class predicts it
                predicted = np.full(held.size, present[0])
            else:
                predicted = _fit_linear_svm(x[train], y[train], c)[0].predict(x[held])
            correct[i] += np.count_nonzero(predicted == y[held])
    return correct / y.size


@dataclasses.dataclass
class SVMFusion:
    """A multi-class linear SVM fitted on a validation score file's features.

    Attributes:
        classifier: the fitted scikit-learn ``LinearSVC`` (Crammer-Singer).
        C: the regularisation used, > 0.
        num_classes: C of the score files (the class list's length); classes
            absent from the validation file are never predicted.
        num_videos: validation videos it was trained on.
        folds: folds of the cross-validation that chose ``C``; 0 when ``C``
            was given or the file was too small to cross-validate.
        c_grid: the C values tried (ascending), empty when not cross-validated.
        cv_top1: (len(c_grid),) float64 cross-validated top-1 in [0, 1] per
            C, or None.
        train_top1: top-1 on the validation videos it was trained on, in [0, 1].
        converged: liblinear converged within its iteration limit.
    """

    classifier: Any
    C: float
    num_classes: int
    num_videos: int
    folds: int = 0
    c_grid: Tuple[float, ...] = ()
    cv_top1: Optional[np.ndarray] = None
    train_top1: float = float("nan")
    converged: bool = True

    def decision_scores(self, features: np.ndarray) -> np.ndarray:
        """SVM scores of feature vectors, one column per class of the score files.

        Args:
            features: (N, 2C) float, as :func:`svm_features` returns.

        Returns:
            (N, C) float64 decision values ``w_c . x + b_c``; the arg-max is the
            SVM's prediction. A class absent from the validation file gets a
            score below every other score (it is never predicted).
        """
        x = np.asarray(features, dtype=np.float64)
        d = np.asarray(self.classifier.decision_function(x), dtype=np.float64)
        if d.ndim == 1:  # two classes present: > 0 means classes_[1]
            d = np.stack([-d, d], axis=1)
        out = np.full((x.shape[0], self.num_classes), (np.min(d) - 1.0) if d.size else 0.0)
        out[:, np.asarray(self.classifier.classes_, dtype=np.int64)] = d
        return out

    def scores(self, sf: ScoreFile) -> np.ndarray:
        """SVM scores of the videos of a score file (:func:`svm_features`, then
        :meth:`decision_scores`).

        Returns:
            (N, C) float64 decision values.

        Raises:
            ValueError: a stream is missing, or the class count differs.
        """
        if sf.num_classes != self.num_classes:
            raise ValueError(
                f"the SVM was trained on {self.num_classes} classes, the score file has {sf.num_classes}"
            )
        return self.decision_scores(svm_features(sf))


def fit_svm(
    val_sf: ScoreFile,
    *,
    C: Optional[float] = None,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    folds: int = DEFAULT_FOLDS,
) -> SVMFusion:
    """Trains the fusion SVM on a VALIDATION score file, choosing C on it.

    The features are :func:`svm_features`; the classifier is a Crammer-Singer
    multi-class linear SVM (Simonyan & Zisserman's ref. [6]: one weight vector
    and intercept per class, the multi-class hinge loss, an L2 penalty;
    scikit-learn's ``LinearSVC(multi_class="crammer_singer")``). Unless ``C`` is given, it is chosen by stratified
    ``k``-fold cross-validation within the validation file, ``k = min(folds,
    videos of its largest class)`` (folds shuffled with a fixed seed): the C of
    ``c_grid`` with the highest pooled held-out top-1, ties to the smaller C
    (the stronger regularisation); the SVM is then refitted on all validation
    videos. With at most one video per class there is nothing to
    cross-validate and C = :data:`FALLBACK_C` (liblinear's default, 1).
    Deterministic for the same file.

    Args:
        val_sf: VALIDATION score file with both streams and >= 2 classes among
            its labels (never the test file: a classifier fitted on the test
            labels inflates the comparison).
        C: a fixed C > 0 (no cross-validation), or None to choose it.
        c_grid: the C values to try, each finite and > 0.
        folds: the most folds to use, >= 2.

    Returns:
        The fitted :class:`SVMFusion`.

    Raises:
        ValueError: a stream missing, fewer than 2 classes among the
            validation labels, a bad ``C``, ``c_grid`` or ``folds``.
        ImportError: scikit-learn is not installed.
    """
    if C is not None and not (np.isfinite(C) and C > 0):
        raise ValueError(f"C must be a finite number > 0, got {C!r}")
    grid = _check_c_grid(c_grid)
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    x = svm_features(val_sf)
    y = val_sf.labels
    present, counts = np.unique(y, return_counts=True)
    if present.size < 2:
        raise ValueError(
            f"the SVM needs validation videos of at least 2 classes, got {present.size} "
            f"({val_sf.num_videos} videos)"
        )
    k = min(int(folds), int(counts.max()))
    cv_top1 = None
    if C is not None:
        chosen, k, grid = float(C), 0, ()
    elif k < 2:
        chosen, k, grid = FALLBACK_C, 0, ()
    else:
        cv_top1 = _cross_validated_top1(x, y, grid, k)
        chosen = grid[int(np.flatnonzero(cv_top1 == cv_top1.max())[0])]  # ascending: the smallest best C
    classifier, converged = _fit_linear_svm(x, y, chosen)
    fit = SVMFusion(classifier, chosen, val_sf.num_classes, val_sf.num_videos, k, grid, cv_top1,
                    converged=converged)
    fit.train_top1 = float(np.mean(np.argmax(fit.decision_scores(x), axis=1) == y))
    return fit


# ------------------------------------------------------------------ registry
def _describe(fit: SVMFusion, val_sf: ScoreFile) -> str:
    if fit.folds:
        best = 100.0 * float(np.max(fit.cv_top1))
        how = (f"C = {fit.C:g} chosen by {fit.folds}-fold cross-validation on the validation score file "
               f"({fit.num_videos} videos, CV top-1 {best:.2f}%, C in {{{', '.join(f'{c:g}' for c in fit.c_grid)}}})")
    else:
        how = (f"C = {fit.C:g} (liblinear's default: the validation score file has at most one video per class, "
               f"too few to cross-validate; {fit.num_videos} videos)")
    note = f"{how}; Crammer-Singer linear SVM on stacked L2-normalised softmax scores"
    absent = val_sf.num_classes - np.unique(val_sf.labels).size
    if absent:
        note += f"; {absent} classes have no validation video and are never predicted"
    if not fit.converged:
        note += f"; liblinear stopped at {_MAX_ITER} iterations before converging"
    return note


@register_comparator(
    "svm",
    "multi-class linear SVM (Crammer-Singer) on the two streams' stacked L2-normalised softmax scores, "
    "views averaged (Simonyan & Zisserman 2014, Sec. 2); trained on the VALIDATION score file, its C "
    f"chosen there by (up to) {DEFAULT_FOLDS}-fold cross-validation; needs --val-scores",
    uses_validation=True,
    before="gated",
)
def _svm(test_sf, val_sf):
    if val_sf is None:
        raise Skipped(
            "skipped: needs a validation score file (--val-scores) to train the SVM and choose C; "
            "it is never trained on the test scores themselves"
        )
    if val_sf.num_videos == 0:
        raise Skipped("skipped: the validation score file has no videos")
    present = np.unique(val_sf.labels).size
    if present < 2:
        raise Skipped(f"skipped: the validation score file has videos of {present} class; the SVM needs 2")
    try:
        fit = fit_svm(val_sf)
    except ImportError as err:
        raise Skipped(f"skipped: the SVM needs scikit-learn ({err})") from None
    return Fused(fit.scores(test_sf), note=_describe(fit, val_sf))
