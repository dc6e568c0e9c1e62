"""Caffe .caffemodel → Keras: files written here from random weights, converted,
and the Keras model checked against Caffe's semantics (the NumPy forward pass
of tests/backbones/caffe_reference.py, driven by the authors' prototxt)."""

import os
import pathlib
import sys

import keras
import numpy as np
import pytest

from keras_gated_tsn.backbones import BNInception
from keras_gated_tsn.backbones.bn_inception import preprocess_input
from keras_gated_tsn.weights import caffe_pb, convert_caffe, convert_weights, read_caffemodel
from keras_gated_tsn.weights.caffe import CaffeLayer, write_caffemodel
from keras_gated_tsn.cli import main as gated_tsn
from keras_gated_tsn.weights.convert import checkpoint_format

_BACKBONE_TESTS = pathlib.Path(__file__).resolve().parents[1] / "backbones"
if str(_BACKBONE_TESTS) not in sys.path:
    sys.path.insert(0, str(_BACKBONE_TESTS))
from caffe_reference import caffe_forward, parse_prototxt  # noqa: E402

SIZE = 96  # small input: every BN-Inception map stays even, as at 224


def _one(block, key, default=None):
    return block.get(key, [default])[0]


def random_bn_inception_caffe(prototxt: str, channels: int, rng, classifier=None):
    """Random blobs in Caffe layout for every layer of the deploy prototxt.

    Returns ``(caffe_layers, params)``: the layers to write (blob-less ones
    too, as real files have them) and the same weights in the layout
    caffe_forward takes (HWIO kernels, flat BN vectors), transposed here
    independently of the converter. ``classifier``: ``(name, classes)`` of an
    InnerProduct on the 1024 pooled features, appended.
    """
    net = parse_prototxt(prototxt)
    width = {"data": channels}
    layers, params = [], {}
    for layer in net["layer"]:
        name, kind = _one(layer, "name"), _one(layer, "type")
        bottom, top = layer.get("bottom", []), layer.get("top", [])
        blobs = []
        if kind == "Convolution":
            p = layer["convolution_param"][0]
            out, k, cin = _one(p, "num_output"), _one(p, "kernel_size"), width[bottom[0]]
            weight = rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (out, cin, k, k)).astype(np.float32)
            bias = rng.normal(0, 0.1, out).astype(np.float32)
            blobs = [weight, bias]
            params[name] = (weight.transpose(2, 3, 1, 0).astype(np.float64), bias.astype(np.float64))
            width[top[0]] = out
        elif kind == "BN":
            c = width[bottom[0]]
            scale, shift = rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c)
            mean, var = rng.normal(0, 0.2, c), rng.uniform(0.5, 2.0, c)
            blobs = [v.reshape(1, c, 1, 1).astype(np.float32) for v in (scale, shift, mean, var)]
            params[name] = tuple(b.ravel().astype(np.float64) for b in blobs)
            width[top[0]] = c
        elif kind == "Concat":
            width[top[0]] = sum(width[b] for b in bottom)
        elif kind == "InnerProduct":
            continue  # the prototxt's fc-action; the caller adds its own classifier
        else:
            width[top[0]] = width[bottom[0]]
        layers.append(CaffeLayer(name, kind, blobs, list(bottom), list(top)))
    if classifier is not None:
        name, classes = classifier
        weight = rng.normal(0, 0.05, (classes, 1024)).astype(np.float32)
        bias = rng.normal(0, 0.1, classes).astype(np.float32)
        layers.append(CaffeLayer(name, "InnerProduct", [weight, bias], ["global_pool"], [name]))
        params[name] = (weight.astype(np.float64), bias.astype(np.float64))
    return layers, params


def _relative(ours, theirs):
    return float(np.abs(np.asarray(ours, np.float64) - theirs).max() / np.abs(theirs).max())


