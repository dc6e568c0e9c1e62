"""TSN streams: shapes, names, partial BN, cross-modality initialisation, config, saving."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from helpers import run_model_saving_test, run_serialization_test
from keras_gated_tsn.layers import (
    FrozenBatchNormalization,
    GatedFusion,
    LocalResponseNormalization,
    ModalityPreprocessing,
    SegmentConsensus,
    SegmentFold,
)
from keras_gated_tsn.models import TSN, init_from_rgb
from keras_gated_tsn.training.recipes import CaffeSGD
from keras_gated_tsn.weights.transfer import cross_modality_kernel, stacked_input_kernel

SIZE = 64


@pytest.fixture(scope="module")
def rgb_stream():
    return TSN(modality="rgb", num_classes=5, num_segments=3, input_size=SIZE)


@pytest.fixture(scope="module")
def flow_stream():
    return TSN(modality="flow", num_classes=5, num_segments=3, input_size=SIZE, new_length=5,
               class_names=["jump", "run", "wave", "cartwheel", "clap"])


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
    rgb_stream.set_partial_bn(False)
    assert all(l.trainable for l in bns) and rgb_stream.get_config()["partial_bn"] is False
    rgb_stream.set_partial_bn(True)
    assert not bns[1].trainable and rgb_stream.get_config()["partial_bn"] is True


def test_cross_modality_kernel_hand_case():
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, :, 0] = [1.0, 2.0, 6.0]
    kernel[0, 0, :, 1] = [3.0, 3.0, 0.0]
    flow = cross_modality_kernel(kernel, 4)
    assert flow.shape == (1, 1, 4, 2)
    np.testing.assert_allclose(flow[0, 0, :, 0], [3.0] * 4)
    np.testing.assert_allclose(flow[0, 0, :, 1], [2.0] * 4)


def test_stacked_input_kernel_hand_case():
    kernel = np.arange(6, dtype=np.float32).reshape(1, 1, 3, 2)
    stacked = stacked_input_kernel(kernel, 2)
    assert stacked.shape == (1, 1, 6, 2)
    # On two identical stacked maps it computes what the source computes on one.
    x = np.array([1.0, -2.0, 0.5], np.float32)
    np.testing.assert_allclose(np.concatenate([x, x]) @ stacked[0, 0], x @ kernel[0, 0], rtol=1e-6)


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


def test_keras_round_trip_remembers_what_it_is(tmp_path, flow_stream):
    clips = np.random.default_rng(1).integers(0, 256, (2, 3, SIZE, SIZE, 10)).astype("uint8")
    loaded = run_model_saving_test(flow_stream, clips, tmp_path)
    assert (loaded.backbone, loaded.modality, loaded.num_classes) == ("bn_inception", "flow", 5)
    assert (loaded.num_segments, loaded.input_size, loaded.new_length, loaded.dropout) == (3, SIZE, 5, 0.7)
    assert loaded.class_names == ["jump", "run", "wave", "cartwheel", "clap"]  # it can name its predictions
    assert not loaded.get_layer("inception_3a_1x1_bn").trainable  # partial BN survives saving
    run_serialization_test(flow_stream)


def test_loaded_config_does_not_look_for_the_backbone_file(tmp_path):
    """The weights of a saved stream come from its file: the backbone file it
    started from is recorded (provenance) but not needed to load it."""
    from keras_gated_tsn.backbones import BNInception

    start = tmp_path / "start.weights.h5"
    BNInception(include_top=False, input_shape=(SIZE, SIZE, 3)).save_weights(start)
    stream = TSN(num_classes=3, input_size=SIZE, backbone_weights=str(start))
    stream.save(tmp_path / "s.keras")
    start.unlink()
    loaded = keras.saving.load_model(tmp_path / "s.keras")
    assert loaded.backbone_weights == str(start)
    np.testing.assert_array_equal(loaded.get_layer("conv1_7x7_s2").kernel, stream.get_layer("conv1_7x7_s2").kernel)


def test_import_keras_gated_tsn_alone_lets_keras_load_every_model(tmp_path):
    """A fresh interpreter that imports only keras and keras_gated_tsn loads
    a stream and a gated model (their layers and classes are registered)."""
    from keras_gated_tsn.models import GatedTSN

    rgb = TSN(num_classes=3, input_size=32, num_segments=1)
    flow = TSN(modality="flow", num_classes=3, input_size=32, num_segments=1)
    rgb.compile()  # compiled, as `gated-tsn train` writes them: the optimizer is saved too
    rgb.save(tmp_path / "rgb.keras")
    gated = GatedTSN(rgb, flow)
    gated.compile()
    gated.save(tmp_path / "gated.keras")
    code = (
        "import keras, keras_gated_tsn\n"
        f"s = keras.saving.load_model({str(tmp_path / 'rgb.keras')!r})\n"
        f"g = keras.saving.load_model({str(tmp_path / 'gated.keras')!r})\n"
        "print(type(s).__name__, s.modality, type(g).__name__, g.fusion_layer, type(g.optimizer).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["TSN", "rgb", "GatedTSN", "inception_4e_output", "CaffeSGD"]


def test_compile_defaults_are_the_recipe(rgb_stream, flow_stream):
    rgb_stream.compile()
    flow_stream.compile()
    for stream, lr in ((rgb_stream, 1e-3), (flow_stream, 5e-3)):
        assert isinstance(stream.optimizer, CaffeSGD)
        assert float(stream.optimizer.learning_rate) == pytest.approx(lr)
        assert stream.optimizer.global_clipnorm == 40.0 and stream.optimizer.clipnorm is None


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"modality": "depth"}, "modality"),
        ({"backbone": "resnet"}, "backbone"),
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2, "class_names": ["a"]}, "class_names has 1 names for 2 classes"),
        ({"num_classes": 2, "class_names": ["a", "a"]}, "class names repeat: a"),
        ({"num_classes": 2, "class_names": "ab"}, "a sequence of names"),
        ({"input_size": 16}, "input_size"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TSN(**kwargs)


def test_layers_round_trip_configs():
    for layer in (
        ModalityPreprocessing("flow", bgr_mean=(1.0, 2.0, 3.0)), SegmentFold(), SegmentConsensus(), GatedFusion(),
        LocalResponseNormalization(local_size=3, alpha=2e-4), FrozenBatchNormalization(epsilon=1e-5),
    ):
        run_serialization_test(layer)
    with pytest.raises(ValueError, match="modality"):
        ModalityPreprocessing("depth")
    with pytest.raises(ValueError, match="average"):
        SegmentConsensus("max")
