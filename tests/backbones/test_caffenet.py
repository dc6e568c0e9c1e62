"""CaffeNet: structure facts, Caffe semantics (LRN, groups, round-up pooling),
the module protocol and the stream / gated models built on it."""

import keras
import numpy as np
import pytest

from keras_gated_tsn.backbones import caffenet, get_backbone
from keras_gated_tsn.backbones.caffenet import CaffeNet
from keras_gated_tsn.layers import LocalResponseNormalization
from keras_gated_tsn.models import TSN, GatedTSN

from caffe_reference import _conv, _pool  # tests/backbones is on sys.path (pytest prepend mode)
from helpers import caffe_pool_size as _caffe_pool_size, count_weights as _count, run_model_saving_test
from randomize import randomize  # tests/backbones is on sys.path (pytest prepend mode)

#: A small input whose maps are even before pool2 and pool5 (25 → 12 → 6 → 3),
#: so Caffe's round-up pooling matters there.
SMALL = 107


@pytest.fixture(scope="module")
def full_model():
    return CaffeNet(include_top=True)


# --- structure ---------------------------------------------------------------------------------


def test_parameter_counts(full_model):
    assert full_model.count_params() == 60_965_224
    convs = [full_model.get_layer(name) for name in caffenet.CONVS]
    assert _count([w for layer in convs for w in layer.weights]) == 2_334_080


def test_caffe_layer_names_and_blob_shapes(full_model):
    names = [layer.name for layer in full_model.layers]
    for expected in (
        "conv1", "pool1", "norm1", "conv2", "pool2", "norm2", "conv3", "conv4", "conv5", "pool5",
        "flatten", "fc6", "drop6", "fc7", "drop7", "fc8",
    ):
        assert expected in names
    assert names[-1] == "fc8" and full_model.output.shape[1:] == (1000,)
    assert full_model.get_layer("fc6").kernel.shape == (9216, 4096)
    # Caffe blob shapes (out, in/group, kh, kw) in Keras layout (kh, kw, in/group, out).
    for name, shape in {
        "conv1": (11, 11, 3, 96), "conv2": (5, 5, 48, 256), "conv3": (3, 3, 256, 384),
        "conv4": (3, 3, 192, 384), "conv5": (3, 3, 192, 256),
    }.items():
        layer = full_model.get_layer(name)
        assert layer.kernel.shape == shape, name
        assert layer.groups == caffenet.CONVS[name][4]
        assert layer.activation is keras.activations.relu
    assert full_model.get_layer("drop6").rate == 0.5
    norm = full_model.get_layer("norm1")
    assert (norm.local_size, norm.alpha, norm.beta, norm.k) == (5, 1e-4, 0.75, 1.0)


def test_feature_layers_shapes_at_227(full_model):
    assert caffenet.DEFAULT_INPUT_SIZE == 227
    exact_side = {4: 55, 8: 27, 16: 13, 32: 6}  # conv1 has no padding; pools round up
    for name, (channels, stride) in caffenet.FEATURE_LAYERS.items():
        side = exact_side[stride]
        assert full_model.get_layer(name).output.shape[1:] == (side, side, channels), name
    assert full_model.get_layer("pool5").output.shape[1:] == (6, 6, 256)
    assert set(caffenet.STAGES) == set(caffenet.FEATURE_LAYERS)
    names = [layer.name for layer in full_model.layers]
    assert [n for n in names if n in caffenet.STAGES] == list(caffenet.STAGES)


@pytest.mark.parametrize("size", [39, 54, 61, 64, 107, 128, 227, 240])
def test_round_up_pooling_sizes(size):
    model = CaffeNet(include_top=False, input_shape=(size, size, 3))
    conv1 = (size - 11) // 4 + 1
    pool1 = _caffe_pool_size(conv1)
    pool2 = _caffe_pool_size(pool1)
    pool5 = _caffe_pool_size(pool2)
    for name, side in (("conv1", conv1), ("pool1", pool1), ("conv2", pool1), ("pool2", pool2),
                       ("conv5", pool2), ("pool5", pool5)):
        assert model.get_layer(name).output.shape[1:3] == (side, side), (size, name)


