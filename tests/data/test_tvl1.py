"""Tests of keras_gated_tsn.data.tvl1: TV-L1 in TensorFlow against OpenCV's DualTVL1OpticalFlow.

Real frames only: the embedded sample clips (every checkout has them) and, for
a few more videos, ``../shared/data`` (a skip without it, a failure in CI).
One ``TVL1Flow()`` with the CPU defaults (XLA, one pair per call) is compiled
once for 340x256 and shared (about 15 s); the batching test runs a one-level
flow on small crops (XLA compiles about 3 s per level).
"""

import cv2
import numpy as np
import pytest

from keras_gated_tsn.data import flow as flow_lib
from keras_gated_tsn.data import tvl1, video

SIZE = (340, 256)  # (width, height), as gated-tsn prepare

# (sample clip, i): the pair (frame i, frame i + 1), 0-based; pairs with visible motion
SAMPLE_PAIRS = (
    ("v_SoccerJuggling_g23_c01.avi", 30),
    ("SchoolRulesHowTheyHelpUs_wave_f_nm_np1_ba_med_0.avi", 30),
    ("hmdb51_Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6.avi", 30),
)
# videos of ../shared/data that are not in the sample set
SHARED_PAIRS = (
    ("ucf101/v_BaseballPitch_g01_c01.avi", 40),
    ("ucf101/v_ApplyEyeMakeup_g01_c01.avi", 25),
    ("other/arm_wrestling_demo.mp4", 25),
)


def _gray_pair(path, index, size=SIZE):
    """Frames ``index`` and ``index + 1`` of ``path``, resized and grayscale as ``gated-tsn prepare``."""
    frames = []
    for k, frame in enumerate(video.iter_frames_bgr(path, size)):
        if k >= index:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        if len(frames) == 2:
            return frames
    raise AssertionError(f"{path} has fewer than {index + 2} frames")


def _pairs(paths_and_indices):
    prev, nxt = zip(*(_gray_pair(path, index) for path, index in paths_and_indices))
    return np.stack(prev), np.stack(nxt)


def _epe(a, b):
    """Mean end-point error of each pair, pixels."""
    return np.sqrt(np.square(np.asarray(a) - np.asarray(b)).sum(-1)).mean(axis=(1, 2))


def _opencv(prev, nxt, algorithm):
    return np.stack([algorithm.calc(a, b, None) for a, b in zip(prev, nxt)])


@pytest.fixture(scope="module")
def flow_340():
    """The default object, shared: its XLA executable for 340x256 is compiled once."""
    return tvl1.TVL1Flow()


@pytest.fixture(scope="module")
def sample_pairs(sample_clips_dir):
    return _pairs([(sample_clips_dir / name, index) for name, index in SAMPLE_PAIRS])


# ----------------------------------------------------------------------------- parameters


def test_defaults_are_opencvs():
    opencv = cv2.optflow.DualTVL1OpticalFlow_create()
    expected = dict(
        tau=opencv.getTau(), lambda_=opencv.getLambda(), theta=opencv.getTheta(),
        scales=opencv.getScalesNumber(), warps=opencv.getWarpingsNumber(), epsilon=opencv.getEpsilon(),
        inner_iterations=opencv.getInnerIterations(), outer_iterations=opencv.getOuterIterations(),
        scale_step=opencv.getScaleStep(), gamma=opencv.getGamma(), median_filtering=opencv.getMedianFiltering(),
    )
    assert tvl1.opencv_tvl1_defaults() == pytest.approx(expected)
    config = tvl1.TVL1Flow().get_config()
    assert {k: config[k] for k in expected} == pytest.approx(expected)
    assert not opencv.getUseInitialFlow()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(tau=0), r"tau must be a number > 0, got 0"),
        (dict(lambda_=-0.1), r"lambda_ .* got -0\.1"),
        (dict(theta=float("nan")), r"theta .* got nan"),
        (dict(scales=0), r"scales must be an integer >= 1, got 0"),
        (dict(warps=2.5), r"warps must be an integer .* got 2\.5"),
        (dict(epsilon=-1), r"epsilon .* got -1"),
        (dict(inner_iterations=0), r"inner_iterations .* got 0"),
        (dict(outer_iterations=True), r"outer_iterations .* got True"),
        (dict(scale_step=1.0), r"scale_step must be a number > 0 and < 1, got 1\.0"),
        (dict(gamma=-0.5), r"gamma .* got -0\.5"),
        (dict(median_filtering=4), r"median_filtering must be 0 or 1 \(off\), 3 or 5 .* got 4"),
        (dict(median_filtering=7), r"got 7"),
        (dict(batch_size=0), r"batch_size .* got 0"),
        (dict(jit_compile="yes"), r"jit_compile must be None, True or False, got 'yes'"),
        (dict(threads=0), r"threads .* got 0"),
        (dict(check_every=0), r"check_every .* got 0"),
    ],
)
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tvl1.TVL1Flow(**kwargs)