def test_schema_round_trip_and_legacy_shapes(tmp_path):
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(4, 3, 2, 2)).astype(np.float32)
    path = tmp_path / "tiny.caffemodel"
    conv = CaffeLayer("conv1", "Convolution", [weight, np.ones(4, np.float32)], ["data"], ["conv1"])
    write_caffemodel(path, [conv])
    (layer,) = read_caffemodel(path)
    assert (layer.name, layer.type, layer.bottom, layer.top) == ("conv1", "Convolution", ["data"], ["conv1"])
    np.testing.assert_array_equal(layer.blobs[0], weight)
    # The wire format is Caffe's: field 100 (layer), 7 (blobs), 7 (shape), 5 (packed data).
    raw = path.read_bytes()
    assert raw.startswith(b"\x0a\x03net\xa2\x06")  # name=1 "net", then field 100 length-delimited
    legacy = caffe_pb.blob_from_array(np.arange(6, dtype=np.float32).reshape(2, 3), legacy=True)
    assert caffe_pb.blob_shape(legacy) == (1, 1, 2, 3)
    assert checkpoint_format(path) == "caffe"


@pytest.fixture(scope="module")
def prototxts(shared_reference):
    folder = shared_reference / "prototxt"
    return {m: (folder / f"tsn_bn_inception_{m}_deploy.prototxt").read_text() for m in ("rgb", "flow")}


def test_tsn_reference_model_rgb_matches_caffe(prototxts, tmp_path):
    """A TSN UCF101-style file (BN-Inception + fc-action) → a TSN RGB stream
    whose scores equal Caffe's (rel. err. < 1e-3)."""
    rng = np.random.default_rng(1)
    layers, params = random_bn_inception_caffe(prototxts["rgb"], 3, rng, classifier=("fc-action", 101))
    src = tmp_path / "tsn_bn_inception_rgb_reference_ucf101_split_1.caffemodel"
    write_caffemodel(src, layers, name="BN-Inception")
    dst = tmp_path / "tsn_rgb.weights.h5"
    report = convert_weights(src, dst, "bn_inception", input_size=SIZE)
    assert report.model_kind == "tsn stream" and report.missing == [] and not report.skipped
    assert len(report.loaded) == 69 + 69 + 1  # conv + BN layers of the prototxt, fc-action
    assert report.loaded["inception_3a_1x1_bn"] == "inception_3a/1x1_bn"
    assert "TSN(" in report.load_hint and str(dst) in report.load_hint

    from keras_gated_tsn.models import TSN

    model = TSN("bn_inception", "rgb", num_classes=101, input_size=SIZE)
    model.load_weights(str(dst))
    raw = rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
    ours = model.predict(raw[None, None], verbose=0)[0]

    blobs = caffe_forward(prototxts["rgb"], preprocess_input(raw, "rgb"), params, stop_at="inception_5b/output")
    pooled = blobs["inception_5b/output"].mean(axis=(0, 1))
    weight, bias = params["fc-action"]
    theirs = weight @ pooled + bias
    assert ours.shape == (101,)
    assert _relative(ours, theirs) < 1e-3

    # The same file as a whole .keras stream, in one command: a TSN that says what it is.
    stream_path = tmp_path / "rgb.keras"
    assert gated_tsn(["convert-weights", str(src), str(stream_path), "--arch", "bn_inception",
                      "--input-size", str(SIZE)]) == 0
    stream = keras.saving.load_model(stream_path)
    assert isinstance(stream, TSN) and (stream.modality, stream.num_classes, stream.input_size) == ("rgb", 101, SIZE)
    np.testing.assert_allclose(stream.predict(raw[None, None], verbose=0)[0], ours, rtol=1e-5, atol=1e-5)


def test_imagenet_flow_init_matches_caffe(prototxts, tmp_path):
    """A 10-channel flow file with an ImageNet-style classifier → BNInception
    without top: the classifier is skipped and reported, the features equal Caffe's."""
    rng = np.random.default_rng(2)
    layers, params = random_bn_inception_caffe(prototxts["flow"], 10, rng, classifier=("fc", 12))
    src = tmp_path / "bn_inception_flow_init.caffemodel"
    write_caffemodel(src, layers)
    model = BNInception(include_top=False, input_shape=(SIZE, SIZE, 10))
    report = convert_caffe(src, model)
    assert list(report.skipped) == ["fc"] and report.missing == []
    assert "no layer" in report.skipped["fc"]

    raw = rng.uniform(0, 255, (SIZE, SIZE, 10)).astype(np.float32)
    image = preprocess_input(raw, "flow")
    probe = keras.Model(
        model.input,
        [model.get_layer("inception_4e_output").output, model.get_layer("inception_5b_output").output],
    )
    ours_4e, ours_5b = probe.predict(image[None], verbose=0)
    blobs = caffe_forward(prototxts["flow"], image, params, stop_at="inception_5b/output")
    assert _relative(ours_4e[0], blobs["inception_4e/output"]) < 1e-3
    assert _relative(ours_5b[0], blobs["inception_5b/output"]) < 1e-3

    # With a top, the ImageNet classifier "fc" fills "predictions".
    with_top = BNInception(include_top=True, classes=12, input_shape=(SIZE, SIZE, 10))
    report = convert_caffe(src, with_top)
    assert report.loaded["predictions"] == "fc" and not report.skipped
    kernel, bias = with_top.get_layer("predictions").get_weights()
    np.testing.assert_allclose(kernel, params["fc"][0].T, rtol=1e-6)
    np.testing.assert_allclose(bias, params["fc"][1], rtol=1e-6)