@pytest.mark.parametrize("shape", [(39, 39, 10), (64, 80, 10), (112, 112, 2), (None, None, 10)])
def test_any_size_and_channel_count_builds(shape):
    model = CaffeNet(include_top=False, input_shape=shape, pooling="avg")
    assert model.output.shape[1:] == (256,)
    assert model.get_layer("conv1").kernel.shape == (11, 11, shape[2], 96)


def test_top_pooling_and_validation():
    model = CaffeNet(include_top=True, classes=7, classifier_activation=None, input_shape=(67, 67, 10))
    assert model.output.shape[1:] == (7,)
    assert model.get_layer("fc6").kernel.shape == (256, 4096)  # pool5 is 1x1 at 67
    assert CaffeNet(include_top=False, input_shape=(67, 67, 3)).output.shape[1:] == (1, 1, 256)
    assert CaffeNet(include_top=False, input_shape=(67, 67, 3), pooling="max").output.shape[1:] == (256,)
    with pytest.raises(ValueError, match="'mean'"):
        CaffeNet(pooling="mean")
    with pytest.raises(ValueError, match="classes.*0"):
        CaffeNet(classes=0)
    with pytest.raises(ValueError, match="at least 39"):
        CaffeNet(include_top=False, input_shape=(38, 38, 3))
    with pytest.raises(ValueError, match="fixed height"):
        CaffeNet(include_top=True, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="no/such/file"):
        CaffeNet(weights="/no/such/file.weights.h5")
    with pytest.raises(ValueError, match="height, width, channels"):
        CaffeNet(input_shape=(227, 227))


def test_weights_file_round_trip(tmp_path):
    model = CaffeNet(include_top=False, input_shape=(64, 64, 10))
    randomize(model, np.random.default_rng(0))
    path = str(tmp_path / "caffenet.weights.h5")
    model.save_weights(path)
    loaded = CaffeNet(include_top=False, input_shape=(64, 64, 10), weights=path)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_input_tensor_joins_the_graph():
    clip = keras.Input(shape=(SMALL, SMALL, 3), name="pixels")
    x = keras.layers.Rescaling(2.0, name="upstream")(clip)
    model = CaffeNet(include_top=False, input_tensor=x, pooling="avg")
    assert model.inputs[0] is clip
    assert "upstream" in {layer.name for layer in model.layers}


def test_preprocess_input_is_the_caffe_one():
    assert caffenet.BGR_MEAN == (104.0, 117.0, 123.0)
    x = np.array([[[10, 20, 30]]], dtype=np.uint8)
    np.testing.assert_allclose(caffenet.preprocess_input(x, "rgb"), [[[30 - 104, 20 - 117, 10 - 123]]])


# --- LRN -----------------------------------------------------------------------------------------


def _numpy_lrn(x, local_size, alpha, beta, k):
    """Caffe's across-channel LRN, written out channel by channel."""
    channels = x.shape[-1]
    half = (local_size - 1) // 2
    y = np.empty_like(x, dtype=np.float64)
    for c in range(channels):
        lo, hi = max(0, c - half), min(channels, c + half + 1)
        scale = k + alpha / local_size * np.sum(x[..., lo:hi].astype(np.float64) ** 2, axis=-1)
        y[..., c] = x[..., c] / scale**beta
    return y


def test_lrn_hand_case():
    # local_size 3, alpha 3 (alpha / n = 1), beta 1, k 1 on channels [1, 2, 3]:
    # scales 1 + (1 + 4) = 6, 1 + (1 + 4 + 9) = 15, 1 + (4 + 9) = 14.
    layer = LocalResponseNormalization(local_size=3, alpha=3.0, beta=1.0, k=1.0)
    out = keras.ops.convert_to_numpy(layer(np.array([[[[1.0, 2.0, 3.0]]]], dtype="float32")))
    np.testing.assert_allclose(out[0, 0, 0], [1 / 6, 2 / 15, 3 / 14], rtol=1e-6)


