"""tf.data pipelines on real frames from ``../shared/data/frames``."""

import shutil

import numpy as np
import pytest
import tensorflow as tf

from keras_gated_tsn.data import pipeline, sampling, transforms
from keras_gated_tsn.data.lists import VideoRecord, write_list_file

S = 64  # tiny input size: fast tests
MMACTION = dict(flow_x_template="x_{:05d}.jpg", flow_y_template="y_{:05d}.jpg")
CHANNELS = {"rgb": 3, "flow": 10}


@pytest.fixture(scope="module")
def layout(shared_data, tmp_path_factory):
    """A prepared dataset built from the real mmaction sample (6 frames, 5 flow pairs).

    ``full``: img_00001..6 + flow_x/flow_y_00001..5; ``short``: 3 frames, 2 pairs.
    """
    src = shared_data / "frames" / "tsn_layout_sample"
    root = tmp_path_factory.mktemp("prepared")
    frames = root / "frames"
    for video, count in (("full", 6), ("short", 3)):
        folder = frames / video
        folder.mkdir(parents=True)
        for i in range(1, count + 1):
            shutil.copy(src / f"img_{i:05d}.jpg", folder / f"img_{i:05d}.jpg")
        for i in range(1, count):
            shutil.copy(src / f"x_{i:05d}.jpg", folder / f"flow_x_{i:05d}.jpg")
            shutil.copy(src / f"y_{i:05d}.jpg", folder / f"flow_y_{i:05d}.jpg")
    records = [VideoRecord("full", 6, 3), VideoRecord("short", 3, 0)]
    write_list_file(root / "train.txt", records)
    return {"frames": frames, "list": root / "train.txt", "records": records}


def _decode(path, channels):
    return tf.io.decode_jpeg(tf.io.read_file(str(path)), channels=channels).numpy()


def _first(ds):
    return next(iter(ds))


def _shapes(x):
    return tf.nest.map_structure(lambda t: (tuple(t.shape), t.dtype.name), x)


# ------------------------------------------------------------------ shapes and dtypes


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("modality", ["rgb", "flow", "rgb+flow"])
def test_make_dataset_shapes_and_dtypes(layout, modality, training):
    ds = pipeline.make_dataset(
        layout["list"], layout["frames"], modality, input_size=S, batch_size=2,
        training=training, seed=1,
    )
    x, label = _first(ds)
    if modality == "rgb+flow":
        assert _shapes(x) == {
            "rgb": ((2, 3, S, S, 3), "uint8"),
            "flow": ((2, 3, S, S, 10), "uint8"),
        }
        assert ds.element_spec[0]["flow"].shape.as_list() == [None, 3, S, S, 10]
    else:
        assert _shapes(x) == ((2, 3, S, S, CHANNELS[modality]), "uint8")
        assert ds.element_spec[0].shape.as_list() == [None, 3, S, S, CHANNELS[modality]]
    assert label.dtype == tf.int32 and label.shape == (2,)
    assert sorted(label.numpy().tolist()) == [0, 3]


def test_make_test_dataset_shapes(layout):
    for modality in ("rgb", "flow"):
        ds = pipeline.make_test_dataset(
            layout["records"], layout["frames"], modality, num_frames=4, crops=10, input_size=S
        )
        elements = list(ds)
        assert [e[2].numpy() for e in elements] == [b"full", b"short"]
        x, label, video = elements[0]
        assert _shapes(x) == ((40, 1, S, S, CHANNELS[modality]), "uint8")
        assert label.dtype == tf.int32 and label.shape == () and int(label) == 3
        assert video.dtype == tf.string and video.shape == ()
    ds = pipeline.make_test_dataset(
        layout["records"][:1], layout["frames"], "rgb+flow", num_frames=3, crops=1, input_size=S
    )
    x, _, _ = _first(ds)
    assert _shapes(x) == {"rgb": ((3, 1, S, S, 3), "uint8"), "flow": ((3, 1, S, S, 10), "uint8")}
    spec = ds.element_spec
    assert spec[0]["rgb"].shape.as_list() == [3, 1, S, S, 3]
    assert spec[1] == tf.TensorSpec([], tf.int32) and spec[2] == tf.TensorSpec([], tf.string)


