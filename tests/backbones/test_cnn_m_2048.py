"""CNN-M-2048 (two-stream paper Fig. 1): structure facts, the no-norm2 temporal
variant, Caffe semantics, the module protocol and the TSN streams built on it."""

import keras
import numpy as np
import pytest

from keras_gated_tsn.backbones import CNNM2048, CNNM2048NoNorm2, backbone_names, cnn_m_2048, get_backbone
from keras_gated_tsn.models import TSN, GatedTSN

from caffe_reference import _conv, _pool  # tests/backbones is on sys.path (pytest prepend mode)
from helpers import caffe_layers_of, caffe_pool_size as _caffe_pool_size, count_weights as _count, random_clips
from helpers import run_model_saving_test
from randomize import randomize

NAMES = ("cnn_m_2048", "cnn_m_2048_no_norm2")


@pytest.fixture(scope="module")
def full_model():
    return CNNM2048(include_top=True)


# --- structure ---------------------------------------------------------------------------------


def test_parameter_count_by_hand(full_model):
    # (kernel weights + biases) per layer, 224x224x3 input, 1000 classes:
    conv1 = 7 * 7 * 3 * 96 + 96  # 14,208
    conv2 = 5 * 5 * 96 * 256 + 256  # 614,656
    conv3 = 3 * 3 * 256 * 512 + 512  # 1,180,160
    conv4 = conv5 = 3 * 3 * 512 * 512 + 512  # 2,359,808 each
    fc6 = (6 * 6 * 512) * 4096 + 4096  # pool5 is 6x6x512 = 18,432 inputs: 75,501,568
    fc7 = 4096 * 2048 + 2048  # 8,390,656
    fc8 = 2048 * 1000 + 1000  # 2,049,000
    convs = conv1 + conv2 + conv3 + conv4 + conv5
    assert convs == 6_528_640
    assert convs + fc6 + fc7 + fc8 == 92_469_864 == full_model.count_params()
    layers = [full_model.get_layer(name) for name in cnn_m_2048.CONVS]
    assert _count([w for layer in layers for w in layer.weights]) == convs
    # LRN has no weights: the temporal variant has the same count.
    assert CNNM2048NoNorm2(include_top=True).count_params() == 92_469_864


def test_layer_names_and_kernel_shapes(full_model):
    names = [layer.name for layer in full_model.layers]
    expected = [
        "input", "conv1", "norm1", "pool1_pad", "pool1", "conv2_pad", "conv2", "norm2", "pool2",
        "conv3", "conv4", "conv5", "pool5_pad", "pool5", "flatten", "fc6", "drop6", "fc7", "drop7", "fc8",
    ]
    assert names == expected
    assert full_model.output.shape[1:] == (1000,)
    for name, shape in {
        "conv1": (7, 7, 3, 96), "conv2": (5, 5, 96, 256), "conv3": (3, 3, 256, 512),
        "conv4": (3, 3, 512, 512), "conv5": (3, 3, 512, 512),
    }.items():
        layer = full_model.get_layer(name)
        assert layer.kernel.shape == shape, name
        assert layer.strides == (cnn_m_2048.CONVS[name][2],) * 2, name
        assert layer.activation is keras.activations.relu
    assert full_model.get_layer("conv1").padding == "valid"
    assert full_model.get_layer("conv2_pad").padding == ((1, 1), (1, 1))  # Caffe pad 1, symmetric
    assert full_model.get_layer("conv2").padding == "valid"
    assert full_model.get_layer("conv3").padding == "same"
    assert full_model.get_layer("fc6").kernel.shape == (18432, 4096)
    assert full_model.get_layer("fc7").kernel.shape == (4096, 2048)
    assert full_model.get_layer("drop6").rate == full_model.get_layer("drop7").rate == 0.5
    for name in ("norm1", "norm2"):  # Krizhevsky's k=2, n=5, alpha=1e-4, beta=0.75 in Caffe's alpha / n form
        norm = full_model.get_layer(name)
        assert (norm.local_size, norm.alpha, norm.beta, norm.k) == (5, 5e-4, 0.75, 2.0)


@pytest.mark.parametrize("builder,feature_layers,stages", [
    (CNNM2048, cnn_m_2048.FEATURE_LAYERS, cnn_m_2048.STAGES),
    (CNNM2048NoNorm2, cnn_m_2048.FEATURE_LAYERS_NO_NORM2, cnn_m_2048.STAGES_NO_NORM2),
])
def test_feature_layers_shapes_at_224(builder, feature_layers, stages):
    model = builder(include_top=False)
    assert model.output.shape[1:] == (6, 6, 512)
    exact_side = {2: 109, 4: 54, 8: 26, 16: 13, 32: 6}  # conv1 unpadded, conv2 pad 1 /2, pools round up
    for name, (channels, stride) in feature_layers.items():
        side = exact_side[stride]
        assert model.get_layer(name).output.shape[1:] == (side, side, channels), name
    assert set(stages) == set(feature_layers)
    names = [layer.name for layer in model.layers]
    assert [n for n in names if n in stages] == list(stages)