@pytest.mark.parametrize("local_size,alpha,beta,k,channels", [
    (5, 1e-4, 0.75, 1.0, 96), (5, 1e-4, 0.75, 1.0, 3), (3, 0.5, 0.5, 2.0, 8), (1, 0.1, 1.0, 1.0, 4),
])
def test_lrn_matches_numpy(local_size, alpha, beta, k, channels):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 300, (2, 3, 4, channels)).astype("float32")  # ReLU-range activations
    layer = LocalResponseNormalization(local_size, alpha, beta, k)
    out = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(out, _numpy_lrn(x, local_size, alpha, beta, k), rtol=1e-5)


def test_lrn_config_and_validation():
    layer = LocalResponseNormalization(local_size=3, alpha=2e-4, beta=0.5, k=2.0, name="norm")
    config = layer.get_config()
    assert {key: config[key] for key in ("local_size", "alpha", "beta", "k")} == dict(
        local_size=3, alpha=2e-4, beta=0.5, k=2.0
    )
    clone = LocalResponseNormalization.from_config(config)
    assert (clone.local_size, clone.alpha, clone.beta, clone.k, clone.name) == (3, 2e-4, 0.5, 2.0, "norm")
    registered = keras.saving.get_registered_object("keras_gated_tsn>LocalResponseNormalization")
    assert registered is LocalResponseNormalization
    for bad in (
        dict(local_size=4), dict(local_size=0), dict(local_size=-1), dict(alpha=-1.0), dict(beta=-0.5),
        dict(k=0.0),
    ):
        with pytest.raises(ValueError, match=repr(next(iter(bad.values())))):
            LocalResponseNormalization(**bad)


def test_lrn_mixed_precision_does_not_overflow():
    layer = LocalResponseNormalization(dtype="mixed_float16")
    x = np.full((1, 1, 1, 8), 300.0, dtype="float32")  # 5 * 300^2 overflows float16
    out = keras.ops.convert_to_numpy(layer(x)).astype("float64")
    np.testing.assert_allclose(out, _numpy_lrn(x, 5, 1e-4, 0.75, 1.0), rtol=1e-3)


# --- numbers against Caffe's semantics -------------------------------------------------------------


def _caffenet_numpy(image, params):
    """CaffeNet's deploy net up to pool5 in NumPy, float64, from Caffe's semantics."""

    def conv(x, name, stride, pad, groups):
        kernel, bias = params[name]
        outs, ins = kernel.shape[3] // groups, x.shape[-1] // groups
        y = np.concatenate([
            _conv(x[..., g * ins : (g + 1) * ins], kernel[..., g * outs : (g + 1) * outs],
                  bias[g * outs : (g + 1) * outs], stride, pad)
            for g in range(groups)
        ], axis=-1)
        return np.maximum(y, 0)

    def pool(x):
        return _pool(x, "MAX", 3, 2, 0)

    def norm(x):
        return _numpy_lrn(x, 5, 1e-4, 0.75, 1.0)

    blobs = {}
    x = blobs["conv1"] = conv(image.astype(np.float64), "conv1", 4, 0, 1)
    x = blobs["norm1"] = norm(pool(x))
    x = blobs["norm2"] = norm(pool(conv(x, "conv2", 1, 2, 2)))
    x = conv(x, "conv3", 1, 1, 1)
    x = blobs["conv4"] = conv(x, "conv4", 1, 1, 2)
    blobs["pool5"] = pool(conv(x, "conv5", 1, 1, 2))
    return blobs


