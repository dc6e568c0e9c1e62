"""``tf.data`` pipelines over a prepared dataset: TSN sampling, decoding, augmentation.

A prepared dataset lays a video out as ``frames_root/<video>/img_00001.jpg ...``
(RGB, 1-based) and ``flow_x_00001.jpg`` / ``flow_y_00001.jpg ...`` (grayscale
uint8 JPEG, 128 = no motion; pair i lies between frames i and i+1), listed by
``<video> <num_frames> <label>`` list files (:mod:`keras_gated_tsn.data.lists`).
The file-name templates are arguments, so other tools' layouts read too (e.g.
mmaction's ``x_00001.jpg`` / ``y_00001.jpg`` or 6-digit ``{:06d}.jpg`` frames).

Two builders:

* :func:`make_dataset` — training / validation batches of K snippets per video
  (TSN, Wang et al. ECCV 2016; gated TSN Sec. III-B "Inputs", IV-A: K = 3).
* :func:`make_test_dataset` — one element per video with all views of the test
  protocol (25 uniformly spaced snippets x 10 crops, paper Sec. IV-A).

Both read frame folders or the same frames stored as sharded TFRecord files
(:mod:`~keras_gated_tsn.data.tfrecord`: pass the TFRecord folder, or a
:class:`~keras_gated_tsn.data.tfrecord.TFRecordSource`, as ``frames_root``), and
give the same elements in the same order from either: the same encoded bytes
are decoded by the same graph.

Everything per frame happens in the graph: paths are built with ``tf.strings``,
frames decoded with ``tf.io.decode_jpeg``, sampling and transforms are
TensorFlow ops (:mod:`~keras_gated_tsn.data.sampling`,
:mod:`~keras_gated_tsn.data.transforms`) run by a parallel ``map``. Random draws
are stateless, keyed per element; with a seed, epoch ``e`` of a training
pipeline is a pure function of ``(seed, e)`` (order and draws), so runs repeat,
resume mid-epoch and split over workers without changing a batch.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from keras_gated_tsn.data import device_crops, flow_stacking, sampling, tfrecord, transforms
from keras_gated_tsn.data.layout import DEFAULT_LAYOUT, parse_template
from keras_gated_tsn.data.lists import VideoRecord, leaves_folder, read_list_file

RGB_TEMPLATE = DEFAULT_LAYOUT.rgb
FLOW_X_TEMPLATE = DEFAULT_LAYOUT.flow_x
FLOW_Y_TEMPLATE = DEFAULT_LAYOUT.flow_y

RecordsLike = Union[str, os.PathLike, Sequence[VideoRecord], Sequence[Tuple[str, int, int]]]
#: A frame-folder root, a TFRecord folder (its path) or a :class:`~keras_gated_tsn.data.tfrecord.TFRecordSource`.
FramesLike = Union[str, os.PathLike, tfrecord.TFRecordSource]


# --------------------------------------------------------------------------------------
# Construction-time checks.


#: The frame-file kinds each modality reads.
_KINDS = {"rgb": ("rgb",), "flow": ("flow_x", "flow_y"), "rgb+flow": ("rgb", "flow_x", "flow_y")}

#: Training crops of grayscale (flow) frames are decoded as windows of the JPEG
#: files (``tf.io.decode_and_crop_jpeg``: rows below the window are not decoded,
#: the others only as far as needed) instead of decoded whole and then cut. A
#: grayscale JPEG has no chroma to upsample, so a window's pixels are exactly
#: those of the whole decode. (Colour frames are decoded whole and cut: a
#: cropped colour decode upsamples the chroma differently at the window's edge,
#: and with the margin that fixes it, it was no faster on 340x256 frames.)
#: False decodes every frame whole, the reference the tests compare with.
_DECODE_WINDOWS = True


def _is_jpeg(template: str) -> bool:
    return template.lower().endswith((".jpg", ".jpeg"))


def _decoder(template: str):
    if _is_jpeg(template):
        return lambda data, channels: tf.io.decode_jpeg(data, channels=channels)
    return lambda data, channels: tf.io.decode_image(
        data, channels=channels, expand_animations=False
    )


def _as_records(records_or_list_file: RecordsLike) -> Tuple[List[VideoRecord], Optional[str]]:
    if isinstance(records_or_list_file, (str, os.PathLike)):
        list_file = os.fspath(records_or_list_file)
        if not os.path.isfile(list_file):
            raise FileNotFoundError(f"list file {list_file!r} does not exist")
        return read_list_file(list_file), list_file
    records = []
    for item in records_or_list_file:
        if isinstance(item, VideoRecord):
            records.append(item)
        elif isinstance(item, (tuple, list)) and len(item) == 3:
            records.append(VideoRecord(*item))
        else:
            raise ValueError(
                f"records must be VideoRecord or (video, num_frames, label) tuples, got {item!r}"
            )
    return records, None


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_fields(record: VideoRecord, at: str, modality: str) -> None:
    """A record's label and frame count (both sources)."""
    if not _is_int(record.label) or record.label < 0:
        raise ValueError(f"{at}: label must be an int >= 0, got {record.label!r}")
    if not _is_int(record.num_frames) or record.num_frames < 1:
        raise ValueError(f"{at}: num_frames must be an int >= 1, got {record.num_frames!r}")
    if modality != "rgb" and record.num_frames < 2:
        raise ValueError(
            f"{at}: {record.num_frames} frame has no flow pair, modality {modality!r} needs num_frames >= 2"
        )


def _check_tfrecord_records(
    records: List[VideoRecord], list_file: Optional[str], source, modality: str
) -> List[dict]:
    """Every record against a TFRecord folder's index, before any work: the
    folder stores the modality's kinds, and each video with at least the
    frames the record counts. Returns the index entries."""
    where = f" (list file {list_file!r})" if list_file else ""
    if not records:
        raise ValueError(f"no videos to read{where}")
    missing = [kind for kind in _KINDS[modality] if kind not in source.kinds]
    if missing:
        raise ValueError(
            f"{source.where} stores {source.modality!r} frames ({', '.join(source.kinds)}); modality "
            f"{modality!r} also needs {', '.join(missing)}: write it with modality={modality!r} or 'rgb+flow'"
        )
    entries = []
    for record in records:
        at = record.where(list_file)
        _check_fields(record, at, modality)
        entry = source.entry(record.video)
        if entry is None:
            raise FileNotFoundError(
                f"{at}: the video is not in {source.where} ({source.index['num_videos']} videos; "
                f"see its {tfrecord.INDEX_FILE})"
            )
        if record.num_frames > entry["num_frames"]:
            raise ValueError(
                f"{at}: the list says {record.num_frames} frames but {source.where} stores "
                f"{entry['num_frames']}; write the TFRecord folder again, or correct the list"
            )
        entries.append(entry)
    return entries


