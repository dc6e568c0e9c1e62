"""A prepared dataset as sharded TFRecord files, for data on remote storage.

The frame folders of a prepared dataset (``DATA/frames/<video>/img_00001.jpg,
flow_x_00001.jpg, flow_y_00001.jpg ...``) hold one small file per frame, which
object stores and network file systems serve slowly. :func:`write_tfrecords`
packs them into a few large files; :func:`keras_gated_tsn.data.pipeline.make_dataset`
and :func:`~keras_gated_tsn.data.pipeline.make_test_dataset` read them in place
of the folders and yield **the same elements in the same order** (same
snippets, crops, flips, batches; see "Reading" below)::

    OUT/index.json                              what is stored, where (written last)
    OUT/shard-00000-of-00004.tfrecord ...       one tf.train.Example per video

One ``tf.train.Example`` per video, with the features

* ``video``: bytes (1), the video's folder name (UTF-8), as listed;
* ``num_frames``: int64 (1), its RGB frame count N as the list gives it (files
  beyond it are not stored);
* ``label``: int64 (1), its 0-based class index;
* ``rgb``: bytes (N), the files ``img_00001.jpg ... img_N.jpg``, byte for byte;
* ``flow_x``, ``flow_y``: bytes (N - 1) each, the files ``flow_x_00001.jpg ...``
  and ``flow_y_00001.jpg ...`` (pair i between frames i and i + 1).

(``rgb`` only with ``modality="rgb"``, ``flow_x`` / ``flow_y`` only with
``"flow"``, all three with ``"rgb+flow"``.) The frames are the encoded files
unchanged, so decoding them gives the pixels the folder gives. Video ``i`` of
the list goes to shard ``i % num_shards`` (shards differ by at most one video).

``index.json`` (:func:`read_index`): ``format`` (:data:`FORMAT`), ``version``,
``modality`` and ``kinds`` stored, the file-name ``templates`` the frames were
read with (they name the codec: ``.jpg`` frames decode as JPEG), ``num_videos``,
``shards`` (``file``, ``num_videos``, ``num_bytes`` each) and ``videos`` in
write order (``video``, ``num_frames``, ``label``, ``shard``, and the byte
``offset`` and ``length`` of its record in the shard). Every shard is written
under a temporary name and renamed when complete; the index is written last, so
a folder with an ``index.json`` is complete, and an interrupted write leaves no
index and no shard under a final name (the ones it had finished are removed).
Paths go through ``tf.io.gfile``, so ``out_dir`` and the reading side may be a
``gs://`` (or other TensorFlow file-system) URL; there a rename is a copy, but
the index is still written last.

Reading (:class:`TFRecordSource`): the pipelines look each video's record up
in the index and read it at its byte offset with a one-record
``TFRecordDataset`` (CRCs checked), ``num_parallel_reads`` reads in flight
across the shards, so they visit the videos in exactly the order the folder
pipeline does (same batches, same resume and multi-worker positions). A parallel
``map`` of these reads, not an ``interleave`` of one-record datasets: the same
reads in flight, and 0.3 ms less CPU per record. A training sample reads its
video's whole record (all its frames: about 0.7 ms of CPU per MB here, for
reading and the CRC), where the folder pipeline reads only the K (or K x 2L)
files it decodes; on a local disk that makes the TFRecord source slower for
long videos, on remote storage one large read per video is what makes it fast.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import uuid
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from keras_gated_tsn.data.layout import DEFAULT_LAYOUT, parse_template
from keras_gated_tsn.data.lists import VideoRecord, leaves_folder

INDEX_FILE = "index.json"
"""The index of a TFRecord folder; its presence marks the folder complete."""

FORMAT = "keras_gated_tsn.tfrecord"
VERSION = 1

SHARD_NAME = "shard-{:05d}-of-{:05d}.tfrecord"

FEATURE_VIDEO = "video"
FEATURE_NUM_FRAMES = "num_frames"
FEATURE_LABEL = "label"
#: Feature key of each kind of frame file (the kinds of :class:`~keras_gated_tsn.data.layout.FrameLayout`).
KINDS = ("rgb", "flow_x", "flow_y")

#: The kinds each modality stores / reads.
MODALITY_KINDS = {"rgb": ("rgb",), "flow": ("flow_x", "flow_y"), "rgb+flow": KINDS}

#: Target shard size when ``num_shards`` is not given.
DEFAULT_SHARD_BYTES = 256 * 2**20

#: Concurrent record reads of a :class:`TFRecordSource` (the parallelism of its read map).
DEFAULT_PARALLEL_READS = 16

_TMP_MARKER = ".tmp-"

PathLike = Union[str, os.PathLike]


def _join(folder: str, name: str) -> str:
    return posixpath.join(folder, name) if "://" in folder else os.path.join(folder, name)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------
# Writing.


def _read_bytes(path: str) -> bytes:
    """One frame file's bytes (a seam for tests that interrupt a write)."""
    with open(path, "rb") as handle:
        return handle.read()


