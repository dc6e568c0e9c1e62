"""The 3D clip backbones of GCF-Net: 3D-ResNeXt-101 and 3D-MobileNetV2 (no
temporal stride), their lookup apart from the 2D registry, and GroupedConv3D."""

import math
import warnings

import keras
import numpy as np
import pytest

from helpers import count_weights, run_model_saving_test, run_serialization_test
from keras_gated_tsn.backbones import (
    CLIP_BACKBONES,
    MobileNet3DV2,
    ResNeXt3D101,
    backbone_names,
    clip_backbone_names,
    get_clip_backbone,
    mobilenet3d,
    resnext3d,
)
from keras_gated_tsn.backbones.resnext3d import GroupedConv3D
from keras_gated_tsn.layers import SegmentFold

TINY = (4, 32, 32, 3)


def _trainable(model):
    return count_weights(model.trainable_weights)


@pytest.fixture(scope="module")
def resnext_full():
    """3D-ResNeXt-101 at GCF-Net's input, 16 x 112 x 112 x 3 (built, never run)."""
    return ResNeXt3D101(input_shape=(16, 112, 112, 3), classes=400, classifier_activation=None)


def test_resnext3d_101_parameter_count_is_the_published_one(resnext_full):
    """48,340,816 trainable parameters with a 400-class top: GCF-Net Table 3's
    "48.34M" (PyTorch's count of Hara et al.'s Kinetics network, BN statistics
    left out); the 600-class top of Kinetics-600 adds 200 x 2049."""
    assert _trainable(resnext_full) == 48_340_816
    assert round(_trainable(resnext_full) / 1e6, 2) == resnext3d.SPEC.published_params / 1e6 == 48.34
    assert resnext3d.SPEC.published_classes == 400
    assert _trainable(resnext_full) + 200 * (2048 + 1) == 48_750_616


def test_resnext3d_101_layers(resnext_full):
    model = resnext_full
    # 101 layers: conv1, 33 bottlenecks of three convolutions, the fully connected top.
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv3D)]
    main = [layer for layer in convs if not layer.name.endswith("_0_conv")]
    assert len(main) + 1 == 101 and len(convs) - len(main) == 4  # one projection per stage
    grouped = [layer for layer in convs if layer.groups > 1]
    assert len(grouped) == 33 and all(isinstance(layer, GroupedConv3D) and layer.groups == 32 for layer in grouped)
    assert model.get_layer("conv1_conv").kernel.shape == (7, 7, 7, 3, 64)
    assert model.get_layer("conv1_conv").strides == (1, 2, 2)
    assert model.get_layer("conv2_block1_2_conv").kernel.shape == (3, 3, 3, 4, 128)
    assert model.get_layer("conv3_block1_2_conv").strides == (1, 2, 2)
    assert model.get_layer("conv5_block3_3_conv").kernel.shape == (1, 1, 1, 1024, 2048)
    assert model.get_layer("conv4_block23_out").output.shape == (None, 16, 7, 7, 1024)
    assert model.get_layer("predictions").kernel.shape == (2048, 400)
    bn = model.get_layer("conv1_bn")
    assert (bn.epsilon, bn.momentum) == (1e-5, 0.9)  # PyTorch's BatchNorm3d defaults


def test_no_temporal_stride_feature_layers(resnext_full):
    """GCF-Net Sec. 3.1: no stride along T, so every feature map keeps the 16 frames."""
    for name, (channels, stride) in resnext3d.FEATURE_LAYERS.items():
        side = math.ceil(112 / stride)
        assert resnext_full.get_layer(name).output.shape == (None, 16, side, side, channels), name


def test_resnext3d_runs_on_a_tiny_clip():
    model = ResNeXt3D101(include_top=False, pooling="avg", input_shape=TINY)
    clip = np.random.default_rng(0).normal(0, 50, (1,) + TINY).astype("float32")
    features = model.predict(clip, verbose=0)
    assert features.shape == (1, 2048) and np.isfinite(features).all() and (features >= 0).all()
    assert model.get_layer("conv5_block3_out").output.shape == (None, 4, 1, 1, 2048)


@pytest.fixture(scope="module")
def mobilenet_full():
    return MobileNet3DV2(input_shape=(16, 112, 112, 3), classes=600)


def test_mobilenet3d_v2_parameter_count_and_layers(mobilenet_full):
    """3,122,648 trainable parameters with the 600-class top: GCF-Net Table 3's "3.12M"."""
    model = mobilenet_full
    assert _trainable(model) == 3_122_648
    assert round(_trainable(model) / 1e6, 2) == mobilenet3d.SPEC.published_params / 1e6 == 3.12
    depthwise = [layer for layer in model.layers if layer.name.endswith("_depthwise")]
    assert len(depthwise) == 17
    for layer in depthwise:
        assert isinstance(layer, GroupedConv3D) and layer.groups == layer.filters == layer.kernel.shape[-1]
        assert layer.kernel.shape[:4] == (3, 3, 3, 1) and layer.strides[0] == 1
    assert model.get_layer("Conv1").kernel.shape == (3, 3, 3, 3, 32)
    assert model.get_layer("block_1_expand").kernel.shape == (1, 1, 1, 16, 96)
    assert model.get_layer("block_16_project").kernel.shape == (1, 1, 1, 960, 320)
    assert model.get_layer("dropout").rate == 0.2 and model.get_layer("predictions").kernel.shape == (1280, 600)
    for name, (channels, stride) in mobilenet3d.FEATURE_LAYERS.items():
        side = math.ceil(112 / stride)
        assert model.get_layer(name).output.shape == (None, 16, side, side, channels), name