def _check_records(
    records: List[VideoRecord],
    list_file: Optional[str],
    frames_root: str,
    modality: str,
    templates: Dict[str, str],
) -> None:
    """Every record against its frame folder, before any work: the folder exists
    inside ``frames_root`` and holds the last frame (and flow pair) the record
    counts. One or three file checks per video; errors name the list file and
    line."""
    where = f" (list file {list_file!r})" if list_file else ""
    if not records:
        raise ValueError(f"no videos to read{where}")
    if not os.path.isdir(frames_root):
        raise FileNotFoundError(f"frames_root {frames_root!r} is not a folder")
    kinds = _KINDS[modality]
    for record in records:
        at = record.where(list_file)
        _check_fields(record, at, modality)
        if leaves_folder(record.video):
            raise ValueError(f"{at}: the video name leaves the frames folder {frames_root!r}")
        folder = os.path.join(frames_root, record.video)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{at}: no frame folder {folder!r}")
        for kind in kinds:
            last = record.num_frames if kind == "rgb" else record.num_frames - 1
            path = os.path.join(folder, templates[kind].format(last))
            if os.path.isfile(path):
                continue
            if not os.path.isfile(os.path.join(folder, templates[kind].format(1))):
                raise FileNotFoundError(
                    f"{at}: {path!r} does not exist, nor does the first file (check the file-name template "
                    f"{templates[kind]!r})"
                )
            held = _count_files(folder, templates[kind])
            raise ValueError(
                f"{at}: the list says {record.num_frames} frames but {folder!r} holds {held} "
                f"{'RGB frames' if kind == 'rgb' else kind + ' files'} (no {os.path.basename(path)}); "
                "re-run `gated-tsn prepare`, or correct the list"
            )


def check_frame_folders(
    records_or_list_file: Optional[RecordsLike],
    frames_root: FramesLike,
    modality: str,
    *,
    rgb_template: str = RGB_TEMPLATE,
    flow_x_template: str = FLOW_X_TEMPLATE,
    flow_y_template: str = FLOW_Y_TEMPLATE,
) -> List[VideoRecord]:
    """Checks every video of a list against its frame folder, before any work.

    What :func:`make_dataset` and :func:`make_test_dataset` check when they
    are built, callable on its own so that a training or evaluation command
    refuses a bad list in seconds instead of failing inside ``fit()``: each
    video's folder exists under ``frames_root`` (names that leave it are
    refused) and holds the last RGB frame (``rgb``) and flow pair (``flow``)
    its ``num_frames`` implies. One to three file checks per video.

    With a TFRecord folder (:mod:`~keras_gated_tsn.data.tfrecord`) as
    ``frames_root`` the records are checked against its index instead: it
    stores the modality's kinds, and each video with at least ``num_frames``
    frames (no file is opened but the index).

    Args:
        records_or_list_file: a list file, or records (None: a TFRecord
            folder's own videos).
        frames_root: ``DATA/frames``, or a TFRecord folder (its path or a
            :class:`~keras_gated_tsn.data.tfrecord.TFRecordSource`).
        modality: ``"rgb"``, ``"flow"`` or ``"rgb+flow"``.
        rgb_template, flow_x_template, flow_y_template: file-name templates
            (frame folders; a TFRecord folder knows its own).

    Returns:
        The records.

    Raises:
        ValueError, FileNotFoundError: naming the list file and line, the
            video, and what is missing (with the count the folder holds).
    """
    templates = {"rgb": rgb_template, "flow_x": flow_x_template, "flow_y": flow_y_template}
    if modality not in ("rgb", "flow", "rgb+flow"):
        raise ValueError(f"modality must be 'rgb', 'flow' or 'rgb+flow', got {modality!r}")
    source = tfrecord.as_source(frames_root)
    if source is not None:
        if records_or_list_file is None:
            records, list_file = source.records(), None
        else:
            records, list_file = _as_records(records_or_list_file)
        _check_tfrecord_records(records, list_file, source, modality)
        return records
    if records_or_list_file is None:
        raise ValueError("records_or_list_file is None: only a TFRecord folder lists its own videos")
    records, list_file = _as_records(records_or_list_file)
    _check_records(records, list_file, os.fspath(frames_root), modality, templates)
    return records


def _count_files(folder: str, template: str) -> int:
    """How many consecutive files 1, 2, ... of ``template`` ``folder`` holds."""
    count = 0
    while os.path.isfile(os.path.join(folder, template.format(count + 1))):
        count += 1
    return count


def _check_common(modality, input_size, new_length, num_parallel_calls):
    sampling.check_modality(modality)
    input_size = transforms._check_size("input_size", input_size)
    if new_length is None:
        new_length = sampling.default_new_length(modality)
    new_length = transforms._check_size("new_length", new_length)
    if num_parallel_calls is not None and num_parallel_calls != tf.data.AUTOTUNE:
        transforms._check_size("num_parallel_calls", num_parallel_calls)
    return input_size, new_length


# --------------------------------------------------------------------------------------
# Graph pieces.


