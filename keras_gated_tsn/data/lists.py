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
from typing import Iterable, List, Sequence

from keras_gated_tsn.atomic import atomic_write


@dataclasses.dataclass(frozen=True)
class VideoRecord:
    """One line of a list file.

    Attributes:
        video: folder name of the video's frames under ``frames/`` (no spaces).
        num_frames: number of RGB frames ``img_*.jpg``; the video has
            ``num_frames - 1`` flow pairs.
        label: 0-based class index.
    """

    video: str
    num_frames: int
    label: int


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
            fields, or its frame count or label is not a non-negative integer
            (frame count at least 1).
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
            records.append(VideoRecord(video, num_frames_int, label_int))
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
