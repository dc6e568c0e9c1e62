"""Tests of keras_gated_tsn.data.video on real clips."""

import os

import cv2
import numpy as np
import pytest

from keras_gated_tsn.data import video

SOCCER = "v_SoccerJuggling_g23_c01.avi"  # Xvid, 320x240, 240 frames


@pytest.fixture(scope="module")
def soccer(sample_clips_dir):
    return sample_clips_dir / SOCCER


def test_iter_frames_real_clip(soccer):
    frames = list(video.iter_frames(soccer))
    assert len(frames) == 240  # frames actually decoded
    assert all(f.dtype == np.uint8 and f.shape == (240, 320, 3) for f in frames)
    # RGB order: OpenCV decodes BGR.
    capture = cv2.VideoCapture(str(soccer))
    ok, bgr = capture.read()
    capture.release()
    assert ok
    np.testing.assert_array_equal(frames[0], bgr[:, :, ::-1])


def test_iter_frames_resizes_to_width_height(soccer):
    frames = video.iter_frames(soccer, size=(64, 48))
    first = next(frames)
    assert first.shape == (48, 64, 3) and first.dtype == np.uint8
    assert sum(1 for _ in frames) == 239


def test_read_and_count_frames(soccer):
    assert video.count_frames(soccer) == 240
    clip = video.read_frames(soccer, size=(34, 26), max_frames=5)
    assert clip.shape == (5, 26, 34, 3) and clip.dtype == np.uint8
    assert 0 < clip.mean() < 255


@pytest.mark.parametrize("size", [(0, 10), (10,), (10.5, 3), "340x256"])
def test_invalid_size(soccer, size):
    with pytest.raises(ValueError, match="size"):
        video.iter_frames(soccer, size=size)


def test_missing_file_raises_at_call(tmp_path):
    path = tmp_path / "missing.avi"
    with pytest.raises(video.VideoDecodeError) as info:
        video.iter_frames(path)
    assert isinstance(info.value, RuntimeError)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)


def test_truncated_and_garbage_files(soccer, tmp_path):
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(soccer.read_bytes()[:3000])  # header only
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    for path in (truncated, garbage, empty):
        with pytest.raises(video.VideoDecodeError) as info:
            list(video.iter_frames(path))
        assert info.value.path == str(path)
        with pytest.raises(video.VideoDecodeError):
            video.count_frames(path)


def test_write_video_round_trip(soccer, tmp_path):
    frames = video.read_frames(soccer, max_frames=6)
    path = tmp_path / "cut.avi"
    assert video.write_video(path, iter(frames), fps=30) == 6
    assert os.listdir(tmp_path) == ["cut.avi"]  # no temporary file left
    back = video.read_frames(path)
    assert back.shape == frames.shape
    # Motion-JPEG is lossy, but close.
    assert np.abs(back.astype(int) - frames.astype(int)).mean() < 8


def test_write_video_errors(tmp_path):
    path = tmp_path / "bad.avi"
    with pytest.raises(ValueError, match="no frame"):
        video.write_video(path, [], fps=25)
    a = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="shape"):
        video.write_video(path, [a, np.zeros((8, 16, 3), np.uint8)])
    with pytest.raises(ValueError, match="uint8"):
        video.write_video(path, [a.astype(np.float32)])
    with pytest.raises(ValueError, match="fps"):
        video.write_video(path, [a], fps=0)
    assert os.listdir(tmp_path) == []
