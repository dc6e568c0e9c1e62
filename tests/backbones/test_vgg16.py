"""VGG16: structure facts, compatibility with keras.applications' weight files,
the module protocol and the stream / gated models built on it."""

import keras
import numpy as np
import pytest

from keras_gated_tsn.backbones import get_backbone, vgg16
from keras_gated_tsn.backbones.vgg16 import VGG16
from keras_gated_tsn.models import TSN, GatedTSN
from randomize import randomize  # tests/backbones is on sys.path (pytest prepend mode)

SMALL = 64


def _structure(model):
    """(name, class, weight shapes) of every layer but the input."""
    return [
        (layer.name, type(layer).__name__, [tuple(w.shape) for w in layer.weights])
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]


@pytest.fixture(scope="module")
def backbone():
    return VGG16(include_top=False)


# --- structure ---------------------------------------------------------------------------------


def test_parameters_without_top(backbone):
    assert backbone.count_params() == 14_714_688


def test_feature_layers_shapes_at_224(backbone):
    assert vgg16.DEFAULT_INPUT_SIZE == 224
    for name, (channels, stride) in vgg16.FEATURE_LAYERS.items():
        assert backbone.get_layer(name).output.shape[1:] == (224 // stride, 224 // stride, channels), name
    assert backbone.output.shape[1:] == (7, 7, 512)
    assert list(vgg16.STAGES) == list(vgg16.FEATURE_LAYERS)
    assert len([s for s in vgg16.STAGES if "_conv" in s]) == 13


def test_layers_are_keras_applications_layers(backbone):
    reference = keras.applications.VGG16(weights=None, include_top=False)
    assert _structure(backbone) == _structure(reference)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.Conv2D):
            assert layer.activation is keras.activations.relu and layer.padding == "same"


@pytest.mark.parametrize("shape", [(32, 32, 10), (48, 80, 10), (64, 64, 2), (None, None, 10)])
def test_any_size_and_channel_count_builds(shape):
    model = VGG16(include_top=False, input_shape=shape, pooling="avg")
    assert model.output.shape[1:] == (512,)
    assert model.get_layer("block1_conv1").kernel.shape == (3, 3, shape[2], 64)


def test_top_pooling_and_validation():
    model = VGG16(include_top=True, classes=5, classifier_activation=None, input_shape=(32, 32, 10))
    assert model.output.shape[1:] == (5,)
    assert [layer.name for layer in model.layers[-4:]] == ["flatten", "fc1", "fc2", "predictions"]
    assert model.get_layer("fc1").kernel.shape == (512, 4096)
    assert VGG16(include_top=False, input_shape=(SMALL, SMALL, 3), pooling="max").output.shape[1:] == (512,)
    with pytest.raises(ValueError, match="'mean'"):
        VGG16(pooling="mean")
    with pytest.raises(ValueError, match="classes.*-1"):
        VGG16(classes=-1)
    with pytest.raises(ValueError, match="at least 32"):
        VGG16(include_top=False, input_shape=(31, 31, 3))
    with pytest.raises(ValueError, match="fixed height"):
        VGG16(include_top=True, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="no/such/file"):
        VGG16(weights="/no/such/file.weights.h5")


def test_input_tensor_joins_the_graph():
    clip = keras.Input(shape=(SMALL, SMALL, 3), name="pixels")
    x = keras.layers.Rescaling(2.0, name="upstream")(clip)
    model = VGG16(include_top=False, input_tensor=x)
    assert model.inputs[0] is clip
    assert "upstream" in {layer.name for layer in model.layers}


# --- weight files of keras.applications ----------------------------------------------------------


def _assert_same_model(ours, reference, x):
    assert len(ours.weights) == len(reference.weights)
    for mine, theirs in zip(ours.weights, reference.weights):
        assert mine.path == theirs.path  # same layer names
        assert np.array_equal(keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs)), mine.path
    np.testing.assert_array_equal(ours.predict(x, verbose=0), reference.predict(x, verbose=0))


