"""The fusion table: every registered comparator on a test score file, as rows.

Rows come from :func:`keras_gated_tsn.fusion.comparators.registered_comparators`, in
registration order; a comparator that cannot run on the given files (a
stream missing, no validation file) keeps its row with empty accuracies and
the reason in ``note``. A comparator that tunes a setting on the validation
score file says in ``tuned_on`` on which videos it did: ``validation`` when
they are disjoint from the test videos, ``test list`` when they are the same
videos (the authors validated on the test list: the number is then an
optimistic one), or how many validation videos are also test videos.

This module imports NumPy only (no TensorFlow).
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from keras_gated_tsn.atomic import atomic_write
from keras_gated_tsn.evaluation.metrics import mean_class_accuracy, top1_accuracy
from keras_gated_tsn.evaluation.scores import ScoreFile
from keras_gated_tsn.fusion.comparators import Skipped, get_comparator, registered_comparators

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
    test_sf: ScoreFile, val_sf: Optional[ScoreFile] = None, methods: Optional[Sequence[str]] = None
) -> List[Dict[str, Any]]:
    """Top-1 and mean class accuracy of every registered comparator on a test score file.

    The paper's Table III comparison (gated vs. weighted average vs. SCI) plus
    the single streams, even averaging, TSN's 1:1.5 preset and the gating
    ConvNet's own classifier.

    Args:
        test_sf: the test score file.
        val_sf: optional validation score file for comparators that tune a
            setting (``weighted``); same class list as ``test_sf``.
        methods: the comparators to run (default: all registered).

    Returns:
        List of dicts with keys :data:`ROW_FIELDS`: ``method`` (str),
        ``rgb_weight`` / ``flow_weight`` (float, or None where not a fixed
        weight), ``top1`` / ``mean_class_accuracy`` (float percent in
        [0, 100], or None when skipped), ``tuned_on`` (str, empty for
        comparators that tune nothing), ``note`` (str).

    Raises:
        ValueError: invalid score files, no test videos, the class lists of
            validation and test differ, or an unknown method.
    """
    test_sf.validate()
    if test_sf.num_videos == 0:
        raise ValueError("the test score file has no videos")
    if val_sf is not None:
        val_sf.validate()
        _check_same_classes(test_sf, val_sf)
    selected = registered_comparators() if methods is None else tuple(get_comparator(name) for name in methods)
    labels = test_sf.labels
    rows: List[Dict[str, Any]] = []
    for comparator in selected:
        missing = [field for field in comparator.needs if getattr(test_sf, field) is None]
        if missing:
            rows.append(_row(comparator.name, note=f"skipped: the score file has no {_names(missing)} scores"))
            continue
        val = val_sf
        if comparator.uses_validation and val is not None:
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
            tuned_on=tuned_on(test_sf, val) if comparator.uses_validation else "",
            note=fused.note,
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