def test_no_norm2_variant():
    model = CNNM2048NoNorm2(include_top=False, input_shape=(64, 64, 3))
    names = {layer.name for layer in model.layers}
    assert "norm2" not in names and "norm1" in names
    assert model.get_layer("pool2").input is model.get_layer("conv2").output
    assert "norm2" not in cnn_m_2048.FEATURE_LAYERS_NO_NORM2 and "norm2" not in cnn_m_2048.STAGES_NO_NORM2
    assert model.name == "cnn_m_2048_no_norm2"
    same = CNNM2048(include_top=False, input_shape=(64, 64, 3), conv2_norm=False)
    assert [layer.name for layer in same.layers] == [layer.name for layer in model.layers]


@pytest.mark.parametrize("size", [41, 56, 64, 75, 107, 224, 227])
def test_round_up_pooling_sizes(size):
    model = CNNM2048(include_top=False, input_shape=(size, size, 3))
    conv1 = (size - 7) // 2 + 1
    pool1 = _caffe_pool_size(conv1)
    conv2 = (pool1 + 2 - 5) // 2 + 1
    pool2 = _caffe_pool_size(conv2)
    pool5 = _caffe_pool_size(pool2)
    for name, side in (("conv1", conv1), ("norm1", conv1), ("pool1", pool1), ("conv2", conv2),
                       ("pool2", pool2), ("conv5", pool2), ("pool5", pool5)):
        assert model.get_layer(name).output.shape[1:3] == (side, side), (size, name)


@pytest.mark.parametrize("shape", [(41, 41, 10), (64, 80, 20), (112, 112, 2), (None, None, 20)])
@pytest.mark.parametrize("builder", [CNNM2048, CNNM2048NoNorm2])
def test_flow_and_any_size_build(builder, shape):
    model = builder(include_top=False, input_shape=shape, pooling="avg")
    assert model.output.shape[1:] == (512,)
    assert model.get_layer("conv1").kernel.shape == (7, 7, shape[2], 96)


def test_top_pooling_and_validation():
    model = CNNM2048(include_top=True, classes=7, classifier_activation=None, input_shape=(64, 64, 20))
    assert model.output.shape[1:] == (7,)
    assert model.get_layer("fc6").kernel.shape == (512, 4096)  # pool5 is 1x1 at 64
    assert CNNM2048(include_top=False, input_shape=(64, 64, 3)).output.shape[1:] == (1, 1, 512)
    assert CNNM2048(include_top=False, input_shape=(64, 64, 3), pooling="max").output.shape[1:] == (512,)
    with pytest.raises(ValueError, match="'mean'"):
        CNNM2048(pooling="mean")
    with pytest.raises(ValueError, match="classes.*0"):
        CNNM2048NoNorm2(classes=0)
    with pytest.raises(ValueError, match=r"at least 41x41, got \(40, 40, 3\)"):
        CNNM2048(include_top=False, input_shape=(40, 40, 3))
    with pytest.raises(ValueError, match="fixed height"):
        CNNM2048(include_top=True, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="height, width, channels"):
        CNNM2048(input_shape=(224, 224))
    with pytest.raises(ValueError, match="conv2_norm.*'yes'"):
        CNNM2048(conv2_norm="yes")
    with pytest.raises(ValueError, match="weights.*3"):
        CNNM2048(weights=3)
    with pytest.raises(ValueError, match="no/such/file"):
        CNNM2048(include_top=False, input_shape=(64, 64, 3), weights="/no/such/file.weights.h5")


@pytest.fixture(scope="module")
def converted_imagenet(tmp_path_factory):
    """What the registered "imagenet" entry tells the user to do, on a stand-in for
    VGG_CNN_M_2048.caffemodel: a legacy (V1) Caffe file with the CNN-M layer names,
    converted with ``convert_weights(..., arch="cnn_m_2048")``. Returns (folder, source model)."""
    from keras_gated_tsn.weights.caffe import write_caffemodel
    from keras_gated_tsn.weights.convert import convert_weights

    folder = tmp_path_factory.mktemp("weights")
    source = CNNM2048(include_top=False, input_shape=(64, 64, 3))
    randomize(source, np.random.default_rng(0))
    caffemodel = folder / "VGG_CNN_M_2048.caffemodel"
    write_caffemodel(str(caffemodel), caffe_layers_of(source), legacy=True)
    convert_weights(str(caffemodel), str(folder / "cnn_m_2048_imagenet.weights.h5"), "cnn_m_2048")
    return folder, source