# ------------------------------------------------------------------ values against the frames


def test_test_views_are_the_real_pixels_and_joint_rgb_starts_the_flow_stack(layout):
    # Frames are 240x320; scale_size 240 keeps them unscaled, so views are exact slices.
    # Joint, L = 2, 5 flow pairs, 2 frames: tick = 4 / 2 = 2 -> offsets [1, 3]:
    # rgb img_00002, img_00004; flow pairs (2, 3) and (4, 5).
    ds = pipeline.make_test_dataset(
        layout["records"][:1], layout["frames"], "rgb+flow", num_frames=2, crops=10,
        input_size=S, new_length=2, scale_size=240,
    )
    x, _, _ = _first(ds)
    rgb, flow = x["rgb"].numpy()[:, 0], x["flow"].numpy()[:, 0]
    assert rgb.shape == (20, S, S, 3) and flow.shape == (20, S, S, 4)
    folder = layout["frames"] / "full"
    y0, x0 = (240 - S) // 4 * 2, (320 - S) // 4 * 2  # centre view = view 4
    for f, first in enumerate((2, 4)):
        image = _decode(folder / f"img_{first:05d}.jpg", 3)
        np.testing.assert_array_equal(rgb[f * 10 + 4], image[y0 : y0 + S, x0 : x0 + S])
        np.testing.assert_array_equal(rgb[f * 10], image[:S, :S])  # upper left
        planes = [
            _decode(folder / f"flow_{axis}_{i:05d}.jpg", 1)[..., 0]
            for i in (first, first + 1) for axis in "xy"
        ]
        stack = np.stack(planes, axis=-1)  # x1, y1, x2, y2
        np.testing.assert_array_equal(flow[f * 10 + 4], stack[y0 : y0 + S, x0 : x0 + S])
        for c in range(5):  # views 5..9 mirror 0..4, flow x inverted
            v = f * 10 + c
            np.testing.assert_array_equal(rgb[v + 5], rgb[v][:, ::-1])
            np.testing.assert_array_equal(flow[v + 5][..., 0::2], 255 - flow[v][:, ::-1, 0::2])
            np.testing.assert_array_equal(flow[v + 5][..., 1::2], flow[v][:, ::-1, 1::2])


def test_training_crop_is_a_grid_crop_of_the_real_frame(layout):
    # scales (1,) on 240x320 with input 240: a 240x240 crop at x in {0, 20, 40, 60, 80}.
    ds = pipeline.make_dataset(
        layout["records"][:1], layout["frames"], "rgb", num_segments=2, input_size=240,
        batch_size=1, scales=(1.0,), flip_prob=0.0, seed=5, repeat=True,
    )
    folder = layout["frames"] / "full"
    frames = {i: _decode(folder / f"img_{i:05d}.jpg", 3) for i in range(1, 7)}
    it = iter(ds)
    seen = set()
    for _ in range(6):
        x, _ = next(it)
        lefts = set()
        for k, segment in enumerate(x.numpy()[0]):
            hits = [
                (i, left) for i, image in frames.items() for left in (0, 20, 40, 60, 80)
                if np.array_equal(segment, image[:, left : left + 240])
            ]
            assert len(hits) == 1, "a training crop is not one grid crop of a real frame"
            frame, left = hits[0]
            assert frame in ((1, 2, 3), (4, 5, 6))[k]  # K = 2 segments of 3 frames
            lefts.add(left)
            seen.add(frame)
        assert len(lefts) == 1  # one crop for the whole group
    assert len(seen) > 2  # offsets are redrawn per epoch


def test_validation_uses_segment_centres(layout):
    ds = pipeline.make_dataset(
        layout["records"][:1], layout["frames"], "rgb", input_size=S, batch_size=1,
        training=False, scale_size=240,
    )
    x, _ = _first(ds)
    offsets = sampling.test_offsets(6, 3, 1)  # [1, 3, 5] -> img 2, 4, 6
    y0, x0 = (240 - S) // 4 * 2, (320 - S) // 4 * 2
    for k, offset in enumerate(offsets):
        image = _decode(layout["frames"] / "full" / f"img_{offset + 1:05d}.jpg", 3)
        np.testing.assert_array_equal(x.numpy()[0, k], image[y0 : y0 + S, x0 : x0 + S])