def test_mobilenet3d_v2_runs_on_a_tiny_clip_and_width():
    model = MobileNet3DV2(include_top=False, pooling="max", input_shape=TINY)
    clip = np.random.default_rng(1).normal(0, 50, (2,) + TINY).astype("float32")
    features = model.predict(clip, verbose=0)
    assert features.shape == (2, 1280) and np.isfinite(features).all()
    assert 0.0 <= features.min() and features.max() <= 6.0  # ReLU6
    half = MobileNet3DV2(include_top=False, input_shape=TINY, alpha=0.5)
    assert half.get_layer("Conv1").kernel.shape[-1] == 16 and half.output.shape == (None, 4, 1, 1, 1280)


def test_builders_check_their_arguments(tmp_path):
    for builder in (ResNeXt3D101, MobileNet3DV2):
        with pytest.raises(ValueError, match="pooling must be None, 'avg' or 'max', got 'sum'"):
            builder(include_top=False, pooling="sum", input_shape=TINY)
        with pytest.raises(ValueError, match="classes must be a positive int .* got 0"):
            builder(classes=0, input_shape=TINY)
        with pytest.raises(ValueError, match="no pretrained weights are registered .* got 'imagenet'"):
            builder(weights="imagenet", input_shape=TINY)
        with pytest.raises(ValueError, match=r"\(frames, height, width, channels\), got \(32, 32, 3\)"):
            builder(input_shape=(32, 32, 3))
        with pytest.raises(ValueError, match="at least 32x32"):
            builder(input_shape=(4, 16, 16, 3))
    with pytest.raises(ValueError, match="alpha must be a number > 0, got 0"):
        MobileNet3DV2(input_shape=TINY, alpha=0)


def test_weights_file_and_keras_round_trip(tmp_path):
    model = MobileNet3DV2(include_top=True, classes=5, input_shape=TINY, classifier_activation=None)
    path = tmp_path / "mobilenet3d.weights.h5"
    model.save_weights(path)
    again = MobileNet3DV2(include_top=True, classes=5, input_shape=TINY, classifier_activation=None, weights=str(path))
    for mine, theirs in zip(model.weights, again.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    with pytest.raises(ValueError, match="does not fit"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras' own notes on the mismatch
        MobileNet3DV2(include_top=True, classes=7, input_shape=TINY, weights=str(path))
    clip = np.random.default_rng(2).normal(0, 50, (1,) + TINY).astype("float32")
    run_model_saving_test(model, clip, tmp_path, atol=1e-4)


def test_input_tensor_joins_the_graph():
    clips = keras.Input((3,) + TINY)
    folded = SegmentFold()(clips)
    model = MobileNet3DV2(include_top=False, pooling="avg", input_tensor=folded)
    assert model.inputs[0] is clips and model.output.shape == (None, 1280)


@pytest.mark.parametrize(
    "channels,filters,groups,kernel,strides,padding",
    [(8, 12, 4, 3, 1, "same"), (6, 6, 6, 3, 2, "valid"), (8, 8, 2, (3, 1, 3), 1, "same"),
     (4, 4, 4, 3, 2, "same"), (8, 16, 4, 1, 1, "valid"), (6, 4, 1, 3, 1, "same")],
)
def test_grouped_conv3d_is_keras_conv3d(channels, filters, groups, kernel, strides, padding):
    """Same kernel, same outputs as keras' Conv3D(groups=...) (which the
    TensorFlow backend runs through XLA), including "valid" in time."""
    x = np.random.default_rng(3).normal(size=(2, 5, 9, 8, channels)).astype("float32")
    mine = GroupedConv3D(filters, kernel, strides=(1, strides, strides), padding=padding, groups=groups,
                         activation="relu")
    theirs = keras.layers.Conv3D(filters, kernel, strides=(1, strides, strides), padding=padding, groups=groups,
                                 activation="relu")
    expected_shape = theirs.compute_output_shape(x.shape)
    out = mine(x)
    theirs.build(x.shape)
    theirs.set_weights(mine.get_weights())
    assert out.shape == expected_shape
    np.testing.assert_allclose(out, theirs(x), rtol=1e-5, atol=1e-5)
    assert run_serialization_test(mine).groups == groups


def test_grouped_conv3d_refuses_what_it_does_not_compute():
    with pytest.raises(ValueError, match="temporal stride 1"):
        GroupedConv3D(4, 3, strides=2, groups=2)
    with pytest.raises(ValueError, match="dilation"):
        GroupedConv3D(4, 3, dilation_rate=2, groups=2)


def test_clip_backbones_have_their_own_lookup():
    assert clip_backbone_names() == ("resnext3d_101", "mobilenet3d_v2")
    assert not set(clip_backbone_names()) & set(backbone_names())  # the 2D registry (TSN, CLI) stays 2D
    spec = get_clip_backbone("mobilenet3d_v2")
    assert spec is CLIP_BACKBONES["mobilenet3d_v2"] and spec.builder is MobileNet3DV2 and spec.features == 1280
    assert get_clip_backbone("resnext3d_101").features == 2048
    with pytest.raises(ValueError, match=r"unknown clip backbone 'r2plus1d'; available: \['resnext3d_101'"):
        get_clip_backbone("r2plus1d")


def test_preprocess_input_subtracts_the_activitynet_mean():
    pixels = np.array([[[[[0, 128, 255]]]]], np.uint8)
    out = resnext3d.preprocess_input(pixels)
    np.testing.assert_allclose(out[0, 0, 0, 0], [-114.7748, 128 - 107.7354, 255 - 99.4750], rtol=1e-6)
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match="3 channels"):
        mobilenet3d.preprocess_input(np.zeros((1, 2, 2, 10)))