@pytest.mark.parametrize("builder", [CNNM2048, CNNM2048NoNorm2])
def test_imagenet_weights_are_a_converted_file(builder, converted_imagenet, tmp_path, monkeypatch):
    monkeypatch.setenv("KGT_WEIGHTS_DIR", str(tmp_path))  # empty: a clear error, saying what to do
    with pytest.raises(FileNotFoundError) as error:
        builder(include_top=False, input_shape=(64, 64, 3), weights="imagenet")
    for part in (str(tmp_path / "cnn_m_2048_imagenet.weights.h5"), "VGG_CNN_M_2048.caffemodel",
                 "convert-weights", "--arch cnn_m_2048"):
        assert part in str(error.value)
    # Once converted, the file fills both variants (LRN has no weights), RGB and flow.
    folder, source = converted_imagenet
    monkeypatch.setenv("KGT_WEIGHTS_DIR", str(folder))
    rgb = builder(include_top=False, input_shape=(64, 64, 3), weights="imagenet")
    for a, b in zip(source.get_weights(), rgb.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    flow = builder(include_top=False, input_shape=(64, 64, 10), weights="imagenet")
    kernel = source.get_layer("conv1").kernel.numpy()  # TSN cross-modality: colour mean, replicated
    np.testing.assert_allclose(
        flow.get_layer("conv1").kernel.numpy(), np.repeat(kernel.mean(axis=2, keepdims=True), 10, axis=2),
        rtol=1e-5, atol=1e-7,
    )
    np.testing.assert_allclose(
        flow.get_layer("conv5").kernel.numpy(), source.get_layer("conv5").kernel.numpy(), rtol=1e-6
    )


def test_preprocess_input_is_the_caffe_one():
    assert cnn_m_2048.BGR_MEAN == (104.0, 117.0, 123.0)
    x = np.array([[[10, 20, 30]]], dtype=np.uint8)
    np.testing.assert_allclose(cnn_m_2048.preprocess_input(x, "rgb"), [[[30 - 104, 20 - 117, 10 - 123]]])
    assert get_backbone("cnn_m_2048_no_norm2").bgr_mean == cnn_m_2048.BGR_MEAN


# --- numbers against Caffe's semantics -------------------------------------------------------------


def _numpy_lrn(x, local_size=5, alpha=5e-4, beta=0.75, k=2.0):
    """Caffe's across-channel LRN (alpha / local_size), written out channel by channel."""
    half = (local_size - 1) // 2
    squares = np.pad(x.astype(np.float64) ** 2, ((0, 0), (0, 0), (half, half)))
    window = sum(squares[..., i : i + x.shape[-1]] for i in range(local_size))
    return x / (k + alpha / local_size * window) ** beta


def _cnn_m_numpy(image, params, conv2_norm):
    """CNN-M-2048 up to pool5 in NumPy, float64, from the Caffe definition."""

    def conv(x, name):
        _, _, stride, pad = cnn_m_2048.CONVS[name]
        kernel, bias = params[name]
        return np.maximum(_conv(x, kernel, bias, stride, pad), 0)

    def pool(x):
        return _pool(x, "MAX", 3, 2, 0)

    blobs = {}
    x = blobs["conv1"] = conv(image.astype(np.float64), "conv1")
    x = blobs["pool1"] = pool(_numpy_lrn(x))
    x = blobs["conv2"] = conv(x, "conv2")
    x = blobs["pool2"] = pool(_numpy_lrn(x) if conv2_norm else x)
    x = conv(conv(x, "conv3"), "conv4")
    x = blobs["conv5"] = conv(x, "conv5")
    blobs["pool5"] = pool(x)
    return blobs


@pytest.mark.parametrize("builder,channels,conv2_norm", [(CNNM2048, 3, True), (CNNM2048NoNorm2, 10, False)])
def test_matches_caffe_semantics(builder, channels, conv2_norm):
    """Same weights → same numbers as Caffe's CNN-M (pad 1 at stride 2, LRN, round-up pooling).
    At 75: conv1 35, pool1 17, conv2 8, pool2 4, pool5 2 (even maps before pool2 and pool5)."""
    size = 75
    rng = np.random.default_rng(2)
    model = builder(include_top=False, input_shape=(size, size, channels))
    randomize(model, rng)
    params = {name: [w.astype(np.float64) for w in model.get_layer(name).get_weights()]
              for name in cnn_m_2048.CONVS}
    image = rng.uniform(-128, 128, (size, size, channels)).astype(np.float32)
    theirs = _cnn_m_numpy(image, params, conv2_norm)
    names = tuple(theirs)
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    ours = probe.predict(image[None], verbose=0)
    for name, mine in zip(names, ours):
        assert mine[0].shape == theirs[name].shape, name
        relative = np.abs(mine[0] - theirs[name]).max() / np.abs(theirs[name]).max()
        assert relative < 1e-4, (name, relative)
    assert theirs["conv2"].shape[:2] == (8, 8) and theirs["pool5"].shape == (2, 2, 512)


# --- module protocol -------------------------------------------------------------------------------


def test_registered_specs():
    assert {"cnn_m_2048", "cnn_m_2048_no_norm2"} <= set(backbone_names())
    spec, temporal = get_backbone("cnn_m_2048"), get_backbone("cnn_m_2048_no_norm2")
    assert spec is cnn_m_2048.SPEC and spec.builder is CNNM2048 and spec.display_name == "CNN-M-2048"
    assert temporal is cnn_m_2048.SPEC_NO_NORM2 and temporal.builder is CNNM2048NoNorm2
    assert spec.feature_layers is cnn_m_2048.FEATURE_LAYERS
    assert temporal.feature_layers is cnn_m_2048.FEATURE_LAYERS_NO_NORM2
    for s in (spec, temporal):
        assert s.default_fusion_layer == "conv5" and s.stream_pooling == "flatten"
        assert s.min_input_size == 41 and s.default_input_size == 224
        assert s.stream_dropout == {"rgb": 0.8, "flow": 0.8}
        assert s.pretrained["imagenet"].file_name == "cnn_m_2048_imagenet.weights.h5"
    with pytest.raises(ValueError, match="'fc7'"):
        cnn_m_2048.build_tail(keras.Input((13, 13, 512)), "fc7")
    with pytest.raises(ValueError, match="'norm2'"):
        cnn_m_2048.build_tail_no_norm2(keras.Input((26, 26, 256)), "norm2")


def test_build_tail():
    x = keras.Input(shape=(13, 13, 1024))  # concatenation fusion of two conv5 maps
    out = cnn_m_2048.build_tail(x, "conv5", prefix="gating_")
    assert out.shape[1:] == (6, 6, 1024)
    spatial = cnn_m_2048.build_tail(keras.Input(shape=(26, 26, 256)), "conv2", prefix="gating_")
    spatial = keras.Model(keras.utils.get_source_inputs(spatial), spatial)
    assert spatial.output.shape[1:] == (6, 6, 512)
    assert "gating_norm2" in {layer.name for layer in spatial.layers}
    out = cnn_m_2048.build_tail_no_norm2(keras.Input(shape=(26, 26, 256)), "conv2", prefix="gating_")
    temporal = keras.Model(keras.utils.get_source_inputs(out), out)
    assert "gating_norm2" not in {layer.name for layer in temporal.layers}
    assert {"gating_pool2", "gating_conv3", "gating_pool5"} <= {layer.name for layer in temporal.layers}


# --- stream and gated models -----------------------------------------------------------------------

SIZE = 64  # pool5 1x1; the models' first layer preprocesses raw pixels
CLASSES = 4


@pytest.mark.parametrize("backbone", NAMES)
@pytest.mark.parametrize("modality", ["rgb", "flow"])
def test_tsn_stream_predicts_and_round_trips(backbone, modality, tmp_path):
    model = TSN(backbone, modality, num_classes=CLASSES, num_segments=3, input_size=SIZE)
    assert model.backbone == backbone and model.dropout == 0.8
    channels = 3 if modality == "rgb" else 10
    assert model.get_layer("conv1").kernel.shape == (7, 7, channels, 96)
    assert model.get_layer("fc-action").kernel.shape == (512, CLASSES)  # flattened 1x1x512 pool5
    assert ("norm2" in {layer.name for layer in model.layers}) == (backbone == "cnn_m_2048")
    clips = random_clips(SIZE, batch=2, segments=3)[modality]
    assert model.predict(clips, verbose=0).shape == (2, CLASSES)
    loaded = run_model_saving_test(model, clips, tmp_path, atol=1e-5)
    assert loaded.backbone == backbone and loaded.modality == modality and loaded.num_segments == 3


def test_gated_tsn_fuses_at_conv5():
    rgb = TSN("cnn_m_2048", "rgb", num_classes=CLASSES, num_segments=2, input_size=SIZE)
    flow = TSN("cnn_m_2048", "flow", num_classes=CLASSES, num_segments=2, input_size=SIZE)
    gated = GatedTSN(rgb, flow)
    assert gated.fusion_layer == "conv5"
    names = {layer.name for layer in gated.layers}
    assert {"gating_conv5_conv_fusion", "gating_pool5"} <= names
    assert gated.get_layer("gating_conv5_conv_fusion").kernel.shape == (1, 1, 1024, 512)
    out = gated.predict(random_clips(SIZE, batch=2, segments=2), verbose=0)
    assert out["fused"].shape == (2, CLASSES)