class _Reader:
    """Reads a video's encoded frame files and decodes its snippets inside the graph.

    The encoded files come from the video's folder (``payload`` = its path, with
    a trailing separator) or from its TFRecord (``payload`` = the serialized
    ``tf.train.Example``, :mod:`~keras_gated_tsn.data.tfrecord`); decoding is
    the same for both, so both give the same pixels.
    """

    def __init__(self, modality: str, new_length: int, templates: Dict[str, str], source=None,
                 flow_input: Optional[flow_stacking.FlowInput] = None):
        self.modality = modality
        self.flow_input = flow_input or flow_stacking.FlowInput()
        self.new_length = new_length
        self.templates = dict(templates)
        self.source = source
        self.kinds = _KINDS[modality]
        self.parsed = {k: parse_template(t) for k, t in self.templates.items()}
        self.decoders = {k: _decoder(t) for k, t in self.templates.items()}
        self.jpeg = {k: _is_jpeg(t) for k, t in self.templates.items()}

    def fetch(self, elements: tf.data.Dataset, deterministic: bool) -> tf.data.Dataset:
        """Elements ``(*location, *rest)`` -> ``(payload, *rest)``: identity for
        folders; for TFRecords the record reads, in flight across the shards
        (:meth:`~keras_gated_tsn.data.tfrecord.TFRecordSource.read`)."""
        return elements if self.source is None else self.source.read(elements, deterministic)

    def _paths(self, video_dir, kind: str, indices) -> tf.Tensor:
        prefix, suffix, width, fill = self.parsed[kind]
        numbers = tf.strings.as_string(indices + 1, width=width, fill=fill)
        return tf.strings.join([video_dir, prefix, numbers, suffix])

    def encoded(self, payload, indices) -> Dict[str, List[tf.Tensor]]:
        """The encoded files of the snippets at ``indices`` (int32 (F, L), 0-based items).

        Returns:
            ``{kind: [tf.string scalar, ...]}`` for the modality's kinds, snippet-major:
            ``rgb`` F·L files (``"rgb"``) or F (the first of each flow stack,
            ``"rgb+flow"``); ``flow_x`` and ``flow_y`` F·L files each.
        """
        stored = self.source.parse(payload, self.kinds) if self.source is not None else None
        out = {}
        for kind in self.kinds:
            items = indices[:, 0] if kind == "rgb" and self.modality == "rgb+flow" else indices
            count = int(np.prod(items.shape))
            flat = tf.reshape(items, [-1])
            # (tf.unstack: one op for all files, where indexing is one per file.)
            if stored is None:
                paths = self._paths(payload, kind, flat)
                out[kind] = [tf.io.read_file(path) for path in tf.unstack(paths, num=count)]
            else:
                out[kind] = tf.unstack(tf.gather(stored[kind], flat), num=count)
        return out

    # ---------------------------------------------------------------- assembling groups

    def _rgb(self, frames: List[tf.Tensor]) -> tf.Tensor:
        """F·L frames (h, w, 3) -> uint8 (F, h, w, 3L), frames of a snippet concatenated."""
        length = self.new_length if self.modality == "rgb" else 1
        if length > 1:
            frames = [tf.concat(frames[f : f + length], axis=-1) for f in range(0, len(frames), length)]
        return tf.stack(frames)

    def _flow(self, xs: List[tf.Tensor], ys: List[tf.Tensor]) -> tf.Tensor:
        """F·L x and y planes (h, w, 1) -> uint8 (F, h, w, 2L), channels x1, y1, x2, y2, ...

        Stacked plane after plane, then one transpose to interleave them (a
        concat along the last axis of 1-channel planes copies byte by byte,
        several times slower)."""
        planes = [plane for pair in zip(xs, ys) for plane in pair]
        stacked = tf.stack(planes)  # (F * 2L, h, w, 1): x1, y1, x2, y2, ... of snippet 0, then 1, ...
        shape = tf.shape(stacked)
        channels = 2 * self.new_length
        snippets = len(xs) // self.new_length
        grouped = tf.reshape(stacked, [snippets, channels, shape[1] * shape[2]])
        return tf.reshape(tf.transpose(grouped, [0, 2, 1]), [snippets, shape[1], shape[2], channels])

    def _volumes(self, xs: List[tf.Tensor], ys: List[tf.Tensor]) -> Tuple[List[tf.Tensor], List[tf.Tensor]]:
        """Whole decoded planes (h, w, 1), F·L of each -> the snippets' input volumes
        (:func:`~keras_gated_tsn.data.flow_stacking.flow_volume`), same structure."""
        if self.flow_input.is_plain:
            return xs, ys
        length = self.new_length
        out_x, out_y = [], []
        for start in range(0, len(xs), length):
            x, y = flow_stacking.flow_volume(
                tf.stack(xs[start : start + length])[..., 0], tf.stack(ys[start : start + length])[..., 0],
                self.flow_input,
            )
            out_x += [plane[..., None] for plane in tf.unstack(x, num=length)]
            out_y += [plane[..., None] for plane in tf.unstack(y, num=length)]
        return out_x, out_y

    def rgb_frames(self, encoded: Dict[str, List[tf.Tensor]], window=None) -> tf.Tensor:
        """Whole colour frames uint8 (F, H, W, 3 or 3L) (``window`` must be None:
        see ``_decode_windows``)."""
        if window is not None:
            raise ValueError("colour frames are decoded whole")
        return self._rgb([self.decoders["rgb"](data, 3) for data in encoded["rgb"]])

    def flow_planes(self, encoded: Dict[str, List[tf.Tensor]], window=None) -> tf.Tensor:
        """Flow planes, not interleaved: uint8 (F, 2L, H, W), planes x1, y1, x2, y2, ...
        (``augment_on="device"`` interleaves them after its crop, on the device).

        ``window``: int32 (4,) ``(y, x, h, w)``: only that window of each plane,
        decoded alone (JPEG, plain stacking only: see ``_decode_windows``); (F, 2L, h, w)."""
        if window is None:
            def decode(kind, data):
                return self.decoders[kind](data, 1)
        else:
            def decode(kind, data):
                return tf.io.decode_and_crop_jpeg(data, window, channels=1)
        xs, ys = self._volumes(
            [decode("flow_x", data) for data in encoded["flow_x"]],
            [decode("flow_y", data) for data in encoded["flow_y"]],
        )
        planes = [plane for pair in zip(xs, ys) for plane in pair]
        stacked = tf.stack(planes)  # (F * 2L, H, W, 1)
        shape = tf.shape(stacked)
        return tf.reshape(stacked, [len(planes) // (2 * self.new_length), 2 * self.new_length, shape[1], shape[2]])

    def decode(self, encoded: Dict[str, List[tf.Tensor]]) -> Dict[str, tf.Tensor]:
        """Whole frames: ``{"rgb": uint8 (F, H, W, 3 or 3L)}`` and/or ``{"flow": uint8 (F, H, W, 2L)}``."""
        out = {}
        if "rgb" in encoded:
            out["rgb"] = self._rgb([self.decoders["rgb"](data, 3) for data in encoded["rgb"]])
        if "flow_x" in encoded:
            out["flow"] = self._flow(*self._volumes(
                [self.decoders["flow_x"](data, 1) for data in encoded["flow_x"]],
                [self.decoders["flow_y"](data, 1) for data in encoded["flow_y"]],
            ))
        return out

    def size(self, encoded: Dict[str, List[tf.Tensor]], group: str) -> tf.Tensor:
        """``(H, W)`` int32 of a group's frames, from the first file's header (JPEG) or its decode."""
        kind = "rgb" if group == "rgb" else "flow_x"
        data = encoded[kind][0]
        if self.jpeg[kind]:
            return tf.io.extract_jpeg_shape(data)[:2]
        return tf.shape(self.decoders[kind](data, 3 if kind == "rgb" else 1))[:2]

    def decode_window(self, encoded: Dict[str, List[tf.Tensor]], group: str, box) -> tf.Tensor:
        """The same window ``box`` = int32 (y, x, h, w) of every frame of a group:
        uint8 (F, h, w, C), equal to :meth:`decode` followed by slicing ``box``.

        Grayscale JPEG windows are decoded alone (``tf.io.decode_and_crop_jpeg``,
        see ``_DECODE_WINDOWS``); colour frames are decoded whole and cut."""
        box = tf.cast(box, tf.int32)
        begin = tf.concat([box[:2], [0]], 0)
        size = tf.concat([box[2:], [-1]], 0)

        def window(kind, data, channels):
            if channels == 1 and self.jpeg[kind]:
                return tf.io.decode_and_crop_jpeg(data, box, channels=1)
            return tf.slice(self.decoders[kind](data, channels), begin, size)

        if group == "rgb":
            return self._rgb([window("rgb", data, 3) for data in encoded["rgb"]])
        return self._flow(
            [window("flow_x", data, 1) for data in encoded["flow_x"]],
            [window("flow_y", data, 1) for data in encoded["flow_y"]],
        )


def _sources(records_or_list_file, frames_root, modality, new_length, templates, flow_input=None):
    """Checked records, their reader, the location columns of their frames and
    their item counts (both builders).

    Location columns: ``(video_dir,)`` for frame folders; ``(shard file,
    offset, length)`` for a TFRecord folder."""
    source = tfrecord.as_source(frames_root)
    if source is None:
        if records_or_list_file is None:
            raise ValueError(
                "records_or_list_file is None: only a TFRecord folder lists its own videos; give a list "
                "file or records to read frame folders"
            )
        frames_root = os.fspath(frames_root)
        records, list_file = _as_records(records_or_list_file)
        reader = _Reader(modality, new_length, templates, flow_input=flow_input)
        _check_records(records, list_file, frames_root, modality, reader.templates)
        locations = (tf.constant([os.path.join(frames_root, r.video) + os.sep for r in records]),)
    else:
        if records_or_list_file is None:
            records, list_file = source.records(), None
        else:
            records, list_file = _as_records(records_or_list_file)
        reader = _Reader(modality, new_length, {**templates, **source.templates}, source, flow_input=flow_input)
        entries = _check_tfrecord_records(records, list_file, source, modality)
        files, offsets, lengths = zip(*(source.location(entry) for entry in entries))
        locations = (tf.constant(files), tf.constant(offsets, tf.int64), tf.constant(lengths, tf.int64))
    counts = [sampling.num_items(r.num_frames, modality) for r in records]
    return records, reader, locations, counts


def _epoch_indexed(columns, seed, shuffle, batch_size, start_epoch, skip_batches, num_shards, shard_index,
                   drop_remainder, repeat):
    """The epochs ``start_epoch, ...`` (a dataset of int64) and a function from an
    epoch to its training elements ``(dir, count, label, key)``, a pure function
    of ``(seed, epoch)``: see :func:`make_dataset`."""
    n = int(columns[0].shape[0])
    usable = n - n % batch_size if drop_remainder else n
    if usable == 0:
        raise ValueError(f"{n} videos do not fill one batch of {batch_size} (partial batches are dropped)")
    positions = tf.range(usable, dtype=tf.int64)
    keep = tf.logical_and(
        positions >= skip_batches * batch_size, (positions % batch_size) % num_shards == shard_index
    )
    seed = tf.constant(seed, tf.int64)

    def epoch_elements(epoch):
        if shuffle:
            order = tf.argsort(tf.random.stateless_uniform([n], tf.stack([seed, 2 * epoch])))
        else:
            order = tf.range(n)
        order = order[:usable]
        keys = tf.random.stateless_uniform(
            [usable], tf.stack([seed, 2 * epoch + 1]), minval=None, maxval=None, dtype=tf.int64
        )
        if skip_batches or num_shards > 1:
            mask = tf.where(tf.equal(epoch, start_epoch), keep, in_shard)
            order, keys = tf.boolean_mask(order, mask), tf.boolean_mask(keys, mask)
        return tf.data.Dataset.from_tensor_slices(
            tuple(tf.gather(column, order) for column in columns) + (keys,)
        )

    in_shard = (positions % batch_size) % num_shards == shard_index
    last = np.iinfo(np.int64).max if repeat else start_epoch + 1
    return tf.data.Dataset.range(start_epoch, last), epoch_elements


def _decode_windows(reader: _Reader, frame_sizes, groups, input_size, scales, max_distort):
    """``{group: (h, w) or None}``: a fixed window of the flow planes that holds
    every multi-scale crop (the largest candidate mapped onto the flow frames,
    + 2 px for the mapping's rounding), decoded alone
    (``tf.io.decode_and_crop_jpeg``: exact for grayscale) instead of whole
    planes: JPEG files and plain stacking only (other volumes need whole
    fields); None where it would be the whole frame. On 340x256 frames the
    largest crop is 256 x 256: 256x258 of the 340x256 planes, a quarter less to
    decode. Colour frames are decoded whole: a colour window decoded alone
    upsamples its chroma differently along its edges, and with the margin that
    keeps the crop exact it was slower than the whole decode
    (``benchmarks/pipeline.py``: host CPU per sample 2.23 ms windowed against
    1.75 whole)."""
    out = {group: None for group in groups}
    if "flow" not in groups or not reader.flow_input.is_plain or not (reader.jpeg["flow_x"] and reader.jpeg["flow_y"]):
        return out
    ref_h, ref_w = frame_sizes[groups[0]]
    largest = transforms.multiscale_crop_sizes(ref_h, ref_w, input_size, scales, max_distort).max(axis=0)
    height, width = frame_sizes["flow"]
    win_h = min(height, int(np.ceil(largest[0] * height / ref_h)) + 2)
    win_w = min(width, int(np.ceil(largest[1] * width / ref_w)) + 2)
    if (win_h, win_w) != (height, width):
        out["flow"] = (win_h, win_w)
    return out


def _first_frame_sizes(reader: _Reader, locations, groups) -> Dict[str, Tuple[int, int]]:
    """``{group: (H, W)}`` of the first video's first frame of each group (read now, eagerly)."""
    first = tf.data.Dataset.from_tensor_slices(tuple(column[:1] for column in locations))
    element = next(iter(reader.fetch(first, deterministic=True)))
    payload = element[0] if isinstance(element, (tuple, list)) else element
    encoded = reader.encoded(payload, tf.zeros([1, reader.new_length], tf.int32))
    return {group: tuple(int(v) for v in reader.size(encoded, group).numpy()) for group in groups}


def keyed_elements(columns, count: int, *, shuffle: bool, repeat: bool, training: bool, seed) -> tf.data.Dataset:
    """The elements ``(*columns, key)`` of an unindexed pipeline: the records'
    columns (shuffled each pass, repeated), each with one random int64 that keys
    all its stateless draws in training (0 otherwise): what :func:`ordered_batches`
    (:func:`make_dataset`, :func:`keras_gated_tsn.data.clips.make_clip_dataset`)
    batches when the order is not epoch-indexed."""
    ds = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle:
        ds = ds.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if training:
        keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        return tf.data.Dataset.zip((ds, keys)).map(lambda r, key: (*r, key))
    return ds.map(lambda *r: (*r, tf.constant(0, tf.int64)))


def check_ordered_batches(
    *, training: bool, seed, batch_size: int, start_epoch: int = 0, skip_batches: int = 0,
    num_shards: int = 1, shard_index: int = 0,
) -> None:
    """The checks of :func:`ordered_batches`' position and shard arguments, callable
    before any work (the builders call it before reading their lists).

    Raises:
        ValueError: for a ``start_epoch``, ``skip_batches`` or ``shard_index``
            that is not an int >= 0, a ``num_shards`` not an int >= 1, a
            ``shard_index`` >= ``num_shards``, a position or shards without
            ``training=True`` and a seed, or a ``batch_size`` that
            ``num_shards`` does not divide.
    """
    for name, value, minimum in (("start_epoch", start_epoch, 0), ("skip_batches", skip_batches, 0),
                                 ("num_shards", num_shards, 1), ("shard_index", shard_index, 0)):
        if not _is_int(value) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if shard_index >= num_shards:
        raise ValueError(f"shard_index must be < num_shards ({num_shards}), got {shard_index}")
    positioned = bool(start_epoch or skip_batches or num_shards > 1)
    if positioned and not (training and seed is not None):
        raise ValueError("start_epoch, skip_batches and shards need training=True and a seed")
    if batch_size % num_shards:
        raise ValueError(f"the global batch of {batch_size} videos does not split over {num_shards} shards")


def ordered_batches(
    columns, count: int, reader: "_Reader", load, *, training: bool, seed, shuffle: bool, repeat: bool,
    batch_size: int, drop_remainder: bool = False, start_epoch: int = 0, skip_batches: int = 0,
    num_shards: int = 1, shard_index: int = 0, num_parallel_calls=tf.data.AUTOTUNE, prefetch=tf.data.AUTOTUNE,
) -> tf.data.Dataset:
    """The batches of a pipeline over ``count`` records, in their training order
    (the order, resumption and sharding of :func:`make_dataset`, shared by
    :func:`keras_gated_tsn.data.clips.make_clip_dataset`).

    With a ``seed`` in training and ``repeat`` (or a start, skip or shards) the
    order is epoch-indexed: epoch ``e`` is a pure function of ``(seed, e)``
    (a stateless permutation, and one int64 key per position that keys the
    element's random draws), batched epoch by epoch so that no batch straddles
    two epochs; ``start_epoch`` / ``skip_batches`` start the dataset where a
    resumed run goes on, and shard ``w`` of ``W`` takes the elements at
    positions ``w, w + W, ...`` of each global batch of ``batch_size`` (in
    batches of ``batch_size / W``; partial global batches are dropped).
    Otherwise the elements of :func:`keyed_elements`.

    Args:
        columns: tuple of tensors, one row per record (locations, counts, labels...).
        count: the records (rows of ``columns``).
        reader: the frames' reader (folders or TFRecord): fetches each
            element's encoded files.
        load: ``load(*element) -> (x, label)``, mapped over the fetched
            elements ``(*columns, key)`` (int64 ``key``: 0 outside training):
            decodes and augments one video.
        training, seed, shuffle, repeat, batch_size, drop_remainder,
        start_epoch, skip_batches, num_shards, shard_index, num_parallel_calls,
        prefetch: as in :func:`make_dataset` (checked by
            :func:`check_ordered_batches`). Seeded or evaluation pipelines map
            in order; unseeded training ones in any order (faster).

    Returns:
        The batched dataset (batches of ``batch_size / num_shards``), prefetched.

    Raises:
        ValueError: as :func:`check_ordered_batches`, or when the records do
            not fill one batch and partial batches are dropped (epoch-indexed).
    """
    check_ordered_batches(training=training, seed=seed, batch_size=batch_size, start_epoch=start_epoch,
                          skip_batches=skip_batches, num_shards=num_shards, shard_index=shard_index)
    positioned = bool(start_epoch or skip_batches or num_shards > 1)
    # Epoch-indexed order when it can be named: a repeating or positioned seeded
    # training pipeline. A plain seeded one re-draws on each pass (an iteration per epoch).
    indexed = training and seed is not None and (repeat or positioned)
    drop = drop_remainder or num_shards > 1
    deterministic = seed is not None or not training

    def loaded(elements):
        elements = reader.fetch(elements, deterministic)
        return elements.map(load, num_parallel_calls=num_parallel_calls, deterministic=deterministic)

    if not indexed:
        ds = keyed_elements(columns, count, shuffle=shuffle, repeat=repeat, training=training, seed=seed)
        ds = loaded(ds).batch(batch_size, drop_remainder=drop)
    else:
        epochs, epoch_elements = _epoch_indexed(
            columns, seed, shuffle, batch_size, start_epoch, skip_batches, num_shards, shard_index, drop, repeat,
        )
        per_shard = batch_size // num_shards
        # Seeded training batches epoch by epoch, so no batch straddles two epochs.
        ds = epochs.flat_map(lambda epoch: loaded(epoch_elements(epoch)).batch(per_shard, drop_remainder=drop))
    return ds.prefetch(prefetch) if prefetch else ds


def _output(groups: Dict[str, tf.Tensor], modality: str):
    return groups if modality == "rgb+flow" else groups[modality]


def _channels(modality: str, new_length: int) -> Dict[str, int]:
    if modality == "rgb":
        return {"rgb": 3 * new_length}
    if modality == "flow":
        return {"flow": 2 * new_length}
    return {"rgb": 3, "flow": 2 * new_length}


# --------------------------------------------------------------------------------------
# Public builders.


def make_dataset(
    records_or_list_file: Optional[RecordsLike],
    frames_root: FramesLike,
    modality: str,
    *,
    num_segments: int = 3,
    new_length: Optional[int] = None,
    input_size: int = 224,
    batch_size: int = 32,
    training: bool = True,
    shuffle: Optional[bool] = None,
    seed: Optional[int] = None,
    scales: Sequence[float] = transforms.DEFAULT_SCALES,
    max_distort: int = 1,
    flip_prob: float = 0.5,
    scale_size: Optional[int] = None,
    rgb_template: str = RGB_TEMPLATE,
    flow_x_template: str = FLOW_X_TEMPLATE,
    flow_y_template: str = FLOW_Y_TEMPLATE,
    num_parallel_calls: Optional[int] = tf.data.AUTOTUNE,
    prefetch: Optional[int] = tf.data.AUTOTUNE,
    drop_remainder: bool = False,
    repeat: bool = False,
    start_epoch: int = 0,
    skip_batches: int = 0,
    num_shards: int = 1,
    shard_index: int = 0,
    augment_on: str = "host",
    flow_input: flow_stacking.FlowInputLike = None,
    snippet_stride: Optional[Tuple[int, int]] = None,
) -> tf.data.Dataset:
    """Batches of K TSN snippets per video, for training or validation.

    Training (``training=True``): random snippet offsets, one per segment
    (:func:`~keras_gated_tsn.data.sampling.train_offsets_tf`), one multi-scale
    fixed-grid crop per video resized to ``input_size``
    (:func:`~keras_gated_tsn.data.transforms.sample_multiscale_crop_tf`), and a
    horizontal flip with probability ``flip_prob`` (flow x inverted) — TSN's
    augmentation, adopted by the gated TSN (Sec. IV-A). Otherwise: uniform
    offsets (segment centres) and the centre crop of frames scaled to shorter
    side ``scale_size``. In the joint mode the crop, flip and offsets are shared
    by both modalities, and the RGB frame of a segment is the first frame of its
    flow stack (gated TSN Sec. III-B).

    Args:
        records_or_list_file: a list file (``<video> <num_frames> <label>``) or
            a sequence of :class:`~keras_gated_tsn.data.lists.VideoRecord` (or
            ``(video, num_frames, label)`` tuples). None with a TFRecord
            ``frames_root``: the videos it stores, in write order.
        frames_root: folder holding one folder of frames per video, or a
            TFRecord folder written by
            :func:`~keras_gated_tsn.data.tfrecord.write_tfrecords` (recognised
            by its ``index.json``; a local path or a ``gs://``-style URL), or a
            :class:`~keras_gated_tsn.data.tfrecord.TFRecordSource` (to set its
            read options). The records are then looked up by video name in
            its index (a list may name a subset, in any order, with up to the
            stored frame counts), and the elements are those the frame folders
            would give, in the same order: each record is read at its byte
            offset, so no order is lost to streaming.
        modality: ``"rgb"``, ``"flow"`` or ``"rgb+flow"``.
        num_segments: K >= 1.
        new_length: snippet length; default 1 for ``"rgb"``, 5 (L) for flow and
            joint (the joint mode always takes one RGB frame per segment).
        input_size: output side S in pixels.
        batch_size: videos per batch.
        training: random augmentation (True) or the deterministic centre view.
        shuffle: shuffle the videos each epoch; default ``training``.
        seed: makes shuffling, sampling, crops and flips reproducible (and the
            map deterministic). None draws fresh entropy.
        scales, max_distort: multi-scale crop candidates (training only).
        flip_prob: probability of the horizontal flip (training only; 0
            disables it, 1 forces it; the other draws do not depend on it).
        scale_size: evaluation shorter side before the centre crop; default
            ``round(input_size * 256 / 224)``.
        rgb_template, flow_x_template, flow_y_template: file names with one
            integer field (1-based), e.g. ``"img_{:05d}.jpg"``, ``"{:06d}.jpg"``
            (frame folders; a TFRecord folder records its own).
        num_parallel_calls: parallelism of the decoding map (AUTOTUNE default).
        prefetch: batches to prefetch (AUTOTUNE default; None or 0: none).
        drop_remainder: drop a last partial batch (static batch dimension).
        repeat: repeat forever (epoch boundaries kept: reshuffled each pass).
        start_epoch: with a ``seed``, the epoch the dataset starts at (>= 0).
        skip_batches: with a ``seed``, batches of ``start_epoch`` to leave out
            (>= 0): where a resumed run goes on.
        num_shards, shard_index: this worker's share of every batch, for
            multi-worker training: shard ``w`` of ``W`` gets the videos at
            positions ``w, w + W, ...`` of each global batch of ``batch_size``
            videos, and batches of ``batch_size / W`` (which must divide);
            partial global batches are dropped so that every worker takes the
            same number of steps. Needs a ``seed`` (the workers must agree on
            the order).
        augment_on: ``"host"`` (default): crops, resizes and flips in the
            pipeline. ``"device"`` (training only): the pipeline stops after
            decoding and each batch carries whole frames with the crop box and
            flip drawn for each video (layout in
            :mod:`~keras_gated_tsn.data.device_crops`); the zoo's models apply
            them in their ``train_step``, on the accelerator, giving the same
            pixels from the same draws (bit-identical on the CPU). For
            GPU training where the host's cores cannot keep up. All videos
            must have the frame size of the first (checked per video).
        flow_input: how a flow snippet's 2L channels are built from its L
            extracted pairs (a :class:`~keras_gated_tsn.data.flow_stacking.FlowInput`
            or its settings dict): optical flow stacking (default, eq. 1 of
            the two-stream ConvNets), trajectory stacking (eq. 2),
            bi-directional flow, mean flow subtraction. Computed on whole
            frames before the crop.
        snippet_stride: None (TSN: one snippet per segment), or ``(tau_min,
            tau_max)``: the ``num_segments`` snippets are T consecutive
            chunks ``tau`` items apart, tau drawn from the range in training
            and the largest that fits otherwise
            (:func:`~keras_gated_tsn.data.sampling.strided_offsets`; the
            input of convolutional two-stream fusion's temporal fusion,
            Feichtenhofer et al. 2016 Sec. 3.5, trained with tau in [1, 10]).

    With a ``seed`` and ``repeat`` (or a start, skip or shards), epoch ``e`` of
    a training dataset is a pure function of ``(seed, e)``: its order is a
    stateless permutation and each video's random draws are keyed by ``(seed,
    e, position)``; without ``repeat`` it is that one epoch. (A seeded dataset
    without these draws anew on each pass, the same on every run.) A run resumed at epoch
    ``e``, batch ``s`` (``start_epoch=e, skip_batches=s``) sees exactly the
    batches an uninterrupted run would, and ``W`` shards together see the
    batches of one process.

    Returns:
        A dataset of ``(x, label)``: ``label`` int32 (B,) in ``[0, classes)``;
        ``x`` uint8 pixels 0-255 —

        * ``"rgb"``: (B, K, S, S, 3) in RGB order (3L channels if ``new_length`` > 1,
          frames concatenated);
        * ``"flow"``: (B, K, S, S, 2L), channels ``x1, y1, x2, y2, ...``, 128 = no motion;
        * ``"rgb+flow"``: ``{"rgb": (B, K, S, S, 3), "flow": (B, K, S, S, 2L)}``.

        B is ``batch_size`` (``batch_size / num_shards`` per shard; None in the
        spec unless batches are full by construction). With
        ``augment_on="device"``, ``x`` is the dict of
        :mod:`~keras_gated_tsn.data.device_crops` instead.

    Raises:
        ValueError: on an unknown modality (quoted), bad sizes or scales, a
            negative or non-int label, or a one-frame video in a flow modality.
        FileNotFoundError: if ``frames_root``, the list file, a video's folder
            (the message names the video and the list file) or the first
            video's first frame (a template mismatch) does not exist; for a
            TFRecord folder, if its index or a shard is missing or a video is
            not stored.
        ValueError: for a TFRecord folder, also if it does not store the
            modality's frames, stores fewer frames of a video than listed,
            or a shard's size differs from its index.
        ValueError: for ``augment_on`` not ``"host"`` or ``"device"``, or
            ``"device"`` with ``training=False``.
        tf.errors.InvalidArgumentError: while iterating with
            ``augment_on="device"``, for a video whose frames differ in size
            from the first video's (the message names the video's folder).
    """
    input_size, new_length = _check_common(modality, input_size, new_length, num_parallel_calls)
    if augment_on not in ("host", "device"):
        raise ValueError(f"augment_on must be 'host' or 'device', got {augment_on!r}")
    if augment_on == "device" and not training:
        raise ValueError(
            "augment_on='device' is for training batches (random crops and flips); evaluation views are "
            "cut on the host: use augment_on='host' with training=False"
        )
    num_segments = transforms._check_size("num_segments", num_segments)
    batch_size = transforms._check_size("batch_size", batch_size)
    if not 0.0 <= float(flip_prob) <= 1.0:
        raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob!r}")
    transforms._check_scales(scales, max_distort)
    scale_size = transforms.default_scale_size(input_size) if scale_size is None else scale_size
    transforms._check_size("scale_size", scale_size)
    if scale_size < input_size:
        raise ValueError(f"scale_size must be >= input_size {input_size}, got {scale_size}")
    shuffle = training if shuffle is None else bool(shuffle)
    stride_range = None if snippet_stride is None else sampling.check_stride_range(snippet_stride)

    check_ordered_batches(training=training, seed=seed, batch_size=batch_size, start_epoch=start_epoch,
                          skip_batches=skip_batches, num_shards=num_shards, shard_index=shard_index)

    templates = {"rgb": rgb_template, "flow_x": flow_x_template, "flow_y": flow_y_template}
    flow_input = flow_stacking.as_flow_input(flow_input)
    if modality != "rgb":
        flow_input.check_length(new_length)
    records, reader, locations, counts = _sources(
        records_or_list_file, frames_root, modality, new_length, templates, flow_input
    )
    labels = [r.label for r in records]
    columns = locations + (tf.constant(counts, tf.int32), tf.constant(labels, tf.int32))

    channels = _channels(modality, new_length)
    flip_prob = float(flip_prob)

    groups = ("rgb",) if modality == "rgb" else ("flow",) if modality == "flow" else ("rgb", "flow")
    frame_sizes = _first_frame_sizes(reader, locations, groups) if augment_on == "device" else None

    if augment_on == "device":
        windows = _decode_windows(reader, frame_sizes, groups, input_size, scales, max_distort)

    def uncropped(payload, encoded, seeds):
        """``augment_on="device"``: each group's frames (whole, or a fixed window
        holding every possible crop), the crop box and the flip (the host path's draws)."""
        checks = []
        for group in groups:
            height, width = frame_sizes[group]
            where = [payload] if reader.source is None else []
            checks.append(tf.debugging.Assert(
                tf.reduce_all(tf.equal(reader.size(encoded, group), [height, width])),
                [f"augment_on='device' batches whole frames, so every video needs the first video's "
                 f"{group} frame size {height}x{width}; this one's is", reader.size(encoded, group), *where],
            ))
        ref_h, ref_w = frame_sizes[groups[0]]
        box = transforms.sample_multiscale_crop_tf(
            tf.constant(ref_h, tf.int32), tf.constant(ref_w, tf.int32), input_size, seeds[1], scales, max_distort
        )
        do_flip = tf.random.stateless_uniform([], seeds[2], dtype=tf.float32) < flip_prob
        result = {device_crops.FLIP: do_flip}
        keys = {"rgb": (device_crops.RGB_FRAMES, device_crops.RGB_BOX),
                "flow": (device_crops.FLOW_PLANES, device_crops.FLOW_BOX)}
        with tf.control_dependencies(checks):  # (the size check names the video before a decode fails)
            for group in groups:
                group_box = box if group == groups[0] else transforms.rescale_box(
                    box, frame_sizes[groups[0]], frame_sizes[group])
                group_box = tf.cast(group_box, tf.int32)
                height, width = frame_sizes[group]
                window = None
                if windows[group] is not None:
                    # Decode only a fixed window that holds the crop (the same pixels).
                    win_h, win_w = windows[group]
                    corner = tf.minimum(group_box[:2], [height - win_h, width - win_w])
                    window = tf.concat([corner, [win_h, win_w]], 0)
                    group_box = tf.concat([group_box[:2] - corner, group_box[2:]], 0)
                    height, width = win_h, win_w
                if group == "rgb":
                    frames = reader.rgb_frames(encoded, window)
                    shape = [num_segments, height, width, channels["rgb"]]
                else:
                    frames = reader.flow_planes(encoded, window)
                    shape = [num_segments, channels["flow"], height, width]
                result[keys[group][0]] = tf.ensure_shape(frames, shape)
                result[keys[group][1]] = group_box
        return result

    def load(payload, n, label, key):
        if training:
            seeds = [tf.stack([key, tf.constant(i, tf.int64)]) for i in range(3)]
        if stride_range is not None:
            offsets = sampling.strided_offsets_tf(
                n, num_segments, new_length, stride_range, training, seeds[0] if training else None
            )
        elif training:
            offsets = sampling.train_offsets_tf(n, num_segments, new_length, seeds[0])
        else:
            offsets = sampling.test_offsets_tf(n, num_segments, new_length)
        indices = sampling.snippet_indices_tf(offsets, n, new_length)
        encoded = reader.encoded(payload, indices)
        out = {}
        if training and augment_on == "device":
            return uncropped(payload, encoded, seeds), label
        if training:
            # The crop is drawn on the first group's frame size (rgb if read) and
            # mapped onto the other's; then each group's window is decoded (the
            # same pixels as decoding whole frames and cutting), resized and flipped.
            # A group's frame size is its first file's (one size per video, as
            # prepare writes them; a smaller frame fails its window's decode).
            # (Volumes other than plain stacking need whole flow fields: trajectories leave the crop.)
            windows = _DECODE_WINDOWS and reader.flow_input.is_plain
            if windows:
                sizes = {group: reader.size(encoded, group) for group in groups}
            else:
                frames = reader.decode(encoded)
                sizes = {group: tf.shape(frames[group])[1:3] for group in groups}
            ref_hw = sizes[groups[0]]
            box = transforms.sample_multiscale_crop_tf(
                ref_hw[0], ref_hw[1], input_size, seeds[1], scales, max_distort
            )
            do_flip = tf.random.stateless_uniform([], seeds[2], dtype=tf.float32) < flip_prob
            for group in groups:
                # (The reference group's own box needs no mapping.)
                kind_box = box if group == groups[0] else transforms.rescale_box(box, ref_hw, sizes[group])
                if windows:
                    window = reader.decode_window(encoded, group, kind_box)
                    x = transforms.crop_and_resize(window, tf.concat([[0, 0], kind_box[2:]], 0), input_size)
                else:
                    x = transforms.crop_and_resize(frames[group], kind_box, input_size)
                x = tf.cond(
                    do_flip, lambda f=x, fl=group == "flow": transforms.flip(f, fl), lambda f=x: f
                )
                out[group] = tf.ensure_shape(x, [num_segments, input_size, input_size, channels[group]])
        else:
            for group, frames in reader.decode(encoded).items():
                x = transforms.center_crop(frames, input_size, scale_size)
                out[group] = tf.ensure_shape(x, [num_segments, input_size, input_size, channels[group]])
        return _output(out, modality), label

    return ordered_batches(
        columns, len(records), reader, load, training=training, seed=seed, shuffle=shuffle, repeat=repeat,
        batch_size=batch_size, drop_remainder=drop_remainder, start_epoch=start_epoch,
        skip_batches=skip_batches, num_shards=num_shards, shard_index=shard_index,
        num_parallel_calls=num_parallel_calls, prefetch=prefetch,
    )


def make_test_dataset(
    records_or_list_file: Optional[RecordsLike],
    frames_root: FramesLike,
    modality: str,
    *,
    num_frames: int = 25,
    crops: int = 10,
    input_size: int = 224,
    new_length: Optional[int] = None,
    scale_size: Optional[int] = None,
    rgb_template: str = RGB_TEMPLATE,
    flow_x_template: str = FLOW_X_TEMPLATE,
    flow_y_template: str = FLOW_Y_TEMPLATE,
    num_parallel_calls: Optional[int] = tf.data.AUTOTUNE,
    prefetch: Optional[int] = 1,
    flow_input: flow_stacking.FlowInputLike = None,
    snippet_stride: Optional[Tuple[int, int]] = None,
) -> tf.data.Dataset:
    """All test views of each video: TSN / gated-TSN test protocol (paper Sec. IV-A).

    ``num_frames`` snippets at uniform offsets
    (:func:`~keras_gated_tsn.data.sampling.test_offsets_tf`, "25 frames
    uniformly spaced"), each cut into ``crops`` views of frames scaled to
    shorter side ``scale_size``
    (:func:`~keras_gated_tsn.data.transforms.oversample`: 4 corners + centre,
    then their flips, flow flips inverting x). In the joint mode the RGB frame of
    a view is the first frame of its flow stack and both get the same crop.

    Args:
        records_or_list_file, frames_root, modality, new_length, input_size,
        scale_size, templates, num_parallel_calls: as in :func:`make_dataset`
            (``frames_root`` may be a TFRecord folder: the same elements, in
            the same order).
        num_frames: snippets per video (25 in the paper).
        crops: views per snippet: 10 (paper), 5, 3 (along the longer side) or 1 (centre only).
        flow_input: as in :func:`make_dataset` (the temporal net's input configuration).
        snippet_stride: None (the protocol above), or ``(tau_min, tau_max)``:
            the ``num_frames`` snippets are T chunks ``tau`` apart (the
            largest tau of the range that fits, centred:
            :func:`~keras_gated_tsn.data.sampling.strided_offsets`), and a view
            is one crop of all of them: ``x`` is then (crops, T, S, S, C), the
            input of convolutional two-stream fusion's temporal fusion
            (Feichtenhofer et al. 2016, Sec. 4 "Testing": the T = 5 snippets
            and their flips).
        prefetch: videos to prefetch (default 1; elements are large:
            25 x 10 x 224 x 224 x 10 bytes = 125 MB for flow).

    Returns:
        A dataset, one element per video in list order: ``(x, label, video)``;
        ``x`` uint8 (V, 1, S, S, C) with V = ``num_frames * crops``, views
        ordered frame-major then crop (view ``f * crops + c``; for 10 crops,
        ``c`` = 5..9 mirror 0..4), C = 3 (rgb), 2L (flow), or the dict
        ``{"rgb": (V, 1, S, S, 3), "flow": (V, 1, S, S, 2L)}``; the axis of size
        1 is the segment axis, so a model with K = 1 scores each view.
        ``label`` int32 scalar, ``video`` tf.string scalar (its folder name;
        the records' order, which for ``records_or_list_file=None`` and a
        TFRecord folder is its write order).

    Raises:
        ValueError, FileNotFoundError: as :func:`make_dataset`, and on ``crops``
            not in (1, 3, 5, 10).
    """
    input_size, new_length = _check_common(modality, input_size, new_length, num_parallel_calls)
    num_frames = transforms._check_size("num_frames", num_frames)
    if crops not in (1, 3, 5, 10):
        raise ValueError(f"crops must be 1, 3, 5 or 10, got {crops!r}")
    scale_size = transforms.default_scale_size(input_size) if scale_size is None else scale_size
    transforms._check_size("scale_size", scale_size)
    if scale_size < input_size:
        raise ValueError(f"scale_size must be >= input_size {input_size}, got {scale_size}")

    templates = {"rgb": rgb_template, "flow_x": flow_x_template, "flow_y": flow_y_template}
    flow_input = flow_stacking.as_flow_input(flow_input)
    if modality != "rgb":
        flow_input.check_length(new_length)
    records, reader, locations, counts = _sources(
        records_or_list_file, frames_root, modality, new_length, templates, flow_input
    )
    ds = tf.data.Dataset.from_tensor_slices(
        locations + (
            tf.constant(counts, tf.int32),
            tf.constant([r.label for r in records], tf.int32),
            tf.constant([r.video for r in records]),
        )
    )
    ds = reader.fetch(ds, deterministic=True)
    channels = _channels(modality, new_length)
    views = num_frames * crops
    stride_range = None if snippet_stride is None else sampling.check_stride_range(snippet_stride)

    def load(payload, n, label, video):
        if stride_range is None:
            offsets = sampling.test_offsets_tf(n, num_frames, new_length)
        else:
            offsets = sampling.strided_offsets_tf(n, num_frames, new_length, stride_range, training=False)
        indices = sampling.snippet_indices_tf(offsets, n, new_length)
        groups = reader.decode(reader.encoded(payload, indices))
        out = {}
        for kind, frames in groups.items():
            x = transforms.oversample(
                frames, input_size, scale_size, crops=crops, flow=kind == "flow"
            )
            if stride_range is None:
                x = tf.reshape(x, [views, 1, input_size, input_size, channels[kind]])
            else:  # a view = one crop of all T snippets
                x = tf.reshape(x, [num_frames, crops, input_size, input_size, channels[kind]])
                x = tf.transpose(x, [1, 0, 2, 3, 4])
            out[kind] = x
        return _output(out, modality), label, video

    ds = ds.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
    if prefetch:
        ds = ds.prefetch(prefetch)
    return ds


__all__ = [
    "make_dataset",
    "make_test_dataset",
    "ordered_batches",
    "check_ordered_batches",
    "keyed_elements",
    "RGB_TEMPLATE",
    "FLOW_X_TEMPLATE",
    "FLOW_Y_TEMPLATE",
]
