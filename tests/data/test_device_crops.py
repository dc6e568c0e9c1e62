"""``make_dataset(..., augment_on="device")``: the host decodes, the training step crops.

The device path must give the host path's pixels from the same draws (so a
user switching it on trains the same network) and the zoo's models must apply
it inside ``fit()``. Real frames from ``../shared/data/frames`` and the sample
clips."""

import shutil

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_gated_tsn.data import device_crops, pipeline
from keras_gated_tsn.data.lists import VideoRecord
from keras_gated_tsn.models import TSN


@pytest.fixture(scope="module")
def frames(shared_data, tmp_path_factory):
    """Three real 320x240 videos (6, 6 and 4 frames with their flow), and the
    same videos with flow planes at half size (a joint mode whose crop box is
    mapped from the RGB frames onto the flow), and at 340x256 written by
    OpenCV's encoder as `gated-tsn prepare` writes them."""
    src = shared_data / "frames" / "tsn_layout_sample"
    root = tmp_path_factory.mktemp("device_crops")
    records = []
    for video, count in (("a", 6), ("b", 6), ("c", 4)):
        for layout, scale in (("same", 1.0), ("half_flow", 0.5), ("cv2_340", None)):
            folder = root / layout / video
            folder.mkdir(parents=True)
            for i in range(1, count + 1):
                if scale is None:  # frames as `gated-tsn prepare` writes them: 340x256, cv2's JPEG encoder
                    image = cv2.resize(cv2.imread(str(src / f"img_{i:05d}.jpg")), (340, 256))
                    cv2.imwrite(str(folder / f"img_{i:05d}.jpg"), image)
                else:
                    shutil.copy(src / f"img_{i:05d}.jpg", folder / f"img_{i:05d}.jpg")
            for i in range(1, count):
                for axis in "xy":
                    plane = cv2.imread(str(src / f"{axis}_{i:05d}.jpg"), cv2.IMREAD_GRAYSCALE)
                    if scale is None:
                        plane = cv2.resize(plane, (340, 256))
                    elif scale != 1.0:
                        plane = cv2.resize(plane, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                    cv2.imwrite(str(folder / f"flow_{axis}_{i:05d}.jpg"), plane)
        records.append(VideoRecord(video, count, len(records)))
    return root, records


def _pair(records, root, modality, size, batches=6, **kwargs):
    options = dict(input_size=size, batch_size=3, training=True, seed=3, repeat=True, **kwargs)
    host = iter(pipeline.make_dataset(records, root, modality, **options))
    device = iter(pipeline.make_dataset(records, root, modality, augment_on="device", **options))
    return [(next(host), next(device)) for _ in range(batches)]


@pytest.mark.parametrize("layout,modality", [
    ("same", "rgb"), ("same", "flow"), ("same", "rgb+flow"), ("half_flow", "rgb+flow"), ("cv2_340", "rgb+flow"),
])
@pytest.mark.parametrize("size", [64, 224])  # 224: crops of 240 * 0.66..0.875 are enlarged
@pytest.mark.parametrize("flip_prob", [0.5, 1.0])
def test_device_crops_are_the_host_pixels(frames, layout, modality, size, flip_prob):
    root, records = frames
    compared = flipped = 0
    compiled = tf.function(lambda x: device_crops.apply(x, size))  # as inside fit()'s step
    for (x_host, label_host), (x_device, label_device) in _pair(records, root / layout, modality, size,
                                                                flip_prob=flip_prob):
        assert device_crops.is_uncropped(x_device) and device_crops.modality_of(x_device) == modality
        flipped += int(np.sum(x_device[device_crops.FLIP]))
        np.testing.assert_array_equal(label_host, label_device)
        for cropped in (device_crops.apply(x_device, size), compiled(x_device)):
            for host, device in zip(tf.nest.flatten(x_host), tf.nest.flatten(cropped)):
                assert device.dtype == tf.uint8 and device.shape == host.shape
                np.testing.assert_array_equal(device.numpy(), host.numpy())
                compared += int(np.prod(host.shape))
    assert compared and flipped  # the flip path ran (with 0.5, some videos flipped; with 1.0, all)
    spec = pipeline.make_dataset(records, root / layout, modality, input_size=size, batch_size=3,
                                 augment_on="device").element_spec[0]
    out_spec = device_crops.output_spec(spec, size)
    assert [s.shape.as_list() for s in tf.nest.flatten(out_spec)] == [
        [None, *t.shape[1:]] for t in tf.nest.flatten(cropped)]


def test_uncropped_batch_layout(frames):
    root, records = frames
    x, _ = next(iter(pipeline.make_dataset(records, root / "half_flow", "rgb+flow", input_size=64, batch_size=3,
                                           seed=0, augment_on="device")))
    # Colour frames whole; flow: a fixed window of the half-size planes that holds the
    # largest crop (120x120) + 2 px, planes x1, y1, ... not interleaved, the box inside it.
    assert x[device_crops.RGB_FRAMES].shape == (3, 3, 240, 320, 3)
    assert x[device_crops.FLOW_PLANES].shape == (3, 3, 10, 120, 122)
    rgb_box, flow_box = x[device_crops.RGB_BOX].numpy(), x[device_crops.FLOW_BOX].numpy()
    np.testing.assert_array_equal(flow_box[:, 2:], np.round(rgb_box[:, 2:] / 2).astype(int))  # the same relative crop
    assert (flow_box[:, :2] >= 0).all() and (flow_box[:, :2] + flow_box[:, 2:] <= [120, 122]).all()
    assert (rgb_box[:, :2] >= 0).all() and (rgb_box[:, :2] + rgb_box[:, 2:] <= [240, 320]).all()
    assert x[device_crops.FLIP].dtype == tf.bool
    # Whole planes where a volume needs whole fields (trajectories leave the crop).
    x, _ = next(iter(pipeline.make_dataset(records, root / "same", "flow", input_size=64, batch_size=3, seed=0,
                                           new_length=2, augment_on="device", flow_input={"stacking": "trajectory"})))
    assert x[device_crops.FLOW_PLANES].shape == (3, 3, 4, 240, 320)


def test_augment_on_errors(frames, tmp_path):
    root, records = frames
    with pytest.raises(ValueError, match="augment_on must be 'host' or 'device', got 'gpu'"):
        pipeline.make_dataset(records, root / "same", "rgb", augment_on="gpu")
    with pytest.raises(ValueError, match="evaluation views are cut on the host"):
        pipeline.make_dataset(records, root / "same", "rgb", augment_on="device", training=False)
    with pytest.raises(ValueError, match="not a batch of augment_on='device'"):
        device_crops.apply({"rgb": tf.zeros([1, 1, 8, 8, 3], tf.uint8)}, 8)
    # A video whose frames differ in size from the first video's is named.
    mixed = tmp_path / "mixed"
    shutil.copytree(root / "same", mixed)
    for path in (mixed / "b").glob("img_*.jpg"):
        cv2.imwrite(str(path), cv2.resize(cv2.imread(str(path)), (160, 120)))
    ds = pipeline.make_dataset(records, mixed, "rgb", input_size=64, batch_size=1, seed=0, shuffle=False,
                               augment_on="device")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)frame size 240x320.*mixed/b/"):
        list(ds)


