"""Clip sampling of GCF-Net (Sec. 3.3): non-overlapping clips covering the video,
loop padding for short videos, shared crops and flips, on real frames."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_gated_tsn.data.clips import clip_indices, clip_indices_tf, make_clip_dataset
from keras_gated_tsn.data.lists import read_list_file


def test_paper_input_non_overlapping_clips_covering_the_video():
    """10 clips of 16 frames of a 333-frame video: segment i = [33.3 i, 33.3 (i + 1)),
    the clip in its middle; none overlaps, every segment has its clip."""
    indices = clip_indices(333, 10, 16)
    assert indices.shape == (10, 16)
    bounds = np.arange(11) * 333 // 10
    assert list(indices[:, 0]) == [int(lo + (hi - lo - 16) // 2) for lo, hi in zip(bounds[:-1], bounds[1:])]
    assert indices[0, 0] == 8 and indices[-1, -1] == 323
    np.testing.assert_array_equal(np.diff(indices, axis=1), 1)
    assert len(np.unique(indices)) == 160


@pytest.mark.parametrize("clips,length", [(10, 16), (4, 4), (3, 5), (1, 8)])
def test_rule_for_every_length(clips, length):
    rng = np.random.default_rng(0)
    for n in range(1, 3 * clips * length):
        for training in (False, True):
            indices = clip_indices(n, clips, length, training=training, rng=rng)
            assert indices.shape == (clips, length) and indices.min() >= 0 and indices.max() < n
            if n >= clips * length:
                bounds = np.arange(clips + 1) * n // clips
                # Each clip: consecutive frames inside its own segment, so no two overlap.
                np.testing.assert_array_equal(np.diff(indices, axis=1), 1)
                assert (indices[:, 0] >= bounds[:-1]).all() and (indices[:, -1] < bounds[1:]).all()
            else:
                # Loop padding: frames 0..n-1 repeated (from a random start in training).
                start = indices[0, 0]
                np.testing.assert_array_equal(indices.ravel(), (start + np.arange(clips * length)) % n)
                assert training or start == 0
        evaluation = clip_indices(n, clips, length)
        np.testing.assert_array_equal(clip_indices_tf(n, clips, length).numpy(), evaluation)


def test_loop_padding_hand_case():
    """Fewer frames than the input needs: the frames loop (GCF-Net Sec. 3.3)."""
    np.testing.assert_array_equal(clip_indices(6, 2, 4), [[0, 1, 2, 3], [4, 5, 0, 1]])
    np.testing.assert_array_equal(clip_indices(3, 1, 8), [[0, 1, 2, 0, 1, 2, 0, 1]])
    np.testing.assert_array_equal(clip_indices(16, 2, 4), [[2, 3, 4, 5], [10, 11, 12, 13]])


def test_graph_sampling_draws_in_range_and_repeats_with_its_seed():
    for n in (5, 40, 97, 333):
        first = clip_indices_tf(n, 10, 16, seed=[3, 1]).numpy()
        np.testing.assert_array_equal(first, clip_indices_tf(n, 10, 16, seed=[3, 1]).numpy())
        assert first.min() >= 0 and first.max() < n
        if n >= 160:
            bounds = np.arange(11) * n // 10
            assert (first[:, 0] >= bounds[:-1]).all() and (first[:, -1] < bounds[1:]).all()
            np.testing.assert_array_equal(np.diff(first, axis=1), 1)
        else:
            np.testing.assert_array_equal(first.ravel(), (first[0, 0] + np.arange(160)) % n)
    draws = {tuple(clip_indices_tf(333, 10, 16, seed=[s, 0]).numpy()[:, 0]) for s in range(6)}
    assert len(draws) > 1


def test_bad_arguments(prepared_samples):
    frames = os.path.join(prepared_samples, "frames")
    listing = os.path.join(prepared_samples, "train.txt")
    with pytest.raises(ValueError, match="num_clips must be a positive int, got 0"):
        make_clip_dataset(listing, frames, num_clips=0)
    with pytest.raises(ValueError, match="flip_prob must be in"):
        make_clip_dataset(listing, frames, flip_prob=2.0)
    with pytest.raises(ValueError, match="scale_size must be >= input_size 112, got 64"):
        make_clip_dataset(listing, frames, scale_size=64)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_clip_dataset(os.path.join(prepared_samples, "missing.txt"), frames)
    with pytest.raises(ValueError, match="holds 16"):
        make_clip_dataset([(read_list_file(listing)[0].video, 40, 0)], frames)


def _frame(frames_root, video, index):
    data = tf.io.read_file(os.path.join(frames_root, video, f"img_{index + 1:05d}.jpg"))
    return tf.io.decode_jpeg(data, channels=3).numpy()


def test_evaluation_clips_are_the_videos_frames(prepared_samples):
    """On real 128x96 frames: a 16-frame video gives clips [2..5] and [10..13]; a
    6-frame one is loop padded, [0..3] and [4, 5, 0, 1]; the centre crop of side
    96 is columns 16..111 of each frame, untouched."""
    frames_root = os.path.join(prepared_samples, "frames")
    records = read_list_file(os.path.join(prepared_samples, "train.txt"))[:2]
    short = (records[1].video, 6, records[1].label)
    ds = make_clip_dataset([records[0], short], frames_root, num_clips=2, clip_length=4, input_size=96,
                           batch_size=2, training=False)
    (x, labels), = list(ds)
    assert x.shape == (2, 2, 4, 96, 96, 3) and x.dtype == tf.uint8 and labels.dtype == tf.int32
    np.testing.assert_array_equal(labels, [records[0].label, records[1].label])
    expected = {0: [[2, 3, 4, 5], [10, 11, 12, 13]], 1: [[0, 1, 2, 3], [4, 5, 0, 1]]}
    for video, (name, clips) in enumerate(zip((records[0].video, short[0]), (expected[0], expected[1]))):
        for clip, indices in enumerate(clips):
            for position, index in enumerate(indices):
                np.testing.assert_array_equal(x[video, clip, position], _frame(frames_root, name, index)[:, 16:112])


def test_training_clips_repeat_with_the_seed_and_share_crop_and_flip(prepared_samples):
    frames_root = os.path.join(prepared_samples, "frames")
    listing = os.path.join(prepared_samples, "train.txt")
    records = read_list_file(listing)
    options = dict(num_clips=4, clip_length=4, input_size=32, batch_size=4)

    def batches(seed, **kwargs):
        return [(x.numpy(), y.numpy()) for x, y in make_clip_dataset(listing, frames_root, seed=seed,
                                                                     **{**options, **kwargs}).take(2)]

    first, again, other = batches(7), batches(7), batches(8)
    assert first[0][0].shape == (4, 4, 4, 32, 32, 3) and first[0][0].dtype == np.uint8
    for (x, y), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
    assert any(not np.array_equal(x, x2) for (x, _), (x2, _) in zip(first, other))
    # The same draws with and without the flip: mirror images of each other, every clip alike.
    flipped, kept = batches(7, flip_prob=1.0), batches(7, flip_prob=0.0)
    np.testing.assert_array_equal(flipped[0][0], kept[0][0][..., ::-1, :])
    # A 6-frame video in 4 x 4 frames is loop padded: frame p and p + 6 are one frame,
    # cut by one crop, so they are equal pixel for pixel across clips.
    short = [(records[0].video, 6, records[0].label)]
    x, _ = next(iter(make_clip_dataset(short, frames_root, seed=3, **options)))
    frames = x.numpy().reshape(16, 32, 32, 3)
    for p in range(10):
        np.testing.assert_array_equal(frames[p], frames[p + 6])


# ------------------------------------------------------------------ resumption and shards (as make_dataset)


def _clip_batches(ds, count):
    return [(x.numpy(), y.numpy()) for x, y in ds.take(count)]


def _same(a, b):
    return np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def _tiny(prepared_samples, count):
    """``count`` real videos of the sample set (labels made distinct, so a batch's
    labels name its videos and their order) and the tiny clip options."""
    frames_root = os.path.join(prepared_samples, "frames")
    records = [(r.video, r.num_frames, i) for i, r in
               enumerate(read_list_file(os.path.join(prepared_samples, "train.txt"))[:count])]
    return records, frames_root, dict(num_clips=2, clip_length=3, input_size=32, training=True)


def test_resumed_clip_pipeline_sees_the_uninterrupted_batches(prepared_samples):
    """A seeded repeating run resumed at epoch 1, batch 1 gets exactly the batches
    (clip pixels and labels) of the uninterrupted run from there; no batch
    straddles two epochs and each epoch is a new draw; a positioned run without
    ``repeat`` is that one epoch."""
    records, frames_root, options = _tiny(prepared_samples, 5)  # 3 batches of 2, the last partial
    make = lambda **kw: make_clip_dataset(records, frames_root, batch_size=2, seed=11, **options, **kw)  # noqa: E731
    whole = _clip_batches(make(repeat=True), 9)
    assert [len(y) for _, y in whole] == [2, 2, 1] * 3
    assert whole[0][0].shape == (2, 2, 3, 32, 32, 3) and whole[0][0].dtype == np.uint8
    for epoch in range(3):  # every epoch holds each video once
        assert sorted(np.concatenate([y for _, y in whole[3 * epoch:3 * epoch + 3]])) == list(range(5))
    assert not all(_same(a, b) for a, b in zip(whole[0:3], whole[3:6]))
    resumed = _clip_batches(make(repeat=True, start_epoch=1, skip_batches=1), 5)
    assert len(resumed) == 5 and all(_same(a, b) for a, b in zip(resumed, whole[4:9]))
    one_epoch = _clip_batches(make(start_epoch=2), 10)
    assert len(one_epoch) == 3 and all(_same(a, b) for a, b in zip(one_epoch, whole[6:9]))


def test_clip_shards_together_are_the_single_process_batches(prepared_samples):
    """Two workers' shards of a global batch of 4 are the even and odd videos of the
    one-process batch (the same clips, crops and flips, pixel for pixel), the
    partial global batch dropped, epoch after epoch; with a resume too."""
    records, frames_root, options = _tiny(prepared_samples, 9)  # 2 full global batches per epoch + 1 dropped
    make = lambda **kw: make_clip_dataset(  # noqa: E731
        records, frames_root, batch_size=4, seed=5, repeat=True, **options, **kw)
    single = _clip_batches(make(drop_remainder=True), 4)
    assert [len(y) for _, y in single] == [4] * 4
    shards = [_clip_batches(make(num_shards=2, shard_index=w), 4) for w in (0, 1)]
    for step in range(4):
        x, y = single[step]
        for w in (0, 1):
            assert shards[w][step][0].shape == (2, 2, 3, 32, 32, 3)
            np.testing.assert_array_equal(shards[w][step][1], y[w::2])
            np.testing.assert_array_equal(shards[w][step][0], x[w::2])
    resumed = _clip_batches(make(num_shards=2, shard_index=1, start_epoch=1, skip_batches=1), 1)
    assert _same(resumed[0], shards[1][3])


def test_bad_resumption_and_shard_arguments(prepared_samples):
    records, frames_root, options = _tiny(prepared_samples, 4)
    make = lambda **kw: make_clip_dataset(records, frames_root, **{**options, "batch_size": 4, **kw})  # noqa: E731
    with pytest.raises(ValueError, match="need training=True and a seed"):
        make(skip_batches=1)
    with pytest.raises(ValueError, match="need training=True and a seed"):
        make(seed=1, training=False, start_epoch=1)
    with pytest.raises(ValueError, match=r"shard_index must be < num_shards \(2\), got 2"):
        make(seed=1, num_shards=2, shard_index=2)
    with pytest.raises(ValueError, match="the global batch of 4 videos does not split over 3 shards"):
        make(seed=1, num_shards=3, shard_index=0)
    with pytest.raises(ValueError, match="skip_batches must be an int >= 0, got -1"):
        make(seed=1, skip_batches=-1)
    with pytest.raises(ValueError, match="num_shards must be an int >= 1, got 0"):
        make(seed=1, num_shards=0)
    with pytest.raises(ValueError, match="start_epoch must be an int >= 0, got 1.5"):
        make(seed=1, start_epoch=1.5)
    with pytest.raises(ValueError, match="4 videos do not fill one batch of 8"):
        make(seed=1, repeat=True, batch_size=8, drop_remainder=True)
    # The checks come before any file is read: a missing frames root is not reached.
    with pytest.raises(ValueError, match="does not split over 3 shards"):
        make_clip_dataset(records, os.path.join(frames_root, "missing"), batch_size=4, seed=1, num_shards=3)


# ------------------------------------------------------------------ flow clips (GCF-Net over a 2D flow backbone)


def test_flow_clip_rule_keeps_every_stack_inside_the_video():
    """Starts are clip positions over the ``max(n - L, 1)`` usable starts of the
    n - 1 flow pairs: every stack is L consecutive pairs ending at the last pair
    at the latest; a video with fewer than L pairs repeats its last pair (as
    make_dataset's snippets); the graph version gives the same values."""
    from keras_gated_tsn.data.clips import flow_clip_indices, flow_clip_indices_tf

    # 16 frames = 15 pairs, L = 2: 14 starts, segments [0, 7), [7, 14): clips at 2 and 9.
    np.testing.assert_array_equal(flow_clip_indices(16, 2, 2, 2), [[[2, 3], [3, 4]], [[9, 10], [10, 11]]])
    # 6 pairs, L = 5: the 2 starts 0, 1 loop; the last stack ends on the last pair 5.
    np.testing.assert_array_equal(flow_clip_indices(7, 1, 3, 5)[0], [[0, 1, 2, 3, 4], [1, 2, 3, 4, 5],
                                                                     [0, 1, 2, 3, 4]])
    # Fewer pairs than L: the one start 0, the last pair repeated.
    np.testing.assert_array_equal(flow_clip_indices(3, 1, 2, 4)[0], [[0, 1, 1, 1], [0, 1, 1, 1]])
    np.testing.assert_array_equal(flow_clip_indices(2, 1, 1, 2)[0], [[0, 0]])
    rng = np.random.default_rng(0)
    for clips, length, stack in ((2, 2, 2), (3, 4, 5), (1, 8, 1)):
        for n in range(2, 3 * clips * length + stack + 2):
            pairs = n - 1
            for training in (False, True):
                indices = flow_clip_indices(n, clips, length, stack, training=training, rng=rng)
                assert indices.shape == (clips, length, stack)
                assert indices.min() >= 0 and indices.max() <= pairs - 1
                if pairs >= stack:  # no clamping: L consecutive pairs from a usable start
                    np.testing.assert_array_equal(np.diff(indices, axis=-1), 1)
                    assert indices[..., 0].max() <= pairs - stack
                if not training:  # the starts: the clip rule over the usable starts
                    np.testing.assert_array_equal(indices[..., 0], clip_indices(max(pairs - stack + 1, 1), clips,
                                                                                length))
            expected = flow_clip_indices(n, clips, length, stack).reshape(clips * length, stack)
            np.testing.assert_array_equal(flow_clip_indices_tf(pairs, clips, length, stack).numpy(), expected)
            drawn = flow_clip_indices_tf(pairs, clips, length, stack, seed=[n, 1]).numpy()
            assert drawn.min() >= 0 and drawn.max() <= pairs - 1


def _flow_options(**kwargs):
    return {**dict(modality="flow", new_length=2, num_clips=2, clip_length=2, input_size=32), **kwargs}


def test_flow_clips_shapes_and_dtype(prepared_samples):
    frames_root = os.path.join(prepared_samples, "frames")
    listing = os.path.join(prepared_samples, "train.txt")
    for training in (True, False):
        ds = make_clip_dataset(listing, frames_root, batch_size=3, seed=1, training=training, **_flow_options())
        assert ds.element_spec[0].shape.as_list() == [None, 2, 2, 32, 32, 4]
        x, y = next(iter(ds))
        assert x.shape == (3, 2, 2, 32, 32, 4) and x.dtype == tf.uint8 and y.dtype == tf.int32
    # The default L = 5: 10 channels.
    x, _ = next(iter(make_clip_dataset(listing, frames_root, batch_size=1, training=False,
                                       **_flow_options(new_length=5))))
    assert x.shape == (1, 2, 2, 32, 32, 10)


def _plane(frames_root, video, kind, pair):
    data = tf.io.read_file(os.path.join(frames_root, video, f"flow_{kind}_{pair + 1:05d}.jpg"))
    return tf.io.decode_jpeg(data, channels=1).numpy()[..., 0]


@pytest.mark.parametrize("flow_input", [None, {"stacking": "trajectory", "bidirectional": True}])
def test_evaluation_flow_clips_are_make_datasets_snippets(prepared_samples, flow_input):
    """In evaluation, clip frame (c, t) is make_dataset's flow snippet at the same
    start pair, pixel for pixel (make_dataset with 14 segments over the 15 pairs
    of a 16-frame video and L = 2 has one snippet at each start 0..13; the clips
    start at 2, 3 and 9, 10), for plain stacking and a volume of flow_input; a
    2-frame video's stacks repeat its one pair."""
    from keras_gated_tsn.data.pipeline import make_dataset

    frames_root = os.path.join(prepared_samples, "frames")
    record = read_list_file(os.path.join(prepared_samples, "train.txt"))[0]
    assert record.num_frames == 16
    short = (record.video, 2, record.label)
    ds = make_clip_dataset([record, short], frames_root, batch_size=2, training=False, flow_input=flow_input,
                           **_flow_options())
    (x, _), = list(ds)
    x = x.numpy()
    reference = make_dataset([record, short], frames_root, "flow", num_segments=14, new_length=2, input_size=32,
                             scale_size=32, batch_size=2, training=False, flow_input=flow_input)
    (snippets, _), = list(reference)
    snippets = snippets.numpy()
    assert snippets.shape == (2, 14, 32, 32, 4)
    np.testing.assert_array_equal(x[0].reshape(4, 32, 32, 4), snippets[0, [2, 3, 9, 10]])
    # The 2-frame video: one pair, every stack [0, 0] (make_dataset's offsets are all 0 there too).
    np.testing.assert_array_equal(x[1].reshape(4, 32, 32, 4), snippets[1, :4])
    if flow_input is None:
        np.testing.assert_array_equal(x[1, ..., :2], x[1, ..., 2:])
        np.testing.assert_array_equal(x[1, 0, 0], x[1, 1, 1])


def test_evaluation_flow_stack_channels_are_the_pairs_files(prepared_samples):
    """The channel order read from the JPEG files themselves: clip frame (c, t)
    of a 16-frame video with L = 2 holds x, y of pair p, then x, y of pair p + 1
    (p = 2, 3, 9, 10), the 96 x 96 centre crop of the 128 x 96 planes (columns
    16..111, untouched)."""
    frames_root = os.path.join(prepared_samples, "frames")
    record = read_list_file(os.path.join(prepared_samples, "train.txt"))[0]
    (x, _), = list(make_clip_dataset([record], frames_root, batch_size=1, training=False,
                                     **_flow_options(input_size=96)))
    frames = x.numpy().reshape(4, 96, 96, 4)
    for frame, start in enumerate((2, 3, 9, 10)):
        for step in range(2):
            for axis, kind in enumerate(("x", "y")):
                plane = _plane(frames_root, record.video, kind, start + step)[:, 16:112]
                np.testing.assert_array_equal(frames[frame, ..., 2 * step + axis], plane)
    # The x and y planes differ (so the order is really checked).
    assert not np.array_equal(frames[0, ..., 0], frames[0, ..., 1])


def test_training_flow_flip_inverts_x_and_crop_is_shared(prepared_samples, monkeypatch):
    """The same seeded draws with flip_prob 1 and 0: the flipped clips are the
    mirrored ones with x channels (0, 2, ...) inverted, 255 - x, and y channels
    (1, 3, ...) only mirrored (TSN's flow flip); seeded batches repeat; the
    crop decoded as a window equals whole planes cut."""
    from keras_gated_tsn.data import pipeline

    frames_root = os.path.join(prepared_samples, "frames")
    listing = os.path.join(prepared_samples, "train.txt")

    def batch(**kwargs):
        ds = make_clip_dataset(listing, frames_root, batch_size=4, seed=7, **_flow_options(**kwargs))
        return next(iter(ds))[0].numpy()

    flipped, kept = batch(flip_prob=1.0), batch(flip_prob=0.0)
    mirrored = kept[..., ::-1, :]
    np.testing.assert_array_equal(flipped[..., 0::2], 255 - mirrored[..., 0::2])
    np.testing.assert_array_equal(flipped[..., 1::2], mirrored[..., 1::2])
    np.testing.assert_array_equal(kept, batch(flip_prob=0.0))
    monkeypatch.setattr(pipeline, "_DECODE_WINDOWS", False)  # read when the map is traced
    np.testing.assert_array_equal(kept, batch(flip_prob=0.0))


def test_bad_flow_arguments(prepared_samples):
    frames = os.path.join(prepared_samples, "frames")
    listing = os.path.join(prepared_samples, "train.txt")
    with pytest.raises(ValueError, match=r"modality must be 'rgb' or 'flow', got 'rgb\+flow'"):
        make_clip_dataset(listing, frames, modality="rgb+flow")
    with pytest.raises(ValueError, match="new_length must be a positive int, got 0"):
        make_clip_dataset(listing, frames, modality="flow", new_length=0)
    with pytest.raises(ValueError, match=r"flow_input is for modality='flow', got \{'mean_subtraction': True\}"):
        make_clip_dataset(listing, frames, flow_input={"mean_subtraction": True})
    with pytest.raises(ValueError, match="L must be even, got new_length=3"):
        make_clip_dataset(listing, frames, modality="flow", new_length=3, flow_input={"bidirectional": True})
    video = read_list_file(listing)[0].video
    with pytest.raises(ValueError, match="1 frame has no flow pair, modality 'flow' needs num_frames >= 2"):
        make_clip_dataset([(video, 1, 0)], frames, modality="flow")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_clip_dataset(listing, frames, modality="flow", flow_x_template="missing_{:05d}.jpg")
