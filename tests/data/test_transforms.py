"""Group transforms: multi-scale crop candidates and grid, flips, evaluation views."""

import numpy as np
import pytest
import tensorflow as tf

from keras_gated_tsn.data import transforms


def _random_frames(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


# ------------------------------------------------------------------ crop candidates


def test_multiscale_crop_sizes_340x256():
    sizes = transforms.multiscale_crop_sizes(256, 340, 224)
    # base 256: 256, 224, 192, int(168.96) = 168; |i - j| <= 1 -> 4 + 3 + 3 pairs.
    expected = [
        (256, 256), (256, 224),
        (224, 256), (224, 224), (224, 192),
        (192, 224), (192, 192), (192, 168),
        (168, 192), (168, 168),
    ]
    assert [tuple(p) for p in sizes.tolist()] == expected
    assert len(transforms.multiscale_crop_sizes(256, 340, 224, max_distort=0)) == 4
    assert len(transforms.multiscale_crop_sizes(256, 340, 224, max_distort=3)) == 16


def test_multiscale_crop_sizes_snap_and_clamp():
    # 240x320 (UCF101): 240, 210, 180, 158 -- nothing within 3 px of 224.
    sizes = transforms.multiscale_crop_sizes(240, 320, 224, max_distort=0)
    assert sizes[:, 0].tolist() == [240, 210, 180, 158]
    # base 226 -> 226 is within 3 px of 224: snapped. 197 (0.875) stays.
    sizes = transforms.multiscale_crop_sizes(226, 300, 224, max_distort=0)
    assert sizes[:, 0].tolist() == [224, 197, 169, 149]
    # base 222 -> snapped up to 224, then clamped to the 222-pixel side.
    sizes = transforms.multiscale_crop_sizes(222, 300, 224, scales=(1.0,))
    assert sizes.tolist() == [[222, 224]]


@pytest.mark.parametrize("h, w", [(256, 340), (240, 320), (320, 240), (226, 300), (100, 100)])
def test_tf_crop_candidates_match_numpy(h, w):
    np.testing.assert_array_equal(
        transforms.multiscale_crop_sizes_tf(h, w, 224).numpy(),
        transforms.multiscale_crop_sizes(h, w, 224),
    )
    np.testing.assert_array_equal(
        transforms.multiscale_crop_sizes_tf(h, w, 64).numpy(),
        transforms.multiscale_crop_sizes(h, w, 64),
    )
    np.testing.assert_array_equal(
        transforms.fixed_crop_offsets_tf(h, w, 80, 90).numpy(),
        transforms.fixed_crop_offsets(h, w, 80, 90),
    )


def test_fixed_crop_offsets_grid():
    # 256x340 frame, 224x224 crop: steps (256-224)//4 = 8 and (340-224)//4 = 29.
    offsets = transforms.fixed_crop_offsets(256, 340, 224, 224)
    expected_xy = [
        (0, 0), (116, 0), (0, 32), (116, 32), (58, 16),  # corners, centre
        (0, 16), (116, 16), (58, 32), (58, 0),  # centre left/right, lower/upper centre
        (29, 8), (87, 8), (29, 24), (87, 24),  # quarter points
    ]
    assert [(x, y) for y, x in offsets.tolist()] == expected_xy
    assert transforms.fixed_crop_offsets(256, 340, 224, 224, more_fix_crop=False).shape == (5, 2)
    with pytest.raises(ValueError, match="does not fit"):
        transforms.fixed_crop_offsets(100, 100, 120, 90)


def test_sampled_crops_come_from_the_candidates_and_the_grid():
    h, w, size = 256, 340, 224
    pairs = {tuple(p) for p in transforms.multiscale_crop_sizes(h, w, size).tolist()}
    seen_pairs, seen_positions = set(), set()
    sample = tf.function(
        lambda s: transforms.sample_multiscale_crop_tf(h, w, size, s)
    )
    for seed in range(300):
        y, x, ch, cw = sample(tf.constant([seed, 11], tf.int64)).numpy().tolist()
        assert (ch, cw) in pairs
        grid = transforms.fixed_crop_offsets(h, w, ch, cw).tolist()
        assert [y, x] in grid
        assert y + ch <= h and x + cw <= w
        seen_pairs.add((ch, cw))
        if (ch, cw) == (192, 192):
            seen_positions.add(grid.index([y, x]))
    assert seen_pairs == pairs
    assert len(seen_positions) >= 10  # of 13, each drawn with p = 1/13 in ~30 draws


# ------------------------------------------------------------------ crop + resize


def test_crop_and_resize_exact_when_sizes_match_and_resized_otherwise():
    frames = _random_frames((2, 60, 80, 3))
    out = transforms.crop_and_resize(tf.constant(frames), tf.constant([5, 7, 32, 32]), 32).numpy()
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, frames[:, 5:37, 7:39])
    out = transforms.crop_and_resize(tf.constant(frames), tf.constant([4, 10, 40, 50]), 32).numpy()
    assert out.shape == (2, 32, 32, 3) and out.dtype == np.uint8
    reference = tf.image.resize(frames[:, 4:44, 10:60].astype(np.float32), [32, 32]).numpy()
    np.testing.assert_array_equal(out, np.clip(np.round(reference), 0, 255).astype(np.uint8))


