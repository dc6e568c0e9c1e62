"""``gated-tsn prepare``: extract RGB frames and optical flow from a video folder.

The first step of the data path (see ``DESIGN.md``). The input is laid out as
UCF101 and HMDB51 are distributed, one folder per class::

    SRC/<class>/<video>.avi ...

The output is the frame folder TSN trains from, plus list files
(:mod:`keras_gated_tsn.data.lists`)::

    OUT/frames/<video>/img_00001.jpg ...     RGB frames, resized to 340x256
    OUT/frames/<video>/flow_x_00001.jpg ...  flow between frames i and i+1,
    OUT/frames/<video>/flow_y_00001.jpg ...  one fewer pair than frames
    OUT/classes.txt                          class names, line i = label i
    OUT/all.txt                              <video> <num_frames> <label>

Flow is TV-L1 on the resized grayscale frames (or DIS, much faster), clipped
at +-20 px and stored as 8-bit JPEG with 128 = no motion
(:func:`keras_gated_tsn.data.flow.encode_flow`), as in TSN.

Each video is written to a hidden temporary folder ``OUT/frames/.<video>.tmp-<pid>``
and renamed to ``OUT/frames/<video>`` when complete, so a folder under its
final name is always complete; a re-run skips those and redoes the rest, so a
run killed at any moment goes on where it stopped. A video that cannot be
decoded is reported with its path and the reason, and the others are still
extracted. Frames stream through: a video is decoded, written and its flow
computed frame by frame (or, for batched flow, a few dozen frames at a time),
so memory does not grow with a video's length.

The settings of the extraction (modality, flow method, frame size, bound,
JPEG quality and the file-name layout) are recorded in ``OUT/prepare.json``
before the first video; a later run into the same folder with other settings
is refused, so one folder never mixes resolutions or flow methods.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from keras_gated_tsn.data import flow as flow_lib
from keras_gated_tsn.data import lists
from keras_gated_tsn.atomic import atomic_write
from keras_gated_tsn.data.layout import (
    ALL_LIST,
    CLASSES_FILE,
    DEFAULT_LAYOUT,
    FAILED_LIST,
    FRAMES_DIR,
    SETTINGS_FILE,
)
from keras_gated_tsn.data.video import VIDEO_EXTENSIONS, VideoDecodeError, iter_frames_bgr

__all__ = [
    "EXTRACT_MODALITIES",
    "ExtractionSettings",
    "PrepareReport",
    "SourceScan",
    "check_settings",
    "extract_snippets",
    "extract_video",
    "find_videos",
    "prepare_dataset",
    "scan_source",
]

#: Default frame size ``(width, height)``, TSN's.
DEFAULT_SIZE = (340, 256)
#: Default flow clipping bound in pixels, TSN's.
DEFAULT_BOUND = 20.0

_TMP_MARKER = ".tmp-"
#: What ``prepare`` can extract: frames and flow (the two streams), or RGB frames
#: only (spatial-only work, no flow cost).
EXTRACT_MODALITIES = ("rgb+flow", "rgb")


class VideoTooShortError(VideoDecodeError):
    """A video decodes to a single frame, so it has no flow pair."""


@dataclasses.dataclass(frozen=True)
class VideoSource:
    """One input video found by :func:`find_videos`.

    Attributes:
        path: the video file.
        video: its id, the file name without extension (the frame folder's name).
        label: 0-based class index (position of its class folder in the sorted names).
    """

    path: str
    video: str
    label: int


@dataclasses.dataclass
class PrepareReport:
    """What :func:`prepare_dataset` did.

    Attributes:
        out: the output folder.
        class_names: the class names, index = label (as written to ``classes.txt``).
        done: ids of the videos extracted by this run, sorted by class then id.
        skipped: ids of the videos whose complete folder already existed.
        failed: ``(path, reason)`` of each video that could not be extracted,
            sorted by path; nothing of them is left under ``frames/``.
        records: one :class:`~keras_gated_tsn.data.lists.VideoRecord` per
            complete video (done or skipped), sorted by label then id, as
            written to ``all.txt``.
        loose_videos, empty_classes, absent_classes: as in :class:`SourceScan`.
        settings: the :class:`ExtractionSettings` of the run.
    """

    out: str
    class_names: List[str] = dataclasses.field(default_factory=list)
    done: List[str] = dataclasses.field(default_factory=list)
    skipped: List[str] = dataclasses.field(default_factory=list)
    failed: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
    records: List[lists.VideoRecord] = dataclasses.field(default_factory=list)
    loose_videos: List[str] = dataclasses.field(default_factory=list)
    empty_classes: List[str] = dataclasses.field(default_factory=list)
    absent_classes: List[str] = dataclasses.field(default_factory=list)
    settings: Optional["ExtractionSettings"] = None

    @property
    def ok(self) -> bool:
        """True when no video failed."""
        return not self.failed

    def summary(self, max_failures: int = 20) -> str:
        """A human-readable summary: counts, warnings (loose videos, empty
        class folders), then one line per failure (the first ``max_failures``;
        ``failed.txt`` in the output folder lists them all)."""
        lines = [
            f"{len(self.records)} videos ready in {self.out}: "
            f"{len(self.done)} done, {len(self.skipped)} skipped (already extracted), "
            f"{len(self.failed)} failed"
        ]
        lines += SourceScan(self.class_names, [], self.loose_videos, self.empty_classes,
                            self.absent_classes).warnings()
        for path, reason in self.failed[:max_failures]:
            lines.append(f"  FAILED {path}: {reason}")
        if len(self.failed) > max_failures:
            lines.append(f"  ... and {len(self.failed) - max_failures} more")
        if self.failed:
            lines.append(f"  all failures: {os.path.join(self.out, FAILED_LIST)}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- scanning


def _class_sort_key(name: str):
    # Case-insensitive first: reproduces UCF101's classInd.txt order
    # (JumpingJack before JumpRope); exact name breaks ties.
    return (name.lower(), name)


@dataclasses.dataclass
class SourceScan:
    """What :func:`scan_source` found in a dataset folder.

    Attributes:
        class_names: the class names, index = label.
        videos: the videos in class folders, sorted by label then id.
        loose_videos: video files lying directly in the dataset folder, beside
            the class folders (no class: not extracted), sorted.
        empty_classes: classes whose folder holds no video (the label is kept).
        absent_classes: classes of a given class list without a folder in the
            dataset folder (the label is kept).
    """

    class_names: List[str]
    videos: List[VideoSource]
    loose_videos: List[str] = dataclasses.field(default_factory=list)
    empty_classes: List[str] = dataclasses.field(default_factory=list)
    absent_classes: List[str] = dataclasses.field(default_factory=list)

    def warnings(self) -> List[str]:
        """One line per loose video, empty class and absent class folder (the
        first 10 of each kind named)."""
        lines = []
        for items, what in (
            (self.loose_videos, "video file(s) outside any class folder, not extracted"),
            (self.empty_classes, "class folder(s) without any video"),
            (self.absent_classes, "class(es) of the class list without a folder"),
        ):
            if items:
                lines.append(
                    f"warning: {len(items)} {what}: " + ", ".join(items[:10])
                    + (" ..." if len(items) > 10 else "")
                )
        return lines


def _is_video_entry(entry: os.DirEntry) -> bool:
    return (
        not entry.name.startswith(".")
        and os.path.splitext(entry.name)[1].lower() in VIDEO_EXTENSIONS
        and entry.is_file()
    )


def scan_source(
    src: str | os.PathLike, class_names: Optional[Sequence[str]] = None
) -> SourceScan:
    """Lists the class folders and videos of ``src`` (``SRC/<class>/<video>.<ext>``).

    Class folders are the non-hidden sub-folders of ``src``. Without
    ``class_names`` they are sorted by name case-insensitively (ties by exact
    name), which reproduces the label order of UCF101's ``classInd.txt`` and
    HMDB51's alphabetical classes; with ``class_names`` (an official class
    list) label ``i`` is ``class_names[i]`` and folders are matched to it
    ignoring case. Videos are the files directly inside a class folder whose
    extension (any case) is one of
    :data:`~keras_gated_tsn.data.video.VIDEO_EXTENSIONS`; other files and
    hidden entries are ignored. Video files directly in ``src`` and class
    folders without videos are reported, not errors.

    Args:
        src: the dataset folder.
        class_names: optional class names in label order (e.g. the official
            split files' classes).

    Returns:
        A :class:`SourceScan`.

    Raises:
        FileNotFoundError: if ``src`` does not exist.
        NotADirectoryError: if ``src`` is not a folder.
        ValueError: if ``src`` has no class folder, no video in any of them,
            two videos with the same id (naming both files), a video id with
            whitespace (list files could not hold it), or (with
            ``class_names``) a class folder that is not in the class list.
    """
    src = os.fspath(src)
    if not os.path.exists(src):
        raise FileNotFoundError(f"source folder {src} does not exist")
    if not os.path.isdir(src):
        raise NotADirectoryError(f"source {src} is not a folder")
    with os.scandir(src) as entries:
        entries = sorted(entries, key=lambda e: e.name)
    folders = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
    loose = [os.path.join(src, e.name) for e in entries if _is_video_entry(e)]
    if not folders:
        raise ValueError(
            f"{src} has no class folder; expected one sub-folder per class holding "
            f"the videos ({src}/<class>/<video>.avi), as UCF101 and HMDB51 are laid out"
        )
    absent: List[str] = []
    if class_names is None:
        names = sorted(folders, key=_class_sort_key)
        folder_of = {name: name for name in names}
    else:
        names = list(class_names)
        by_key = {name.casefold(): name for name in names}
        unknown = [f for f in folders if f.casefold() not in by_key]
        if unknown:
            raise ValueError(
                f"{len(unknown)} class folder(s) of {src} are not classes of the class list: "
                + ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
                + f" (the list has {len(names)} classes, e.g. {', '.join(names[:3])})"
            )
        folder_of = {by_key[f.casefold()]: f for f in folders}
        absent = [name for name in names if name not in folder_of]
    videos: List[VideoSource] = []
    seen: Dict[str, str] = {}
    duplicates: List[str] = []
    spaced: List[str] = []
    empty: List[str] = []
    for label, name in enumerate(names):
        if name not in folder_of:
            continue
        folder = os.path.join(src, folder_of[name])
        with os.scandir(folder) as entries:
            found = [e for e in sorted(entries, key=lambda e: e.name) if _is_video_entry(e)]
        if not found:
            empty.append(folder_of[name])
        for entry in found:
            stem = os.path.splitext(entry.name)[0]
            path = os.path.join(folder, entry.name)
            if stem in seen:
                duplicates.append(f"{seen[stem]} and {path}")
                continue
            if any(c.isspace() for c in stem):
                spaced.append(path)
            seen[stem] = path
            videos.append(VideoSource(path, stem, label))
    if duplicates:
        raise ValueError(
            "video ids (file names without extension) must be unique across classes, "
            f"but {len(duplicates)} repeat: " + "; ".join(duplicates[:10])
            + (" ..." if len(duplicates) > 10 else "")
        )
    if spaced:
        raise ValueError(
            "video file names must not contain whitespace (list files are "
            f"space-separated); rename: " + ", ".join(spaced[:10])
            + (" ..." if len(spaced) > 10 else "")
        )
    if not videos:
        extensions = " ".join(sorted(VIDEO_EXTENSIONS))
        raise ValueError(
            f"no video found in the {len(folders)} class folder(s) of {src} "
            f"(looked for {extensions}, any case)"
        )
    videos.sort(key=lambda v: (v.label, v.video))
    return SourceScan(list(names), videos, loose, empty, absent)


def find_videos(src: str | os.PathLike) -> Tuple[List[str], List[VideoSource]]:
    """The class names and videos of ``src``: :func:`scan_source` without its reports.

    Returns:
        ``(class_names, videos)``: names in label order, and the videos sorted
        by label then id.

    Raises:
        As :func:`scan_source`.
    """
    scan = scan_source(src)
    return scan.class_names, scan.videos


# --------------------------------------------------------------------------- one video


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class ExtractionSettings:
    """How a dataset's videos are extracted; recorded in ``OUT/prepare.json``.

    Attributes:
        modality: ``"rgb+flow"`` (frames and flow, the two streams) or
            ``"rgb"`` (frames only).
        flow: the flow method, one of
            :data:`~keras_gated_tsn.data.flow.FLOW_METHODS`; ``None`` for
            ``modality="rgb"``.
        size: ``(width, height)`` of the frames in pixels, each >= 2.
        bound: flow clipping bound in pixels, > 0; ``None`` for ``"rgb"``.
        jpeg_quality: JPEG quality of every image, 0-100.

    Raises:
        ValueError: for any invalid field, quoting it.
    """

    modality: str = "rgb+flow"
    flow: Optional[str] = "tvl1"
    size: Tuple[int, int] = DEFAULT_SIZE
    bound: Optional[float] = DEFAULT_BOUND
    jpeg_quality: int = 95

    def __post_init__(self):
        if self.modality not in EXTRACT_MODALITIES:
            raise ValueError(
                f"unknown modality {self.modality!r}; expected one of "
                + ", ".join(repr(m) for m in EXTRACT_MODALITIES)
            )
        try:
            width, height = self.size
            valid = all(_is_int(v) and v >= 2 for v in (width, height))
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise ValueError(f"size must be (width, height), two integers >= 2, got {self.size!r}")
        object.__setattr__(self, "size", (int(width), int(height)))
        if not (_is_int(self.jpeg_quality) and 0 <= self.jpeg_quality <= 100):
            raise ValueError(f"jpeg_quality must be an integer in [0, 100], got {self.jpeg_quality!r}")
        object.__setattr__(self, "jpeg_quality", int(self.jpeg_quality))
        if self.modality == "rgb":  # flow settings mean nothing here
            object.__setattr__(self, "flow", None)
            object.__setattr__(self, "bound", None)
            return
        if self.flow not in flow_lib.FLOW_METHODS:
            raise ValueError(
                f"unknown flow method {self.flow!r}; expected one of "
                + ", ".join(repr(m) for m in flow_lib.FLOW_METHODS)
            )
        bound = self.bound
        if not (isinstance(bound, (int, float, np.number)) and not isinstance(bound, bool)
                and np.isfinite(bound) and bound > 0):
            raise ValueError(f"bound must be a positive number of pixels, got {bound!r}")
        object.__setattr__(self, "bound", float(bound))

    def to_json(self) -> dict:
        """The settings as recorded in ``prepare.json``, with the file-name layout."""
        return {
            "modality": self.modality,
            "flow": self.flow,
            "size": list(self.size),
            "bound": self.bound,
            "jpeg_quality": self.jpeg_quality,
            "layout": {"rgb": DEFAULT_LAYOUT.rgb, "flow_x": DEFAULT_LAYOUT.flow_x, "flow_y": DEFAULT_LAYOUT.flow_y},
        }

    def differences(self, other: "ExtractionSettings") -> List[str]:
        """``"size 340x256 (recorded) vs 171x128 (asked)"``-style lines, one per field that differs."""
        lines = []
        for field in dataclasses.fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if mine != theirs:
                lines.append(f"{field.name} {_show(field.name, mine)} vs {_show(field.name, theirs)}")
        return lines

    def describe(self) -> str:
        """The settings in one line, as the CLI spells them."""
        width, height = self.size
        text = f"modality {self.modality}, size {width}x{height}, JPEG quality {self.jpeg_quality}"
        if self.modality != "rgb":
            text += f", flow {self.flow}, bound {self.bound:g} px"
        return text


def _show(name: str, value) -> str:
    if name == "size":
        return f"{value[0]}x{value[1]}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _imwrite(path: str, image: np.ndarray, params: Sequence[int]) -> None:
    if not cv2.imwrite(path, image, list(params)):
        raise OSError(f"cannot write {path}")


class _FlowWriter:
    """Computes, encodes and writes flow pairs as their frames arrive.

    OpenCV's methods take one pair at a time; a batched method
    (:class:`~keras_gated_tsn.data.flow.TensorFlowTVL1`) gets
    ``pairs_per_call`` pairs at once, so at most that many pairs of frames
    are held.
    """

    def __init__(self, folder: str, settings: ExtractionSettings, params: Sequence[int]):
        self.folder, self.bound, self.params = folder, settings.bound, params
        self.algorithm = flow_lib.create_flow_algorithm(settings.flow)  # once per video
        self.batch = int(getattr(self.algorithm, "pairs_per_call", 1))
        self.pending: list = []

    def add(self, number: int, previous: np.ndarray, gray: np.ndarray) -> None:
        """Flow pair ``number`` (1-based) from ``previous`` to ``gray``."""
        self.pending.append((number, previous, gray))
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        if self.batch > 1:
            fields = self.algorithm.calc_pairs([p for _, p, _ in self.pending], [g for _, _, g in self.pending])
        else:
            fields = [flow_lib.compute_flow(p, g, algorithm=self.algorithm) for _, p, g in self.pending]
        for (number, _, _), field in zip(self.pending, fields):
            x, y = flow_lib.encode_flow(field, self.bound)
            name_x, name_y = DEFAULT_LAYOUT.flow_names(number)
            _imwrite(os.path.join(self.folder, name_x), x, self.params)
            _imwrite(os.path.join(self.folder, name_y), y, self.params)
        self.pending.clear()


def _write_frames(path: str, folder: str, settings: ExtractionSettings) -> int:
    """Decodes ``path`` once, frame by frame, and writes frames (and flow) into ``folder``.

    Only the previous grayscale frame is kept (a batched flow method: the
    pairs of one call), so memory does not depend on the video's length.
    """
    params = [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality]
    flows = _FlowWriter(folder, settings, params) if settings.modality != "rgb" else None
    previous = None
    count = 0
    for count, frame in enumerate(iter_frames_bgr(path, settings.size), start=1):
        _imwrite(os.path.join(folder, DEFAULT_LAYOUT.rgb_name(count)), frame, params)
        if flows is None:
            continue
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if previous is not None:
            flows.add(count - 1, previous, gray)
        previous = gray
    if flows is not None:
        flows.flush()
        if count < 2:
            raise VideoTooShortError(
                path, f"only {count} frame decoded; at least 2 are needed for one flow pair"
            )
    return count


def extract_video(
    path: str | os.PathLike,
    dest: str | os.PathLike,
    flow: str = "tvl1",
    size: Sequence[int] = DEFAULT_SIZE,
    bound: float = DEFAULT_BOUND,
    jpeg_quality: int = 95,
    modality: str = "rgb+flow",
) -> int:
    """Extracts one video's RGB frames and flow into the folder ``dest``, atomically.

    Writes ``img_00001.jpg`` ... ``img_<N>.jpg`` (RGB resized to ``size``) and,
    unless ``modality="rgb"``, ``flow_x_00001.jpg``/``flow_y_00001.jpg`` ...
    ``<N-1>`` (flow from frame ``i`` to ``i + 1`` on the resized grayscale
    frames, encoded by :func:`~keras_gated_tsn.data.flow.encode_flow`) into
    ``<parent>/.<name>.tmp-<pid>``, then renames that folder to ``dest``. On
    any error (or interrupt) the temporary folder is removed and ``dest`` is
    not created. Frames stream through: memory does not grow with the
    video's length.

    Args:
        path: the video file.
        dest: the frame folder to create; must not exist.
        flow: one of :data:`~keras_gated_tsn.data.flow.FLOW_METHODS`.
        size: ``(width, height)`` of the frames in pixels.
        bound: flow clipping bound in pixels.
        jpeg_quality: JPEG quality 0-100 of every image.
        modality: ``"rgb+flow"`` or ``"rgb"`` (frames only; ``flow`` and
            ``bound`` are then ignored).

    Returns:
        N, the number of RGB frames written (>= 2 with flow, >= 1 without).

    Raises:
        ValueError: on an invalid argument.
        FileExistsError: if ``dest`` already exists.
        VideoDecodeError: if the video cannot be opened, decoding fails, or it
            has fewer than 2 frames for flow (reason in ``.reason``).
        OSError: if an image cannot be written.
    """
    settings = ExtractionSettings(modality, flow, tuple(size) if size is not None else size, bound, jpeg_quality)
    return _extract(os.fspath(path), os.fspath(dest), settings)


def _extract(path: str, dest: str, settings: ExtractionSettings) -> int:
    if os.path.exists(dest):
        raise FileExistsError(f"{dest} already exists")
    parent, name = os.path.split(os.path.abspath(dest))
    tmp = os.path.join(parent, f".{name}{_TMP_MARKER}{os.getpid()}")
    if os.path.exists(tmp):  # a leftover of a dead process that had our pid
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        count = _write_frames(path, tmp, settings)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return count


def extract_snippets(
    path: str | os.PathLike,
    dest: str | os.PathLike,
    num_snippets: int,
    new_length: int = 5,
    modality: str = "rgb+flow",
    flow: str = "tvl1",
    size: Sequence[int] = DEFAULT_SIZE,
    bound: float = DEFAULT_BOUND,
    jpeg_quality: int = 95,
) -> int:
    """Extracts only what the test protocol reads of one video, into ``dest``.

    For ``gated-tsn predict``: of a video of N frames, the test protocol
    (:func:`~keras_gated_tsn.data.sampling.test_offsets`, ``num_snippets``
    uniformly spaced snippets of ``new_length`` flow pairs, or of one frame
    for ``"rgb"``) reads a few dozen frames and flow pairs; this writes those
    (plus the last frame and flow pair, which mark the folder as holding N
    frames), named and encoded exactly as :func:`extract_video` would, so
    :func:`~keras_gated_tsn.data.pipeline.make_test_dataset` reads the folder
    as a prepared one. The video is decoded twice (once to count its
    frames), frame by frame; flow is computed for the needed pairs only.

    Args:
        path: the video file.
        dest: the frame folder to write (created if needed).
        num_snippets: snippets of the test protocol (25 in the paper), >= 1.
        new_length: flow pairs per snippet (L), >= 1; 1 frame for ``"rgb"``.
        modality: ``"rgb"``, ``"flow"`` or ``"rgb+flow"`` (the model's input).
        flow, size, bound, jpeg_quality: as in :func:`extract_video`.

    Returns:
        N, the number of frames of the video.

    Raises:
        ValueError: on an invalid argument.
        VideoDecodeError: if the video cannot be decoded, has fewer than 2
            frames for flow, or decodes to fewer frames the second time.
        OSError: if an image cannot be written.
    """
    from keras_gated_tsn.data import sampling
    from keras_gated_tsn.data.video import count_frames

    if modality not in ("rgb", "flow", "rgb+flow"):
        raise ValueError(f"modality must be 'rgb', 'flow' or 'rgb+flow', got {modality!r}")
    for name, value in (("num_snippets", num_snippets), ("new_length", new_length)):
        if not _is_int(value) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    settings = ExtractionSettings("rgb" if modality == "rgb" else "rgb+flow", flow,
                                  tuple(size) if size is not None else size, bound, jpeg_quality)
    path, dest = os.fspath(path), os.fspath(dest)
    total = count_frames(path)
    with_flow = modality != "rgb"
    if with_flow:
        items = total - 1
        if items < 1:
            raise VideoTooShortError(path, f"only {total} frame decoded; at least 2 are needed for one flow pair")
        offsets = sampling.test_offsets(items, num_snippets, new_length)
        pairs = {int(i) for i in sampling.snippet_indices(offsets, items, new_length).ravel()} | {items - 1}
        frames = ({int(o) for o in offsets} | {total - 1}) if modality == "rgb+flow" else set()
        grays = pairs | {p + 1 for p in pairs}
    else:
        offsets = sampling.test_offsets(total, num_snippets, 1)
        frames, pairs, grays = {int(o) for o in offsets} | {total - 1}, set(), set()
    os.makedirs(dest, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality]
    flows = _FlowWriter(dest, settings, params) if with_flow else None
    previous = None
    decoded = 0
    for index, frame in enumerate(iter_frames_bgr(path, settings.size)):
        decoded = index + 1
        if index >= total:
            break
        if index in frames:
            _imwrite(os.path.join(dest, DEFAULT_LAYOUT.rgb_name(index + 1)), frame, params)
        if index not in grays:
            previous = None
            continue
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if previous is not None and index - 1 in pairs:
            flows.add(index, previous, gray)
        previous = gray
    if flows is not None:
        flows.flush()
    if decoded < total:
        raise VideoDecodeError(path, f"decoded {total} frames, then only {decoded} the second time")
    return total


# --------------------------------------------------------------------------- settings


def _read_settings(path: str) -> ExtractionSettings:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        size = data["size"]
        return ExtractionSettings(
            data["modality"], data["flow"], tuple(size) if isinstance(size, list) else size,
            data["bound"], data["jpeg_quality"],
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path} does not hold readable extraction settings ({type(error).__name__}: {error}); "
            "it records how the frames beside it were extracted: restore it, or delete it to have "
            "the next run record its own settings"
        ) from None


def _settings_of_folder(folder: str) -> Optional[Tuple[str, Tuple[int, int]]]:
    """``(modality, (width, height))`` of a finished frame folder, from its files;
    ``None`` for a folder that is no complete extraction (reported later)."""
    image = cv2.imread(os.path.join(folder, DEFAULT_LAYOUT.rgb_name(1)), cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    size = (int(image.shape[1]), int(image.shape[0]))
    if _existing_frame_count(folder, "rgb+flow")[1] is None:
        return "rgb+flow", size
    if not os.path.isfile(os.path.join(folder, DEFAULT_LAYOUT.flow_names(1)[0])):
        return "rgb", size
    return None


def check_settings(out: str | os.PathLike, settings: ExtractionSettings) -> Optional[ExtractionSettings]:
    """Refuses to extract into ``out`` with settings other than those it holds;
    records them when the folder has none.

    ``out/prepare.json`` records the settings of the first run. A later run
    must ask for the same ones: otherwise one folder would mix frame sizes or
    flow methods, which nothing downstream could tell apart. A folder written
    before settings were recorded is checked against its first finished
    video (frame size, flow present or not) instead.

    Args:
        out: the output folder (created if needed).
        settings: what this run asks for.

    Returns:
        The settings recorded before this call, or ``None`` if there were none.

    Raises:
        ValueError: naming each setting that differs (recorded vs asked) and
            what to do, or if ``prepare.json`` cannot be read.
    """
    out = os.fspath(out)
    path = os.path.join(out, SETTINGS_FILE)
    recorded = _read_settings(path) if os.path.isfile(path) else None
    if recorded is not None:
        differences = recorded.differences(settings)
        if differences:
            raise ValueError(
                f"{out} was prepared with other settings ({path}: {recorded.describe()}); this run "
                f"differs in: {'; '.join(differences)} (recorded vs asked). One folder holds one "
                "extraction: run again with the recorded settings, or prepare into another folder"
            )
        return recorded
    frames_dir = os.path.join(out, FRAMES_DIR)
    if os.path.isdir(frames_dir):
        with os.scandir(frames_dir) as entries:
            finished = sorted(e.path for e in entries if e.is_dir() and not e.name.startswith("."))
        for folder in finished[:10]:  # the first complete one tells
            found = _settings_of_folder(folder)
            if found is None:
                continue
            modality, size = found
            if found != (settings.modality, settings.size):
                raise ValueError(
                    f"{out} holds frames extracted before settings were recorded, and they differ from "
                    f"this run: {folder} has modality {modality}, size {size[0]}x{size[1]}; this run "
                    f"asks for modality {settings.modality}, size {settings.size[0]}x{settings.size[1]}. "
                    "Run again with matching settings, or prepare into another folder"
                )
            break
    os.makedirs(out, exist_ok=True)
    atomic_write(path, lambda handle: handle.write(json.dumps(settings.to_json(), indent=2) + "\n"))
    return None


# --------------------------------------------------------------------------- the folder


def _existing_frame_count(folder: str, modality: str = "rgb+flow") -> Tuple[int, Optional[str]]:
    """Counts ``img_*.jpg`` of a finished folder; a reason if it looks incomplete."""
    counts = {"rgb": 0, "flow_x": 0, "flow_y": 0, "": 0}
    with os.scandir(folder) as entries:
        for entry in entries:
            counts[DEFAULT_LAYOUT.kind_of(entry.name)] += 1
    images, flows_x, flows_y = counts["rgb"], counts["flow_x"], counts["flow_y"]
    if modality == "rgb":
        if images < 1:
            return images, (
                f"existing folder {folder} is not a complete extraction (no img file); "
                "delete it to extract the video again"
            )
        return images, None
    if images < 2 or flows_x != images - 1 or flows_y != images - 1:
        return images, (
            f"existing folder {folder} is not a complete extraction ({images} img, "
            f"{flows_x} flow_x, {flows_y} flow_y files; expected N >= 2 img and N-1 "
            "of each flow); delete it to extract the video again"
        )
    return images, None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours from an earlier call of this process: nothing writes it now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_stale_temporaries(frames_dir: str) -> None:
    """Removes ``.<video>.tmp-<pid>`` folders whose process is gone (a killed run)."""
    with os.scandir(frames_dir) as entries:
        candidates = [e for e in entries if e.name.startswith(".") and _TMP_MARKER in e.name]
    for entry in candidates:
        try:
            pid = int(entry.name.rsplit(_TMP_MARKER, 1)[1])
        except ValueError:
            continue
        if not _pid_alive(pid):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                try:
                    os.remove(entry.path)
                except OSError:
                    pass


def _extract_task(
    source: VideoSource, frames_dir: str, settings: ExtractionSettings
) -> Tuple[str, object]:
    """Worker entry: ``("done", num_frames)`` or ``("failed", reason)``; never raises
    for a bad video (only for an interrupt)."""
    dest = os.path.join(frames_dir, source.video)
    try:
        return "done", _extract(source.path, dest, settings)
    except VideoDecodeError as error:
        return "failed", error.reason
    except FileExistsError:
        # Another process finished this video meanwhile: accept its folder.
        count, problem = _existing_frame_count(dest, settings.modality)
        return ("failed", problem) if problem else ("skipped", count)
    except Exception as error:  # cv2.error, OSError, MemoryError ...: report, go on
        return "failed", f"{type(error).__name__}: {error}"


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would oversubscribe
    flow_lib.SINGLE_CORE = True  # the same for the TensorFlow TV-L1
    # Ctrl-C reaches the whole process group: the parent stops the workers itself,
    # so they print no KeyboardInterrupt traceback of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_workers(executor) -> None:
    """Ends the pool's worker processes at once (their videos are unfinished;
    the caller removes their temporary folders). ``ProcessPoolExecutor`` has no
    public way to do this before Python 3.14."""
    processes = getattr(executor, "_processes", None) or {}
    for process in list(processes.values()):
        if process.is_alive():
            process.terminate()
    for process in list(processes.values()):
        process.join(timeout=10)


_CRASH_REASON = (
    "the worker process died while extracting this video (crash in the decoder "
    "or out of memory); the video is probably corrupt"
)


def _run_parallel(
    sources: Sequence[VideoSource],
    frames_dir: str,
    settings: ExtractionSettings,
    workers: int,
    on_result: Callable[[VideoSource, str, object], None],
    task: Callable = _extract_task,
) -> None:
    """Runs ``task`` over ``sources`` in ``workers`` spawned processes.

    At most ``workers`` videos are in flight. If a worker process dies (a
    segfault in a decoder), the pool is rebuilt and the videos that were in
    flight are retried one at a time; one that kills its worker when alone is
    reported as failed.
    """
    context = multiprocessing.get_context("spawn")
    pending = collections.deque(sources)
    suspects: collections.deque = collections.deque()
    executor = None
    in_flight: Dict[concurrent.futures.Future, VideoSource] = {}
    try:
        while pending or suspects or in_flight:
            if executor is None:
                executor = concurrent.futures.ProcessPoolExecutor(
                    max_workers=workers, mp_context=context, initializer=_init_worker
                )
            isolated = bool(suspects)
            if isolated:
                if not in_flight:
                    source = suspects.popleft()
                    in_flight[executor.submit(task, source, frames_dir, settings)] = source
            else:
                while pending and len(in_flight) < workers:
                    source = pending.popleft()
                    in_flight[executor.submit(task, source, frames_dir, settings)] = source
            finished, _ = concurrent.futures.wait(
                in_flight, return_when=concurrent.futures.FIRST_COMPLETED
            )
            broken = any(isinstance(f.exception(), BrokenProcessPool) for f in finished)
            if broken:
                concurrent.futures.wait(in_flight)
                executor.shutdown(wait=True)
                executor = None
                # Workers killed with the pool leave their temporary folders.
                _remove_stale_temporaries(frames_dir)
                finished = set(in_flight)  # all are settled now
            crashed = []
            for future in finished:
                source = in_flight.pop(future)
                error = future.exception()
                if error is None:
                    status, value = future.result()
                    on_result(source, status, value)
                elif isinstance(error, BrokenProcessPool):
                    crashed.append(source)
                else:  # an exception escaping the task: report, never stop the run
                    on_result(source, "failed", f"{type(error).__name__}: {error}")
            if crashed and isolated:
                for source in crashed:
                    on_result(source, "failed", _CRASH_REASON)
            else:
                suspects.extend(crashed)
    except KeyboardInterrupt:
        if executor is not None:
            _stop_workers(executor)
        raise
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
            _remove_stale_temporaries(frames_dir)


class PrepareInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGINT) stopped :func:`prepare_dataset`.

    Attributes:
        report: the :class:`PrepareReport` so far (no list file was written).
        total: the number of videos of the source.
    """

    def __init__(self, report: "PrepareReport", total: int):
        super().__init__()
        self.report = report
        self.total = total

    def __str__(self) -> str:
        report = self.report
        return (
            f"interrupted: {len(report.done) + len(report.skipped)} of {self.total} videos are "
            f"extracted in {report.out} ({len(report.done)} by this run); the unfinished ones left "
            "nothing behind; run the same command again to go on"
        )


def _progress_bar(total: int):
    from keras.utils import Progbar  # imported only here: it loads the backend

    # One line every 30 s when the output is a log file, not one per video.
    interactive = sys.stdout.isatty()
    return Progbar(
        total, unit_name="video", stateful_metrics=["videos/s", "failed"], interval=0.05 if interactive else 30.0
    )


def prepare_dataset(
    src: str | os.PathLike,
    out: str | os.PathLike,
    flow: str = "tvl1",
    workers: int = 1,
    size: Sequence[int] = DEFAULT_SIZE,
    bound: float = DEFAULT_BOUND,
    jpeg_quality: int = 95,
    progress: bool = True,
    modality: str = "rgb+flow",
    class_names: Optional[Sequence[str]] = None,
) -> PrepareReport:
    """Extracts frames and optical flow of every video of ``src`` into ``out``.

    See the module docstring for the layouts. Every video is decoded once,
    frame by frame; its frames are resized to ``size`` (bilinear, aspect ratio
    ignored, as TSN), written as RGB JPEG, converted to grayscale once, and
    the flow between consecutive frames is computed, clipped at ``+-bound`` px
    and written as two 8-bit JPEG images (128 = no motion). The frame count is
    what was actually decoded. Then ``out/classes.txt`` and ``out/all.txt``
    list every complete video (extracted now or by an earlier run), and
    ``out/failed.txt`` the videos that could not be extracted (removed when
    none failed).

    Re-running is safe and cheap: a video whose folder ``out/frames/<id>``
    exists is skipped (its frame count read from the folder); temporary
    folders left by a killed run are removed. The settings are checked
    against ``out/prepare.json`` (:func:`check_settings`) before anything is
    written.

    Args:
        src: dataset folder, ``src/<class>/<video>.<ext>`` (UCF101 layout).
        out: output folder (created if needed); must not be inside ``src``.
        flow: one of :data:`~keras_gated_tsn.data.flow.FLOW_METHODS`:
            ``"tvl1"`` (TSN's; about 1 s per 340x256 frame pair on one CPU
            core), ``"dis"`` (about 0.01 s per pair, lower quality).
        workers: number of processes. 1 runs in this process (OpenCV then
            uses its own threads). More start a ``spawn`` process pool (safe
            after TensorFlow was imported), each worker single-threaded in
            OpenCV; a worker that crashes on a video only fails that video.
        size: ``(width, height)`` of the extracted frames, pixels.
        bound: flow clipping bound, pixels, > 0.
        jpeg_quality: JPEG quality of every image, 0-100.
        progress: show a ``keras.utils.Progbar`` over the videos to extract,
            with videos/s, the failures so far and the ETA.
        modality: ``"rgb+flow"`` or ``"rgb"`` (frames only, for spatial-only
            work; ``flow`` and ``bound`` are then not used).
        class_names: optional class names in label order (an official class
            list); class folders are matched to them ignoring case (see
            :func:`scan_source`).

    Returns:
        A :class:`PrepareReport`. Videos that could not be extracted (cannot
        be opened, decode to too few frames, decoder error) are in
        ``report.failed`` with the reason; the run goes on without them.

    Raises:
        ValueError: on an invalid argument, if ``out`` is inside ``src``, if
            ``src`` has no class folder, no video, or repeated video ids, or
            if ``out`` was prepared with other settings (checked before
            anything is written).
        FileNotFoundError, NotADirectoryError: if ``src`` is not a folder.
        PrepareInterrupted: on Ctrl-C, after the worker processes are
            stopped and their unfinished folders removed (a
            ``KeyboardInterrupt``).
    """
    settings = ExtractionSettings(modality, flow, tuple(size) if size is not None else size, bound, jpeg_quality)
    if not _is_int(workers) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    src, out = os.fspath(src), os.fspath(out)
    scan = scan_source(src, class_names)
    sources = scan.videos
    real_src, real_out = os.path.realpath(src), os.path.realpath(out)
    if os.path.commonpath([real_src, real_out]) == real_src:
        raise ValueError(f"the output folder {out} must not be inside the source folder {src}")
    check_settings(out, settings)

    frames_dir = os.path.join(out, FRAMES_DIR)
    os.makedirs(frames_dir, exist_ok=True)
    _remove_stale_temporaries(frames_dir)

    report = PrepareReport(
        out=out, class_names=list(scan.class_names), loose_videos=list(scan.loose_videos),
        empty_classes=list(scan.empty_classes), absent_classes=list(scan.absent_classes), settings=settings,
    )
    counts: Dict[str, int] = {}

    def record(source: VideoSource, status: str, value) -> None:
        if status == "failed":
            report.failed.append((source.path, str(value)))
        else:
            counts[source.video] = int(value)
            (report.done if status == "done" else report.skipped).append(source.video)

    to_do: List[VideoSource] = []
    for source in sources:
        folder = os.path.join(frames_dir, source.video)
        if os.path.isdir(folder):
            count, problem = _existing_frame_count(folder, settings.modality)
            record(source, "failed" if problem else "skipped", problem or count)
        else:
            to_do.append(source)

    bar = _progress_bar(len(to_do)) if progress and to_do else None
    started = time.monotonic()
    finished, failures = [0], [0]

    def on_result(source: VideoSource, status: str, value) -> None:
        record(source, status, value)
        finished[0] += 1
        failures[0] += status == "failed"
        if bar is not None:
            rate = finished[0] / max(time.monotonic() - started, 1e-9)
            bar.add(1, values=[("videos/s", rate), ("failed", failures[0])])

    try:
        if workers == 1 or len(to_do) <= 1:
            for source in to_do:
                status, value = _extract_task(source, frames_dir, settings)
                on_result(source, status, value)
        else:
            _run_parallel(to_do, frames_dir, settings, min(workers, len(to_do)), on_result)
    except KeyboardInterrupt:
        _remove_stale_temporaries(frames_dir)
        raise PrepareInterrupted(report, len(sources)) from None

    order = {source.video: i for i, source in enumerate(sources)}  # by label, then id
    report.done.sort(key=order.__getitem__)
    report.skipped.sort(key=order.__getitem__)
    report.failed.sort()
    report.records = [
        lists.VideoRecord(source.video, counts[source.video], source.label)
        for source in sources
        if source.video in counts
    ]
    lists.write_class_names(os.path.join(out, CLASSES_FILE), scan.class_names)
    lists.write_list_file(os.path.join(out, ALL_LIST), report.records)
    failed_path = os.path.join(out, FAILED_LIST)
    if report.failed:
        atomic_write(failed_path, lambda handle: handle.write(
            "".join(f"{path}\t{' '.join(reason.split())}\n" for path, reason in report.failed)))
    elif os.path.isfile(failed_path):
        os.remove(failed_path)
    return report
