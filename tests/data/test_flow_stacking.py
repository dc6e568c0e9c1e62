"""The two-stream ConvNets' temporal inputs (Simonyan & Zisserman 2014, Sec. 3.1)
from the extracted flow: trajectory stacking against a hand-worked field, the
backward fields, mean flow subtraction, and the pipelines on real flow."""

import shutil

import numpy as np
import pytest
import tensorflow as tf

from keras_gated_tsn.data import pipeline
from keras_gated_tsn.data.flow_stacking import FlowInput, as_flow_input, flow_volume, invert_field
from keras_gated_tsn.data.lists import VideoRecord

# With bound 255 a step of the encoding is 2 px: v encodes f = 2 v - 255 (128 -> +1 px, 129 -> +3 px).
BOUND = 255.0


def _encode(pixels):
    return (np.asarray(pixels, np.float64) + BOUND) / 2.0


def test_trajectory_stacking_follows_a_hand_worked_field():
    """Field 1 moves every point by (dx, dy) = (+3, +1) px; field 2 holds a
    distinct value per pixel. Eq. (2): channel pair 2 is field 2 read at
    p_2 = p_1 + (3, 1); eq. (1) reads it at p_1. Points that leave the frame
    read the border."""
    height, width = 6, 9
    x1 = np.full((height, width), _encode(3))
    y1 = np.full((height, width), _encode(1))
    rows, cols = np.mgrid[0:height, 0:width]
    x2 = (10 * rows + cols).astype(np.float64)  # any values: only read
    y2 = (200 - 7 * rows - cols).astype(np.float64)
    x_planes = tf.constant(np.stack([x1, x2]), tf.uint8)
    y_planes = tf.constant(np.stack([y1, y2]), tf.uint8)

    x, y = flow_volume(x_planes, y_planes, FlowInput("trajectory", bound=BOUND))
    follow_r, follow_c = np.minimum(rows + 1, height - 1), np.minimum(cols + 3, width - 1)
    np.testing.assert_array_equal(x.numpy()[0], x1)  # p_1 = (u, v)
    np.testing.assert_array_equal(y.numpy()[0], y1)
    np.testing.assert_array_equal(x.numpy()[1], x2[follow_r, follow_c])
    np.testing.assert_array_equal(y.numpy()[1], y2[follow_r, follow_c])
    # Optical flow stacking is the input itself.
    x, y = flow_volume(x_planes, y_planes, FlowInput("optical_flow", bound=BOUND))
    np.testing.assert_array_equal(x.numpy(), x_planes.numpy())


def test_trajectory_samples_between_pixels_bilinearly():
    """A displacement of +1 px in x then half a pixel in y (bound chosen so)
    reads field 2 between two rows: their mean, rounded half to even."""
    bound = 127.5  # f = v - 127.5: v = 128.5 is not storable, so go via the third field
    x1 = np.full((4, 5), 129.0)  # +1.5 px in x
    y1 = np.full((4, 5), 127.0)  # -0.5 px in y
    field = np.arange(20, dtype=np.float64).reshape(4, 5) * 10
    x_planes = tf.constant(np.stack([x1, field]), tf.uint8)
    y_planes = tf.constant(np.stack([y1, field]), tf.uint8)
    x, _ = flow_volume(x_planes, y_planes, FlowInput("trajectory", bound=bound))
    rows, cols = np.mgrid[0:4, 0:5]
    y_pos, x_pos = np.clip(rows - 0.5, 0, 3), np.clip(cols + 1.5, 0, 4)
    r0, c0 = np.floor(y_pos).astype(int), np.floor(x_pos).astype(int)
    r1, c1 = np.minimum(r0 + 1, 3), np.minimum(c0 + 1, 4)
    wy, wx = y_pos - r0, x_pos - c0
    expected = ((field[r0, c0] * (1 - wx) + field[r0, c1] * wx) * (1 - wy)
                + (field[r1, c0] * (1 - wx) + field[r1, c1] * wx) * wy)
    np.testing.assert_array_equal(x.numpy()[1], np.round(expected))


