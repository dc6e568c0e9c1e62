"""TFRecord storage of a prepared dataset: the same samples as the frame folders.

Real frames: the embedded sample clips prepared at 128x96 (``prepared_samples``),
cut to 9-frame sub-clips so that records stay small.
"""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from keras_gated_tsn.data import pipeline, tfrecord
from keras_gated_tsn.data.lists import VideoRecord, read_list_file, write_list_file

S = 32  # crops of the 128x96 frames (multi-scale sizes 96, 84, 72, 63), resized to 32
FRAMES = 9


def _arrays(element):
    return [t.numpy() for t in tf.nest.flatten(element)]


def _take(ds, count=None):
    return [_arrays(e) for e in (ds.take(count) if count else ds)]


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert len(x) == len(y)
        for u, v in zip(x, y):
            u, v = np.asarray(u), np.asarray(v)
            assert u.dtype == v.dtype and u.shape == v.shape
            np.testing.assert_array_equal(u, v)


@pytest.fixture(scope="module")
def stored(prepared_samples, tmp_path_factory):
    """Six real videos (both classes of the list's first lines and others), 9 frames
    each, written as 3 shards of rgb+flow."""
    records = read_list_file(prepared_samples / "all.txt")
    picked = [records[i] for i in np.linspace(0, len(records) - 1, 6).astype(int)]
    records = [VideoRecord(r.video, min(r.num_frames, FRAMES), r.label) for r in picked]
    frames = prepared_samples / "frames"
    out = tmp_path_factory.mktemp("tfrecord") / "all"
    index = tfrecord.write_tfrecords(frames, records, out, num_shards=3)
    return {"frames": frames, "records": records, "dir": out, "index": index}


# ------------------------------------------------------------------ layout


def test_index_names_shards_videos_and_what_is_stored(stored):
    index, out, records = stored["index"], stored["dir"], stored["records"]
    assert sorted(os.listdir(out)) == [
        "index.json", "shard-00000-of-00003.tfrecord", "shard-00001-of-00003.tfrecord",
        "shard-00002-of-00003.tfrecord",
    ]  # no temporary file left
    assert json.loads((out / "index.json").read_text()) == index == tfrecord.read_index(out)
    assert index["format"] == tfrecord.FORMAT and index["version"] == tfrecord.VERSION
    assert index["modality"] == "rgb+flow" and index["kinds"] == ["rgb", "flow_x", "flow_y"]
    assert index["templates"] == {"rgb": "img_{:05d}.jpg", "flow_x": "flow_x_{:05d}.jpg",
                                  "flow_y": "flow_y_{:05d}.jpg"}
    assert [s["num_videos"] for s in index["shards"]] == [2, 2, 2]
    for shard in index["shards"]:
        assert os.path.getsize(out / shard["file"]) == shard["num_bytes"]
    videos = index["videos"]
    assert [(v["video"], v["num_frames"], v["label"]) for v in videos] == [
        (r.video, r.num_frames, r.label) for r in records
    ]
    assert [v["shard"] for v in videos] == [0, 1, 2, 0, 1, 2]
    assert tfrecord.TFRecordSource(out).records() == records
    # One Example per video: its name, count, label and the files byte for byte.
    first = videos[3]
    raw = next(iter(tf.data.TFRecordDataset(str(out / index["shards"][0]["file"])).skip(1)))
    example = tf.train.Example.FromString(raw.numpy()).features.feature
    assert example["video"].bytes_list.value == [first["video"].encode()]
    assert example["num_frames"].int64_list.value == [FRAMES] and example["label"].int64_list.value == [first["label"]]
    folder = stored["frames"] / first["video"]
    assert list(example["rgb"].bytes_list.value) == [
        (folder / f"img_{i:05d}.jpg").read_bytes() for i in range(1, FRAMES + 1)
    ]
    assert len(example["flow_x"].bytes_list.value) == len(example["flow_y"].bytes_list.value) == FRAMES - 1
    assert example["flow_y"].bytes_list.value[3] == (folder / "flow_y_00004.jpg").read_bytes()


# ------------------------------------------------------------------ same samples


