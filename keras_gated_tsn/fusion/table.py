"""The fusion table: every registered comparator on a test score file, as rows,
and after them one row per extra score file of another model.

Rows come from :func:`keras_gated_tsn.fusion.comparators.registered_comparators`, in
registration order; a comparator that cannot run on the given files (a
stream missing, no validation file) keeps its row with empty accuracies and
the reason in ``note``. Only a comparator registered with
``uses_validation=True`` is given the validation score file, so a setting is
tuned on the validation videos alone and never silently: such a row names the
setting it picked in ``note`` (and, for fixed weights, in ``rgb_weight`` /
``flow_weight``) and says in ``tuned_on`` on which videos it tuned it:
``validation`` when they are disjoint from the test videos, ``test list``
when they are the same videos (the authors validated on the test list: the
number is then an optimistic one), or how many validation videos are also
test videos.

Extra rows put other models in the same table (a convolutional-fusion model,
a GCF-Net, ...): each is a score file of the same test videos holding the
model's per-view output, reported under a name the caller gives
(``gated-tsn fuse test.npz --extra conv_fusion=conv.npz``); see
:func:`extra_model_scores`.

This module imports NumPy only (no TensorFlow).
"""

from __future__ import annotations

import csv
import json
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from keras_gated_tsn.atomic import atomic_write
from keras_gated_tsn.evaluation.metrics import mean_class_accuracy, top1_accuracy
from keras_gated_tsn.evaluation.scores import STREAMS, ScoreFile, load_scores
from keras_gated_tsn.fusion.comparators import Skipped, get_comparator, registered_comparators

#: An extra score file: a loaded :class:`ScoreFile` or the path of one.
ExtraSource = Union[ScoreFile, str, os.PathLike]

_EXTRA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")

#: Keys of a fusion-table row, in column order.
ROW_FIELDS = ("method", "rgb_weight", "flow_weight", "top1", "mean_class_accuracy", "tuned_on", "note")


def _row(method: str, fused=None, top1=None, mca=None, tuned_on: str = "", note: str = "") -> Dict[str, Any]:
    return {
        "method": method,
        "rgb_weight": None if fused is None or fused.rgb_weight is None else float(fused.rgb_weight),
        "flow_weight": None if fused is None or fused.flow_weight is None else float(fused.flow_weight),
        "top1": top1,
        "mean_class_accuracy": mca,
        "tuned_on": tuned_on,
        "note": note,
    }


def _check_same_classes(test_sf: ScoreFile, val_sf: ScoreFile, what: str = "the validation",
                        short: str = "validation") -> None:
    a, b = test_sf.class_names, val_sf.class_names
    if a.shape != b.shape:
        raise ValueError(
            f"{what} and test score files have different class lists "
            f"({b.shape[0]} vs {a.shape[0]} classes)"
        )
    differ = np.flatnonzero(a != b)
    if differ.size:
        i = int(differ[0])
        raise ValueError(
            f"{what} and test score files have different class lists: "
            f"class {i} is {str(b[i])!r} in {short}, {str(a[i])!r} in test"
        )


