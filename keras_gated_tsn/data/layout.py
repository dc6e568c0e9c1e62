"""The on-disk layout of a prepared dataset, in one place.

::

    DATA/classes.txt                 one class name per line (line i = label i)
    DATA/all.txt, train.txt, ...     list files: ``<video> <num_frames> <label>``
    DATA/splits/<N>/train.txt ...    the lists of official split N (``prepare --splits``)
    DATA/prepare.json                the extraction settings (size, flow, bound, ...)
    DATA/failed.txt                  videos that could not be extracted, with the reason
    DATA/frames/<video>/img_00001.jpg ...     RGB frames, 1-based, 5 digits
    DATA/frames/<video>/flow_x_00001.jpg ...  flow between frames i and i+1,
    DATA/frames/<video>/flow_y_00001.jpg ...  one fewer pair than frames

``gated-tsn prepare`` writes it; the tf.data pipelines read it. Frame folders
written by other tools use other names (mmaction's ``img_00001.jpg`` with
``x_00001.jpg`` / ``y_00001.jpg``, 6-digit ``000001.jpg`` frames); a
:class:`FrameLayout` with their templates reads them.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import string
from typing import Tuple

FRAMES_DIR = "frames"
CLASSES_FILE = "classes.txt"
ALL_LIST = "all.txt"
#: The extraction settings ``gated-tsn prepare`` records (JSON).
SETTINGS_FILE = "prepare.json"
#: The videos of the last ``prepare`` run that could not be extracted: ``<path>\t<reason>``.
FAILED_LIST = "failed.txt"
#: Sharded TFRecord copy of the frames (``prepare --format tfrecord``).
TFRECORD_DIR = "tfrecord"
#: Per-split lists of an official split: ``DATA/splits/<N>/train.txt`` ...
SPLITS_DIR = "splits"
#: Beside a split's lists: its videos that are not in them, ``<video>\t<train|test>\t<reason>``.
SPLIT_MISSING = "split_missing.txt"
#: The lists ``gated-tsn split`` writes and ``train`` / the runner read by default.
SPLIT_LISTS = ("train", "val", "test")


def list_file(name: str) -> str:
    """The file name of list ``name`` in a prepared dataset: ``"train"`` -> ``"train.txt"``."""
    return f"{name}.txt"


def parse_template(template: str) -> Tuple[str, str, int, str]:
    """Splits a file-name template such as ``"img_{:05d}.jpg"`` into
    ``(prefix, suffix, width, fill)``: width -1 for no padding, fill ``"0"``
    or ``" "``.

    Raises:
        ValueError: if the template has not exactly one ``{}``/``{:d}``/``{:0Nd}`` field.
    """
    if not isinstance(template, str):
        raise ValueError(f"a file-name template must be a str, got {template!r}")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"bad file-name template {template!r}: {err}") from None
    fields = [i for i, p in enumerate(parts) if p[1] is not None]
    match = None
    if len(fields) == 1:
        _, name, spec, conversion = parts[fields[0]]
        if name in ("", "0") and conversion is None:
            match = re.fullmatch(r"(0?)(\d*)d?", spec or "")
    if match is None:
        raise ValueError(
            f"a file-name template needs exactly one integer field such as '{{:05d}}', got {template!r}"
        )
    i = fields[0]
    prefix = "".join(p[0] for p in parts[: i + 1])
    suffix = "".join(p[0] for p in parts[i + 1 :])
    width = int(match.group(2)) if match.group(2) else -1
    fill = "0" if match.group(1) else " "
    return prefix, suffix, width, fill


@dataclasses.dataclass(frozen=True)
class FrameLayout:
    """File names of one video's frame folder: a template per kind, each with
    one integer field (1-based frame or flow-pair number).

    Attributes:
        rgb: RGB frame ``i`` (default ``img_{:05d}.jpg``).
        flow_x, flow_y: the two components of flow pair ``i``, between frames
            ``i`` and ``i + 1`` (default ``flow_x_{:05d}.jpg``, ``flow_y_{:05d}.jpg``).

    Raises:
        ValueError: for a template without exactly one integer field.
    """

    rgb: str = "img_{:05d}.jpg"
    flow_x: str = "flow_x_{:05d}.jpg"
    flow_y: str = "flow_y_{:05d}.jpg"

    def __post_init__(self):
        for template in (self.rgb, self.flow_x, self.flow_y):
            parse_template(template)

    def rgb_name(self, index: int) -> str:
        """The file name of RGB frame ``index`` (1-based)."""
        return self.rgb.format(index)

    def flow_names(self, index: int) -> Tuple[str, str]:
        """The x and y file names of flow pair ``index`` (1-based)."""
        return self.flow_x.format(index), self.flow_y.format(index)

    def pipeline_templates(self) -> dict:
        """The templates as the keyword arguments of the tf.data pipelines
        (``rgb_template``, ``flow_x_template``, ``flow_y_template``)."""
        return {"rgb_template": self.rgb, "flow_x_template": self.flow_x, "flow_y_template": self.flow_y}

    @functools.cached_property
    def _affixes(self) -> Tuple[Tuple[str, str, str], ...]:
        return tuple((kind, *parse_template(getattr(self, kind))[:2]) for kind in ("rgb", "flow_x", "flow_y"))

    def kind_of(self, file_name: str) -> str:
        """``"rgb"``, ``"flow_x"``, ``"flow_y"`` or ``""`` for a file of no kind,
        by the templates' fixed prefix and suffix (the longest prefix wins, so
        ``flow_x_`` is not taken for an ``img_``-less RGB template)."""
        matches = []
        for kind, prefix, suffix in self._affixes:
            if file_name.startswith(prefix) and file_name.endswith(suffix):
                number = file_name[len(prefix): len(file_name) - len(suffix)]
                if number.strip().isdigit():
                    matches.append((len(prefix), kind))
        return max(matches)[1] if matches else ""


#: What ``gated-tsn prepare`` writes (TSN's dense_flow names).
DEFAULT_LAYOUT = FrameLayout()


def read_layout(data_dir: str) -> FrameLayout:
    """The frame-file layout of a prepared dataset: ``DATA/prepare.json``'s
    ``"layout"`` (``{"rgb": ..., "flow_x": ..., "flow_y": ...}``, each key
    optional), else :data:`DEFAULT_LAYOUT`.

    ``gated-tsn prepare`` records its layout there. For frames written by
    another tool, a ``prepare.json`` holding only the layout is enough, e.g.
    ``{"layout": {"rgb": "img_{:05d}.jpg", "flow_x": "x_{:05d}.jpg",
    "flow_y": "y_{:05d}.jpg"}}`` (mmaction's dense-flow names) or
    ``{"layout": {"rgb": "{:06d}.jpg"}}``; ``train``, ``evaluate`` and
    ``plot tsne`` then read them.

    Raises:
        ValueError: if the file is not JSON, its layout is not an object, or a
            template has not exactly one integer field (naming the file).
    """
    import json
    import os

    path = os.path.join(data_dir, SETTINGS_FILE)
    if not os.path.isfile(path):
        return DEFAULT_LAYOUT
    try:
        with open(path, encoding="utf-8") as handle:
            layout = json.load(handle).get("layout", {})
        if not isinstance(layout, dict):
            raise ValueError(f"'layout' must be an object, got {layout!r}")
        unknown = sorted(set(layout) - {"rgb", "flow_x", "flow_y"})
        if unknown:
            raise ValueError(f"unknown layout keys {unknown}; expected rgb, flow_x, flow_y")
        return FrameLayout(**{**dataclasses.asdict(DEFAULT_LAYOUT), **layout})
    except (ValueError, AttributeError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from None


def frames_source(data_dir: str) -> str:
    """Where a prepared dataset's frames are read from: ``DATA/frames`` when
    that folder exists, else the sharded TFRecord copy ``DATA/tfrecord``
    (``prepare --format tfrecord``) when it exists (its ``index.json``), else
    ``DATA/frames`` (whose absence the readers then report). So a dataset
    copied to remote storage without its frame folders trains from its shards.
    """
    import os

    frames = os.path.join(data_dir, FRAMES_DIR)
    shards = os.path.join(data_dir, TFRECORD_DIR)
    if not os.path.isdir(frames) and os.path.isfile(os.path.join(shards, "index.json")):
        return shards
    return frames