# --- a tiny hand-made net: grouped convolutions, BatchNorm+Scale, fc after flatten ----------


def _tiny_keras(batchnorm: bool):
    inputs = keras.Input((9, 9, 4), name="data")
    x = keras.layers.Conv2D(6, 3, groups=2, name="conv1")(inputs)
    if batchnorm:
        x = keras.layers.BatchNormalization(epsilon=1e-5, name="conv1_bn")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(4, 3, groups=2, name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.5, name="drop6")(x)
    x = keras.layers.Dense(5, name="fc6")(x)
    x = keras.layers.Dense(3, name="fc7")(x)
    return keras.Model(inputs, x, name="tiny")


def _grouped_conv_chw(x, weight, bias, groups):
    """Caffe convolution (valid, stride 1) on one (C, H, W) image, groups split contiguously."""
    out, cin_g, kh, kw = weight.shape
    out_g = out // groups
    height, width = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    y = np.zeros((out, height, width))
    for o in range(out):
        g = o // out_g
        xs = x[g * cin_g:(g + 1) * cin_g]
        for i in range(height):
            for j in range(width):
                y[o, i, j] = np.sum(xs[:, i:i + kh, j:j + kw] * weight[o]) + bias[o]
    return y


def _tiny_caffe(rng, batchnorm: bool, bn_eps: float = 1e-3):
    p = {
        "conv1": (rng.normal(0, 0.4, (6, 2, 3, 3)), rng.normal(0, 0.1, 6)),
        "conv2": (rng.normal(0, 0.4, (4, 3, 3, 3)), rng.normal(0, 0.1, 4)),
        "fc6": (rng.normal(0, 0.2, (5, 4 * 5 * 5)), rng.normal(0, 0.1, 5)),
        "fc7": (rng.normal(0, 0.4, (3, 5)), rng.normal(0, 0.1, 3)),
    }
    p = {k: tuple(a.astype(np.float32) for a in v) for k, v in p.items()}
    layers = [CaffeLayer("conv1", "Convolution", list(p["conv1"]), ["data"], ["conv1"])]
    bn = None
    if batchnorm:
        factor = np.float32(0.5)
        mean, var = rng.normal(0, 0.3, 6).astype(np.float32), rng.uniform(0.5, 2, 6).astype(np.float32)
        gamma, beta = rng.uniform(0.5, 1.5, 6).astype(np.float32), rng.normal(0, 0.2, 6).astype(np.float32)
        layers.append(CaffeLayer("conv1/bn", "BatchNorm", [mean * factor, var * factor, np.array([factor])],
                                 ["conv1"], ["conv1"], eps=bn_eps))
        layers.append(CaffeLayer("conv1/scale", "Scale", [gamma, beta], ["conv1"], ["conv1"]))
        bn = (mean, var, gamma, beta, bn_eps)
    layers += [
        CaffeLayer("relu1", "ReLU", [], ["conv1"], ["conv1"]),
        CaffeLayer("conv2", "Convolution", list(p["conv2"]), ["conv1"], ["conv2"]),
        CaffeLayer("fc6", "InnerProduct", list(p["fc6"]), ["conv2"], ["fc6"]),
        CaffeLayer("fc7", "InnerProduct", list(p["fc7"]), ["fc6"], ["fc7"]),
    ]
    return layers, p, bn