def test_strided_snippets_are_the_frames_tau_apart(layout):
    """``snippet_stride``: the T snippets of convolutional two-stream fusion;
    validation takes the largest stride that fits (6 frames, T = 3: tau = 2)."""
    ds = pipeline.make_dataset(
        layout["records"][:1], layout["frames"], "rgb", input_size=S, batch_size=1,
        training=False, scale_size=240, snippet_stride=(1, 10),
    )
    x, _ = _first(ds)
    y0, x0 = (240 - S) // 4 * 2, (320 - S) // 4 * 2
    for k, offset in enumerate((0, 2, 4)):
        image = _decode(layout["frames"] / "full" / f"img_{offset + 1:05d}.jpg", 3)
        np.testing.assert_array_equal(x.numpy()[0, k], image[y0 : y0 + S, x0 : x0 + S])
    train = pipeline.make_dataset(layout["records"], layout["frames"], "rgb+flow", input_size=S, batch_size=2,
                                  seed=0, snippet_stride=(1, 2), new_length=2)
    assert _shapes(_first(train)[0])["flow"] == ((2, 3, S, S, 4), "uint8")
    with pytest.raises(ValueError, match="snippet_stride must be"):
        pipeline.make_dataset(layout["records"], layout["frames"], "rgb", snippet_stride=(0, 2))


# ------------------------------------------------------------------ randomness


def _epoch(ds):
    return [tf.nest.map_structure(lambda t: t.numpy(), element) for element in ds]


def _equal(a, b):
    return all(
        np.array_equal(u, v) for u, v in zip(tf.nest.flatten(a), tf.nest.flatten(b))
    )


def test_seeded_pipelines_are_deterministic(layout):
    records = [VideoRecord("full", 6, i) for i in range(4)]
    make = lambda seed: pipeline.make_dataset(  # noqa: E731
        records, layout["frames"], "rgb+flow", input_size=S, batch_size=2, seed=seed,
    )
    a, b = make(7), make(7)
    first = _epoch(a)
    assert _equal(first, _epoch(b))
    second = _epoch(a)
    assert _equal(second, _epoch(b))  # the second epoch too
    assert not _equal(first, second)  # but it is a new draw
    assert not _equal(first, _epoch(make(8)))


def test_joint_mode_shares_crop_and_flip(layout):
    records = [VideoRecord("full", 6, i) for i in range(8)]
    make = lambda p: pipeline.make_dataset(  # noqa: E731
        records, layout["frames"], "rgb+flow", input_size=S, batch_size=8, seed=3, flip_prob=p,
    )
    plain, flipped, mixed = (_first(make(p))[0] for p in (0.0, 1.0, 0.5))
    np.testing.assert_array_equal(flipped["rgb"], transforms.flip_rgb(plain["rgb"]))
    np.testing.assert_array_equal(flipped["flow"], transforms.flip_flow(plain["flow"]))
    flips = []
    for v in range(8):
        rgb_flipped = np.array_equal(mixed["rgb"][v], flipped["rgb"][v])
        flow_flipped = np.array_equal(mixed["flow"][v], flipped["flow"][v])
        assert rgb_flipped == flow_flipped  # both or neither
        if not rgb_flipped:
            np.testing.assert_array_equal(mixed["rgb"][v], plain["rgb"][v])
            np.testing.assert_array_equal(mixed["flow"][v], plain["flow"][v])
        flips.append(rgb_flipped)
    assert 0 < sum(flips) < 8  # p = 0.5 over 8 videos (fixed by the seed)


# ------------------------------------------------------------------ other layouts, short videos