def extra_model_scores(test_sf: ScoreFile, extra_sf: ScoreFile, source: Optional[str] = None
                       ) -> Tuple[str, np.ndarray]:
    """Video-level scores of another model's score file, checked against the test file.

    An extra score file holds one model's per-view output for the test videos:
    its ``fused`` scores (the output of a fusion model, e.g. convolutional
    fusion or a GCF-Net; such a file may hold nothing else) or, without them,
    its only stream (a single-stream model). The scores are averaged over the
    views (paper Sec. IV-A, "Network Testing") and put in the order of the
    test file's videos.

    Args:
        test_sf: the (validated) test score file of the table.
        extra_sf: the (validated) extra score file: the same set of videos (in
            any order) with the same labels, the same class list.
        source: how errors name the extra file (its path); default
            ``<in-memory score file>``.

    Returns:
        ``(field, scores)``: the field used (``"fused"``, ``"rgb"`` or
        ``"flow"``) and (N, C) float64 view-averaged scores, row ``i`` for
        ``test_sf.video_ids[i]``.

    Raises:
        ValueError: naming ``source``: the class lists differ; a test video is
            missing from it, or it holds a video the test file lacks (the first
            such video, in file order); a video's label differs; it holds both
            streams but no ``fused`` scores (it is not one model's output).
    """
    where = source or "<in-memory score file>"
    _check_same_classes(test_sf, extra_sf, what=f"the extra score file {where}", short=where)
    position = {video: i for i, video in enumerate(extra_sf.video_ids.tolist())}
    test_ids = test_sf.video_ids.tolist()
    for video in test_ids:
        if video not in position:
            raise ValueError(
                f"{where}: the videos do not match the test score file's: test video {video!r} is missing "
                f"({extra_sf.num_videos} videos in {where}, {test_sf.num_videos} in the test score file)"
            )
    if extra_sf.num_videos != test_sf.num_videos:
        wanted = set(test_ids)
        video = next(v for v in extra_sf.video_ids.tolist() if v not in wanted)
        raise ValueError(
            f"{where}: the videos do not match the test score file's: video {video!r} is not a test video "
            f"({extra_sf.num_videos} videos in {where}, {test_sf.num_videos} in the test score file)"
        )
    order = np.array([position[video] for video in test_ids], dtype=np.int64)
    labels = extra_sf.labels[order]
    differ = np.flatnonzero(labels != test_sf.labels)
    if differ.size:
        i = int(differ[0])
        names = test_sf.class_names
        raise ValueError(
            f"{where}: video {test_ids[i]!r} has label {int(labels[i])} ({str(names[labels[i]])!r}), "
            f"the test score file says {int(test_sf.labels[i])} ({str(names[test_sf.labels[i]])!r})"
        )
    if extra_sf.fused is not None:
        field = "fused"
    elif len(extra_sf.streams) == 1:
        field = extra_sf.streams[0]
    else:
        raise ValueError(
            f"{where}: holds {' and '.join(repr(s) for s in STREAMS)} scores but no 'fused' scores, so it is not "
            f"one model's output; an extra row takes a file's 'fused' scores (or its only stream). "
            f"For the fusions of its two streams run: gated-tsn fuse {where}"
        )
    return field, np.mean(getattr(extra_sf, field)[order], axis=1, dtype=np.float64)


def _extra_pairs(extra) -> List[Tuple[str, ExtraSource]]:
    if extra is None:
        return []
    pairs = list(extra.items()) if isinstance(extra, Mapping) else [tuple(item) for item in extra]
    taken = {comparator.name for comparator in registered_comparators()}
    seen = set()
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"an extra score file is a (name, score file or path) pair, got {pair!r}")
        name = pair[0]
        if not isinstance(name, str) or not _EXTRA_NAME.fullmatch(name):
            raise ValueError(
                f"an extra row's name must be letters, digits, '_', '-', '.' or '+' (starting with a letter "
                f"or digit), got {name!r}"
            )
        if name in taken:
            raise ValueError(f"the extra row name {name!r} is a fusion comparator's; choose another name")
        if name in seen:
            raise ValueError(f"the extra row name {name!r} is given twice")
        seen.add(name)
    return pairs


def tuned_on(test_sf: ScoreFile, val_sf: ScoreFile) -> str:
    """On which videos a setting tuned on ``val_sf`` was tuned, seen from ``test_sf``:
    ``"validation"`` (no test video among them), ``"test list"`` (exactly the
    test videos) or ``"validation (k of n are test videos)"``."""
    test_ids = set(test_sf.video_ids.tolist())
    val_ids = set(val_sf.video_ids.tolist())
    shared = len(test_ids & val_ids)
    if shared == 0:
        return "validation"
    if val_ids == test_ids:
        return "test list"
    return f"validation ({shared} of {len(val_ids)} are test videos)"