def _tiny_reference(image_hwc, p, bn):
    x = image_hwc.transpose(2, 0, 1).astype(np.float64)
    x = _grouped_conv_chw(x, *p["conv1"], groups=2)
    if bn is not None:
        mean, var, gamma, beta, eps = bn
        mean, var, gamma, beta = (v[:, None, None] for v in (mean, var, gamma, beta))
        x = (x - mean) / np.sqrt(var + eps) * gamma + beta
    x = np.maximum(x, 0)
    x = _grouped_conv_chw(x, *p["conv2"], groups=2)
    x = p["fc6"][0] @ x.ravel() + p["fc6"][1]  # Caffe flattens (C, H, W)
    return p["fc7"][0] @ x + p["fc7"][1]


@pytest.mark.parametrize("variant", ["batchnorm_scale", "v1_legacy"])
def test_grouped_conv_flatten_fc_and_batchnorm(tmp_path, variant):
    rng = np.random.default_rng(3)
    batchnorm = variant == "batchnorm_scale"
    layers, p, bn = _tiny_caffe(rng, batchnorm)
    path = tmp_path / "tiny.caffemodel"
    if variant == "v1_legacy":
        layers = [layer for layer in layers if layer.blobs]
    write_caffemodel(path, layers, legacy=variant == "v1_legacy")
    model = _tiny_keras(batchnorm)
    report = convert_caffe(path, model)
    assert report.missing == []
    if batchnorm:
        assert report.loaded["conv1_bn"] == "conv1/bn"
        assert any("eps" in note for note in report.notes)  # Caffe eps 1e-3 vs Keras 1e-5, compensated
    image = rng.normal(0, 1, (9, 9, 4)).astype(np.float32)
    ours = model.predict(image[None], verbose=0)[0]
    theirs = _tiny_reference(image, p, bn)
    assert _relative(ours, theirs) < 1e-4


def test_scale_layer_name_is_a_fallback_for_batchnorm(tmp_path):
    rng = np.random.default_rng(4)
    layers, _, _ = _tiny_caffe(rng, batchnorm=True)
    for layer in layers:  # Keras BN named after the Scale layer, as some ports do
        if layer.type == "BatchNorm":
            layer.name = "bn_conv1"
        if layer.type == "Scale":
            layer.name = "conv1/bn"
    path = tmp_path / "tiny.caffemodel"
    write_caffemodel(path, layers)
    report = convert_caffe(path, _tiny_keras(True))
    assert report.loaded["conv1_bn"] == "bn_conv1"


def test_vgg_caffe_names_map_to_keras_applications_names(tmp_path):
    rng = np.random.default_rng(5)
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(2, 3, padding="same", name="block1_conv1")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(3, name="fc1")(x)
    x = keras.layers.Dense(2, name="predictions")(x)
    model = keras.Model(inputs, x)
    conv = rng.normal(size=(2, 3, 3, 3)).astype(np.float32)
    fc6 = rng.normal(size=(3, 32)).astype(np.float32)
    fc8 = rng.normal(size=(2, 3)).astype(np.float32)
    path = tmp_path / "vgg.caffemodel"
    write_caffemodel(path, [
        CaffeLayer("conv1_1", "Convolution", [conv, np.zeros(2, np.float32)], ["data"], ["conv1_1"]),
        CaffeLayer("fc6", "InnerProduct", [fc6, np.zeros(3, np.float32)], ["conv1_1"], ["fc6"]),
        CaffeLayer("fc8", "InnerProduct", [fc8, np.zeros(2, np.float32)], ["fc6"], ["fc8"]),
    ])
    report = convert_caffe(path, model)
    assert report.loaded == {"block1_conv1": "conv1_1", "fc1": "fc6", "predictions": "fc8"}
    np.testing.assert_array_equal(model.get_layer("block1_conv1").get_weights()[0], conv.transpose(2, 3, 1, 0))
    # fc1 reads a flattened (4, 4, 2) map: Caffe's (c, h, w) input order is permuted to (h, w, c).
    expected = fc6.reshape(3, 2, 4, 4).transpose(2, 3, 1, 0).reshape(32, 3)
    np.testing.assert_array_equal(model.get_layer("fc1").get_weights()[0], expected)


# --- errors -------------------------------------------------------------------------------