def test_input_errors():
    flow = tvl1.TVL1Flow(jit_compile=False)
    gray = np.zeros((2, 16, 16), np.uint8)
    with pytest.raises(ValueError, match=r"\(N, H, W\), got shape \(16, 16\); for one pair add a batch axis"):
        flow(gray[0], gray[0])
    with pytest.raises(ValueError, match=r"differ in shape: \(2, 16, 16\) vs \(2, 16, 8\)"):
        flow(gray, gray[:, :, :8])
    with pytest.raises(ValueError, match="uint8 .* or float .* got dtype int16"):
        flow(gray.astype(np.int16), gray)
    with pytest.raises(ValueError, match=r"float frames must lie in \[0, 1\] .* got values in \[0, 255\]"):
        flow(gray, np.linspace(0, 255, 2 * 16 * 16, dtype=np.float32).reshape(2, 16, 16))
    with pytest.raises(ValueError, match=r"at least 3x3 pixels, got \(H, W\) = \(2, 16\)"):
        flow(gray[:, :2], gray[:, :2])
    empty = flow(gray[:0], gray[:0])
    assert empty.shape == (0, 16, 16, 2) and empty.dtype.name == "float32"


# ----------------------------------------------------------------------------- against OpenCV


def test_matches_opencv_tvl1_on_real_frames(flow_340, sample_pairs):
    prev, nxt = sample_pairs
    ours = flow_340(prev, nxt)
    assert tuple(ours.shape) == (len(prev), SIZE[1], SIZE[0], 2) and ours.dtype.name == "float32"
    reference = _opencv(prev, nxt, cv2.optflow.DualTVL1OpticalFlow_create())
    dis = _opencv(prev, nxt, flow_lib.create_flow_algorithm("dis"))
    ours_epe, dis_epe = _epe(ours, reference), _epe(dis, reference)
    assert (ours_epe < 0.25).all(), ours_epe
    assert (ours_epe < dis_epe).all(), (ours_epe, dis_epe)
    assert ours_epe.mean() < 0.05, ours_epe  # measured: about 0.005; DIS: about 0.45


def test_matches_opencv_tvl1_on_shared_videos(flow_340, shared_data):
    prev, nxt = _pairs([(shared_data / "clips" / name, index) for name, index in SHARED_PAIRS])
    reference = _opencv(prev, nxt, cv2.optflow.DualTVL1OpticalFlow_create())
    ours_epe = _epe(flow_340(prev, nxt), reference)
    dis_epe = _epe(_opencv(prev, nxt, flow_lib.create_flow_algorithm("dis")), reference)
    assert (ours_epe < 0.25).all() and (ours_epe < dis_epe).all(), (ours_epe, dis_epe)


def test_recovers_a_whole_pixel_translation(flow_340, sample_clips_dir):
    """A textured real frame moved by (+3, -2) pixels: the flow is (3, -2) away from the borders."""
    rgb = video.read_frames(sample_clips_dir / "v_SoccerJuggling_g23_c01.avi", max_frames=31)[30]
    big = cv2.cvtColor(cv2.resize(rgb, (SIZE[0] + 12, SIZE[1] + 12), interpolation=cv2.INTER_LINEAR),
                       cv2.COLOR_RGB2GRAY)
    dx, dy, o = 3, -2, 6
    prev = big[o : o + SIZE[1], o : o + SIZE[0]]
    nxt = big[o - dy : o - dy + SIZE[1], o - dx : o - dx + SIZE[0]]  # nxt[y + dy, x + dx] = prev[y, x]
    field = flow_340(np.stack([prev, nxt]), np.stack([nxt, prev])).numpy()  # and back
    inner = field[:, 12:-12, 12:-12]
    np.testing.assert_allclose(np.median(inner[0], axis=(0, 1)), [dx, dy], atol=0.05)
    np.testing.assert_allclose(np.median(inner[1], axis=(0, 1)), [-dx, -dy], atol=0.05)
    assert np.abs(inner[0] - [dx, dy]).mean() < 0.1
    assert np.abs(inner[1] + [dx, dy]).mean() < 0.1