def _frame_files(
    frames_root: str, records: Sequence[VideoRecord], list_file: Optional[str], kinds, templates
) -> Tuple[List[Dict[str, List[str]]], int]:
    """Every file each record needs, checked before anything is written.

    Returns:
        ``(files, total_bytes)``: per record ``{kind: [path of item 1, 2, ...]}``,
        and the size of all those files in bytes.
    """
    seen = {}
    files, total = [], 0
    for record in records:
        at = record.where(list_file)
        if not isinstance(record.video, str) or not record.video or any(c.isspace() for c in record.video):
            raise ValueError(f"{at}: a video name must be a non-empty str without whitespace")
        if record.video in seen:
            raise ValueError(f"{at}: video {record.video!r} is listed twice (first as {seen[record.video]})")
        seen[record.video] = at
        if not _is_int(record.label) or record.label < 0:
            raise ValueError(f"{at}: label must be an int >= 0, got {record.label!r}")
        if not _is_int(record.num_frames) or record.num_frames < 1:
            raise ValueError(f"{at}: num_frames must be an int >= 1, got {record.num_frames!r}")
        if "flow_x" in kinds and record.num_frames < 2:
            raise ValueError(f"{at}: {record.num_frames} frame has no flow pair to store")
        if leaves_folder(record.video):
            raise ValueError(f"{at}: the video name leaves the frames folder {frames_root!r}")
        folder = os.path.join(frames_root, record.video)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{at}: no frame folder {folder!r}")
        paths = {}
        for kind in kinds:
            count = record.num_frames if kind == "rgb" else record.num_frames - 1
            paths[kind] = [os.path.join(folder, templates[kind].format(i)) for i in range(1, count + 1)]
            for i, path in enumerate(paths[kind], start=1):
                try:
                    total += os.stat(path).st_size
                except FileNotFoundError:
                    raise FileNotFoundError(
                        f"{at}: {path!r} does not exist ({kind} file {i} of the {count} the list's "
                        f"{record.num_frames} frames need; template {templates[kind]!r})"
                    ) from None
        files.append(paths)
    return files, total


def _example(record: VideoRecord, paths: Dict[str, List[str]], at: str) -> bytes:
    def read(path):
        try:
            return _read_bytes(path)
        except OSError as err:
            raise type(err)(f"{at}: cannot read {path!r}: {err}") from err

    feature = {
        FEATURE_VIDEO: tf.train.Feature(bytes_list=tf.train.BytesList(value=[record.video.encode("utf-8")])),
        FEATURE_NUM_FRAMES: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(record.num_frames)])),
        FEATURE_LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(record.label)])),
    }
    for kind, kind_paths in paths.items():
        feature[kind] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[read(p) for p in kind_paths]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _remove_quietly(path: str) -> None:
    try:
        tf.io.gfile.remove(path)
    except (tf.errors.NotFoundError, OSError):
        pass


