"""TSN streams: shapes, names, partial BN, cross-modality initialisation, saving."""

import keras
import numpy as np
import pytest

from keras_gated_tsn.layers import ModalityPreprocessing, SegmentConsensus, SegmentFold
from keras_gated_tsn.models import TSN, cross_modality_kernel, init_from_rgb, set_partial_bn

SIZE = 64


@pytest.fixture(scope="module")
def rgb_stream():
    return TSN(modality="rgb", num_classes=5, num_segments=3, input_size=SIZE)


@pytest.fixture(scope="module")
def flow_stream():
    return TSN(modality="flow", num_classes=5, num_segments=3, input_size=SIZE, new_length=5)


def test_shapes_and_names(rgb_stream, flow_stream):
    assert rgb_stream.input.shape[1:] == (None, SIZE, SIZE, 3)
    assert flow_stream.input.shape[1:] == (None, SIZE, SIZE, 10)
    assert rgb_stream.output.shape[1:] == (5,)
    assert rgb_stream.get_layer("dropout").rate == 0.8
    assert flow_stream.get_layer("dropout").rate == 0.7
    assert rgb_stream.get_layer("fc-action").units == 5
    assert flow_stream.get_layer("conv1_7x7_s2").kernel.shape == (7, 7, 10, 64)
    assert rgb_stream.name == "tsn_rgb_bn_inception_k3"


def test_consensus_averages_segment_scores(rgb_stream):
    clips = np.random.default_rng(0).integers(0, 256, (2, 3, SIZE, SIZE, 3)).astype("uint8")
    per_video = rgb_stream.predict(clips, verbose=0)
    # Each segment alone (K=1) gives a snippet score; the video score is their mean.
    per_snippet = rgb_stream.predict(clips.reshape(6, 1, SIZE, SIZE, 3), verbose=0).reshape(2, 3, 5)
    np.testing.assert_allclose(per_video, per_snippet.mean(axis=1), rtol=1e-4, atol=1e-6)


def test_partial_bn(rgb_stream):
    bns = [l for l in rgb_stream.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns[0].name == "conv1_7x7_s2_bn" and bns[0].trainable
    assert not any(l.trainable for l in bns[1:])
    set_partial_bn(rgb_stream, False)
    assert all(l.trainable for l in bns)
    set_partial_bn(rgb_stream, True)
    assert not bns[1].trainable


def test_cross_modality_kernel_hand_case():
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, :, 0] = [1.0, 2.0, 6.0]
    kernel[0, 0, :, 1] = [3.0, 3.0, 0.0]
    flow = cross_modality_kernel(kernel, 4)
    assert flow.shape == (1, 1, 4, 2)
    np.testing.assert_allclose(flow[0, 0, :, 0], [3.0] * 4)
    np.testing.assert_allclose(flow[0, 0, :, 1], [2.0] * 4)


def test_init_from_rgb(rgb_stream, flow_stream):
    init_from_rgb(flow_stream, rgb_stream)
    rgb_kernel = rgb_stream.get_layer("conv1_7x7_s2").kernel.numpy()
    flow_kernel = flow_stream.get_layer("conv1_7x7_s2").kernel.numpy()
    np.testing.assert_allclose(flow_kernel, np.repeat(rgb_kernel.mean(2, keepdims=True), 10, 2), rtol=1e-6)
    np.testing.assert_array_equal(
        flow_stream.get_layer("inception_5b_1x1").kernel.numpy(),
        rgb_stream.get_layer("inception_5b_1x1").kernel.numpy(),
    )
    # The classifier is new: not copied by default.
    assert not np.array_equal(
        flow_stream.get_layer("fc-action").kernel.numpy(), rgb_stream.get_layer("fc-action").kernel.numpy()
    )


def test_keras_round_trip(tmp_path, flow_stream):
    path = tmp_path / "flow.keras"
    flow_stream.save(path)
    loaded = keras.models.load_model(path)
    clips = np.random.default_rng(1).integers(0, 256, (2, 3, SIZE, SIZE, 10)).astype("uint8")
    np.testing.assert_allclose(loaded.predict(clips, verbose=0), flow_stream.predict(clips, verbose=0), rtol=1e-5, atol=1e-6)
    assert not loaded.get_layer("inception_3a_1x1_bn").trainable  # partial BN survives saving


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"modality": "depth"}, "modality"),
        ({"backbone": "resnet"}, "backbone"),
        ({"num_classes": 0}, "num_classes"),
        ({"input_size": 16}, "input_size"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TSN(**kwargs)


def test_layers_round_trip_configs():
    for layer in (ModalityPreprocessing("flow"), SegmentFold(), SegmentConsensus()):
        clone = layer.__class__.from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="modality"):
        ModalityPreprocessing("depth")
    with pytest.raises(ValueError, match="average"):
        SegmentConsensus("max")