@pytest.mark.parametrize("modality", ["rgb", "flow"])
def test_fit_on_device_crops_trains_as_on_host_crops(prepared_samples, modality):
    """A CaffeNet stream (no BN or dropout: deterministic) takes the same two
    updates from fit() whether its seeded batches are cropped by the pipeline
    or by its train_step."""
    weights = {}
    for augment_on in ("host", "device"):
        keras.utils.set_random_seed(0)
        model = TSN("caffenet", modality, num_classes=3, num_segments=2, input_size=67, dropout=0.0)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        start = [w.numpy().copy() for w in model.trainable_weights]
        records = [r for r in _records(prepared_samples) if r.label < 3][:8]
        ds = pipeline.make_dataset(records, prepared_samples / "frames", modality, num_segments=2, input_size=67,
                                   batch_size=4, seed=2, augment_on=augment_on)
        model.fit(ds, epochs=1, verbose=0)
        weights[augment_on] = [w.numpy() for w in model.trainable_weights]
        assert any(not np.array_equal(a, b) for a, b in zip(start, weights[augment_on]))  # it trained
    for host, device in zip(weights["host"], weights["device"]):
        np.testing.assert_array_equal(device, host)  # the same pixels, so the same arithmetic


def _records(prepared_samples):
    from keras_gated_tsn.data.lists import read_list_file

    return read_list_file(prepared_samples / "train.txt")
