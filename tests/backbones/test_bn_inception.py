"""BN-Inception: structure facts and numbers against Caffe's semantics."""

import numpy as np
import pytest

from keras_gated_tsn.backbones import BNInception, bn_inception
from keras_gated_tsn.backbones.bn_inception import preprocess_input

from caffe_reference import caffe_forward  # noqa: E402
from randomize import randomize  # tests/backbones is on sys.path (pytest prepend mode)
from helpers import count_weights as _count


@pytest.fixture(scope="module")
def rgb_backbone():
    return BNInception(include_top=False, input_shape=(224, 224, 3))


def test_trainable_parameters_rgb_without_classifier(rgb_backbone):
    assert _count(rgb_backbone.trainable_weights) == 10_270_240


def test_feature_layers_shapes_at_224(rgb_backbone):
    for name, (channels, stride) in bn_inception.FEATURE_LAYERS.items():
        shape = rgb_backbone.get_layer(name).output.shape
        assert shape[1:] == (224 // stride, 224 // stride, channels), name
    assert rgb_backbone.get_layer("inception_4e_output").output.shape[1:] == (7, 7, 1056)


def test_caffe_layer_names(rgb_backbone):
    names = {layer.name for layer in rgb_backbone.layers}
    for expected in (
        "conv1_7x7_s2", "conv1_7x7_s2_bn", "conv1_relu_7x7", "pool1_3x3_s2",
        "conv2_3x3_reduce_bn", "inception_3a_1x1", "inception_3a_pool_proj_bn",
        "inception_4e_double_3x3_2", "inception_4e_double_3x3_2_bn", "inception_5b_output",
    ):
        assert expected in names


@pytest.mark.parametrize("size,channels", [(96, 10), (97, 3), (112, 10), (129, 2), (320, 3)])
def test_any_size_and_channel_count_builds(size, channels):
    model = BNInception(include_top=False, input_shape=(size, size, channels), pooling="avg")
    assert model.output.shape[1:] == (1024,)


def test_top_and_validation():
    model = BNInception(include_top=True, classes=7, input_shape=(96, 96, 3))
    assert model.output.shape[1:] == (7,)
    with pytest.raises(ValueError, match="pooling"):
        BNInception(pooling="mean")
    with pytest.raises(ValueError, match="at least 32"):
        BNInception(input_shape=(16, 16, 3))
    with pytest.raises(ValueError, match="weights"):
        BNInception(weights="/no/such/file.weights.h5")


def test_weights_file_round_trip(tmp_path):
    model = BNInception(include_top=False, input_shape=(64, 64, 10))
    path = str(tmp_path / "bn.weights.h5")
    model.save_weights(path)
    loaded = BNInception(include_top=False, input_shape=(64, 64, 10), weights=path)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_preprocess_input():
    x = np.array([[[10, 20, 30]]], dtype=np.uint8)
    np.testing.assert_allclose(preprocess_input(x, "rgb"), [[[30 - 104, 20 - 117, 10 - 123]]])
    np.testing.assert_allclose(preprocess_input(np.full((1, 10), 128, np.uint8), "flow"), 0)
    with pytest.raises(ValueError, match="modality"):
        preprocess_input(x, "depth")


@pytest.mark.parametrize("modality,size", [("rgb", 224), ("flow", 160)])
def test_matches_caffe_semantics(shared_reference, modality, size):
    """Same weights → same numbers as the authors' deploy prototxt (rel. err. < 1e-3)."""
    channels = 3 if modality == "rgb" else 10
    rng = np.random.default_rng(0)
    model = BNInception(include_top=False, input_shape=(size, size, channels), pooling="avg")
    randomize(model, rng)
    params = {}
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        caffe_name = layer.name.replace("conv1_7x7_s2", "conv1/7x7_s2")
        # Caffe names: the first underscore after the block prefix is a slash.
        for prefix in ("conv2_", "inception_3a_", "inception_3b_", "inception_3c_",
                       "inception_4a_", "inception_4b_", "inception_4c_", "inception_4d_",
                       "inception_4e_", "inception_5a_", "inception_5b_"):
            if layer.name.startswith(prefix):
                caffe_name = prefix[:-1] + "/" + layer.name[len(prefix):]
        params[caffe_name] = [w.astype(np.float64) for w in weights]
    raw = rng.uniform(0, 255, (size, size, channels)).astype(np.float32)
    image = preprocess_input(raw, modality)
    prototxt = (shared_reference / "prototxt" / f"tsn_bn_inception_{modality}_deploy.prototxt").read_text()
    blobs = caffe_forward(prototxt, image, params, stop_at="inception_5b/output")

    import keras

    probe = keras.Model(
        model.input,
        [model.get_layer("inception_4e_output").output, model.get_layer("inception_5b_output").output],
    )
    ours_4e, ours_5b = probe.predict(image[None], verbose=0)
    for ours, theirs in ((ours_4e[0], blobs["inception_4e/output"]), (ours_5b[0], blobs["inception_5b/output"])):
        assert ours.shape == theirs.shape
        relative = np.abs(ours - theirs).max() / np.abs(theirs).max()
        assert relative < 1e-3, relative
