"""Tests of keras_gated_tsn.data.flow: the 8-bit encoding and both flow methods."""

import cv2
import numpy as np
import pytest

from keras_gated_tsn.data import flow, video


def test_encode_zero_is_128():
    x, y = flow.encode_flow(np.zeros((3, 4, 2), np.float32))
    assert x.dtype == np.uint8 and y.dtype == np.uint8
    assert x.shape == (3, 4) and y.shape == (3, 4)
    assert (x == 128).all() and (y == 128).all()


def test_encode_clips_at_bound():
    f = np.array([[[-20.0, 20.0], [-35.0, 100.0], [-20.1, 19.99]]], np.float32)
    x, y = flow.encode_flow(f, bound=20.0)
    assert x.tolist() == [[0, 0, 0]]
    assert y.tolist() == [[255, 255, 255]]


def test_encode_hand_computed():
    # v = round(255 * (f + bound) / (2 * bound))
    f = np.array([[[5.0, -7.3]]], np.float32)
    x, y = flow.encode_flow(f, bound=20.0)
    assert int(x[0, 0]) == 159  # 255 * 25 / 40 = 159.375
    assert int(y[0, 0]) == 81  # 255 * 12.7 / 40 = 80.96
    x, _ = flow.encode_flow(np.array([[[2.5, 0.0]]]), bound=10)
    assert int(x[0, 0]) == 159  # 255 * 12.5 / 20
    x, _ = flow.encode_flow(np.array([[[np.nan, 0.0]]]))
    assert int(x[0, 0]) == 128  # NaN: no motion


def test_decode_inverts_within_a_step():
    rng = np.random.default_rng(0)
    f = rng.uniform(-20, 20, (8, 9, 2)).astype(np.float32)
    back = flow.decode_flow(*flow.encode_flow(f, 20.0), bound=20.0)
    assert back.shape == (8, 9, 2) and back.dtype == np.float32
    assert np.abs(back - f).max() <= 20.0 / 255 + 1e-5  # half a step of 40/255
    ends = flow.decode_flow(np.array([[0]], np.uint8), np.array([[255]], np.uint8), 20.0)
    np.testing.assert_allclose(ends[0, 0], [-20.0, 20.0], atol=1e-5)


def test_encoding_errors():
    with pytest.raises(ValueError, match="bound"):
        flow.encode_flow(np.zeros((2, 2, 2)), bound=0)
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        flow.encode_flow(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="shape"):
        flow.decode_flow(np.zeros((2, 2)), np.zeros((2, 3)))


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError, match="'tvl1', 'dis'"):
        flow.create_flow_algorithm("farneback")
    with pytest.raises(ValueError, match="'tvl1', 'dis'"):
        flow.compute_flow(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), "raft")


def test_compute_flow_input_checks():
    gray = np.zeros((16, 16), np.uint8)
    with pytest.raises(ValueError, match="grayscale"):
        flow.compute_flow(np.zeros((16, 16, 3), np.uint8), gray, "dis")
    with pytest.raises(ValueError, match="uint8"):
        flow.compute_flow(gray.astype(np.float32), gray, "dis")
    with pytest.raises(ValueError, match="differ in shape"):
        flow.compute_flow(gray, np.zeros((16, 8), np.uint8), "dis")


@pytest.fixture(scope="module")
def real_gray(sample_clips_dir):
    """A textured real frame, grayscale uint8 240x320."""
    rgb = video.read_frames(sample_clips_dir / "v_SoccerJuggling_g23_c01.avi", max_frames=31)[30]
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _shifted_pair(gray, dx, dy, size):
    """Two crops of ``gray`` whose content moves by (+dx, +dy) pixels from the first to the second."""
    h, w = size
    o = 20
    prev = gray[o : o + h, o : o + w]
    nxt = gray[o - dy : o - dy + h, o - dx : o - dx + w]  # nxt[y, x] = prev[y - dy, x - dx]
    return np.ascontiguousarray(prev), np.ascontiguousarray(nxt)


@pytest.mark.parametrize(
    "method, size",
    [("dis", (200, 280)), ("tvl1", (96, 128))],  # TV-L1 on a small crop: it is slow
)
def test_compute_flow_recovers_translation(real_gray, method, size):
    dx, dy = 3, -2
    prev, nxt = _shifted_pair(real_gray, dx, dy, size)
    algorithm = flow.create_flow_algorithm(method)
    field = flow.compute_flow(prev, nxt, algorithm=algorithm)
    assert field.shape == size + (2,) and field.dtype == np.float32
    inner = field[8:-8, 8:-8]
    np.testing.assert_allclose(np.median(inner[..., 0]), dx, atol=0.3)
    np.testing.assert_allclose(np.median(inner[..., 1]), dy, atol=0.3)
    # The object is reusable: the reverse pair gives the opposite motion.
    back = flow.compute_flow(nxt, prev, algorithm=algorithm)
    np.testing.assert_allclose(np.median(back[8:-8, 8:-8, 0]), -dx, atol=0.3)
    # Encoded: 3 px right is about 128 + 3 * 255 / 40 = 147.
    x, y = flow.encode_flow(inner)
    assert abs(int(np.median(x)) - 147) <= 2 and abs(int(np.median(y)) - 115) <= 2
