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
final name is always complete; a re-run skips those and redoes the rest. A
video that cannot be decoded is reported with its path and the reason, and
the others are still extracted.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import multiprocessing
import os
import shutil
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from keras_gated_tsn.data import flow as flow_lib
from keras_gated_tsn.data import lists
from keras_gated_tsn.data.layout import ALL_LIST, CLASSES_FILE, DEFAULT_LAYOUT, FRAMES_DIR
from keras_gated_tsn.data.video import VIDEO_EXTENSIONS, VideoDecodeError, iter_frames_bgr

__all__ = [
    "PrepareReport",
    "extract_video",
    "find_videos",
    "prepare_dataset",
]

#: Default frame size ``(width, height)``, TSN's.
DEFAULT_SIZE = (340, 256)
#: Default flow clipping bound in pixels, TSN's.
DEFAULT_BOUND = 20.0

_TMP_MARKER = ".tmp-"


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
    """

    out: str
    class_names: List[str] = dataclasses.field(default_factory=list)
    done: List[str] = dataclasses.field(default_factory=list)
    skipped: List[str] = dataclasses.field(default_factory=list)
    failed: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
    records: List[lists.VideoRecord] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no video failed."""
        return not self.failed

    def summary(self) -> str:
        """A human-readable summary: counts, then one line per failure."""
        lines = [
            f"{len(self.records)} videos ready in {self.out}: "
            f"{len(self.done)} done, {len(self.skipped)} skipped (already extracted), "
            f"{len(self.failed)} failed"
        ]
        for path, reason in self.failed:
            lines.append(f"  FAILED {path}: {reason}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- scanning


def _class_sort_key(name: str):
    # Case-insensitive first: reproduces UCF101's classInd.txt order
    # (JumpingJack before JumpRope); exact name breaks ties.
    return (name.lower(), name)


def find_videos(src: str | os.PathLike) -> Tuple[List[str], List[VideoSource]]:
    """Lists the class folders and videos of ``src`` (``SRC/<class>/<video>.<ext>``).

    Class folders are the non-hidden sub-folders of ``src``, sorted by name
    case-insensitively (ties by exact name), which reproduces the label order
    of UCF101's ``classInd.txt`` and HMDB51's alphabetical classes. Videos are
    the files directly inside a class folder whose extension (any case) is one
    of :data:`~keras_gated_tsn.data.video.VIDEO_EXTENSIONS`; other files and
    hidden entries are ignored. A class folder without videos keeps its label.

    Args:
        src: the dataset folder.

    Returns:
        ``(class_names, videos)``: names in label order, and the videos sorted
        by label then id.

    Raises:
        FileNotFoundError: if ``src`` does not exist.
        NotADirectoryError: if ``src`` is not a folder.
        ValueError: if ``src`` has no class folder, no video in any of them,
            two videos with the same id (naming both files), or a video id
            with whitespace (list files could not hold it).
    """
    src = os.fspath(src)
    if not os.path.exists(src):
        raise FileNotFoundError(f"source folder {src} does not exist")
    if not os.path.isdir(src):
        raise NotADirectoryError(f"source {src} is not a folder")
    class_names = sorted(
        (e.name for e in os.scandir(src) if e.is_dir() and not e.name.startswith(".")),
        key=_class_sort_key,
    )
    if not class_names:
        raise ValueError(
            f"{src} has no class folder; expected one sub-folder per class holding "
            f"the videos ({src}/<class>/<video>.avi), as UCF101 and HMDB51 are laid out"
        )
    videos: List[VideoSource] = []
    seen: Dict[str, str] = {}
    duplicates: List[str] = []
    spaced: List[str] = []
    for label, name in enumerate(class_names):
        folder = os.path.join(src, name)
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            stem, extension = os.path.splitext(entry.name)
            if (
                entry.name.startswith(".")
                or extension.lower() not in VIDEO_EXTENSIONS
                or not entry.is_file()
            ):
                continue
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
            f"no video found in the {len(class_names)} class folder(s) of {src} "
            f"(looked for {extensions}, any case)"
        )
    videos.sort(key=lambda v: (v.label, v.video))
    return class_names, videos


# --------------------------------------------------------------------------- one video


def _check_settings(flow: str, size, bound: float, jpeg_quality: int) -> Tuple[int, int]:
    if flow not in flow_lib.FLOW_METHODS:
        raise ValueError(
            f"unknown flow method {flow!r}; expected one of "
            + ", ".join(repr(m) for m in flow_lib.FLOW_METHODS)
        )
    try:
        width, height = size
        valid = all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 2
            for v in (width, height)
        )
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"size must be (width, height), two integers >= 2, got {size!r}")
    if not (isinstance(bound, (int, float, np.number)) and np.isfinite(bound) and bound > 0):
        raise ValueError(f"bound must be a positive number of pixels, got {bound!r}")
    if not (
        isinstance(jpeg_quality, (int, np.integer))
        and not isinstance(jpeg_quality, bool)
        and 0 <= jpeg_quality <= 100
    ):
        raise ValueError(f"jpeg_quality must be an integer in [0, 100], got {jpeg_quality!r}")
    return int(width), int(height)


