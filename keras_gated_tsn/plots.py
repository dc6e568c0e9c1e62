"""The paper's figures, drawn from score files (and gate features) with matplotlib.

* :func:`plot_fusion_weights` — Fig. 2: the gate's two weights per video as a
  scatter (x: temporal, y: spatial, as in the paper) above a histogram of the
  spatial share ``w_rgb / (w_rgb + w_flow)``; one column per score file (e.g.
  without and with multi-task learning).
* :func:`plot_top5` — Fig. 3: for chosen videos, the top-5 classes of the
  spatial and temporal streams, of fixed-weight fusion (TSN's 1:1.5 by
  default) and of gated fusion, each with the weights it used.
* :func:`plot_tsne` — Fig. 4: t-SNE (scikit-learn) of the gating ConvNet's
  last features (:func:`keras_gated_tsn.evaluation.features.gating_features`).
* :func:`plot_confusion_matrix` — the confusion matrix of one score array.

Every function draws on its own :class:`matplotlib.figure.Figure` (no pyplot
state, no display needed) and writes a PNG atomically (a temporary file, then
a rename), so a killed run never leaves half a picture. Scores are
view-averaged pre-softmax scores as in the fusion table
(:mod:`keras_gated_tsn.fusion`); bars show their softmax, in [0, 1].
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from keras_gated_tsn.evaluation.scores import ScoreFile

__all__ = [
    "choose_top5_videos",
    "plot_confusion_matrix",
    "plot_fusion_weights",
    "plot_top5",
    "plot_tsne",
]

#: Fig. 3's colours: ground truth, spatial, temporal, right and wrong fused predictions.
GROUND_TRUTH, SPATIAL, TEMPORAL, RIGHT, WRONG, OTHER = (
    "#f2c200", "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#b0b0b0")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(figure, path: Union[str, os.PathLike]) -> str:
    from keras_gated_tsn.atomic import atomic_path

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def _need_gate(scores: ScoreFile, where: str) -> None:
    if scores.fusion_weights is None:
        raise ValueError(f"{where}: the score file has no fusion weights (it was not scored by a gated model)")


def video_fusion_weights(scores: ScoreFile) -> np.ndarray:
    """(N, 2) float64: each video's gate weights ``(w_rgb, w_flow)``, averaged over its views.

    Raises:
        ValueError: if the score file has no fusion weights.
    """
    _need_gate(scores, "video_fusion_weights")
    return np.asarray(scores.fusion_weights, dtype=np.float64).mean(axis=1)


def plot_fusion_weights(
    score_files: Union[ScoreFile, Sequence[ScoreFile]],
    path: Union[str, os.PathLike],
    titles: Optional[Sequence[str]] = None,
    bins: int = 20,
) -> str:
    """Fig. 2 of the paper: the distribution of the fusion weights.

    Top row, per score file: one point per video at (``w_flow``, ``w_rgb``),
    the gate's outputs (ReLU or softmax) averaged over the video's views.
    Bottom row: a histogram of the spatial share ``w_rgb / (w_rgb + w_flow)``
    (videos whose two weights are both zero are left out and counted in the
    title).

    Args:
        score_files: one or more score files of gated models (e.g. without and
            with multi-task learning, one column each).
        path: the PNG to write.
        titles: a title per score file (default ``"model 1"``, ...).
        bins: histogram bins over [0, 1].

    Returns:
        ``path``.

    Raises:
        ValueError: a score file without fusion weights, titles that do not
            match, or ``bins < 1``.
    """
    files = [score_files] if isinstance(score_files, ScoreFile) else list(score_files)
    if not files:
        raise ValueError("give at least one score file")
    titles = list(titles) if titles is not None else [f"model {i + 1}" for i in range(len(files))]
    if len(titles) != len(files):
        raise ValueError(f"{len(titles)} titles for {len(files)} score files")
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, got {bins!r}")
    figure = _figure(4.2 * len(files), 7.0)
    axes = figure.subplots(2, len(files), squeeze=False)
    for column, (scores, title) in enumerate(zip(files, titles)):
        weights = video_fusion_weights(scores)
        rgb, flow = weights[:, 0], weights[:, 1]
        scatter = axes[0, column]
        scatter.scatter(flow, rgb, s=10, alpha=0.6, color=TEMPORAL, edgecolors="none")
        top = max(float(weights.max()), 1e-6) * 1.05
        scatter.set_xlim(0, top)
        scatter.set_ylim(0, top)
        scatter.set_xlabel("gate weight of the temporal net (w_flow)")
        scatter.set_ylabel("gate weight of the spatial net (w_rgb)")
        scatter.set_title(f"{title}: {len(weights)} videos")
        scatter.grid(alpha=0.3)
        total = rgb + flow
        live = total > 0
        share = rgb[live] / total[live]
        histogram = axes[1, column]
        histogram.hist(share, bins=int(bins), range=(0.0, 1.0), color=SPATIAL, alpha=0.8)
        histogram.set_xlim(0, 1)
        histogram.set_xlabel("spatial share w_rgb / (w_rgb + w_flow)")
        histogram.set_ylabel("videos")
        histogram.yaxis.get_major_locator().set_params(integer=True)
        dead = int((~live).sum())
        histogram.set_title(
            f"mean {share.mean():.2f}, range {share.min():.2f}-{share.max():.2f}" if share.size else "no weights"
        )
        if dead:
            histogram.set_title(histogram.get_title() + f" ({dead} videos with both weights 0)")
    figure.suptitle("Fusion weights of the gated TSN (paper Fig. 2)")
    return _save(figure, path)


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _panels(scores: ScoreFile, fixed_weights: Tuple[float, float]):
    """The four per-video score sets of Fig. 3: ``[(name, (N, C) probabilities, weights per video)]``."""
    from keras_gated_tsn.fusion.comparators import gated, stream_scores, weighted_average

    _need_gate(scores, "plot_top5")
    rgb_weight, flow_weight = fixed_weights
    fixed = weighted_average(scores, rgb_weight, flow_weight)
    weights = video_fusion_weights(scores)
    total = weights.sum(axis=1, keepdims=True)
    share = np.divide(weights, total, out=np.full_like(weights, 0.5), where=total > 0)
    fixed_share = np.array([rgb_weight, flow_weight]) / (rgb_weight + flow_weight)
    return [
        ("spatial", _softmax(stream_scores(scores, "rgb")), None),
        ("temporal", _softmax(stream_scores(scores, "flow")), None),
        (f"fixed {rgb_weight:g}:{flow_weight:g}", _softmax(fixed), np.tile(fixed_share, (scores.num_videos, 1))),
        ("gated", _softmax(gated(scores)), share),
    ]


def choose_top5_videos(
    scores: ScoreFile, count: int = 4, fixed_weights: Tuple[float, float] = (1.0, 1.5)
) -> List[str]:
    """Videos worth showing in Fig. 3: first those the gated fusion gets right
    and the fixed weights get wrong (the paper's examples), then those both
    get wrong, then the rest, each group in list order.

    Args:
        scores: a gated model's score file.
        count: how many videos, >= 1.
        fixed_weights: ``(rgb, flow)`` of the fixed-weight fusion.

    Returns:
        Up to ``count`` video ids.

    Raises:
        ValueError: without fusion weights, or ``count < 1``.
    """
    if int(count) < 1:
        raise ValueError(f"count must be >= 1, got {count!r}")
    panels = _panels(scores, fixed_weights)
    fixed_right = panels[2][1].argmax(axis=1) == scores.labels
    gated_right = panels[3][1].argmax(axis=1) == scores.labels
    order = sorted(range(scores.num_videos),
                   key=lambda i: (not (gated_right[i] and not fixed_right[i]), gated_right[i], i))
    return [str(scores.video_ids[i]) for i in order[: int(count)]]


def plot_top5(
    scores: ScoreFile,
    videos: Sequence[str],
    path: Union[str, os.PathLike],
    fixed_weights: Tuple[float, float] = (1.0, 1.5),
) -> str:
    """Fig. 3 of the paper: top-5 predictions of the streams and of two fusions, per video.

    One row per video, four panels: the spatial stream (red), the temporal
    stream (blue), fixed-weight fusion and gated fusion. Bars are the softmax
    of the view-averaged scores (gated: of the gated scores, eq. (2)); the
    ground truth's bar is yellow wherever it is in a top-5; in the fusion
    panels the top-1 bar is green when right and orange when wrong. Each
    fusion panel's title gives the weights used (``w_rgb : w_flow`` as
    shares; the gate's averaged over the video's views).

    Args:
        scores: a gated model's score file (``rgb``, ``flow``,
            ``fusion_weights``, ``fused``).
        videos: video ids to show (see :func:`choose_top5_videos`).
        path: the PNG to write.
        fixed_weights: ``(rgb, flow)`` of the fixed-weight fusion (TSN's 1:1.5).

    Returns:
        ``path``.

    Raises:
        ValueError: no videos, a video not in the score file (named), or no
            fusion weights.
    """
    videos = list(videos)
    if not videos:
        raise ValueError("give at least one video")
    index = {str(v): i for i, v in enumerate(scores.video_ids.tolist())}
    unknown = [v for v in videos if v not in index]
    if unknown:
        raise ValueError(f"not in the score file: {', '.join(unknown[:5])} (it has {scores.num_videos} videos)")
    panels = _panels(scores, fixed_weights)
    names = scores.class_names.tolist()
    figure = _figure(16.0, 2.4 * len(videos) + 0.6)
    axes = figure.subplots(len(videos), len(panels), squeeze=False)
    for row, video in enumerate(videos):
        i = index[video]
        truth = int(scores.labels[i])
        for column, (kind, probabilities, weights) in enumerate(panels):
            axis = axes[row, column]
            top = np.argsort(-probabilities[i], kind="stable")[:5]
            fusion = weights is not None
            colours = []
            for rank, label in enumerate(top):
                if label == truth:
                    colours.append(RIGHT if fusion and rank == 0 else GROUND_TRUTH)
                elif fusion:
                    colours.append(WRONG if rank == 0 else OTHER)
                else:
                    colours.append(SPATIAL if kind == "spatial" else TEMPORAL)
            axis.barh(range(len(top))[::-1], probabilities[i, top], color=colours)
            axis.set_yticks(range(len(top))[::-1], [names[label] for label in top], fontsize=8)
            axis.set_xlim(0, 1)
            title = kind
            if fusion:
                title += f"  w_rgb:w_flow = {weights[i, 0]:.2f}:{weights[i, 1]:.2f}"
                title += "  right" if top[0] == truth else "  wrong"
            axis.set_title(title, fontsize=9)
            if column == 0:
                axis.set_ylabel(f"{video}\ntruth: {names[truth]}", fontsize=8)
    figure.suptitle("Top-5 predictions: streams, fixed-weight and gated fusion (paper Fig. 3); "
                    "yellow = ground truth")
    return _save(figure, path)


def plot_tsne(
    feature_sets: Sequence[Tuple[np.ndarray, np.ndarray]],
    path: Union[str, os.PathLike],
    class_names: Sequence[str],
    titles: Optional[Sequence[str]] = None,
    perplexity: float = 30.0,
    seed: int = 0,
) -> str:
    """Fig. 4 of the paper: t-SNE of the gating ConvNet's last features.

    Each set of features (one per model, e.g. without and with multi-task
    learning) is embedded in 2-D with scikit-learn's ``TSNE`` (PCA start,
    ``random_state=seed``; perplexity capped below the number of videos) and
    drawn in its own panel, one colour per class.

    Args:
        feature_sets: ``(features (N, D) float, labels (N,) int in [0, C))``
            per panel; N >= 2.
        path: the PNG to write.
        class_names: the C class names (the legend lists up to 20).
        titles: a title per panel.
        perplexity: t-SNE perplexity (> 0).
        seed: the embedding's random state.

    Returns:
        ``path``.

    Raises:
        ValueError: an empty or mis-shaped feature set, labels outside the
            classes, titles that do not match.
    """
    from sklearn.manifold import TSNE

    sets = list(feature_sets)
    if not sets:
        raise ValueError("give at least one feature set")
    titles = list(titles) if titles is not None else [f"model {i + 1}" for i in range(len(sets))]
    if len(titles) != len(sets):
        raise ValueError(f"{len(titles)} titles for {len(sets)} feature sets")
    figure = _figure(5.5 * len(sets) + 2.0, 5.5)
    axes = figure.subplots(1, len(sets), squeeze=False)[0]
    colours = _class_colours(len(class_names))
    for axis, (features, labels), title in zip(axes, sets, titles):
        features = np.asarray(features, dtype=np.float64)
        labels = np.asarray(labels)
        if features.ndim != 2 or features.shape[0] < 2 or labels.shape != (features.shape[0],):
            raise ValueError(f"{title}: features must be (N >= 2, D) with N labels, got {features.shape} "
                             f"and {labels.shape}")
        if labels.min() < 0 or labels.max() >= len(class_names):
            raise ValueError(f"{title}: labels must lie in [0, {len(class_names)})")
        embedding = TSNE(
            n_components=2, perplexity=min(float(perplexity), (features.shape[0] - 1) / 3.0 or 1.0),
            init="pca", random_state=seed,
        ).fit_transform(features)
        for label in np.unique(labels):
            chosen = labels == label
            axis.scatter(embedding[chosen, 0], embedding[chosen, 1], s=14, color=colours[int(label)],
                         label=class_names[int(label)], edgecolors="none")
        axis.set_title(f"{title}: {features.shape[0]} videos, {features.shape[1]}-D features")
        axis.set_xticks([])
        axis.set_yticks([])
    handles, legend_labels = axes[-1].get_legend_handles_labels()
    if len(class_names) <= 20 and handles:
        figure.legend(handles, legend_labels, loc="outside right center", fontsize=8)
    figure.suptitle("t-SNE of the gating ConvNet's last features (paper Fig. 4)")
    return _save(figure, path)


def _class_colours(count: int):
    from matplotlib import colormaps

    cmap = colormaps["tab20" if count <= 20 else "hsv"]
    return [cmap(i / max(count - 1, 1)) if count > 20 else cmap(i) for i in range(count)]


def plot_confusion_matrix(
    scores: ScoreFile, path: Union[str, os.PathLike], field: str = "fused", normalize: bool = True
) -> str:
    """The confusion matrix of one score array of a score file (views averaged).

    Rows are the true classes, columns the predicted ones; with ``normalize``
    each row is divided by its class's videos (per-class recall on the
    diagonal). Class names label the axes up to 40 classes.

    Args:
        scores: a score file.
        path: the PNG to write.
        field: ``"rgb"``, ``"flow"``, ``"fused"`` or ``"gating_classifier"``.
        normalize: rows as fractions in [0, 1] (True) or counts.

    Returns:
        ``path``.

    Raises:
        ValueError: a field the score file does not have.
    """
    from keras_gated_tsn.evaluation.metrics import confusion_matrix
    from keras_gated_tsn.evaluation.scores import SCORE_FIELDS

    if field not in SCORE_FIELDS:
        raise ValueError(f"field must be one of {SCORE_FIELDS}, got {field!r}")
    value = getattr(scores, field)
    if value is None:
        raise ValueError(f"the score file has no {field!r} scores (it has {', '.join(scores.streams)})")
    video_scores = np.asarray(value, dtype=np.float64).mean(axis=1)
    matrix = confusion_matrix(video_scores, scores.labels, scores.num_classes).astype(np.float64)
    if normalize:
        counts = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, counts, out=np.zeros_like(matrix), where=counts > 0)
    classes = scores.num_classes
    side = min(4.0 + 0.25 * classes, 30.0)
    figure = _figure(side + 1.5, side)
    axis = figure.subplots()
    image = axis.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    figure.colorbar(image, ax=axis, label="fraction of the class's videos" if normalize else "videos")
    names = scores.class_names.tolist()
    if classes <= 40:
        axis.set_xticks(range(classes), names, rotation=90, fontsize=7)
        axis.set_yticks(range(classes), names, fontsize=7)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    accuracy = float(np.mean(video_scores.argmax(axis=1) == scores.labels))
    axis.set_title(f"confusion matrix of {field}: {scores.num_videos} videos, top-1 {100 * accuracy:.1f}%")
    return _save(figure, path)