def test_shape_mismatch_and_unknown_layer_are_named_and_leave_the_model_unchanged(tmp_path):
    rng = np.random.default_rng(6)
    layers, _, _ = _tiny_caffe(rng, batchnorm=False)
    layers[0].blobs = [rng.normal(size=(8, 2, 3, 3)).astype(np.float32), np.zeros(8, np.float32)]
    layers.append(CaffeLayer("conv9", "Convolution", [np.zeros((2, 2, 1, 1), np.float32)], ["x"], ["conv9"]))
    path = tmp_path / "bad.caffemodel"
    write_caffemodel(path, layers)
    model = _tiny_keras(False)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError) as info:
        convert_caffe(path, model)
    message = str(info.value)
    assert "'conv1'" in message and "(3, 3, 2, 8)" in message and "(3, 3, 2, 6)" in message
    assert "'conv9'" in message and "no Keras layer" in message
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_that_fills_only_part_of_the_model_is_an_error(tmp_path):
    rng = np.random.default_rng(7)
    layers, _, _ = _tiny_caffe(rng, batchnorm=False)
    path = tmp_path / "partial.caffemodel"
    write_caffemodel(path, [layer for layer in layers if layer.name != "fc7"])
    model = _tiny_keras(False)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"fills 3 of the 4 Keras layers.*random initialisation: fc7"):
        convert_caffe(path, model)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Converting a part on purpose: allowed, and reported.
    report = convert_caffe(path, model, allow_partial=True)
    assert report.missing == ["fc7"] and not report.complete
    assert "fc7" in report.summary()


def test_empty_or_partial_caffenet_writes_nothing(tmp_path, capsys):
    """An empty .caffemodel, or one with 1 of CaffeNet's 5 convolutions, is an
    error naming what is missing (exit 2), never a file of random weights."""
    nothing = tmp_path / "nothing.caffemodel"
    write_caffemodel(nothing, [])
    assert gated_tsn(["convert-weights", str(nothing), str(tmp_path / "n.weights.h5"), "--arch", "caffenet"]) == 2
    assert "no Caffe layers" in capsys.readouterr().err and not (tmp_path / "n.weights.h5").exists()
    empty = tmp_path / "empty.caffemodel"  # layers, but no weights in any
    write_caffemodel(empty, [CaffeLayer("relu1", "ReLU", [], ["conv1"], ["conv1"])])
    one = tmp_path / "conv1_only.caffemodel"
    conv1 = [np.zeros((96, 3, 11, 11), np.float32), np.zeros(96, np.float32)]
    write_caffemodel(one, [CaffeLayer("conv1", "Convolution", conv1, [], [])])
    for src, filled in ((empty, 0), (one, 1)):
        dst = tmp_path / f"{src.stem}.weights.h5"
        assert gated_tsn(["convert-weights", str(src), str(dst), "--arch", "caffenet"]) == 2
        err = capsys.readouterr().err
        assert f"fills {filled} of the 5 Keras layers" in err and "conv5" in err and "--allow-partial" in err
        assert not dst.exists()
    dst = tmp_path / "part.weights.h5"
    assert gated_tsn(["convert-weights", str(one), str(dst), "--arch", "caffenet", "--allow-partial"]) == 0
    assert dst.exists() and "received no weights" in capsys.readouterr().out


def test_type_mismatch_and_unsupported_layer(tmp_path):
    path = tmp_path / "odd.caffemodel"
    write_caffemodel(path, [
        CaffeLayer("fc6", "Convolution", [np.zeros((5, 100, 1, 1), np.float32)], ["x"], ["fc6"]),
        CaffeLayer("prelu", "PReLU", [np.zeros(3, np.float32)], ["x"], ["prelu"]),
    ])
    with pytest.raises(ValueError) as info:
        convert_caffe(path, _tiny_keras(False))
    assert "'fc6'" in str(info.value) and "Dense" in str(info.value)
    assert "'prelu'" in str(info.value) and "PReLU" in str(info.value)


def test_not_a_caffemodel(tmp_path):
    path = tmp_path / "deploy.caffemodel"
    path.write_text('name: "BN-Inception"\nlayer { name: "conv1" }\n')
    with pytest.raises(ValueError, match="deploy.caffemodel"):
        read_caffemodel(path)