def _imwrite(path: str, image: np.ndarray, params: Sequence[int]) -> None:
    if not cv2.imwrite(path, image, list(params)):
        raise OSError(f"cannot write {path}")


def _write_frames(
    path: str,
    folder: str,
    flow: str,
    size: Tuple[int, int],
    bound: float,
    jpeg_quality: int,
) -> int:
    """Decodes ``path`` once and writes frames and flow into ``folder``."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    algorithm = flow_lib.create_flow_algorithm(flow)  # once per video
    previous = None
    count = 0
    for count, frame in enumerate(iter_frames_bgr(path, size), start=1):
        _imwrite(os.path.join(folder, DEFAULT_LAYOUT.rgb_name(count)), frame, params)
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if previous is not None:
            field = flow_lib.compute_flow(previous, gray, algorithm=algorithm)
            x, y = flow_lib.encode_flow(field, bound)
            name_x, name_y = DEFAULT_LAYOUT.flow_names(count - 1)
            _imwrite(os.path.join(folder, name_x), x, params)
            _imwrite(os.path.join(folder, name_y), y, params)
        previous = gray
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
) -> int:
    """Extracts one video's RGB frames and flow into the folder ``dest``, atomically.

    Writes ``img_00001.jpg`` ... ``img_<N>.jpg`` (RGB resized to ``size``) and
    ``flow_x_00001.jpg``/``flow_y_00001.jpg`` ... ``<N-1>`` (flow from frame
    ``i`` to ``i + 1`` on the resized grayscale frames, encoded by
    :func:`~keras_gated_tsn.data.flow.encode_flow`) into
    ``<parent>/.<name>.tmp-<pid>``, then renames that folder to ``dest``. On
    any error (or interrupt) the temporary folder is removed and ``dest`` is
    not created.

    Args:
        path: the video file.
        dest: the frame folder to create; must not exist.
        flow: ``"tvl1"`` or ``"dis"``.
        size: ``(width, height)`` of the frames in pixels.
        bound: flow clipping bound in pixels.
        jpeg_quality: JPEG quality 0-100 of every image.

    Returns:
        N, the number of RGB frames written (>= 2).

    Raises:
        ValueError: on an invalid argument.
        FileExistsError: if ``dest`` already exists.
        VideoDecodeError: if the video cannot be opened, decoding fails, or it
            has fewer than 2 frames (reason in ``.reason``).
        OSError: if an image cannot be written.
    """
    size = _check_settings(flow, size, bound, jpeg_quality)
    path, dest = os.fspath(path), os.fspath(dest)
    if os.path.exists(dest):
        raise FileExistsError(f"{dest} already exists")
    parent, name = os.path.split(os.path.abspath(dest))
    tmp = os.path.join(parent, f".{name}{_TMP_MARKER}{os.getpid()}")
    if os.path.exists(tmp):  # a leftover of a dead process that had our pid
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        count = _write_frames(path, tmp, flow, size, float(bound), int(jpeg_quality))
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return count


# --------------------------------------------------------------------------- the folder


def _existing_frame_count(folder: str) -> Tuple[int, Optional[str]]:
    """Counts ``img_*.jpg`` of a finished folder; a reason if it looks incomplete."""
    counts = {"rgb": 0, "flow_x": 0, "flow_y": 0, "": 0}
    with os.scandir(folder) as entries:
        for entry in entries:
            counts[DEFAULT_LAYOUT.kind_of(entry.name)] += 1
    images, flows_x, flows_y = counts["rgb"], counts["flow_x"], counts["flow_y"]
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
    source: VideoSource, frames_dir: str, settings: Tuple
) -> Tuple[str, object]:
    """Worker entry: ``("done", num_frames)`` or ``("failed", reason)``; never raises
    for a bad video (only for an interrupt)."""
    flow, size, bound, jpeg_quality = settings
    dest = os.path.join(frames_dir, source.video)
    try:
        return "done", extract_video(source.path, dest, flow, size, bound, jpeg_quality)
    except VideoDecodeError as error:
        return "failed", error.reason
    except FileExistsError:
        # Another process finished this video meanwhile: accept its folder.
        count, problem = _existing_frame_count(dest)
        return ("failed", problem) if problem else ("skipped", count)
    except Exception as error:  # cv2.error, OSError, MemoryError ...: report, go on
        return "failed", f"{type(error).__name__}: {error}"


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would oversubscribe


_CRASH_REASON = (
    "the worker process died while extracting this video (crash in the decoder "
    "or out of memory); the video is probably corrupt"
)


def _run_parallel(
    sources: Sequence[VideoSource],
    frames_dir: str,
    settings: Tuple,
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
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
            _remove_stale_temporaries(frames_dir)


def prepare_dataset(
    src: str | os.PathLike,
    out: str | os.PathLike,
    flow: str = "tvl1",
    workers: int = 1,
    size: Sequence[int] = DEFAULT_SIZE,
    bound: float = DEFAULT_BOUND,
    jpeg_quality: int = 95,
    progress: bool = True,
) -> PrepareReport:
    """Extracts frames and optical flow of every video of ``src`` into ``out``.

    See the module docstring for the layouts. Every video is decoded once; its
    frames are resized to ``size`` (bilinear, aspect ratio ignored, as TSN),
    written as RGB JPEG, converted to grayscale once, and the flow between
    consecutive frames is computed, clipped at ``+-bound`` px and written as
    two 8-bit JPEG images (128 = no motion). The frame count is what was
    actually decoded. Then ``out/classes.txt`` and ``out/all.txt`` list every
    complete video (extracted now or by an earlier run).

    Re-running is safe and cheap: a video whose folder ``out/frames/<id>``
    exists is skipped (its frame count read from the folder); temporary
    folders left by a killed run are removed.

    Args:
        src: dataset folder, ``src/<class>/<video>.<ext>`` (UCF101 layout).
        out: output folder (created if needed); must not be inside ``src``.
        flow: ``"tvl1"`` (TSN's; about 1 s per 340x256 frame pair on one
            CPU core) or ``"dis"`` (about 0.01 s per pair, lower quality).
        workers: number of processes. 1 runs in this process (OpenCV then
            uses its own threads). More start a ``spawn`` process pool (safe
            after TensorFlow was imported), each worker single-threaded in
            OpenCV; a worker that crashes on a video only fails that video.
        size: ``(width, height)`` of the extracted frames, pixels.
        bound: flow clipping bound, pixels, > 0.
        jpeg_quality: JPEG quality of every image, 0-100.
        progress: show a ``keras.utils.Progbar`` with one step per video.

    Returns:
        A :class:`PrepareReport`. Videos that could not be extracted (cannot
        be opened, decode to fewer than 2 frames, decoder error) are in
        ``report.failed`` with the reason; the run goes on without them.

    Raises:
        ValueError: on an invalid argument, if ``out`` is inside ``src``, or
            if ``src`` has no class folder, no video, or repeated video ids
            (checked before anything is written).
        FileNotFoundError, NotADirectoryError: if ``src`` is not a folder.
    """
    size = _check_settings(flow, size, bound, jpeg_quality)
    if not isinstance(workers, (int, np.integer)) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    src, out = os.fspath(src), os.fspath(out)
    class_names, sources = find_videos(src)
    real_src, real_out = os.path.realpath(src), os.path.realpath(out)
    if os.path.commonpath([real_src, real_out]) == real_src:
        raise ValueError(f"the output folder {out} must not be inside the source folder {src}")

    frames_dir = os.path.join(out, FRAMES_DIR)
    os.makedirs(frames_dir, exist_ok=True)
    _remove_stale_temporaries(frames_dir)

    report = PrepareReport(out=out, class_names=list(class_names))
    counts: Dict[str, int] = {}
    bar = None
    if progress:
        from keras.utils import Progbar  # imported only here: it loads the backend

        bar = Progbar(len(sources), unit_name="video")

    def on_result(source: VideoSource, status: str, value) -> None:
        if status == "failed":
            report.failed.append((source.path, str(value)))
        else:
            counts[source.video] = int(value)
            (report.done if status == "done" else report.skipped).append(source.video)
        if bar is not None:
            bar.add(1)

    to_do: List[VideoSource] = []
    for source in sources:
        folder = os.path.join(frames_dir, source.video)
        if os.path.isdir(folder):
            count, problem = _existing_frame_count(folder)
            if problem:
                on_result(source, "failed", problem)
            else:
                on_result(source, "skipped", count)
        else:
            to_do.append(source)

    settings = (flow, size, float(bound), int(jpeg_quality))
    if workers == 1 or len(to_do) <= 1:
        for source in to_do:
            status, value = _extract_task(source, frames_dir, settings)
            on_result(source, status, value)
    else:
        _run_parallel(to_do, frames_dir, settings, min(workers, len(to_do)), on_result)

    order = {source.video: i for i, source in enumerate(sources)}  # by label, then id
    report.done.sort(key=order.__getitem__)
    report.skipped.sort(key=order.__getitem__)
    report.failed.sort()
    report.records = [
        lists.VideoRecord(source.video, counts[source.video], source.label)
        for source in sources
        if source.video in counts
    ]
    lists.write_class_names(os.path.join(out, CLASSES_FILE), class_names)
    lists.write_list_file(os.path.join(out, ALL_LIST), report.records)
    return report