def test_loads_keras_applications_file_without_top(tmp_path):
    rng = np.random.default_rng(0)
    reference = keras.applications.VGG16(weights=None, include_top=False, input_shape=(SMALL, SMALL, 3))
    randomize(reference, rng)
    path = str(tmp_path / "vgg16_notop.weights.h5")
    reference.save_weights(path)
    ours = VGG16(include_top=False, input_shape=(SMALL, SMALL, 3), weights=path)
    _assert_same_model(ours, reference, rng.uniform(-128, 128, (2, SMALL, SMALL, 3)).astype("float32"))


def test_loads_keras_applications_file_with_top_at_224(tmp_path):
    rng = np.random.default_rng(1)
    reference = keras.applications.VGG16(weights=None, include_top=True)
    for layer in reference.layers:  # non-zero biases, so their order is checked too
        if layer.weights:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype("float32"))
    path = str(tmp_path / "vgg16.weights.h5")
    reference.save_weights(path)
    ours = VGG16(include_top=True, weights=path)
    assert _structure(ours) == _structure(reference)
    assert ours.count_params() == 138_357_544
    _assert_same_model(ours, reference, rng.uniform(-128, 128, (1, 224, 224, 3)).astype("float32"))


def test_preprocess_input_is_keras_caffe_mode():
    assert vgg16.BGR_MEAN == (103.939, 116.779, 123.68)
    x = np.random.default_rng(2).integers(0, 256, (2, 5, 5, 3)).astype("uint8")
    expected = keras.applications.vgg16.preprocess_input(x.astype("float32"))
    ours = vgg16.preprocess_input(x, "rgb")
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(vgg16.preprocess_input(np.full((1, 10), 128, np.uint8), "flow"), 0)
    with pytest.raises(ValueError, match="depth"):
        vgg16.preprocess_input(x, "depth")
    with pytest.raises(ValueError, match="3 channels"):
        vgg16.preprocess_input(np.zeros((1, 2, 2, 10), np.uint8), "rgb")


# --- module protocol -------------------------------------------------------------------------------


def test_registered_spec():
    spec = get_backbone("vgg16")
    assert spec is vgg16.SPEC and spec.builder is VGG16 and spec.bgr_mean == (103.939, 116.779, 123.68)
    assert spec.default_fusion_layer == "block5_conv2"
    assert spec.stream_pooling == "flatten" and spec.min_input_size == 32
    with pytest.raises(ValueError, match="fc1"):
        vgg16.build_tail(keras.Input((14, 14, 512)), "fc1")


# --- stream and gated models -----------------------------------------------------------------------

CLASSES = 3


@pytest.fixture(scope="module")
def streams():
    rgb = TSN("vgg16", "rgb", num_classes=CLASSES, num_segments=1, input_size=SMALL)
    flow = TSN("vgg16", "flow", num_classes=CLASSES, num_segments=1, input_size=SMALL)
    flow.init_from(rgb)
    return rgb, flow


def test_streams_and_gated_model(streams):
    rgb, flow = streams
    assert rgb.backbone == flow.backbone == "vgg16"
    assert rgb.get_layer("fc-action").kernel.shape == (2 * 2 * 512, CLASSES)  # flattened block5_pool
    assert flow.get_layer("block1_conv1").kernel.shape == (3, 3, 10, 64)
    gated = GatedTSN(rgb, flow)
    names = {layer.name for layer in gated.layers}
    assert {"gating_block5_conv2_conv_fusion", "gating_block5_conv3", "gating_block5_pool"} <= names
    np.testing.assert_array_equal(
        gated.get_layer("gating_block5_conv3").kernel.numpy(), rgb.get_layer("block5_conv3").kernel.numpy()
    )
    rng = np.random.default_rng(4)
    clips = {
        "rgb": rng.integers(0, 256, (1, 2, SMALL, SMALL, 3)).astype("uint8"),
        "flow": rng.integers(0, 256, (1, 2, SMALL, SMALL, 10)).astype("uint8"),
    }
    out = gated.predict(clips, verbose=0)
    assert out["fused"].shape == (1, CLASSES) and out["fusion_weights"].shape == (1, 2)
    np.testing.assert_allclose(out["rgb"], rgb.predict(clips["rgb"], verbose=0), rtol=1e-4, atol=1e-6)