def test_backward_field_inverts_the_forward_field():
    # A uniform motion: the backward field is its negative, 255 - v exactly.
    uniform = tf.constant(np.stack([np.full((5, 7), 140.0), np.full((5, 7), 120.0)], -1), tf.float32)
    np.testing.assert_allclose(invert_field(uniform, 20.0).numpy(), 255.0 - uniform.numpy())
    # A smooth non-uniform field: b(p) = -d(p + b(p)) holds to a small residual.
    rows, cols = np.mgrid[0:24, 0:32].astype(np.float64)
    dx, dy = 2.0 + 0.05 * cols, -1.0 + 0.04 * rows  # pixels
    forward = np.stack([_encode(dx), _encode(dy)], -1)  # the bound-255 encoding, unrounded
    backward = invert_field(tf.constant(forward, tf.float32), BOUND).numpy()
    b_x, b_y = 2 * backward[..., 0] - 255, 2 * backward[..., 1] - 255
    # d at p + b, by the affine formula (no sampling error inside the frame):
    inside = (cols + b_x >= 0) & (cols + b_x <= 31) & (rows + b_y >= 0) & (rows + b_y <= 23)
    res_x = b_x + (2.0 + 0.05 * (cols + b_x))
    res_y = b_y + (-1.0 + 0.04 * (rows + b_y))
    assert inside.mean() > 0.8
    assert np.abs(res_x[inside]).max() < 1e-3 and np.abs(res_y[inside]).max() < 1e-3
    # The first guess alone (-d(p)) would be off by about 0.1 px here.
    assert np.abs(-(2.0 + 0.05 * cols) + (2.0 + 0.05 * (cols - (2.0 + 0.05 * cols))))[inside].max() > 0.09


def test_bidirectional_volume_order_and_mean_subtraction():
    """L = 4 pairs p0..p3 of uniform fields: tau = offset + 2; channels: forward
    d_tau (p2), d_tau+1 (p3), then backward b_tau (from p1), b_tau-1 (from p0)."""
    values = [(100, 110), (120, 130), (140, 150), (160, 170)]
    x_planes = tf.constant(np.stack([np.full((4, 6), vx) for vx, _ in values]), tf.uint8)
    y_planes = tf.constant(np.stack([np.full((4, 6), vy) for _, vy in values]), tf.uint8)
    x, y = flow_volume(x_planes, y_planes, FlowInput(bidirectional=True))
    assert x.numpy()[:, 0, 0].tolist() == [140, 160, 255 - 120, 255 - 100]
    assert y.numpy()[:, 0, 0].tolist() == [150, 170, 255 - 130, 255 - 110]
    # Mean subtraction: a field's mean vector removed (127.5 = no motion, rounded half to even: 128).
    ramp = np.tile(np.arange(6, dtype=np.float64) * 10 + 100, (4, 1))  # mean 125
    x, _ = flow_volume(tf.constant(ramp[None], tf.uint8), tf.constant(ramp[None], tf.uint8),
                       FlowInput(mean_subtraction=True))
    np.testing.assert_array_equal(x.numpy()[0], np.round(ramp - 125 + 127.5))
    x, _ = flow_volume(tf.constant(np.full((1, 3, 3), 90), tf.uint8), tf.constant(np.full((1, 3, 3), 90), tf.uint8),
                       FlowInput(mean_subtraction=True))
    assert set(x.numpy().ravel().tolist()) == {128}


def test_flow_input_settings_are_checked():
    with pytest.raises(ValueError, match="stacking must be one of .*got 'trajectories'"):
        FlowInput("trajectories")
    with pytest.raises(ValueError, match="bound must be a positive number of pixels, got 0"):
        FlowInput(bound=0)
    with pytest.raises(ValueError, match=r"unknown flow input settings \['mean'\]"):
        as_flow_input({"mean": True})
    assert as_flow_input(None).is_plain and not as_flow_input({"stacking": "trajectory"}).is_plain
    assert as_flow_input(FlowInput(bidirectional=True).get_config()) == FlowInput(bidirectional=True)


@pytest.fixture(scope="module")
def flow_frames(shared_data, tmp_path_factory):
    src = shared_data / "frames" / "tsn_layout_sample"
    root = tmp_path_factory.mktemp("flow_stacking")
    folder = root / "video"
    folder.mkdir()
    for i in range(1, 7):
        shutil.copy(src / f"img_{i:05d}.jpg", folder / f"img_{i:05d}.jpg")
    for i in range(1, 6):
        shutil.copy(src / f"x_{i:05d}.jpg", folder / f"flow_x_{i:05d}.jpg")
        shutil.copy(src / f"y_{i:05d}.jpg", folder / f"flow_y_{i:05d}.jpg")
    return root, [VideoRecord("video", 6, 0)]


