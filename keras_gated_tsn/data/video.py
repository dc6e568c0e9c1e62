"""Video decoding and writing with OpenCV.

Frames come out as RGB ``uint8`` arrays of shape ``(height, width, 3)``, the
layout the rest of the data path uses. Decoding counts the frames it actually
decodes: ``cv2.CAP_PROP_FRAME_COUNT`` comes from the container header and is
often off by one (or wrong for a truncated file), so nothing here trusts it.

Resizing follows TSN's extraction (``dense_flow``): every frame is resized to a
fixed ``(width, height)``, 340x256 by default in ``gated-tsn prepare``, with
bilinear interpolation and the aspect ratio ignored.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator, Optional, Sequence, Tuple

import math

import cv2
import numpy as np

__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoDecodeError",
    "count_frames",
    "frame_rate",
    "iter_frames",
    "iter_frames_bgr",
    "read_frames",
    "write_video",
]

#: File extensions (lower case, with the dot) recognised as videos.
VIDEO_EXTENSIONS = frozenset(
    {".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v"}
)


class VideoDecodeError(RuntimeError):
    """A video file cannot be opened, or decodes to no frame.

    Attributes:
        path: the video file, as given.
        reason: what went wrong, without the path.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keeps the two arguments when pickled across processes
        return (type(self), (self.path, self.reason))


def _check_size(size: Optional[Sequence[int]]) -> Optional[Tuple[int, int]]:
    """Validates a ``(width, height)`` pair; ``None`` passes through."""
    if size is None:
        return None
    try:
        width, height = size
        ok = all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
            for v in (width, height)
        )
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"size must be None or (width, height), two positive integers; got {size!r}"
        )
    return int(width), int(height)


def _open_capture(path: str) -> "cv2.VideoCapture":
    """Opens ``path`` with FFmpeg when this OpenCV has it (never as an image pattern)."""
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "no such file")
    if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
        capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    else:  # pragma: no cover - depends on the OpenCV build
        capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        capture.release()
        raise VideoDecodeError(path, "cannot be opened as a video (corrupt or unsupported)")
    return capture


def _to_bgr(frame: np.ndarray) -> np.ndarray:
    """Brings a decoded frame to 3-channel BGR ``uint8``."""
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.dtype != np.uint8:  # e.g. 16-bit streams
        frame = cv2.convertScaleAbs(frame, alpha=255.0 / np.iinfo(frame.dtype).max)
    return frame


def iter_frames_bgr(
    path: str | os.PathLike, size: Optional[Sequence[int]] = None
) -> Iterator[np.ndarray]:
    """Like :func:`iter_frames`, but yields OpenCV's BGR order.

    For callers that hand the frames straight back to OpenCV (``cv2.imwrite``,
    ``cv2.cvtColor(..., COLOR_BGR2GRAY)``) and so would convert twice.

    Raises:
        ValueError: if ``size`` is not ``None`` or two positive integers.
        VideoDecodeError: see :func:`iter_frames`.
    """
    size = _check_size(size)
    path = os.fspath(path)
    capture = _open_capture(path)  # raises now, not at the first next()
    return _generate(capture, path, size)


def _generate(capture, path: str, size: Optional[Tuple[int, int]]) -> Iterator[np.ndarray]:
    count = 0
    try:
        while True:
            try:
                ok, frame = capture.read()
            except cv2.error as error:
                raise VideoDecodeError(
                    path, f"decoding failed after {count} frame(s): {error}"
                ) from error
            if not ok or frame is None:
                break
            frame = _to_bgr(frame)
            if size is not None and (frame.shape[1], frame.shape[0]) != size:
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
            count += 1
            yield frame
    finally:
        capture.release()
    if count == 0:
        raise VideoDecodeError(path, "no frame could be decoded (corrupt or empty video)")


def iter_frames(
    path: str | os.PathLike, size: Optional[Sequence[int]] = None
) -> Iterator[np.ndarray]:
    """Decodes a video frame by frame.

    The file is opened when this function is called (so a file that cannot be
    opened raises here); frames are decoded lazily, one per ``next()``, and
    the file is closed when the iterator is exhausted or garbage-collected.

    Args:
        path: a video file OpenCV's FFmpeg backend can read.
        size: ``None`` to keep the decoded size, or ``(width, height)`` in
            pixels to resize every frame to (bilinear, aspect ratio ignored,
            as TSN does: ``(340, 256)``).

    Yields:
        RGB frames, ``np.ndarray`` of dtype ``uint8``, shape ``(H, W, 3)``
        (``(height, width, 3)`` of ``size`` when given), values 0-255.

    Raises:
        ValueError: if ``size`` is not ``None`` or two positive integers.
        VideoDecodeError: if the file does not exist or cannot be opened
            (raised by this call), if decoding raises inside OpenCV, or if the
            file yields no frame at all (raised by the iterator, at the end).
    """
    frames = iter_frames_bgr(path, size)  # opens (and may raise) now
    return (cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) for frame in frames)


