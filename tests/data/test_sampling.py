"""TSN segment sampling: hand cases at the edges, NumPy reference vs TensorFlow ops."""

import numpy as np
import pytest
import tensorflow as tf

from keras_gated_tsn.data import sampling


def _tf_train(n, k, length, seed):
    return sampling.train_offsets_tf(tf.constant(n), k, length, tf.constant(seed, tf.int64)).numpy()


# ------------------------------------------------------------------ hand cases


@pytest.mark.parametrize(
    "n, k, length, expected",
    [
        (100, 3, 5, [16, 48, 80]),  # tick 32: segment centres
        (10, 3, 1, [1, 5, 8]),  # tick 10/3: int(5/3), int(5), int(25/3)
        (7, 3, 5, [0, 1, 2]),  # barely enough: n - L + 1 == K
        (6, 3, 1, [1, 3, 5]),
        (5, 2, 2, [1, 3]),
        (2, 5, 1, [0, 0, 1, 1, 1]),  # K > n: offsets repeat
        (5, 3, 5, [0, 0, 0]),  # one possible start
        (3, 3, 5, [0, 0, 0]),  # n < new_length
        (1, 3, 1, [0, 0, 0]),  # one frame
        (0, 3, 5, [0, 0, 0]),  # no item at all
        (
            165,
            25,
            1,
            [3, 9, 16, 23, 29, 36, 42, 49, 56, 62, 69, 75, 82, 89, 95, 102, 108, 115, 122, 128,
             135, 141, 148, 155, 161],
        ),  # the test protocol's 25 frames, tick 6.6
    ],
)
def test_test_offsets_hand_cases_and_tf_agrees(n, k, length, expected):
    np.testing.assert_array_equal(sampling.test_offsets(n, k, length), expected)
    np.testing.assert_array_equal(
        sampling.test_offsets_tf(tf.constant(n), k, length).numpy(), expected
    )


def test_test_offsets_numpy_and_tf_agree_on_a_grid():
    for n in range(0, 60):
        for k in (1, 2, 3, 7, 25):
            for length in (1, 5):
                np.testing.assert_array_equal(
                    sampling.test_offsets(n, k, length),
                    sampling.test_offsets_tf(n, k, length).numpy(),
                    err_msg=f"n={n} k={k} L={length}",
                )


def test_snippet_indices_clamp_to_last_item():
    np.testing.assert_array_equal(
        sampling.snippet_indices([0, 2], num_items=4, new_length=5),
        [[0, 1, 2, 3, 3], [2, 3, 3, 3, 3]],
    )
    np.testing.assert_array_equal(sampling.snippet_indices([0, 0, 0], 1, 5), np.zeros((3, 5)))
    np.testing.assert_array_equal(
        sampling.snippet_indices_tf(tf.constant([0, 2]), 4, 5).numpy(),
        [[0, 1, 2, 3, 3], [2, 3, 3, 3, 3]],
    )
    np.testing.assert_array_equal(
        sampling.snippet_indices([16, 48, 80], 100, 5)[:, [0, -1]], [[16, 20], [48, 52], [80, 84]]
    )


def test_train_offsets_edge_cases():
    # Barely enough: one start per segment, no randomness left.
    np.testing.assert_array_equal(sampling.train_offsets(7, 3, 5, rng=0), [0, 1, 2])
    np.testing.assert_array_equal(_tf_train(7, 3, 5, [1, 2]), [0, 1, 2])
    for n, k, length in [(3, 3, 5), (4, 3, 5), (1, 3, 1), (1, 3, 5), (2, 5, 1), (0, 3, 5)]:
        # n < L (TSN's randint(n - L + 1) would crash when n > K), n == 1, K > n.
        np.testing.assert_array_equal(sampling.train_offsets(n, k, length, rng=3), np.zeros(k))
        np.testing.assert_array_equal(_tf_train(n, k, length, [3, 4]), np.zeros(k))
    idx = sampling.sample_indices(1, 3, 5, training=True, rng=0)
    np.testing.assert_array_equal(idx, np.zeros((3, 5)))


def test_train_offsets_sorted_draws_when_segments_are_too_short():
    # n=6, K=5, L=3: avg = (6 - 3 + 1) // 5 == 0 but n > K: K sorted draws in [0, 4).
    rng = np.random.default_rng(0)
    seen = set()
    for seed in range(50):
        for offsets in (sampling.train_offsets(6, 5, 3, rng), _tf_train(6, 5, 3, [seed, 9])):
            assert np.all(np.diff(offsets) >= 0) and offsets.min() >= 0 and offsets.max() <= 3
            seen.update(offsets.tolist())
    assert seen == set(range(4))