@pytest.mark.parametrize("modality", ["rgb", "flow", "rgb+flow"])
def test_training_batches_are_the_folder_batches(stored, modality):
    """Seeded training: the same batches (videos, order, snippets, crops, flips) from
    both sources, over epochs, with the plain seeded order and the epoch-indexed one."""
    records, frames, out = stored["records"], stored["frames"], stored["dir"]
    common = dict(input_size=S, batch_size=2, seed=4, new_length=None if modality == "rgb" else 2)
    folder = pipeline.make_dataset(records, frames, modality, repeat=True, **common)
    packed = pipeline.make_dataset(records, out, modality, repeat=True, **common)
    _same(_take(packed, 6), _take(folder, 6))  # two epochs of 3 batches
    folder = pipeline.make_dataset(records, frames, modality, **common)
    packed = pipeline.make_dataset(records, tfrecord.TFRecordSource(out, num_parallel_reads=2), modality, **common)
    first = _take(folder)
    _same(_take(packed), first)
    _same(_take(packed), _take(folder))  # the second pass: a new draw, the same on both
    if modality == "rgb":
        resumed = dict(common, start_epoch=1, skip_batches=1, num_shards=2, shard_index=1)
        _same(_take(pipeline.make_dataset(records, out, modality, **resumed), 3),
              _take(pipeline.make_dataset(records, frames, modality, **resumed), 3))
    if modality == "rgb+flow":  # validation: centre crops
        validation = dict(common, training=False, scale_size=48)
        _same(_take(pipeline.make_dataset(records, out, modality, **validation)),
              _take(pipeline.make_dataset(records, frames, modality, **validation)))


@pytest.mark.parametrize("modality", ["rgb", "flow", "rgb+flow"])
def test_test_protocol_elements_are_the_folder_elements(stored, modality):
    kw = dict(num_frames=3, crops=10, input_size=S, new_length=None if modality == "rgb" else 3)
    packed = _take(pipeline.make_test_dataset(stored["records"], stored["dir"], modality, **kw))
    _same(packed, _take(pipeline.make_test_dataset(stored["records"], stored["frames"], modality, **kw)))
    assert [e[-1] for e in packed] == [r.video.encode() for r in stored["records"]]


def test_a_list_may_name_a_subset_in_any_order_with_fewer_frames(stored, tmp_path):
    records = [VideoRecord(r.video, 7, r.label) for r in stored["records"][4:1:-1]]
    list_file = tmp_path / "val.txt"
    write_list_file(list_file, records)
    kw = dict(num_frames=2, crops=1, input_size=S)
    _same(_take(pipeline.make_test_dataset(list_file, stored["dir"], "flow", **kw)),
          _take(pipeline.make_test_dataset(list_file, stored["frames"], "flow", **kw)))
    # No list: the stored videos in write order, with their stored labels.
    own = _take(pipeline.make_test_dataset(None, stored["dir"], "rgb", **kw))
    _same(own, _take(pipeline.make_test_dataset(stored["records"], stored["frames"], "rgb", **kw)))
    assert pipeline.check_frame_folders(list_file, stored["dir"], "rgb+flow") == read_list_file(list_file)


# ------------------------------------------------------------------ reading errors