def test_reads_other_tools_layouts(shared_data):
    frames = shared_data / "frames"
    ds = pipeline.make_dataset(
        [VideoRecord("tsn_layout_sample", 6, 1)], frames, "rgb+flow", input_size=S,
        batch_size=1, seed=0, **MMACTION,
    )
    x, label = _first(ds)
    assert x["flow"].shape == (1, 3, S, S, 10) and int(label[0]) == 1
    # UCF101 frames as C3D lays them out: 000001.jpg ... (6 digits), 165 frames.
    records = [VideoRecord("v_ApplyEyeMakeup_g01_c01", 165, 0)]
    ds = pipeline.make_dataset(
        records, frames, "rgb", input_size=S, batch_size=1, seed=0, rgb_template="{:06d}.jpg"
    )
    assert _first(ds)[0].shape == (1, 3, S, S, 3)
    test = pipeline.make_test_dataset(
        records, frames, "rgb", num_frames=25, crops=1, input_size=S, scale_size=240,
        rgb_template="{:06d}.jpg",
    )
    x, _, video = _first(test)
    assert x.shape == (25, 1, S, S, 3) and video.numpy() == b"v_ApplyEyeMakeup_g01_c01"
    y0, x0 = (240 - S) // 4 * 2, (320 - S) // 4 * 2
    last = _decode(frames / "v_ApplyEyeMakeup_g01_c01" / "000162.jpg", 3)  # offset 161
    np.testing.assert_array_equal(x.numpy()[24, 0], last[y0 : y0 + S, x0 : x0 + S])


def test_short_videos_do_not_crash(layout):
    # "short": 3 frames, 2 flow pairs, far fewer than K * L = 15.
    short = [VideoRecord("short", 3, 0)]
    for modality in ("rgb", "flow", "rgb+flow"):
        for training in (True, False):
            x, _ = _first(pipeline.make_dataset(
                short, layout["frames"], modality, input_size=S, batch_size=1,
                training=training, seed=0,
            ))
            assert tf.nest.flatten(x)[0].shape[:2] == (1, 3)
    test = pipeline.make_test_dataset(short, layout["frames"], "flow", crops=1, input_size=S)
    x, _, _ = _first(test)
    assert x.shape == (25, 1, S, S, 10)
    # One RGB frame: every snippet repeats it.
    x, _ = _first(pipeline.make_dataset(
        [VideoRecord("short", 1, 0)], layout["frames"], "rgb", input_size=S, batch_size=1, seed=0
    ))
    assert x.shape == (1, 3, S, S, 3)
    np.testing.assert_array_equal(x[0, 0], x[0, 2])


# ------------------------------------------------------------------ errors


def test_missing_folder_names_the_video_and_list_file(layout, tmp_path):
    records = layout["records"] + [VideoRecord("v_Missing_g01_c01", 10, 1)]
    list_file = tmp_path / "val.txt"
    write_list_file(list_file, records)
    with pytest.raises(FileNotFoundError, match=r"val\.txt, line 3 \(video .v_Missing_g01_c01.\): no frame folder"):
        pipeline.make_dataset(list_file, layout["frames"], "rgb")
    with pytest.raises(FileNotFoundError, match="v_Missing_g01_c01"):
        pipeline.make_test_dataset(records, layout["frames"], "flow")
    with pytest.raises(FileNotFoundError, match="frames_root"):
        pipeline.make_dataset(layout["records"], tmp_path / "nowhere", "rgb")


def test_lists_are_checked_against_the_frame_folders(layout, tmp_path):
    """A count larger than the folder holds, a folder missing its flow, a name that
    leaves the frames folder: refused when the pipeline is built (and by
    check_frame_folders on its own), naming the list file, line and what is there."""
    frames = layout["frames"]
    list_file = tmp_path / "train.txt"
    list_file.write_text("full 6 3\nshort 9 0\n")  # short holds 3 frames and 2 flow pairs
    with pytest.raises(ValueError, match=r"train\.txt, line 2 \(video 'short'\): the list says 9 frames but .* "
                                         r"holds 3 RGB frames \(no img_00009\.jpg\)"):
        pipeline.make_dataset(list_file, frames, "rgb")
    with pytest.raises(ValueError, match=r"line 2 .* holds 2 flow_x files"):
        pipeline.check_frame_folders(list_file, frames, "flow")
    # 3 frames are 2 flow pairs: a list that counts frames right passes for flow too.
    list_file.write_text("full 6 3\nshort 3 0\n")
    assert len(pipeline.check_frame_folders(list_file, frames, "rgb+flow")) == 2
    # A frame folder without flow (RGB-only extraction) is refused for flow, said so.
    rgb_only = frames / "rgb_only"
    rgb_only.mkdir()
    shutil.copy(frames / "full" / "img_00001.jpg", rgb_only / "img_00001.jpg")
    shutil.copy(frames / "full" / "img_00002.jpg", rgb_only / "img_00002.jpg")
    list_file.write_text("rgb_only 2 0\n")
    pipeline.check_frame_folders(list_file, frames, "rgb")
    with pytest.raises(FileNotFoundError, match=r"line 1 .*flow_x_00001\.jpg.*nor does the first file"):
        pipeline.check_frame_folders(list_file, frames, "flow")
    # Records made in code (no line) are named by video; names that leave the folder are refused.
    with pytest.raises(ValueError, match="video '../full': the video name leaves the frames folder"):
        pipeline.check_frame_folders([VideoRecord("../full", 6, 0)], frames / "short", "rgb")