def test_pipelines_build_the_volumes_on_real_flow(flow_frames):
    """Real flow (5 pairs): with the same draws, the bi-directional volume's
    forward half is plain stacking's last pairs; trajectory stacking keeps the
    first pair and changes the others; the test views get the same volumes."""
    root, records = flow_frames
    options = dict(num_segments=1, new_length=4, input_size=96, batch_size=1, seed=4)
    plain, _ = next(iter(pipeline.make_dataset(records, root, "flow", **options)))
    both, _ = next(iter(pipeline.make_dataset(records, root, "flow", flow_input={"bidirectional": True}, **options)))
    np.testing.assert_array_equal(both.numpy()[..., :4], plain.numpy()[..., 4:])
    trajectory, _ = next(iter(pipeline.make_dataset(
        records, root, "flow", flow_input=FlowInput("trajectory"), **options)))
    np.testing.assert_array_equal(trajectory.numpy()[..., :2], plain.numpy()[..., :2])
    assert np.mean(trajectory.numpy()[..., 2:] != plain.numpy()[..., 2:]) > 0.05
    views, _, _ = next(iter(pipeline.make_test_dataset(
        records, root, "flow", num_frames=2, crops=1, input_size=96, new_length=4,
        flow_input={"mean_subtraction": True})))
    centred = views.numpy().reshape(-1, 8).astype(float)
    assert abs(centred.mean() - 127.5) < 3  # (the mean is over whole frames, the view is a crop)
    with pytest.raises(ValueError, match="L must be even, got new_length=5"):
        pipeline.make_dataset(records, root, "flow", new_length=5, flow_input={"bidirectional": True})


def test_a_flow_stream_trains_and_is_scored_on_its_own_volumes(prepared_samples, tmp_path, monkeypatch, capsys):
    """`gated-tsn train --stage flow --flow-stacking trajectory --bidirectional`:
    the stream records its input (with the dataset's bound from prepare.json),
    its training and validation batches and its test views are built with it,
    and the saved .keras keeps it."""
    from keras_gated_tsn.cli import main
    from keras_gated_tsn.evaluation import protocol
    from keras_gated_tsn.models.tsn import flow_input_of
    from keras_gated_tsn.training.stages import load_model

    built = []
    for name in ("make_dataset", "make_test_dataset"):
        original = getattr(pipeline, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            built.append((_name, kwargs.get("flow_input")))
            return _original(*args, **kwargs)

        monkeypatch.setattr(pipeline, name, spy)
    lists = {}
    for name in ("train", "val"):
        lines = (prepared_samples / f"{name}.txt").read_text().splitlines()[:4]
        lists[name] = tmp_path / f"{name}.txt"
        lists[name].write_text("\n".join(lines) + "\n")
    out = tmp_path / "flow.keras"
    assert main(["train", "--stage", "flow", "--data", str(prepared_samples), "--out", str(out),
                 "--train-list", str(lists["train"]), "--val-list", str(lists["val"]), "--backbone", "caffenet",
                 "--input-size", "67", "--segments", "1", "--new-length", "4", "--batch-size", "2",
                 "--epochs", "1", "--flow-stacking", "trajectory", "--bidirectional", "--seed", "0"]) == 0
    expected = FlowInput("trajectory", bidirectional=True, bound=20.0)  # prepare's default bound
    assert [kind for kind, _ in built] == ["make_dataset", "make_dataset"]
    assert all(value == expected for _, value in built)
    model = load_model(str(out))
    assert model.flow_input == expected and flow_input_of(model) == expected
    built.clear()
    classes = (prepared_samples / "classes.txt").read_text().split()
    scores = protocol.evaluate(str(lists["val"]), str(prepared_samples / "frames"), classes,
                               flow_model=model, num_frames=2, crops=1, progress=False)
    assert built == [("make_test_dataset", expected)] and scores is not None
    assert main(["train", "--stage", "rgb", "--data", str(prepared_samples), "--out", str(tmp_path / "r.keras"),
                 "--flow-stacking", "trajectory", "--epochs", "1"]) != 0
    assert "configure a flow stream (--stage flow), not the rgb stream" in capsys.readouterr().err