# ----------------------------------------------------------------------------- batching


@pytest.fixture(scope="module")
def small_pairs(sample_pairs):
    """Three real 48x64 crops of the sample pairs, with their next frames."""
    prev, nxt = sample_pairs
    rows, cols = slice(100, 148), slice(140, 204)
    return np.ascontiguousarray(prev[:3, rows, cols]), np.ascontiguousarray(nxt[:3, rows, cols])


def test_batch_equals_pairs_one_by_one(small_pairs):
    prev, nxt = small_pairs
    # One pyramid level: the same loops, a fraction of the compilation time of five.
    # Pair by pair in the TensorFlow graph (3 calls, 2 at a time), the batch with XLA (1 call).
    one_by_one = tvl1.TVL1Flow(scales=1, jit_compile=False, batch_size=1, threads=2)
    batched = tvl1.TVL1Flow(scales=1, jit_compile=True, batch_size=3, threads=1)
    singles = one_by_one(prev, nxt).numpy()
    together = batched(prev, nxt).numpy()
    assert singles.shape == together.shape == (3, 48, 64, 2)
    # Each pair stops on its own (masking), so the batch gives each pair its own flow, up to
    # rounding (XLA fuses differently; pair by pair with XLA is bit for bit the batch's flow).
    assert _epe(together, singles).max() < 1e-2, _epe(together, singles)
    # A partial batch is padded to the compiled size and cut back.
    assert _epe(batched(prev[1:], nxt[1:]), together[1:]).max() < 1e-3
    # One trace per frame size, whatever the batch size.
    assert one_by_one._functions[(48, 64)].experimental_get_tracing_count() == 1
    assert batched._functions[(48, 64)].experimental_get_tracing_count() == 1
    # Float frames in [0, 1] (OpenCV's convention for float input) give the same flow.
    as_float = one_by_one(prev.astype(np.float32) / 255.0, nxt.astype(np.float32) / 255.0).numpy()
    assert _epe(as_float, singles).max() < 1e-2
    # And OpenCV with one level agrees.
    opencv = cv2.optflow.DualTVL1OpticalFlow_create()
    opencv.setScalesNumber(1)
    assert (_epe(singles, _opencv(prev, nxt, opencv)) < 0.25).all()


# ----------------------------------------------------------------------------- building blocks against OpenCV


def test_building_blocks_match_opencv(sample_pairs):
    import tensorflow as tf

    image = sample_pairs[0][0].astype(np.float32)
    sizes = tvl1._pyramid_sizes(SIZE[1], SIZE[0], 5, 0.8)
    assert sizes == [(256, 340), (205, 272), (164, 218), (131, 174), (105, 139)]
    level = image
    for src, dst in zip(sizes[:-1], sizes[1:]):
        expected = cv2.resize(level, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
        ours = tvl1._resize(tf.constant(level[None]), src, dst, (1.25, 1.25)).numpy()[0]
        np.testing.assert_allclose(ours, expected, atol=1e-3)
        level = expected
    rng = np.random.default_rng(0)
    u = rng.normal(size=(2, 1, 40, 50)).astype(np.float32)
    u[:, :, 5:15, 5:15] = 0.25  # ties
    for size in (3, 5):
        ours = tvl1._median_filter(tf.constant(u), size, tvl1._median_network(size * size)).numpy()
        for c in range(2):
            np.testing.assert_array_equal(ours[c, 0], cv2.medianBlur(u[c, 0], size))
    h, w = image.shape
    fx = rng.normal(scale=3, size=(h, w)).astype(np.float32)
    fy = rng.normal(scale=3, size=(h, w)).astype(np.float32)
    fx[:, :6] -= 5  # samples off every border
    fy[-6:] += 5
    fx[:4] += 400
    expected = cv2.remap(image, np.arange(w, dtype=np.float32)[None] + fx,
                         np.arange(h, dtype=np.float32)[:, None] + fy, cv2.INTER_CUBIC)
    ours = tvl1._warp_bicubic(tf.constant(image[None, :, :, None]), tf.constant(fx[None]), tf.constant(fy[None]))
    np.testing.assert_allclose(ours.numpy()[0, :, :, 0], expected, atol=1e-3)