def fusion_table(
    test_sf: ScoreFile,
    val_sf: Optional[ScoreFile] = None,
    methods: Optional[Sequence[str]] = None,
    extra: Union[Mapping[str, ExtraSource], Sequence[Tuple[str, ExtraSource]], None] = None,
) -> List[Dict[str, Any]]:
    """Top-1 and mean class accuracy of every registered comparator on a test score file.

    The paper's Table III comparison (gated vs. weighted average vs. SCI) plus
    the single streams, even averaging, TSN's 1:1.5 preset, the linear-SVM
    fusion of Simonyan & Zisserman and the gating ConvNet's own classifier;
    then one row per extra score file (other models on the same test videos).

    Args:
        test_sf: the test score file.
        val_sf: optional validation score file for the comparators that tune a
            setting (``weighted``, ``svm``), and only for them; same class
            list as ``test_sf``.
        methods: the comparators to run (default: all registered).
        extra: score files of other models, each reported as a row named by
            its key: a mapping ``name -> ScoreFile or path`` or a sequence of
            ``(name, ScoreFile or path)`` pairs, in row order; names are
            letters, digits, ``_ - . +``, none a comparator's name. Each must
            hold the test file's videos (any order), labels and classes
            (:func:`extra_model_scores`).

    Returns:
        List of dicts with keys :data:`ROW_FIELDS`: ``method`` (str: the
        comparator's or the extra row's name), ``rgb_weight`` /
        ``flow_weight`` (float, or None where not a fixed weight),
        ``top1`` / ``mean_class_accuracy`` (float percent in [0, 100], or None
        when skipped), ``tuned_on`` (str, empty for rows that tune nothing),
        ``note`` (str: the tuned setting, the reason a row was skipped, the
        extra file and field).

    Raises:
        ValueError: invalid score files, no test videos, the class lists of
            validation and test differ, an unknown method, a bad or duplicate
            extra name, or an extra file that does not match the test file
            (the message names the file and the first mismatching video).
        FileNotFoundError: an extra path does not exist.
    """
    test_sf.validate()
    if test_sf.num_videos == 0:
        raise ValueError("the test score file has no videos")
    if val_sf is not None:
        val_sf.validate()
        _check_same_classes(test_sf, val_sf)
    extras = []
    for name, item in _extra_pairs(extra):  # every extra is checked before any comparator runs
        if isinstance(item, ScoreFile):
            sf, source = item.validate(), None
        else:
            source = os.fspath(item)
            sf = load_scores(source)
        where = f"{source} (extra row {name!r})" if source else f"<in-memory score file of extra row {name!r}>"
        field, scores = extra_model_scores(test_sf, sf, where)
        extras.append((name, field, scores, source, sf.num_views))
    selected = registered_comparators() if methods is None else tuple(get_comparator(name) for name in methods)
    labels = test_sf.labels
    rows: List[Dict[str, Any]] = []
    for comparator in selected:
        missing = [field for field in comparator.needs if getattr(test_sf, field) is None]
        if missing:
            rows.append(_row(comparator.name, note=f"skipped: the score file has no {_names(missing)} scores"))
            continue
        val = val_sf if comparator.uses_validation else None  # the others never see it
        if val is not None:
            lacking = [field for field in comparator.needs if getattr(val, field) is None]
            if lacking:
                rows.append(_row(
                    comparator.name, note=f"skipped: the validation score file has no {_names(lacking)} scores"
                ))
                continue
        try:
            fused = comparator.fuse(test_sf, val)
        except Skipped as reason:
            rows.append(_row(comparator.name, note=str(reason)))
            continue
        scores = np.asarray(fused.scores)
        rows.append(_row(
            comparator.name, fused,
            100.0 * top1_accuracy(scores, labels),
            100.0 * mean_class_accuracy(scores, labels, num_classes=scores.shape[1]),
            tuned_on=tuned_on(test_sf, val) if val is not None else "",
            note=fused.note,
        ))
    for name, field, scores, source, views in extras:
        where = "in-memory score file" if source is None else f"score file {source}"
        rows.append(_row(
            name, None,
            100.0 * top1_accuracy(scores, labels),
            100.0 * mean_class_accuracy(scores, labels, num_classes=scores.shape[1]),
            note=f"extra {where}: its {field!r} scores averaged over {views} views",
        ))
    return rows


def _names(fields) -> str:
    return " and ".join(repr(field) for field in fields)


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
    header = ["Method", "RGB weight", "Flow weight", "Top-1 (%)", "Mean class acc. (%)", "Tuned on", "Note"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---:", "---:", "---:", "---:", "---", "---"]) + "|",
    ]
    for row in rows:
        cells = [
            str(row["method"]),
            _fmt_weight(row.get("rgb_weight")),
            _fmt_weight(row.get("flow_weight")),
            _fmt_percent(row.get("top1")),
            _fmt_percent(row.get("mean_class_accuracy")),
            str(row.get("tuned_on") or ""),
            str(row.get("note") or "").replace("|", "\\|"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path, rows: Sequence[Dict[str, Any]]) -> str:
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


def write_json(path, rows: Sequence[Dict[str, Any]]) -> str:
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
