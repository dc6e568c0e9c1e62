"""Backbone weights: registered names, files, cross-modality loading, clear errors."""

import numpy as np
import pytest

from keras_gated_tsn.backbones import BNInception, get_backbone, preprocess_input
from keras_gated_tsn.models import TSN

SHAPE = (64, 64, 3)


@pytest.fixture()
def weights_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KGT_WEIGHTS_DIR", str(tmp_path))
    return tmp_path


def test_missing_registered_file_says_what_to_do(weights_dir):
    with pytest.raises(FileNotFoundError) as error:
        BNInception(include_top=False, input_shape=SHAPE, weights="imagenet")
    message = str(error.value)
    assert "convert-weights" in message and str(weights_dir / "bn_inception_imagenet.weights.h5") in message


def test_unknown_name(weights_dir):
    with pytest.raises(ValueError, match="'imagenet'"):
        BNInception(include_top=False, input_shape=SHAPE, weights="kinetics")


def test_registered_file_loads_and_fills_a_flow_backbone(weights_dir):
    rgb = BNInception(include_top=False, input_shape=SHAPE)
    rgb.save_weights(str(weights_dir / "bn_inception_imagenet.weights.h5"))
    loaded = BNInception(include_top=False, input_shape=SHAPE, weights="imagenet")
    for a, b in zip(rgb.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    flow = BNInception(include_top=False, input_shape=SHAPE[:2] + (10,), weights="imagenet")
    kernel = rgb.get_layer("conv1_7x7_s2").kernel.numpy()
    np.testing.assert_allclose(
        flow.get_layer("conv1_7x7_s2").kernel.numpy(), np.repeat(kernel.mean(2, keepdims=True), 10, 2), rtol=1e-6
    )
    np.testing.assert_array_equal(
        flow.get_layer("inception_5b_1x1").kernel.numpy(), rgb.get_layer("inception_5b_1x1").kernel.numpy()
    )


def test_stream_from_backbone_file(tmp_path):
    rgb = BNInception(include_top=False, input_shape=SHAPE)
    path = str(tmp_path / "rgb.weights.h5")
    rgb.save_weights(path)
    stream = TSN("bn_inception", "flow", num_classes=4, input_size=SHAPE[0], backbone_weights=path)
    np.testing.assert_array_equal(
        stream.get_layer("inception_4e_3x3").kernel.numpy(), rgb.get_layer("inception_4e_3x3").kernel.numpy()
    )
    assert stream.get_layer("conv1_7x7_s2").kernel.shape == (7, 7, 10, 64)


def test_file_that_does_not_fit_names_file_layer_and_shapes(tmp_path):
    top = BNInception(include_top=True, classes=5, input_shape=SHAPE)
    path = str(tmp_path / "top5.weights.h5")
    top.save_weights(path)
    with pytest.raises(ValueError) as error:
        BNInception(include_top=True, classes=7, input_shape=SHAPE, weights=path)
    message = str(error.value)
    assert path in message and "predictions" in message and "(1024, 7)" in message


def test_vgg16_imagenet_file_in_keras_applications_format(weights_dir):
    """The registered VGG16 file is keras.applications' legacy .h5: it loads unchanged,
    and into a flow VGG16 through the cross-modality first conv."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from keras_gated_tsn.backbones import VGG16

    reference = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    with h5py.File(weights_dir / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, reference)
    rgb = VGG16(include_top=False, weights="imagenet", input_shape=(32, 32, 3))
    for a, b in zip(reference.get_weights(), rgb.get_weights()):
        np.testing.assert_array_equal(a, b)
    flow = VGG16(include_top=False, weights="imagenet", input_shape=(32, 32, 10))
    kernel = reference.get_layer("block1_conv1").kernel.numpy()
    np.testing.assert_allclose(
        flow.get_layer("block1_conv1").kernel.numpy(), np.repeat(kernel.mean(2, keepdims=True), 10, 2), rtol=1e-6
    )


def test_vgg16_imagenet_without_network_says_which_file_and_where(weights_dir, monkeypatch):
    import keras

    from keras_gated_tsn.backbones import VGG16

    calls = {}

    def offline_get_file(fname, origin, **kwargs):
        calls.update(fname=fname, origin=origin, **kwargs)
        raise OSError("network unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline_get_file)
    with pytest.raises(FileNotFoundError) as error:
        VGG16(include_top=False, weights="imagenet", input_shape=(32, 32, 3))
    message = str(error.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message and str(weights_dir) in message
    assert calls["file_hash"] == "6d6bbae143d832006294945121d1f1fc"  # Keras' published md5
    assert calls["origin"].endswith("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")


def test_preprocess_input_needs_the_backbone():
    """The backbones subtract different means: the package-level helper will not guess."""
    x = np.array([[[10, 20, 30]]], np.uint8)  # RGB; the backbones take BGR
    np.testing.assert_allclose(preprocess_input(x, "bn_inception"), [[[30 - 104, 20 - 117, 10 - 123]]])
    np.testing.assert_allclose(
        preprocess_input(x, "vgg16"), [[[30 - 103.939, 20 - 116.779, 10 - 123.68]]], rtol=1e-6
    )
    with pytest.raises(TypeError):
        preprocess_input(x)  # noqa
    with pytest.raises(ValueError, match="unknown backbone 'resnet'"):
        preprocess_input(x, "resnet")


@pytest.mark.parametrize("name", ["bn_inception", "caffenet", "vgg16"])
def test_feature_layers_match_the_built_network(name):
    """Every registered feature layer exists with the channels it declares and
    a side of about input / stride (timm's feature info, checked)."""
    spec = get_backbone(name)
    size = 256
    model = spec.builder(include_top=False, input_shape=(size, size, 3))
    for layer, (channels, stride) in spec.feature_layers.items():
        shape = model.get_layer(layer).output.shape
        assert shape[-1] == channels, layer
        assert abs(shape[1] - size / stride) <= size / stride / 2 + 2, (layer, shape, stride)