def test_rescale_box():
    box = tf.constant([8, 29, 224, 224])
    same = transforms.rescale_box(box, [256, 340], [256, 340])
    np.testing.assert_array_equal(same, [8, 29, 224, 224])
    half = transforms.rescale_box(box, [256, 340], [128, 170])
    np.testing.assert_array_equal(half, [4, 14, 112, 112])


# ------------------------------------------------------------------ flips


def test_flip_mirrors_rgb():
    x = _random_frames((2, 3, 8, 10, 3))
    np.testing.assert_array_equal(transforms.flip_rgb(tf.constant(x)).numpy(), x[..., ::-1, :])
    np.testing.assert_array_equal(transforms.flip(tf.constant(x), False).numpy(), x[..., ::-1, :])


def test_flip_flow_inverts_x_not_y(shared_data):
    frames = shared_data / "frames" / "tsn_layout_sample"
    planes = []
    for i in (1, 2):  # a real 2-pair stack: x1, y1, x2, y2
        for axis in "xy":
            data = tf.io.read_file(str(frames / f"{axis}_{i:05d}.jpg"))
            planes.append(tf.io.decode_jpeg(data, channels=1))
    x = tf.concat(planes, axis=-1)[tf.newaxis].numpy()  # (1, 240, 320, 4)
    flipped = transforms.flip_flow(tf.constant(x)).numpy()
    assert flipped.dtype == np.uint8 and flipped.shape == x.shape
    mirrored = x[:, :, ::-1, :]
    np.testing.assert_array_equal(flipped[..., 0::2], 255 - mirrored[..., 0::2])
    np.testing.assert_array_equal(flipped[..., 1::2], mirrored[..., 1::2])
    # No motion (128) becomes 127 under inversion: stays ~zero motion.
    still = tf.fill([1, 2, 2, 2], tf.constant(128, tf.uint8))
    np.testing.assert_array_equal(transforms.flip_flow(still)[..., 0], 127)
    # Flipping twice is the identity; unknown channel counts take the general path.
    np.testing.assert_array_equal(transforms.flip_flow(flipped).numpy(), x)
    spec = tf.TensorSpec([None, None, None, None], tf.uint8)
    general = tf.function(transforms.flip_flow, input_signature=[spec])
    np.testing.assert_array_equal(general(tf.constant(x)).numpy(), flipped)


# ------------------------------------------------------------------ evaluation views