def test_construction_errors(layout):
    frames, records = layout["frames"], layout["records"]
    with pytest.raises(ValueError, match="'rgbflow'"):
        pipeline.make_dataset(records, frames, "rgbflow")
    with pytest.raises(ValueError, match="label"):
        pipeline.make_dataset([("full", 6, -1)], frames, "rgb")
    with pytest.raises(ValueError, match="no flow pair"):
        pipeline.make_dataset([("full", 1, 0)], frames, "flow")
    with pytest.raises(FileNotFoundError, match="template"):
        pipeline.make_dataset(records, frames, "flow", **MMACTION)
    with pytest.raises(ValueError, match="template"):
        pipeline.make_dataset(records, frames, "rgb", rgb_template="img_{}_{}.jpg")
    with pytest.raises(ValueError, match="crops"):
        pipeline.make_test_dataset(records, frames, "rgb", crops=4)
    with pytest.raises(ValueError, match="no videos"):
        pipeline.make_dataset([], frames, "rgb")


def _batches(ds, count):
    return [tf.nest.map_structure(lambda t: t.numpy(), batch) for batch in ds.take(count)]


def test_resumed_pipeline_sees_the_uninterrupted_batches(layout):
    """A run resumed at epoch 1, batch 1 gets exactly the batches an uninterrupted
    run gets from there (order, snippets, crops and flips): a resume that restarted
    the epoch, re-drew its order or shifted the epoch boundary fails."""
    records = [VideoRecord("full", 6, i) for i in range(5)]  # 3 batches of 2, the last partial
    make = lambda **kw: pipeline.make_dataset(  # noqa: E731
        records, layout["frames"], "rgb+flow", input_size=S, batch_size=2, seed=11, repeat=True, **kw,
    )
    whole = _batches(make(), 9)
    assert [len(b[1]) for b in whole] == [2, 2, 1] * 3  # no batch straddles two epochs
    assert not _equal(whole[0:3], whole[3:6])  # each epoch is a new draw
    resumed = _batches(make(start_epoch=1, skip_batches=1), 5)
    assert all(_equal(a, b) for a, b in zip(resumed, whole[4:9]))
    one_epoch = _batches(pipeline.make_dataset(
        records, layout["frames"], "rgb+flow", input_size=S, batch_size=2, seed=11, start_epoch=2,
    ), 10)
    assert len(one_epoch) == 3 and all(_equal(a, b) for a, b in zip(one_epoch, whole[6:9]))


def test_shards_together_are_the_single_process_batches(layout):
    """Two workers' shards of a global batch of 4 are the even and odd videos of the
    one-process batch (the same crops and flips), and the partial batch is dropped."""
    records = [VideoRecord("full", 6, i) for i in range(9)]
    make = lambda **kw: pipeline.make_dataset(  # noqa: E731
        records, layout["frames"], "rgb", input_size=S, batch_size=4, seed=5, repeat=True, **kw,
    )
    single = _batches(make(drop_remainder=True), 4)
    shards = [_batches(make(num_shards=2, shard_index=w), 4) for w in (0, 1)]
    for step in range(4):
        x, y = single[step]
        for w in (0, 1):
            assert np.array_equal(shards[w][step][0], x[w::2])
            assert np.array_equal(shards[w][step][1], y[w::2])
    with pytest.raises(ValueError, match="does not split over 3 shards"):
        make(num_shards=3, shard_index=0)
    with pytest.raises(ValueError, match="need training=True and a seed"):
        pipeline.make_dataset(records, layout["frames"], "rgb", skip_batches=1)