def test_reading_errors_name_the_video_and_what_is_stored(stored, tmp_path):
    out, records = stored["dir"], stored["records"]
    list_file = tmp_path / "train.txt"
    write_list_file(list_file, [records[0], VideoRecord("v_Nowhere_g01_c01", 9, 0)])
    with pytest.raises(FileNotFoundError, match=r"train\.txt, line 2 \(video .v_Nowhere_g01_c01.\): the video "
                                                r"is not in the TFRecord folder"):
        pipeline.make_dataset(list_file, out, "rgb")
    list_file.write_text(f"{records[0].video} 12 0\n")
    with pytest.raises(ValueError, match=r"line 1 .*the list says 12 frames but the TFRecord folder .* stores 9"):
        pipeline.check_frame_folders(list_file, out, "flow")
    rgb_only = tmp_path / "rgb_only"
    tfrecord.write_tfrecords(stored["frames"], records[:2], rgb_only, modality="rgb")
    assert tfrecord.read_index(rgb_only)["kinds"] == ["rgb"]
    with pytest.raises(ValueError, match=r"stores 'rgb' frames \(rgb\); modality 'flow' also needs flow_x, flow_y"):
        pipeline.make_test_dataset(records[:2], rgb_only, "flow")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        tfrecord.write_tfrecords(stored["frames"], records[:1], rgb_only)
    # A shard cut short is refused by name; a damaged byte fails its record's CRC.
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    shard = damaged / stored["index"]["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    shard.write_bytes(bytes(data[:-10]))
    with pytest.raises(ValueError, match=r"shard-00001-of-00003\.tfrecord' holds \d+ bytes but .* says \d+"):
        pipeline.make_dataset(records, damaged, "rgb")
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(tf.errors.DataLossError):
        _take(pipeline.make_test_dataset(records, damaged, "rgb", num_frames=1, crops=1, input_size=S))


# ------------------------------------------------------------------ writing errors


def _copy_videos(stored, root, count):
    for record in stored["records"][:count]:
        shutil.copytree(stored["frames"] / record.video, root / record.video)
    return stored["records"][:count]


def test_a_missing_frame_or_folder_is_named_before_anything_is_written(stored, tmp_path):
    frames = tmp_path / "frames"
    records = _copy_videos(stored, frames, 3)
    missing = frames / records[2].video / "flow_y_00004.jpg"
    kept = missing.read_bytes()
    missing.unlink()
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match=rf"video '{records[2].video}'.*flow_y_00004\.jpg' does not exist "
                                                r"\(flow_y file 4 of the 8"):
        tfrecord.write_tfrecords(frames, records, out, num_shards=2)
    assert not out.exists()
    # RGB only does not need the flow.
    assert tfrecord.write_tfrecords(frames, records, out, modality="rgb")["num_videos"] == 3
    missing.write_bytes(kept)
    with pytest.raises(FileNotFoundError, match=r"video 'v_Gone': no frame folder"):
        tfrecord.write_tfrecords(frames, records + [VideoRecord("v_Gone", 9, 0)], tmp_path / "b")
    with pytest.raises(ValueError, match="listed twice"):
        tfrecord.write_tfrecords(frames, records + records[:1], tmp_path / "c")
    with pytest.raises(ValueError, match=r"num_shards must be an int in \[1, 3\]"):
        tfrecord.write_tfrecords(frames, records, tmp_path / "d", num_shards=4)


def test_an_interrupted_write_leaves_no_index_and_no_shard(stored, tmp_path, monkeypatch):
    """An error while the second of three shards is written (reading the 60th
    frame file, in its first video): no index, no file under a shard's final name, no temporary file;
    over a complete folder, the old index is gone first, so the folder never
    looks complete."""
    frames = tmp_path / "frames"
    records = _copy_videos(stored, frames, 6)
    out = tmp_path / "out"
    tfrecord.write_tfrecords(frames, records[:2], out, num_shards=1)  # a complete folder, overwritten below
    read = tfrecord._read_bytes
    calls = []

    def failing(path):
        calls.append(path)
        if len(calls) == 60:  # 25 files per video; shard 0 holds videos 0 and 3, shard 1 videos 1 and 4
            raise OSError("disk on fire")
        return read(path)

    monkeypatch.setattr(tfrecord, "_read_bytes", failing)
    with pytest.raises(OSError, match=rf"video '{records[1].video}': cannot read .*disk on fire"):
        tfrecord.write_tfrecords(frames, records, out, num_shards=3, overwrite=True)
    assert len(calls) == 60 and os.listdir(out) == []
    assert not tfrecord.is_tfrecord_folder(out)
    with pytest.raises(FileNotFoundError, match="holds no index.json"):
        tfrecord.TFRecordSource(out)
    monkeypatch.setattr(tfrecord, "_read_bytes", read)
    index = tfrecord.write_tfrecords(frames, records, out, num_shards=3)  # and a re-run completes
    assert index["num_videos"] == 6 and len(os.listdir(out)) == 4