def read_frames(
    path: str | os.PathLike,
    size: Optional[Sequence[int]] = None,
    max_frames: Optional[int] = None,
) -> np.ndarray:
    """Decodes a whole video (or its first ``max_frames`` frames) into memory.

    Args:
        path: a video file.
        size: ``None`` or ``(width, height)``, as in :func:`iter_frames`.
        max_frames: stop after this many frames (``None``: all).

    Returns:
        ``uint8`` array of shape ``(num_frames, H, W, 3)``, RGB, 0-255.

    Raises:
        ValueError: if ``max_frames`` is not ``None`` or a positive integer,
            or ``size`` is invalid.
        VideoDecodeError: as :func:`iter_frames`.
    """
    if max_frames is not None and (
        not isinstance(max_frames, (int, np.integer)) or max_frames < 1
    ):
        raise ValueError(f"max_frames must be None or a positive integer, got {max_frames!r}")
    frames = []
    iterator = iter_frames(path, size)
    for frame in iterator:
        frames.append(frame)
        if max_frames is not None and len(frames) >= max_frames:
            iterator.close()
            break
    return np.stack(frames)


def count_frames(path: str | os.PathLike) -> int:
    """Counts the frames of a video by decoding it (the header's count is not trusted).

    Uses ``grab()`` without converting pixels, so it is faster than
    :func:`read_frames` but still reads the whole file.

    Returns:
        The number of decodable frames, at least 1.

    Raises:
        VideoDecodeError: if the file cannot be opened, decoding raises, or no
            frame decodes.
    """
    path = os.fspath(path)
    capture = _open_capture(path)
    count = 0
    try:
        while True:
            try:
                ok = capture.grab()
            except cv2.error as error:
                raise VideoDecodeError(
                    path, f"decoding failed after {count} frame(s): {error}"
                ) from error
            if not ok:
                break
            count += 1
    finally:
        capture.release()
    if count == 0:
        raise VideoDecodeError(path, "no frame could be decoded (corrupt or empty video)")
    return count


def frame_rate(path: str | os.PathLike, default: float = 25.0) -> float:
    """The frames per second a video's header records, or ``default`` when the
    header has none (0, NaN or negative).

    Raises:
        VideoDecodeError: if the file cannot be opened as a video.
    """
    path = os.fspath(path)
    capture = _open_capture(path)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return float(fps) if fps and math.isfinite(fps) and fps > 0 else float(default)


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: float = 25.0,
    fourcc: str = "MJPG",
) -> int:
    """Writes RGB frames as a video file (Motion-JPEG in ``.avi`` by default).

    The file is written under a temporary name beside ``path`` and renamed
    when complete, so ``path`` never holds a half-written video.

    Args:
        path: output file; its extension picks the container (use ``.avi``
            with the default ``MJPG`` codec).
        frames: RGB ``uint8`` arrays, all of the same shape ``(H, W, 3)``
            (or ``(H, W)`` grayscale), values 0-255. Any iterable, consumed once.
        fps: frames per second recorded in the file (> 0).
        fourcc: four-character codec code for ``cv2.VideoWriter_fourcc``.

    Returns:
        The number of frames written (>= 1).

    Raises:
        ValueError: if there is no frame, a frame is not ``uint8`` ``(H, W, 3)``
            or ``(H, W)``, the shapes differ, ``fps <= 0`` or ``fourcc`` is not
            four characters.
        OSError: if OpenCV cannot open a writer for ``path`` with this codec.
    """
    path = os.fspath(path)
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    if not isinstance(fourcc, str) or len(fourcc) != 4:
        raise ValueError(f"fourcc must be a 4-character string, got {fourcc!r}")
    directory, name = os.path.split(path)
    stem, extension = os.path.splitext(name)
    tmp = os.path.join(directory, f".{stem}.tmp-{os.getpid()}{extension}")
    writer = None
    shape = None
    count = 0
    try:
        for frame in frames:
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or not (
                frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)
            ):
                raise ValueError(
                    f"frame {count}: expected uint8 (H, W, 3) or (H, W), "
                    f"got {frame.dtype} {frame.shape}"
                )
            if frame.ndim == 2:
                frame = np.repeat(frame[:, :, None], 3, axis=2)
            if shape is None:
                shape = frame.shape
                height, width = shape[:2]
                writer = cv2.VideoWriter(
                    tmp, cv2.VideoWriter_fourcc(*fourcc), float(fps), (width, height)
                )
                if not writer.isOpened():
                    raise OSError(
                        f"{path}: OpenCV cannot write {fourcc!r} video to a "
                        f"{extension or 'extension-less'} file"
                    )
            elif frame.shape != shape:
                raise ValueError(
                    f"frame {count}: shape {frame.shape} differs from the first frame's {shape}"
                )
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
            count += 1
        if count == 0:
            raise ValueError(f"{path}: no frame to write")
        writer.release()
        writer = None
        os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.release()
        if os.path.exists(tmp):
            os.remove(tmp)
    return count