# ------------------------------------------------------------------ the fast paths change no pixel


@pytest.mark.parametrize("modality", ["rgb", "flow", "rgb+flow"])
def test_window_decoding_gives_the_batches_of_whole_frames(layout, modality, monkeypatch):
    """Training crops decoded as windows of the grayscale (flow) JPEGs, colour frames
    cut after decoding: exactly the batches of decoding every frame whole and
    cutting the stack, over the crop sizes, positions and flips the seed draws."""
    records = [VideoRecord("full", 6, i) for i in range(6)]
    make = lambda: pipeline.make_dataset(  # noqa: E731
        records, layout["frames"], modality, input_size=S, batch_size=3, seed=2, repeat=True,
        new_length=None if modality == "rgb" else 2,
    )
    windows = _batches(make(), 6)
    monkeypatch.setattr(pipeline, "_DECODE_WINDOWS", False)  # read when the map is traced
    whole = _batches(make(), 6)
    assert all(_equal(a, b) for a, b in zip(windows, whole))


def test_grayscale_jpeg_windows_are_the_whole_decode_cut(shared_data):
    """tf.io.decode_and_crop_jpeg to one channel gives the pixels of decode + slice
    for every multi-scale crop of real flow planes (and of an RGB frame read as
    grayscale): no chroma, so nothing depends on the window."""
    folder = shared_data / "frames" / "tsn_layout_sample"
    for name in ("x_00001.jpg", "y_00003.jpg", "img_00002.jpg"):
        data = tf.io.read_file(str(folder / name))
        whole = tf.io.decode_jpeg(data, channels=1).numpy()
        height, width = whole.shape[:2]
        for size in (224, S):
            for h, w in transforms.multiscale_crop_sizes(height, width, size):
                for y, x in transforms.fixed_crop_offsets(height, width, h, w):
                    window = tf.io.decode_and_crop_jpeg(data, [y, x, h, w], channels=1).numpy()
                    np.testing.assert_array_equal(window, whole[y : y + h, x : x + w])


def test_fast_transforms_equal_their_plain_definitions(layout):
    """crop_and_resize (float input, no clip), flip_rgb (3-D view) and flip_flow
    (uint16 view, one XOR) against the plain ops on real frames."""
    folder = layout["frames"] / "full"
    rgb = np.stack([_decode(folder / f"img_{i:05d}.jpg", 3) for i in (1, 4)])
    flow = np.stack([
        np.concatenate([_decode(folder / f"flow_{a}_{i:05d}.jpg", 1) for i in (f, f + 1) for a in "xy"], axis=-1)
        for f in (1, 3)
    ])  # (2, 240, 320, 4): x1, y1, x2, y2
    for frames in (rgb, flow):
        for y, x, h, w in ((0, 0, 240, 240), (10, 37, 200, 150), (3, 5, S, S), (100, 200, 97, 63), (7, 1, 31, 90)):
            crop = frames[:, y : y + h, x : x + w]
            resized = tf.image.resize(crop, [S, S], method="bilinear")  # the uint8 kernel
            plain = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
            np.testing.assert_array_equal(transforms.crop_and_resize(frames, [y, x, h, w], S), plain)
    np.testing.assert_array_equal(transforms.flip_rgb(rgb), rgb[:, :, ::-1])
    mirrored = flow[:, :, ::-1].copy()
    mirrored[..., 0::2] = 255 - mirrored[..., 0::2]
    np.testing.assert_array_equal(transforms.flip_flow(flow), mirrored)
    views = np.stack([flow, flow[::-1]], axis=1)  # 5-D, as the test views
    np.testing.assert_array_equal(transforms.flip_flow(views), np.stack([mirrored, mirrored[::-1]], axis=1))