def test_convert_weights_writes_nothing_on_error(tmp_path):
    rng = np.random.default_rng(8)
    layers, _, _ = _tiny_caffe(rng, batchnorm=False)
    path = tmp_path / "tiny.caffemodel"
    write_caffemodel(path, layers)
    dst = tmp_path / "out" / "x.weights.h5"
    dst.parent.mkdir()
    with pytest.raises(ValueError, match="no Keras layer"):
        convert_weights(path, dst, "bn_inception", input_size=64)
    assert os.listdir(dst.parent) == []
    with pytest.raises(ValueError, match=r"\.weights\.h5 or \.keras"):
        convert_weights(path, tmp_path / "x.h5", "bn_inception")
    with pytest.raises(ValueError, match="unknown backbone 'resnet50'"):
        convert_weights(path, dst, "resnet50")
    with pytest.raises(ValueError, match="no TSN classifier"):
        convert_weights(path, tmp_path / "backbone.keras", "bn_inception", input_size=64)


# --- CLI ------------------------------------------------------------------------------------


def _cli(argv):
    return gated_tsn(argv)


def test_cli_converts_a_backbone_and_reports_errors(prototxts, tmp_path, capsys):
    rng = np.random.default_rng(9)
    layers, _ = random_bn_inception_caffe(prototxts["rgb"], 3, rng, classifier=("fc", 5))
    src = tmp_path / "bn_inception_rgb_init.caffemodel"
    write_caffemodel(src, layers)
    dst = tmp_path / "bn_rgb.weights.h5"
    assert _cli(["convert-weights", str(src), str(dst), "--arch", "bn_inception", "--input-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and "fc" in out and "load it with" in out
    loaded = BNInception(include_top=False, input_shape=(64, 64, 3), weights=str(dst))
    np.testing.assert_array_equal(
        loaded.get_layer("conv1_7x7_s2").get_weights()[0], layers[0].blobs[0].transpose(2, 3, 1, 0)
    )
    # An RGB file into a flow model: a clear error, exit status 2 ...
    flow_dst = tmp_path / "bn_flow.weights.h5"
    argv = ["convert-weights", str(src), str(flow_dst), "--arch", "bn_inception", "--modality", "flow",
            "--input-size", "64"]
    assert _cli(argv) == 2
    err = capsys.readouterr().err
    assert "conv1/7x7_s2" in err and "(7, 7, 3, 64)" in err and "(7, 7, 10, 64)" in err
    assert not flow_dst.exists()
    # ... unless cross-modality initialisation is asked for.
    assert _cli(argv + ["--cross-modality"]) == 0
    flow = BNInception(include_top=False, input_shape=(64, 64, 10), weights=str(flow_dst))
    kernel = flow.get_layer("conv1_7x7_s2").get_weights()[0]
    expected = layers[0].blobs[0].transpose(2, 3, 1, 0).mean(axis=2, keepdims=True)
    np.testing.assert_allclose(kernel, np.repeat(expected, 10, axis=2), rtol=1e-6)
    assert _cli(["convert-weights", str(src), str(tmp_path / "x.h5"), "--arch", "bn_inception"]) == 2
    assert _cli(["convert-weights", str(src), str(dst), "--arch", "bn_inception", "--rename", "oops"]) == 2


def test_cli_help_lists_known_checkpoints(capsys):
    with pytest.raises(SystemExit):
        _cli(["convert-weights", "--help"])
    out = capsys.readouterr().out
    for name in ("bn_inception_rgb_init.caffemodel", "tsn_bn_inception_flow_reference_ucf101_split_1",
                 "bvlc_reference_caffenet.caffemodel", "bn_inception-", ".pth.tar", "--cross-modality"):
        assert name in out


# --- CaffeNet (BVLC's legacy V1 file layout) -----------------------------------------------


def test_caffenet_v1_file_with_top(tmp_path):
    """bvlc_reference_caffenet-style file (V1 layers, legacy 4-D blob shapes,
    groups of 2) → CaffeNet with top; the fc layers computed from Keras' pool5
    in Caffe's (c, h, w) flatten order equal the Keras outputs."""
    from keras_gated_tsn.backbones import caffenet
    rng = np.random.default_rng(10)
    size, classes = 99, 7  # pool5 is 2x2x256 at 99x99: fc6 reads 1024 inputs
    shapes = {
        "conv1": (96, 3, 11, 11), "conv2": (256, 48, 5, 5), "conv3": (384, 256, 3, 3),
        "conv4": (384, 192, 3, 3), "conv5": (256, 192, 3, 3),
        "fc6": (4096, 1024), "fc7": (4096, 4096), "fc8": (classes, 4096),
    }
    blobs = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:]))
        blobs[name] = [rng.normal(0, np.sqrt(2.0 / fan_in), shape).astype(np.float32),
                       rng.normal(0, 0.05, shape[0]).astype(np.float32)]
    kinds = {name: "Convolution" if name.startswith("conv") else "InnerProduct" for name in shapes}
    src = tmp_path / "bvlc_reference_caffenet.caffemodel"
    write_caffemodel(src, [CaffeLayer(n, kinds[n], blobs[n], [], [n]) for n in shapes], name="CaffeNet", legacy=True)
    assert [layer.type for layer in read_caffemodel(src)] == [kinds[n] for n in shapes]

    dst = tmp_path / "caffenet_imagenet_top.weights.h5"
    report = convert_weights(src, dst, "caffenet", input_size=size, include_top=True)
    assert report.model_kind == "backbone" and report.missing == [] and len(report.loaded) == 8
    model = caffenet.CaffeNet(include_top=True, input_shape=(size, size, 3), classes=classes,
                              classifier_activation=None, weights=str(dst))
    np.testing.assert_array_equal(model.get_layer("conv2").get_weights()[0], blobs["conv2"][0].transpose(2, 3, 1, 0))

    image = rng.normal(0, 50, (size, size, 3)).astype(np.float32)
    probe = keras.Model(model.input, [model.get_layer("pool5").output, model.output])
    pool5, ours = probe.predict(image[None], verbose=0)
    x = pool5[0].transpose(2, 0, 1).ravel().astype(np.float64)  # Caffe's flatten order
    for name in ("fc6", "fc7"):
        x = np.maximum(blobs[name][0] @ x + blobs[name][1], 0)
    theirs = blobs["fc8"][0] @ x + blobs["fc8"][1]
    assert _relative(ours[0], theirs) < 1e-3

    # Default: the backbone without fc6-fc8 (skipped, reported), loadable at any size.
    dst = tmp_path / "caffenet_imagenet.weights.h5"
    report = convert_weights(src, dst, "caffenet")
    assert sorted(report.skipped) == ["fc6", "fc7", "fc8"] and report.missing == []
    caffenet.CaffeNet(include_top=False, input_shape=(size, size, 3), weights=str(dst))


