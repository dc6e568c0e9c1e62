"""List files and class-name files of an extracted dataset.

A prepared dataset (``gated-tsn prepare``) is a folder::

    OUT/
      frames/<video>/img_00001.jpg ...        RGB frames, 1-based, 5 digits
      frames/<video>/flow_x_00001.jpg ...     flow between frame i and i+1
      frames/<video>/flow_y_00001.jpg ...     (one fewer pair than frames)
      classes.txt                             one class name per line, line i = label i
      all.txt, train.txt, test.txt ...        list files

A list file has one line per video, ``<video> <num_frames> <label>``, as TSN's
list files do: ``<video>`` is the folder name under ``frames/``,
``<num_frames>`` the number of RGB frames (an int >= 1) and ``<label>`` the
0-based class index.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, List, Optional, Sequence

from keras_gated_tsn.atomic import atomic_write


@dataclasses.dataclass(frozen=True)
class VideoRecord:
    """One line of a list file.

    Attributes:
        video: folder of the video's frames, relative to ``frames/`` (no
            spaces; it may name a sub-folder, never one outside ``frames/``).
        num_frames: number of RGB frames ``img_*.jpg``; the video has
            ``num_frames - 1`` flow pairs.
        label: 0-based class index.
        line: the line of the list file it was read from (1-based), for
            error messages; None for a record made in code. Not compared.
    """

    video: str
    num_frames: int
    label: int
    line: Optional[int] = dataclasses.field(default=None, compare=False, repr=False)

    def where(self, list_file: Optional[str] = None) -> str:
        """``"train.txt, line 12 (video 'v_x')"``, or ``"video 'v_x'"`` without a file."""
        if list_file and self.line is not None:
            return f"{list_file}, line {self.line} (video {self.video!r})"
        return f"video {self.video!r}" + (f" (list file {list_file!r})" if list_file else "")


def leaves_folder(video: str) -> bool:
    """Whether a list file's video name points outside the frames folder (absolute, or up through ``..``)."""
    if os.path.isabs(video) or video.startswith(("/", "\\")) or (len(video) > 1 and video[1] == ":"):
        return True
    return os.path.normpath(video.replace("\\", "/")).split(os.sep)[0] == ".."


def check_labels(records: Sequence[VideoRecord], num_classes: int, list_file: Optional[str] = None) -> None:
    """Refuses a record whose label is not one of ``num_classes`` classes, before any work.

    Raises:
        ValueError: naming the list file and line (or the video), the label
            and the class count of ``classes.txt``.
    """
    for record in records:
        if not 0 <= record.label < num_classes:
            raise ValueError(
                f"{record.where(list_file)}: label {record.label} is not one of the {num_classes} classes "
                f"of classes.txt (labels 0..{num_classes - 1})"
            )


def read_list_file(path: str | os.PathLike) -> List[VideoRecord]:
    """Reads a ``<video> <num_frames> <label>`` list file.

    Blank lines and lines starting with ``#`` are ignored.

    Args:
        path: the list file.

    Returns:
        The records in file order.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming the file and line, if a line does not have three
            fields, its frame count or label is not a non-negative integer
            (frame count at least 1), or its video name leaves the frames
            folder (absolute, or ``..``).
    """
    records = []
    with open(path, "r", encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.split()
            if len(fields) != 3:
                raise ValueError(
                    f"{path}, line {line_number}: expected '<video> <num_frames> <label>', "
                    f"got {text!r}"
                )
            video, num_frames, label = fields
            try:
                num_frames_int, label_int = int(num_frames), int(label)
            except ValueError:
                raise ValueError(
                    f"{path}, line {line_number}: <num_frames> and <label> must be integers, "
                    f"got {text!r}"
                ) from None
            if num_frames_int < 1 or label_int < 0:
                raise ValueError(
                    f"{path}, line {line_number}: expected num_frames >= 1 and label >= 0, "
                    f"got {text!r}"
                )
            if leaves_folder(video):
                raise ValueError(
                    f"{path}, line {line_number}: video {video!r} is outside the frames folder; a list names "
                    "frame folders relative to DATA/frames"
                )
            records.append(VideoRecord(video, num_frames_int, label_int, line_number))
    return records


def write_list_file(path: str | os.PathLike, records: Iterable[VideoRecord]) -> None:
    """Writes records as a list file, atomically (temporary file, then rename).

    Raises:
        ValueError: if a video name contains whitespace.
    """
    lines = []
    for record in records:
        if any(c.isspace() for c in record.video):
            raise ValueError(f"video name {record.video!r} contains whitespace")
        lines.append(f"{record.video} {record.num_frames} {record.label}\n")
    atomic_write(path, lambda handle: handle.write("".join(lines)))


def read_class_names(path: str | os.PathLike) -> List[str]:
    """Reads ``classes.txt``: one class name per line, line i is label i.

    Raises:
        ValueError: if the file names no class or repeats one.
    """
    with open(path, "r", encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ValueError(f"{path}: no class names")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: class names repeat")
    return names


def write_class_names(path: str | os.PathLike, names: Sequence[str]) -> None:
    """Writes ``classes.txt`` atomically."""
    atomic_write(path, lambda handle: handle.write("".join(f"{name}\n" for name in names)))