def write_tfrecords(
    frames_root: PathLike,
    records: Union[PathLike, Sequence[VideoRecord], Sequence[Tuple[str, int, int]]],
    out_dir: PathLike,
    *,
    num_shards: Optional[int] = None,
    modality: str = "rgb+flow",
    rgb_template: str = DEFAULT_LAYOUT.rgb,
    flow_x_template: str = DEFAULT_LAYOUT.flow_x,
    flow_y_template: str = DEFAULT_LAYOUT.flow_y,
    overwrite: bool = False,
) -> dict:
    """Packs the frame folders of ``records`` into ``num_shards`` TFRecord files.

    See the module docstring for the layout. Everything is checked before the
    first byte is written (each video's folder and every frame and flow file
    its ``num_frames`` implies); shards are written one at a time under
    temporary names (``.shard-....tfrecord.tmp-<id>``) and renamed when
    complete, and ``index.json`` last.

    Args:
        frames_root: the frame folders, ``DATA/frames`` (a local folder).
        records: a list file (``<video> <num_frames> <label>``) or a sequence of
            :class:`~keras_gated_tsn.data.lists.VideoRecord` (or
            ``(video, num_frames, label)`` tuples); the order is kept (video ``i``
            goes to shard ``i % num_shards``).
        out_dir: the TFRecord folder (created; a local path or a TensorFlow
            file-system URL such as ``gs://bucket/ucf101``).
        num_shards: shard count, 1 to ``len(records)``; default about one shard
            per :data:`DEFAULT_SHARD_BYTES` (256 MiB) of frame files.
        modality: what to store: ``"rgb"`` (RGB frames), ``"flow"`` (flow
            pairs) or ``"rgb+flow"`` (both, the default).
        rgb_template, flow_x_template, flow_y_template: file names with one
            integer field (1-based), as in
            :func:`~keras_gated_tsn.data.pipeline.make_dataset`; recorded in the index.
        overwrite: replace a complete TFRecord folder already at ``out_dir``
            (its index is removed first, then its shards). Without it such a
            folder is an error.

    Returns:
        The index (the content of ``index.json``), a dict.

    Raises:
        ValueError: on an unknown modality, a bad ``num_shards``, a bad template,
            no records, a video listed twice or named with whitespace, a bad
            label or frame count (naming the list file and line, or the video).
        FileNotFoundError: if ``frames_root``, a video's folder or one of its
            frame files is missing (naming the video and the file).
        FileExistsError: if ``out_dir`` holds a TFRecord index and not ``overwrite``.
        OSError: if a frame cannot be read or a shard written (the shard being
            written and those finished by this call are removed, no index is written).

    A process killed while writing leaves at most hidden ``.shard-...tmp-<id>``
    files beside the shards, never a file under a shard's final name that is
    not complete, and no index unless it had finished.
    """
    from keras_gated_tsn.data.pipeline import _as_records  # pipeline imports this module

    if modality not in MODALITY_KINDS:
        raise ValueError(f"modality must be one of {tuple(MODALITY_KINDS)}, got {modality!r}")
    kinds = MODALITY_KINDS[modality]
    templates = {"rgb": rgb_template, "flow_x": flow_x_template, "flow_y": flow_y_template}
    for template in templates.values():
        parse_template(template)
    frames_root = os.fspath(frames_root)
    out_dir = os.fspath(out_dir)
    records, list_file = _as_records(records)
    where = f" (list file {list_file!r})" if list_file else ""
    if not records:
        raise ValueError(f"no videos to write{where}")
    if not os.path.isdir(frames_root):
        raise FileNotFoundError(f"frames_root {frames_root!r} is not a folder")
    files, total_bytes = _frame_files(frames_root, records, list_file, kinds, templates)
    if num_shards is None:
        num_shards = min(len(records), max(1, math.ceil(total_bytes / DEFAULT_SHARD_BYTES)))
    if not _is_int(num_shards) or not 1 <= num_shards <= len(records):
        raise ValueError(f"num_shards must be an int in [1, {len(records)}] (the video count), got {num_shards!r}")
    num_shards = int(num_shards)

    index_path = _join(out_dir, INDEX_FILE)
    tf.io.gfile.makedirs(out_dir)
    if tf.io.gfile.exists(index_path):
        if not overwrite:
            raise FileExistsError(f"{out_dir!r} already holds a TFRecord dataset ({INDEX_FILE}); pass overwrite=True")
        try:
            old_shards = [shard["file"] for shard in read_index(out_dir, check_shards=False)["shards"]]
        except (ValueError, KeyError, TypeError):  # an index of another kind: its shards are unknown
            old_shards = []
        _remove_quietly(index_path)  # first: from here on the folder does not look complete
        for name in old_shards:
            _remove_quietly(_join(out_dir, name))

    token = uuid.uuid4().hex[:8]
    shards, videos = [], [None] * len(records)
    finished: List[str] = []
    tmp = None
    try:
        for s in range(num_shards):
            name = SHARD_NAME.format(s, num_shards)
            final = _join(out_dir, name)
            tmp = _join(out_dir, f".{name}{_TMP_MARKER}{token}")
            offset = 0
            members = range(s, len(records), num_shards)
            with tf.io.TFRecordWriter(tmp) as writer:
                for i in members:
                    record = records[i]
                    data = _example(record, files[i], record.where(list_file))
                    writer.write(data)
                    videos[i] = {
                        "video": record.video, "num_frames": int(record.num_frames), "label": int(record.label),
                        "shard": s, "offset": offset, "length": len(data),
                    }
                    offset += len(data) + 16  # length (8) + its CRC (4) + data + data CRC (4)
            size = tf.io.gfile.stat(tmp).length
            if size != offset:
                raise OSError(f"shard {tmp!r} holds {size} bytes, {offset} were written")
            tf.io.gfile.rename(tmp, final, overwrite=True)
            tmp = None
            finished.append(final)
            shards.append({"file": name, "num_videos": len(members), "num_bytes": offset})
        index = {
            "format": FORMAT,
            "version": VERSION,
            "modality": modality,
            "kinds": list(kinds),
            "templates": {kind: templates[kind] for kind in kinds},
            "features": {
                FEATURE_VIDEO: "bytes: the video's folder name (UTF-8)",
                FEATURE_NUM_FRAMES: "int64: RGB frame count N",
                FEATURE_LABEL: "int64: 0-based class index",
                **{kind: f"bytes x {'N' if kind == 'rgb' else 'N - 1'}: the encoded {templates[kind]!r} files, "
                         "1-based order" for kind in kinds},
            },
            "num_videos": len(records),
            "num_shards": num_shards,
            "num_bytes": sum(shard["num_bytes"] for shard in shards),
            "shards": shards,
            "videos": videos,
        }
        _write_text_atomically(index_path, json.dumps(index, indent=1) + "\n", token)
    except BaseException:
        if tmp is not None:
            _remove_quietly(tmp)
        for path in finished:
            _remove_quietly(path)
        raise
    return index