def test_resize_shorter_side():
    landscape = tf.zeros([1, 240, 320, 3], tf.uint8)
    assert transforms.resize_shorter_side(landscape, 256).shape == (1, 256, 341, 3)
    portrait = tf.zeros([1, 320, 240, 2], tf.uint8)
    assert transforms.resize_shorter_side(portrait, 256).shape == (1, 341, 256, 2)
    x = _random_frames((1, 256, 340, 3))
    np.testing.assert_array_equal(transforms.resize_shorter_side(tf.constant(x), 256).numpy(), x)
    assert transforms.default_scale_size(224) == 256
    assert transforms.default_scale_size(112) == 128


def test_ten_crop_views_positions_and_mirrors():
    frames = _random_frames((2, 256, 340, 4))
    views = transforms.oversample(tf.constant(frames), 224, 256, crops=10, flow=True).numpy()
    assert views.shape == (2, 10, 224, 224, 4) and views.dtype == np.uint8
    corners = [(0, 0), (0, 116), (32, 0), (32, 116), (16, 58)]  # (y, x): UL, UR, LL, LR, centre
    for c, (y, x) in enumerate(corners):
        np.testing.assert_array_equal(views[:, c], frames[:, y : y + 224, x : x + 224])
        mirrored = views[:, c, :, ::-1]
        np.testing.assert_array_equal(views[:, 5 + c, ..., 0::2], 255 - mirrored[..., 0::2])
        np.testing.assert_array_equal(views[:, 5 + c, ..., 1::2], mirrored[..., 1::2])
    rgb = transforms.oversample(tf.constant(frames[..., :3]), 224, 256, crops=10).numpy()
    np.testing.assert_array_equal(rgb[:, 5:], rgb[:, :5, :, ::-1])
    centre = transforms.center_crop(tf.constant(frames), 224, 256).numpy()
    np.testing.assert_array_equal(centre, views[:, 4])
    one = transforms.oversample(tf.constant(frames), 224, 256, crops=1)
    assert one.shape == (2, 1, 224, 224, 4)


def test_three_crops_along_the_longer_side():
    landscape = _random_frames((2, 256, 340, 4))
    views = transforms.oversample(tf.constant(landscape), 224, 256, crops=3).numpy()
    assert views.shape == (2, 3, 224, 224, 4)
    for c, x in enumerate((0, 58, 116)):  # left, middle, right; centred vertically (y = 16)
        np.testing.assert_array_equal(views[:, c], landscape[:, 16:240, x : x + 224])
    portrait = _random_frames((1, 340, 256, 3))
    views = transforms.oversample(tf.constant(portrait), 224, 256, crops=3).numpy()
    for c, y in enumerate((0, 58, 116)):  # top, middle, bottom; centred horizontally
        np.testing.assert_array_equal(views[:, c], portrait[:, y : y + 224, 16:240])


def test_ten_crop_after_scaling():
    frames = tf.constant(_random_frames((1, 240, 320, 3)))
    views = transforms.oversample(frames, 64, crops=10)  # scale_size 73: 73x97 first
    assert views.shape == (1, 10, 64, 64, 3)
    scaled = transforms.resize_shorter_side(frames, 73).numpy()
    assert scaled.shape == (1, 73, 97, 3)
    np.testing.assert_array_equal(views[:, 3].numpy(), scaled[:, 8:72, 32:96])


def test_bad_view_arguments():
    frames = tf.zeros([1, 32, 32, 3], tf.uint8)
    with pytest.raises(ValueError, match="crops must be 1, 3, 5 or 10"):
        transforms.oversample(frames, 16, crops=4)
    with pytest.raises(ValueError, match="scale_size"):
        transforms.oversample(frames, 16, 8)
    with pytest.raises(ValueError, match="scales"):
        transforms.multiscale_crop_sizes(32, 32, 16, scales=(1.5,))
    with pytest.raises(ValueError, match="input_size"):
        transforms.multiscale_crop_sizes(32, 32, 0)