@pytest.mark.parametrize("n, k, length", [(100, 3, 5), (10, 3, 1), (37, 7, 5), (164, 3, 1)])
def test_train_offsets_one_per_segment_in_range(n, k, length):
    avg = (n - length + 1) // k
    rng = np.random.default_rng(1)
    numpy_draws = np.stack([sampling.train_offsets(n, k, length, rng) for _ in range(200)])
    tf_draws = np.stack([_tf_train(n, k, length, [s, 0]) for s in range(200)])
    for draws in (numpy_draws, tf_draws):
        assert draws.dtype.kind == "i" and draws.shape == (200, k)
        segment = (draws - np.arange(k) * avg)
        assert segment.min() == 0 and segment.max() == avg - 1  # whole segment reached
        assert draws.max() <= n - length
        idx = sampling.snippet_indices(draws[0], n, length)
        assert idx.max() <= n - 1


def test_train_offsets_reproducible():
    a = sampling.train_offsets(100, 3, 5, rng=42)
    np.testing.assert_array_equal(a, sampling.train_offsets(100, 3, 5, rng=42))
    np.testing.assert_array_equal(
        a, sampling.train_offsets(100, 3, 5, rng=np.random.default_rng(42))
    )
    draws = {tuple(sampling.train_offsets(100, 3, 5, rng=s)) for s in range(20)}
    assert len(draws) > 1
    np.testing.assert_array_equal(_tf_train(100, 3, 5, [5, 6]), _tf_train(100, 3, 5, [5, 6]))
    assert len({tuple(_tf_train(100, 3, 5, [s, 6])) for s in range(20)}) > 1


def test_sample_indices_both_paths():
    idx = sampling.sample_indices(100, 3, 5, training=False)
    np.testing.assert_array_equal(idx[:, 0], [16, 48, 80])
    np.testing.assert_array_equal(idx[1], [48, 49, 50, 51, 52])
    np.testing.assert_array_equal(
        sampling.sample_indices_tf(100, 3, 5, training=False).numpy(), idx
    )
    train = sampling.sample_indices_tf(100, 3, 5, training=True, seed=tf.constant([1, 1])).numpy()
    assert train.shape == (3, 5) and np.all(np.diff(train, axis=1) == 1)
    with pytest.raises(ValueError, match="seed"):
        sampling.sample_indices_tf(100, 3, 5, training=True)


def test_num_items_and_modalities():
    assert sampling.num_items(10, "rgb") == 10
    assert sampling.num_items(10, "flow") == 9
    assert sampling.num_items(10, "rgb+flow") == 9
    assert sampling.num_items(1, "flow") == 0
    assert sampling.default_new_length("rgb") == 1
    assert sampling.default_new_length("rgb+flow") == 5
    with pytest.raises(ValueError, match="'rgbflow'"):
        sampling.num_items(10, "rgbflow")
    with pytest.raises(ValueError, match="num_frames"):
        sampling.num_items(0, "rgb")


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_segments"):
        sampling.train_offsets(10, 0)
    with pytest.raises(ValueError, match="new_length"):
        sampling.test_offsets(10, 3, 0)
    with pytest.raises(ValueError, match="num_items"):
        sampling.test_offsets(-1, 3)
    with pytest.raises(ValueError, match="num_items"):
        sampling.snippet_indices([0], 0, 1)


# ------------------------------------------------- strided snippets (conv two-stream fusion)


@pytest.mark.parametrize("n", [3, 14, 20, 60, 200])
def test_strided_offsets_fit_and_keep_their_stride(n):
    """T = 5 snippets of L = 10 flow pairs, tau drawn from [1, 10] (Feichtenhofer
    et al. Sec. 4): every draw has one stride, fits the video when it can, and
    covers all allowed strides; evaluation takes the largest that fits, centred."""
    t, length = 5, 10
    longest = max((n - length) // (t - 1), 1)
    strides = set()
    for seed in range(200):
        offsets = sampling.strided_offsets(n, t, length, (1, 10), training=True, rng=seed)
        tau = np.diff(offsets)
        assert len(set(tau)) == 1 and 1 <= tau[0] <= min(10, longest)
        strides.add(int(tau[0]))
        assert offsets[0] >= 0 and (offsets[-1] + length <= n or offsets[0] == 0)
    assert strides == set(range(1, min(10, longest) + 1))
    centred = sampling.strided_offsets(n, t, length, (1, 10), training=False)
    tau = min(10, longest)
    room = max(n - (4 * tau + length), 0)
    np.testing.assert_array_equal(centred, room // 2 + tau * np.arange(5))
    np.testing.assert_array_equal(sampling.strided_offsets_tf(n, t, length, (1, 10), False).numpy(), centred)


def test_strided_offsets_tf_draws_in_the_same_ranges():
    for n in (20, 60):
        taus = set()
        for i in range(60):
            offsets = sampling.strided_offsets_tf(n, 5, 10, (2, 4), True, tf.constant([i, 7], tf.int64)).numpy()
            tau = np.diff(offsets)
            assert len(set(tau)) == 1 and offsets[-1] + 10 <= n
            taus.add(int(tau[0]))
        assert taus == ({2} if n == 20 else {2, 3, 4})  # n = 20: only tau <= 2 fits
    for bad in ((0, 3), (4, 2), (1.5, 3), "ab", (True, 3)):
        with pytest.raises(ValueError, match="snippet_stride must be"):
            sampling.check_stride_range(bad)