def _write_text_atomically(path: str, text: str, token: str) -> None:
    folder, name = os.path.split(path) if "://" not in path else posixpath.split(path)
    tmp = _join(folder, f".{name}{_TMP_MARKER}{token}")
    try:
        with tf.io.gfile.GFile(tmp, "w") as handle:
            handle.write(text)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except BaseException:
        _remove_quietly(tmp)
        raise


# --------------------------------------------------------------------------------------
# Reading.


def is_tfrecord_folder(path) -> bool:
    """Whether ``path`` is a folder written by :func:`write_tfrecords` (it holds
    ``index.json``), or a :class:`TFRecordSource`.

    Raises:
        tf.errors.OpError: for a URL whose file system TensorFlow does not have
            (e.g. ``gs://`` without its plugin).
    """
    if isinstance(path, TFRecordSource):
        return True
    if not isinstance(path, (str, os.PathLike)):
        return False
    index = _join(os.fspath(path), INDEX_FILE)
    # (A URL of a file system TensorFlow lacks raises here, saying so, rather than reading as "no".)
    return tf.io.gfile.exists(index) and not tf.io.gfile.isdir(index)


def read_index(path: PathLike, *, check_shards: bool = True) -> dict:
    """Reads and checks the ``index.json`` of a TFRecord folder.

    Args:
        path: the folder.
        check_shards: also check that every shard exists with the size the
            index records (one ``stat`` per shard).

    Returns:
        The index dict (see the module docstring).

    Raises:
        FileNotFoundError: if there is no index (an incomplete or other folder)
            or a shard is missing.
        ValueError: if the index is not one of ours, of another version, or a
            shard's size differs from the index (a shard replaced or cut).
    """
    path = os.fspath(path)
    index_path = _join(path, INDEX_FILE)
    if not tf.io.gfile.exists(index_path):
        raise FileNotFoundError(
            f"{path!r} holds no {INDEX_FILE}: not a TFRecord dataset written by write_tfrecords, or its "
            "write did not finish"
        )
    with tf.io.gfile.GFile(index_path, "r") as handle:
        try:
            index = json.loads(handle.read())
        except ValueError as err:
            raise ValueError(f"{index_path!r} is not valid JSON: {err}") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ValueError(f"{index_path!r} is not a {FORMAT} index")
    if index.get("version") != VERSION:
        raise ValueError(f"{index_path!r} has version {index.get('version')!r}; this reader knows {VERSION}")
    for key in ("modality", "kinds", "templates", "shards", "videos"):
        if key not in index:
            raise ValueError(f"{index_path!r} lacks {key!r}")
    if check_shards:
        for shard in index["shards"]:
            shard_path = _join(path, shard["file"])
            if not tf.io.gfile.exists(shard_path):
                raise FileNotFoundError(f"{index_path!r} lists shard {shard_path!r}, which does not exist")
            size = tf.io.gfile.stat(shard_path).length
            if size != shard["num_bytes"]:
                raise ValueError(
                    f"shard {shard_path!r} holds {size} bytes but {index_path!r} says {shard['num_bytes']}: "
                    "the shard was replaced or cut; write the TFRecord folder again"
                )
    return index


