"""The embedded sample set: six real UCF101 / HMDB51 clips shipped as package data.

The clips (``keras_gated_tsn/datasets/samples/``, see the README there for
their provenance and BSD-3-Clause licence) make a 3-class dataset --
SoccerJuggling (2 clips), wave (3 clips), cartwheel (1 clip) -- for the demo,
the examples and end-to-end smoke tests, with nothing to download:

1. :func:`build_sample_videos` cuts every clip into short consecutive
   sub-clips and writes them in UCF101's folder layout, so that the few clips
   become a few dozen videos;
2. ``gated-tsn prepare`` extracts their frames and optical flow;
3. :func:`sample_split` divides the prepared records into train, val and test.

This is a smoke-test dataset of six source clips, **not a benchmark**: it shows
that the pipeline runs on real video, and accuracies measured on it mean
nothing about the methods.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import math
import os
import pathlib
import re
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence

import numpy as np

from keras_gated_tsn.data.lists import VideoRecord
from keras_gated_tsn.data.video import VideoDecodeError, count_frames, frame_rate, read_frames, write_video

SAMPLES_PACKAGE = "keras_gated_tsn.datasets.samples"

#: Class names of the sample set, in the order sample clips are listed.
SAMPLE_CLASSES = ("SoccerJuggling", "wave", "cartwheel")

# (file name, class, source dataset, decoded frames, sha256 of the file)
_CLIPS = (
    ("v_SoccerJuggling_g23_c01.avi", "SoccerJuggling", "ucf101", 240,
     "e1d577a0b1590e3885d1117950a90adfe4849f222eafcc3aea73683e602dc26a"),
    ("v_SoccerJuggling_g24_c01.avi", "SoccerJuggling", "ucf101", 251,
     "8c3fe073243fbf43553196b27016e66006e69e1fcc68cd926affdc083152ba46"),
    ("RATRACE_wave_f_nm_np1_fr_goo_37.avi", "wave", "hmdb51", 72,
     "6a617ed6622abab8e3e975da8e450d4f804a32775ee74448f9db0bac76411ef2"),
    ("SchoolRulesHowTheyHelpUs_wave_f_nm_np1_ba_med_0.avi", "wave", "hmdb51", 74,
     "d689e38790330971024d78de01d072952c38501610270699966b3b5c4d894353"),
    ("TrumanShow_wave_f_nm_np1_fr_med_26.avi", "wave", "hmdb51", 48,
     "aef6e317bd5011dc0b226c9ee93909971dd598b5629772eb8dce4d3667c6a80f"),
    ("hmdb51_Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6.avi", "cartwheel", "hmdb51", 83,
     "a72e13832c21410af90e6ba2246da9427f463fd13588db9be32a12a2275b8f36"),
)

# Written into a built folder; marks it as ours and records how it was built.
MARKER_FILE = ".keras_gated_tsn_samples.json"
_MARKER_VERSION = 1
_PART_RE = re.compile(r"^(?P<stem>.+)_part(?P<index>\d+)$")


@dataclasses.dataclass(frozen=True)
class SampleClip:
    """One embedded sample clip.

    Attributes:
        path: the installed ``.avi`` file (inside the package).
        class_name: ``"SoccerJuggling"``, ``"wave"`` or ``"cartwheel"``.
        dataset: the clip's source dataset, ``"ucf101"`` or ``"hmdb51"``.
        num_frames: the number of frames OpenCV decodes from it.
        sha256: hex digest of the file, as shipped.
    """

    path: pathlib.Path
    class_name: str
    dataset: str
    num_frames: int
    sha256: str

    @property
    def stem(self) -> str:
        """File name without ``.avi``, e.g. ``v_SoccerJuggling_g23_c01``."""
        return self.path.stem


def sample_clips() -> List[SampleClip]:
    """Lists the six embedded clips: SoccerJuggling x2, wave x3, cartwheel x1.

    Returns:
        The clips in a fixed order (by class as in :data:`SAMPLE_CLASSES`, then
        by file name).

    Raises:
        RuntimeError: if the package is installed in a form whose data files
            are not plain files on disk (e.g. imported from a zip archive),
            which OpenCV could not open.
    """
    root = importlib.resources.files(SAMPLES_PACKAGE)
    clips = []
    for filename, class_name, dataset, num_frames, sha256 in _CLIPS:
        resource = root.joinpath(filename)
        if not isinstance(resource, pathlib.Path):
            raise RuntimeError(
                f"sample clip {filename} is not a file on disk ({resource!r}); install "
                "keras_gated_tsn unzipped (a regular pip install) to use the sample set"
            )
        clips.append(SampleClip(resource, class_name, dataset, num_frames, sha256))
    return clips


def build_sample_videos(
    out_dir: str | os.PathLike,
    frames_per_clip: int = 24,
    min_frames: Optional[int] = None,
    *,
    overwrite: bool = False,
) -> pathlib.Path:
    """Cuts the sample clips into short videos in UCF101's folder layout.

    Each clip is cut into consecutive, non-overlapping sub-clips of
    ``frames_per_clip`` frames, from its first frame on; a last, shorter piece
    is kept when it has at least ``min_frames`` frames and dropped otherwise.
    Sub-clip ``i`` of ``<stem>.avi`` is written as
    ``out_dir/<class>/<stem>_part<NN>.avi`` (``NN`` = ``i`` zero-padded to two
    digits, from 00): Motion-JPEG in AVI, the clip's own frame size (320x240,
    560x240 or 432x240) and frame rate (29.97 or 30 fps), BGR uint8 frames
    re-encoded once as JPEG. Ready for ``gated-tsn prepare``.

    Sub-clips per class: with ``frames_per_clip=24`` SoccerJuggling 20, wave 8,
    cartwheel 3 (31 videos); with 16, 31, 13 and 5 (49 videos).

    The folder is built in a temporary folder beside ``out_dir`` and renamed
    into place, so a half-built folder never appears; it holds a marker file
    (:data:`MARKER_FILE`) recording the arguments. When ``out_dir`` already
    holds a complete build with the same arguments, nothing is done.

    Args:
        out_dir: folder to create; may exist if it is empty or was built by
            this function.
        frames_per_clip: frames per sub-clip, an int >= 1.
        min_frames: shortest last piece that is kept, 1 <= min_frames <=
            frames_per_clip; default ``ceil(frames_per_clip / 2)`` (a piece
            shorter than half a sub-clip is dropped).
        overwrite: rebuild an ``out_dir`` built earlier with other arguments
            (a folder not built by this function is never replaced).

    Returns:
        ``out_dir`` as a :class:`pathlib.Path`.

    Raises:
        ValueError: if ``frames_per_clip`` or ``min_frames`` is out of range.
        FileExistsError: if ``out_dir`` exists and is neither empty nor a
            build of this function, or is a build with other arguments and
            ``overwrite`` is False.
        RuntimeError: naming the clip, if a sample clip cannot be decoded or
            a sub-clip cannot be written.
    """
    if isinstance(frames_per_clip, bool) or not isinstance(frames_per_clip, int) or frames_per_clip < 1:
        raise ValueError(f"frames_per_clip must be an int >= 1, got {frames_per_clip!r}")
    if min_frames is None:
        min_frames = math.ceil(frames_per_clip / 2)
    if (
        isinstance(min_frames, bool)
        or not isinstance(min_frames, int)
        or not 1 <= min_frames <= frames_per_clip
    ):
        raise ValueError(
            f"min_frames must be an int in 1..frames_per_clip={frames_per_clip}, got {min_frames!r}"
        )
    out_dir = pathlib.Path(out_dir)
    params = {"frames_per_clip": frames_per_clip, "min_frames": min_frames}

    if out_dir.exists():
        state = _build_state(out_dir, params)
        if state == "done":
            return out_dir
        if state == "foreign":
            raise FileExistsError(
                f"{out_dir} exists and was not built by build_sample_videos; "
                "give a new or empty folder"
            )
        if state == "other" and not overwrite:
            marker = json.loads((out_dir / MARKER_FILE).read_text(encoding="utf-8"))
            raise FileExistsError(
                f"{out_dir} holds sample videos built with frames_per_clip="
                f"{marker.get('frames_per_clip')}, min_frames={marker.get('min_frames')}; "
                "pass overwrite=True or another folder"
            )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    old: Optional[pathlib.Path] = None
    try:
        videos = []
        for clip in sample_clips():
            videos.extend(_cut_clip(clip, tmp, frames_per_clip, min_frames))
        marker = dict(params, version=_MARKER_VERSION, videos=videos)
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
        state = _build_state(out_dir, params) if out_dir.exists() else "absent"
        if state == "done":  # built meanwhile by another process
            shutil.rmtree(tmp, ignore_errors=True)
            return out_dir
        if state == "empty":
            out_dir.rmdir()
        elif state == "other" and overwrite:  # an earlier build: move it aside
            old = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "build")
        elif state != "absent":
            raise FileExistsError(f"{out_dir} appeared while the sample videos were being built")
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if out_dir.exists() and _build_state(out_dir, params) == "done":
                shutil.rmtree(tmp, ignore_errors=True)
                return out_dir
            if old is not None and not out_dir.exists():  # put the earlier build back
                os.replace(old / "build", out_dir)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out_dir


def sample_split(records: Sequence[VideoRecord]) -> Dict[str, List[VideoRecord]]:
    """Splits the prepared sample sub-clips into train, val and test sets.

    A smoke-test split of a handful of clips, deterministic, not a benchmark.
    Each record must be a sub-clip ``<clip stem>_part<NN>`` of a sample clip
    (:func:`build_sample_videos`); its label is the prepared dataset's, and
    all sub-clips of one class must share one label. Per class:

    - with two or more source clips (SoccerJuggling, wave), the clip whose stem
      sorts last is held out (``v_SoccerJuggling_g24_c01``,
      ``TrumanShow_wave_...``): the others' sub-clips are for training; of the
      held-out clip's sub-clips in time order, the first ``n // 2`` are for
      validation and the rest for testing -- no source clip is in train and
      test at once;
    - with one source clip (cartwheel), the split is in time: of ``n >= 2``
      sub-clips the last ``max(1, n // 5)`` are for testing, the
      ``max(1, n // 5)`` before them for validation when ``n >= 3``, and the
      earlier ones for training.

    Every class is in train and in test, and in val when it has enough
    sub-clips (two or more in the held-out clip; three or more for a
    single-clip class). With ``frames_per_clip=24``: train 17, val 7, test 7 sub-clips;
    with 16: train 28, val 10, test 11.

    Args:
        records: prepared records (any subset of the sample sub-clips).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each list in the
        order of ``records``.

    Raises:
        ValueError: naming the video, if a record is not a sample sub-clip, is
            listed twice, or its label disagrees with other sub-clips of its
            class; naming the class, if a class has a single sub-clip.
    """
    by_stem = {clip.stem.casefold(): clip for clip in sample_clips()}
    class_label: Dict[str, int] = {}
    label_class: Dict[int, str] = {}
    groups: Dict[str, Dict[str, List[tuple]]] = {}
    seen = set()
    for position, record in enumerate(records):
        match = _PART_RE.match(record.video)
        clip = by_stem.get(match.group("stem").casefold()) if match else None
        if clip is None:
            raise ValueError(
                f"video {record.video!r} is not a sample sub-clip '<clip stem>_partNN' "
                f"of {sorted(c.stem for c in by_stem.values())}"
            )
        if record.video.casefold() in seen:
            raise ValueError(f"video {record.video!r} is listed twice")
        seen.add(record.video.casefold())
        known_label = class_label.setdefault(clip.class_name, record.label)
        known_class = label_class.setdefault(record.label, clip.class_name)
        if known_label != record.label:
            raise ValueError(
                f"video {record.video!r} ({clip.class_name}) has label {record.label}, but "
                f"other {clip.class_name} sub-clips have label {known_label}"
            )
        if known_class != clip.class_name:
            raise ValueError(
                f"video {record.video!r} ({clip.class_name}) has label {record.label}, which "
                f"other records give to {known_class}"
            )
        parts = groups.setdefault(clip.class_name, {}).setdefault(clip.stem, [])
        parts.append((int(match.group("index")), position))

    subset_of: Dict[int, str] = {}
    for class_name in sorted(groups, key=lambda c: class_label[c]):
        clips = groups[class_name]
        stems = sorted(clips)
        if len(stems) >= 2:
            for stem in stems[:-1]:
                for _, position in clips[stem]:
                    subset_of[position] = "train"
            held = sorted(clips[stems[-1]])
            n_val = len(held) // 2
            for i, (_, position) in enumerate(held):
                subset_of[position] = "val" if i < n_val else "test"
        else:
            parts = sorted(clips[stems[0]])
            n = len(parts)
            if n < 2:
                raise ValueError(
                    f"class {class_name!r} has a single sub-clip ({records[parts[0][1]].video!r}); "
                    "it cannot be in both train and test -- use a smaller frames_per_clip"
                )
            n_test = max(1, n // 5)
            n_val = max(1, n // 5) if n >= 3 else 0
            n_train = n - n_test - n_val
            for i, (_, position) in enumerate(parts):
                subset_of[position] = (
                    "train" if i < n_train else "val" if i < n_train + n_val else "test"
                )

    result: Dict[str, List[VideoRecord]] = {"train": [], "val": [], "test": []}
    for position, record in enumerate(records):
        result[subset_of[position]].append(record)
    return result


# ---------------------------------------------------------------------------


def _build_state(out_dir: pathlib.Path, params: dict) -> str:
    """``"done"`` (complete, same params), ``"other"`` (ours, other params or
    incomplete), ``"empty"`` or ``"foreign"``."""
    if not out_dir.is_dir():
        return "foreign"
    marker_path = out_dir / MARKER_FILE
    if not marker_path.is_file():
        return "empty" if not any(out_dir.iterdir()) else "foreign"
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "other"
    if not isinstance(marker, dict):
        return "other"
    same = (
        marker.get("version") == _MARKER_VERSION
        and all(marker.get(k) == v for k, v in params.items())
        and isinstance(marker.get("videos"), list)
        and all(isinstance(v, str) and (out_dir / v).is_file() for v in marker["videos"])
    )
    return "done" if same else "other"


def _read_frames(clip: SampleClip) -> tuple:
    """All RGB frames of a sample clip and its frame rate."""
    try:
        return read_frames(clip.path), frame_rate(clip.path)
    except VideoDecodeError as error:
        raise RuntimeError(f"sample clip {clip.path}: {error.reason}") from error


def _cut_clip(
    clip: SampleClip, root: pathlib.Path, frames_per_clip: int, min_frames: int
) -> List[str]:
    """Writes the sub-clips of one clip under ``root/<class>/``; returns their relative paths."""
    frames, fps = _read_frames(clip)
    starts = [
        s for s in range(0, len(frames), frames_per_clip)
        if min(frames_per_clip, len(frames) - s) >= min_frames
    ]
    width = max(2, len(str(len(starts) - 1)))
    class_dir = root / clip.class_name
    class_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index, start in enumerate(starts):
        part = frames[start:start + frames_per_clip]
        relative = f"{clip.class_name}/{clip.stem}_part{index:0{width}d}.avi"
        _write_video(root / relative, part, fps, clip)
        written.append(relative)
    return written


def _write_video(path: pathlib.Path, frames: np.ndarray, fps: float, clip: SampleClip) -> None:
    """Writes RGB ``frames`` as a Motion-JPEG AVI and checks that it decodes to as many."""
    write_video(path, frames, fps, fourcc="MJPG")
    count = count_frames(path)
    if count != len(frames):
        raise RuntimeError(
            f"{path}: wrote {len(frames)} frames from sample clip {clip.path} but the file "
            f"holds {count}"
        )


def prepare_sample_dataset(
    out_dir: str | os.PathLike,
    frames_per_clip: int = 16,
    frame_size: Sequence[int] = (128, 96),
    *,
    progress: bool = True,
) -> pathlib.Path:
    """The embedded sample clips as a prepared dataset with train/val/test lists.

    Cuts the clips into sub-clips under ``out_dir/videos``
    (:func:`build_sample_videos`), extracts frames and DIS flow at
    ``frame_size`` into ``out_dir/dataset`` (``gated-tsn prepare``) and writes
    :func:`sample_split`'s lists there. With the defaults: 3 classes, 28 / 10 /
    11 sub-clips of 16 frames.

    Args:
        out_dir: output folder (created).
        frames_per_clip: frames per sub-clip.
        frame_size: ``(width, height)`` of the extracted frames in pixels.
        progress: show the extraction progress bar.

    Returns:
        The prepared dataset folder ``out_dir/dataset``.

    Raises:
        RuntimeError: if a sample clip could not be extracted (the message
            holds the extraction report).
    """
    from keras_gated_tsn.data.lists import write_list_file
    from keras_gated_tsn.data.prepare import prepare_dataset

    out_dir = pathlib.Path(out_dir)
    videos = build_sample_videos(out_dir / "videos", frames_per_clip=frames_per_clip)
    data_dir = out_dir / "dataset"
    report = prepare_dataset(videos, data_dir, flow="dis", size=tuple(frame_size), progress=progress)
    if not report.ok:
        raise RuntimeError(f"the sample clips could not all be prepared:\n{report.summary()}")
    for name, records in sample_split(report.records).items():
        write_list_file(data_dir / f"{name}.txt", records)
    return data_dir