@pytest.mark.parametrize("channels", [3, 10])
def test_matches_caffe_semantics(channels):
    """Same weights → same numbers as Caffe's CaffeNet (grouped conv, LRN, round-up pooling)."""
    rng = np.random.default_rng(2)
    model = CaffeNet(include_top=False, input_shape=(SMALL, SMALL, channels))
    randomize(model, rng)
    params = {name: [w.astype(np.float64) for w in model.get_layer(name).get_weights()]
              for name in caffenet.CONVS}
    image = rng.uniform(-128, 128, (SMALL, SMALL, channels)).astype(np.float32)
    theirs = _caffenet_numpy(image, params)
    names = ("conv1", "norm1", "norm2", "conv4", "pool5")
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    ours = probe.predict(image[None], verbose=0)
    for name, mine in zip(names, ours):
        assert mine[0].shape == theirs[name].shape, name
        relative = np.abs(mine[0] - theirs[name]).max() / np.abs(theirs[name]).max()
        assert relative < 1e-4, (name, relative)
    assert theirs["pool5"].shape == (3, 3, 256)


# --- module protocol -------------------------------------------------------------------------------


def test_registered_spec():
    spec = get_backbone("caffenet")
    assert spec is caffenet.SPEC and spec.builder is CaffeNet and spec.display_name == "CaffeNet"
    assert spec.default_fusion_layer == "conv4" and spec.feature_layers is caffenet.FEATURE_LAYERS
    assert spec.stream_pooling == "flatten" and spec.min_input_size == 39
    assert spec.stream_dropout == {"rgb": 0.8, "flow": 0.8}
    with pytest.raises(ValueError, match="fc7"):
        caffenet.build_tail(keras.Input((13, 13, 384)), "fc7")


def test_build_tail_takes_doubled_channels():
    x = keras.Input(shape=(13, 13, 768))  # concatenation fusion of two conv4 maps
    out = caffenet.build_tail(x, "conv4", prefix="gating_")
    assert out.shape[1:] == (6, 6, 256)


# --- stream and gated models -----------------------------------------------------------------------

SIZE = 67  # pool5 1x1; the models' first layer preprocesses raw pixels
CLASSES = 4


def _clips(batch=2, segments=2, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "rgb": rng.integers(0, 256, (batch, segments, SIZE, SIZE, 3)).astype("uint8"),
        "flow": rng.integers(0, 256, (batch, segments, SIZE, SIZE, 10)).astype("uint8"),
    }


@pytest.fixture(scope="module")
def streams():
    rgb = TSN("caffenet", "rgb", num_classes=CLASSES, num_segments=2, input_size=SIZE)
    flow = TSN("caffenet", "flow", num_classes=CLASSES, num_segments=2, input_size=SIZE)
    flow.init_from(rgb)
    return rgb, flow


def test_streams(streams):
    rgb, flow = streams
    assert rgb.backbone == flow.backbone == "caffenet"
    assert rgb.get_layer("fc-action").kernel.shape == (256, CLASSES)  # flattened 1x1x256 pool5
    assert flow.get_layer("conv1").kernel.shape == (11, 11, 10, 96)
    clips = _clips()
    assert rgb.predict(clips["rgb"], verbose=0).shape == (2, CLASSES)
    assert flow.predict(clips["flow"], verbose=0).shape == (2, CLASSES)


def test_gated_save_load_round_trip(streams, tmp_path):
    gated = GatedTSN(*streams)
    names = {layer.name for layer in gated.layers}
    assert {"gating_conv4_conv_fusion", "gating_conv5", "gating_pool5", "gating_flatten"} <= names
    assert gated.get_layer("gating_conv4_conv_fusion").kernel.shape == (1, 1, 768, 384)
    np.testing.assert_array_equal(
        gated.get_layer("gating_conv5").kernel.numpy(), streams[0].get_layer("conv5").kernel.numpy()
    )
    loaded = run_model_saving_test(gated, _clips(seed=1), tmp_path)
    assert loaded.backbone == "caffenet" and loaded.fusion_layer == "conv4"


def test_gated_concat_fusion_builds(streams):
    gated = GatedTSN(*streams, feature_fusion="concat")
    assert gated.get_layer("gating_conv5").kernel.shape == (3, 3, 384, 256)  # 768 inputs, 2 groups
    out = gated.predict(_clips(seed=2), verbose=0)
    assert out["fused"].shape == (2, CLASSES)