class TFRecordSource:
    """A TFRecord folder (:func:`write_tfrecords`) as the frame source of a pipeline.

    Pass one (or just the folder's path: a folder holding ``index.json`` is
    recognised) as ``frames_root`` of
    :func:`~keras_gated_tsn.data.pipeline.make_dataset`,
    :func:`~keras_gated_tsn.data.pipeline.make_test_dataset` or
    :func:`~keras_gated_tsn.data.pipeline.check_frame_folders`. The object form
    sets the read options.

    Args:
        path: the TFRecord folder (local or a TensorFlow file-system URL).
        num_parallel_reads: records read concurrently (the parallelism of
            the read map), >= 1; many for remote storage, where a read waits.
        buffer_size: read buffer per record in bytes; default the record's size
            (one read per record).

    Attributes:
        path: the folder, as a string.
        index: its index (:func:`read_index`).

    Raises:
        FileNotFoundError, ValueError: as :func:`read_index`; ValueError on a bad
            ``num_parallel_reads`` or ``buffer_size``.
    """

    def __init__(self, path: PathLike, *, num_parallel_reads: int = DEFAULT_PARALLEL_READS,
                 buffer_size: Optional[int] = None):
        if not _is_int(num_parallel_reads) or num_parallel_reads < 1:
            raise ValueError(f"num_parallel_reads must be an int >= 1, got {num_parallel_reads!r}")
        if buffer_size is not None and (not _is_int(buffer_size) or buffer_size < 1):
            raise ValueError(f"buffer_size must be None or an int >= 1, got {buffer_size!r}")
        self.path = os.fspath(path)
        self.index = read_index(self.path)
        self.num_parallel_reads = num_parallel_reads
        self.buffer_size = buffer_size
        self._files = [_join(self.path, shard["file"]) for shard in self.index["shards"]]
        self._videos = {entry["video"]: entry for entry in self.index["videos"]}

    def __repr__(self) -> str:
        return f"TFRecordSource({self.path!r}, {self.index['num_videos']} videos, {self.modality!r})"

    @property
    def modality(self) -> str:
        """What the folder stores: ``"rgb"``, ``"flow"`` or ``"rgb+flow"``."""
        return self.index["modality"]

    @property
    def kinds(self) -> Tuple[str, ...]:
        return tuple(self.index["kinds"])

    @property
    def templates(self) -> Dict[str, str]:
        """The file-name template each stored kind was read with (it names the codec)."""
        return dict(self.index["templates"])

    @property
    def where(self) -> str:
        return f"the TFRecord folder {self.path!r}"

    def records(self) -> List[VideoRecord]:
        """The stored videos as records, in write order."""
        return [VideoRecord(v["video"], v["num_frames"], v["label"]) for v in self.index["videos"]]

    def entry(self, video: str) -> Optional[dict]:
        """The index entry of ``video`` (``num_frames``, ``label``, ``shard``, ``offset``, ``length``), or None."""
        return self._videos.get(video)

    def location(self, entry: dict) -> Tuple[str, int, int]:
        """``(shard file, byte offset, record length)`` of an index entry."""
        return self._files[entry["shard"]], int(entry["offset"]), int(entry["length"])

    def read(self, elements: tf.data.Dataset, deterministic: bool) -> tf.data.Dataset:
        """Replaces the leading ``(file, offset, length)`` of each element by its record.

        Each record is read at its byte offset by a one-record
        ``TFRecordDataset`` (its CRCs are checked), :attr:`num_parallel_reads`
        reads in flight over all shards; with ``deterministic`` the elements
        keep their order. (A parallel ``map`` of these reads rather than an
        ``interleave`` of the one-record datasets: the same reads in flight, and
        0.3 ms less CPU per record here, an interleave building and iterating a
        dataset per input element through a function call.)

        Args:
            elements: a dataset of ``(file, offset, length, *rest)``: tf.string,
                int64, int64 scalars, then anything.
            deterministic: keep the order of ``elements``.

        Returns:
            A dataset of ``(record, *rest)``, ``record`` the serialized
            ``tf.train.Example`` (tf.string scalar).
        """
        fixed = self.buffer_size

        def one(file, offset, length, *rest):
            buffer = tf.constant(fixed, tf.int64) if fixed else length + 16
            variant = tf.raw_ops.TFRecordDatasetV2(
                filenames=tf.reshape(file, [1]), compression_type="", buffer_size=buffer,
                byte_offsets=tf.reshape(offset, [1]),
            )
            records = tf.data.experimental.from_variant(variant, tf.TensorSpec([], tf.string))
            return (records.take(1).get_single_element(), *rest)

        return elements.map(one, num_parallel_calls=self.num_parallel_reads, deterministic=deterministic)

    @staticmethod
    def parse(record: tf.Tensor, kinds: Sequence[str]) -> Dict[str, tf.Tensor]:
        """The encoded frames of ``kinds`` in a serialized record: ``{kind: tf.string (N or N - 1,)}``."""
        return tf.io.parse_single_example(record, {kind: tf.io.RaggedFeature(tf.string) for kind in kinds})


def as_source(frames_root) -> Optional[TFRecordSource]:
    """``frames_root`` as a :class:`TFRecordSource` if it is one or names a TFRecord folder, else None."""
    if isinstance(frames_root, TFRecordSource):
        return frames_root
    if is_tfrecord_folder(frames_root):
        return TFRecordSource(frames_root)
    return None


__all__ = [
    "INDEX_FILE",
    "FORMAT",
    "VERSION",
    "KINDS",
    "MODALITY_KINDS",
    "write_tfrecords",
    "read_index",
    "is_tfrecord_folder",
    "as_source",
    "TFRecordSource",
]