def test_vgg16_caffe_file_into_keras_applications_names(tmp_path):
    """VGG_ILSVRC_16_layers-style names (conv1_1 ... conv5_3, fc6-fc8) → the
    VGG16 backbone (block1_conv1 ...); without top, fc6-fc8 are skipped."""
    from keras_gated_tsn.backbones import vgg16
    rng = np.random.default_rng(11)
    widths = [(1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)]
    layers, cin = [], 3
    for block, convs, out in widths:
        for j in range(1, convs + 1):
            weight = rng.normal(0, 0.01, (out, cin, 3, 3)).astype(np.float32)
            layers.append(CaffeLayer(f"conv{block}_{j}", "Convolution", [weight, np.zeros(out, np.float32)], [], []))
            cin = out
    fc8 = [np.zeros((10, 4096), np.float32), np.zeros(10, np.float32)]
    layers.append(CaffeLayer("fc8", "InnerProduct", fc8, [], []))
    src = tmp_path / "VGG_ILSVRC_16_layers.caffemodel"
    write_caffemodel(src, layers)
    dst = tmp_path / "vgg16_caffe.weights.h5"
    report = convert_weights(src, dst, "vgg16", input_size=64)
    assert report.loaded["block5_conv3"] == "conv5_3" and list(report.skipped) == ["fc8"]
    assert report.missing == []
    model = vgg16.VGG16(include_top=False, input_shape=(64, 64, 3), weights=str(dst))
    np.testing.assert_array_equal(
        model.get_layer("block3_conv2").get_weights()[0], layers[5].blobs[0].transpose(2, 3, 1, 0)
    )
