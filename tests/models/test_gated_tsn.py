"""Gated TSN: outputs, eq. (2), eq. (4), frozen streams and gate BN under fit(),
fusion variants, config, saving, plain-label training."""

import keras
import numpy as np
import pytest

from helpers import random_clips, run_model_saving_test, run_serialization_test
from keras_gated_tsn.layers import FrozenBatchNormalization, GatedFusion
from keras_gated_tsn.models import TSN, GatedTSN
from keras_gated_tsn.training.recipes import CaffeSGD

SIZE = 64
CLASSES = 4


@pytest.fixture(scope="module")
def streams():
    rgb = TSN(modality="rgb", num_classes=CLASSES, input_size=SIZE)
    flow = TSN(modality="flow", num_classes=CLASSES, input_size=SIZE)
    flow.init_from(rgb)
    return rgb, flow


@pytest.fixture(scope="module")
def gated(streams):
    return GatedTSN(*streams)


def test_outputs_and_names(gated):
    out = gated.predict(random_clips(SIZE), verbose=0)
    assert set(out) == {"fused", "rgb", "flow", "gating_classifier", "fusion_weights"}
    assert out["fused"].shape == (2, CLASSES) and out["fusion_weights"].shape == (2, 2)
    assert (out["fusion_weights"] >= 0).all()
    names = {layer.name for layer in gated.layers}
    for expected in (
        "gating_inception_4e_output_conv_fusion", "gating_inception_5a_1x1", "gating_inception_5b_output",
        "gating_fc-action", "gating_fc_classify", "gating_dropout",
    ):
        assert expected in names
    assert gated.get_layer("gating_inception_4e_output_conv_fusion").kernel.shape == (1, 1, 2112, 1056)
    assert gated.get_layer("gating_dropout").rate == 0.8
    # Every BN of the gating ConvNet is frozen BN (prototxt: frozen: true), and 5a + 5b have 14.
    gate_bns = [layer for layer in gated.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(gate_bns) == 14 and all(isinstance(layer, FrozenBatchNormalization) for layer in gate_bns)


def test_fused_is_equation_2_and_streams_match(gated, streams):
    clips = random_clips(SIZE, seed=3)
    out = gated.predict(clips, verbose=0)
    w = out["fusion_weights"]
    expected = w[:, :1] * out["rgb"] + w[:, 1:] * out["flow"]
    np.testing.assert_allclose(out["fused"], expected, rtol=1e-5, atol=1e-6)
    rgb, flow = streams
    np.testing.assert_allclose(out["rgb"], rgb.predict(clips["rgb"], verbose=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["flow"], flow.predict(clips["flow"], verbose=0), rtol=1e-4, atol=1e-6)


def test_gated_fusion_hand_case():
    weights = np.array([[0.5, 2.0], [0.0, 1.0]], np.float32)
    rgb = np.array([[1.0, -2.0], [4.0, 4.0]], np.float32)
    flow = np.array([[2.0, 0.0], [-1.0, 3.0]], np.float32)
    fused = GatedFusion()([weights, rgb, flow])
    np.testing.assert_allclose(fused, [[0.5 + 4.0, -1.0 + 0.0], [-1.0, 3.0]])


def _cross_entropy(logits, labels):
    logits = logits.astype(np.float64)
    top = logits.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return float(np.mean(log_z - logits[np.arange(len(labels)), labels]))


@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_compiled_loss_is_equation_4(streams, lam):
    """compile(gating_loss_weight=λ): L = CE(y, G_adap) + λ·CE(y, G_c), with CE
    computed here by hand from the model's own outputs."""
    model = GatedTSN(*streams)
    model.compile(gating_loss_weight=lam)
    clips, labels = random_clips(SIZE, batch=3, seed=4), np.array([0, 3, 1])
    out = model.predict(clips, verbose=0)
    result = model.evaluate(clips, labels, verbose=0, return_dict=True)
    ce_adap, ce_c = _cross_entropy(out["fused"], labels), _cross_entropy(out["gating_classifier"], labels)
    np.testing.assert_allclose(result["fused_loss"], ce_adap, rtol=1e-4)
    np.testing.assert_allclose(result["gating_classifier_loss"], ce_c, rtol=1e-4)
    np.testing.assert_allclose(result["loss"], ce_adap + lam * ce_c, rtol=1e-4)
    with pytest.raises(ValueError, match="lambda"):
        model.compile(gating_loss_weight=-1.0)


def test_compile_defaults_are_the_gate_recipe(gated):
    gated.compile()
    assert isinstance(gated.optimizer, CaffeSGD) and float(gated.optimizer.learning_rate) == pytest.approx(1e-3)


def test_streams_frozen_and_gate_initialised_from_rgb(gated, streams):
    rgb, _ = streams
    trainable = {w.path.split("/")[0] for w in gated.trainable_weights}
    assert not any(name.startswith(("rgb_stream", "flow_stream")) for name in trainable)
    assert "gating_inception_5a_1x1" in trainable
    np.testing.assert_array_equal(
        gated.get_layer("gating_inception_5b_3x3").kernel.numpy(), rgb.get_layer("inception_5b_3x3").kernel.numpy()
    )
    # The gate's frozen BN starts from the RGB stream's statistics.
    np.testing.assert_array_equal(
        gated.get_layer("gating_inception_5b_3x3_bn").moving_variance.numpy(),
        rgb.get_layer("inception_5b_3x3_bn").moving_variance.numpy(),
    )


def test_callers_streams_stay_trainable(gated, streams):
    rgb, flow = streams
    assert len(rgb.trainable_weights) > 100 and len(flow.trainable_weights) > 100
    assert rgb.get_layer("dropout").rate == 0.8  # the caller's stream keeps its dropout


def test_fit_with_plain_labels_moves_the_gate_only(streams):
    """fit(clips, integer labels): the gate's kernels and BN scale/shift train,
    its BN statistics and every stream weight stay (A1 of the issue), and a
    first fit leaves the model usable."""
    model = GatedTSN(*streams)
    model.compile(optimizer=keras.optimizers.SGD(0.05), gating_loss_weight=1.0)
    inner = model.get_layer("rgb_stream")
    bn = model.get_layer("gating_inception_5a_1x1_bn")
    before = {
        "stream": inner.get_layer("inception_5a_1x1").kernel.numpy().copy(),
        "stream_bn": inner.get_layer("inception_5a_1x1_bn").moving_mean.numpy().copy(),
        "head": model.get_layer("gating_fc-action").kernel.numpy().copy(),
        "mean": bn.moving_mean.numpy().copy(), "variance": bn.moving_variance.numpy().copy(),
        "gamma": bn.gamma.numpy().copy(),
    }
    history = model.fit(random_clips(SIZE, batch=4), np.array([0, 1, 2, 3]), epochs=2, verbose=0)
    assert {"fused_loss", "gating_classifier_loss", "fused_accuracy"} <= set(history.history)
    np.testing.assert_array_equal(inner.get_layer("inception_5a_1x1").kernel.numpy(), before["stream"])
    np.testing.assert_array_equal(inner.get_layer("inception_5a_1x1_bn").moving_mean.numpy(), before["stream_bn"])
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before["mean"])
    np.testing.assert_array_equal(bn.moving_variance.numpy(), before["variance"])
    assert not np.array_equal(bn.gamma.numpy(), before["gamma"])
    assert not np.array_equal(model.get_layer("gating_fc-action").kernel.numpy(), before["head"])
    assert model.evaluate(random_clips(SIZE, batch=2), np.array([0, 1]), verbose=0, return_dict=True)["loss"] > 0


@pytest.mark.parametrize("stream_dropout", [False, True])
def test_stream_dropout_only_when_asked(streams, stream_dropout):
    model = GatedTSN(*streams, stream_dropout=stream_dropout)
    clips = random_clips(SIZE, seed=7)
    first, second = model(clips, training=True)["rgb"], model(clips, training=True)["rgb"]
    assert np.array_equal(first, second) != stream_dropout
    assert model.get_config()["stream_dropout"] is stream_dropout


@pytest.mark.parametrize(
    "fusion_layer,feature_fusion,activation",
    [("inception_3c_output", "concat", "softmax"), ("inception_5b_output", "conv", "relu")],
)
def test_options(streams, fusion_layer, feature_fusion, activation):
    model = GatedTSN(
        *streams, fusion_layer=fusion_layer, feature_fusion=feature_fusion, gate_activation=activation,
        fusion_initializer="identity",
    )
    out = model.predict(random_clips(SIZE, batch=1), verbose=0)
    assert out["fused"].shape == (1, CLASSES)
    if activation == "softmax":
        np.testing.assert_allclose(out["fusion_weights"].sum(-1), 1.0, rtol=1e-5)
    if feature_fusion == "concat":
        # 4a's first layers take the 2 x 576 stacked channels, initialised as the halved RGB kernel twice.
        kernel = model.get_layer("gating_inception_4a_1x1").kernel.numpy()
        assert kernel.shape[2] == 1152
        rgb_kernel = streams[0].get_layer("inception_4a_1x1").kernel.numpy()
        np.testing.assert_allclose(kernel[:, :, :576], rgb_kernel / 2, rtol=1e-6)


def test_concat_height_is_the_authors_concatenation_network(streams):
    """gating_three_2_concat: maps stacked along the height (flow on top), 1x1
    conv D -> D, one average-pool window per stream's half, fc on 2 x 1024."""
    model = GatedTSN(*streams, feature_fusion="concat_height", fusion_initializer="identity")
    concat = model.get_layer("gating_inception_4e_output_concat")
    assert concat.output.shape[1:] == (4, 2, 1056)  # 2x2 per stream at 64x64, stacked along the height
    assert model.get_layer("gating_inception_4e_output_conv_fusion").kernel.shape == (1, 1, 1056, 1056)
    assert model.get_layer("gating_global_pool").output.shape[1:] == (2, 1, 1024)
    assert model.get_layer("gating_fc-action").kernel.shape == (2048, 2)
    out = model.predict(random_clips(SIZE, batch=1), verbose=0)
    assert out["fused"].shape == (1, CLASSES)


def test_bad_options(streams):
    rgb, flow = streams
    with pytest.raises(ValueError, match="not a feature layer of BN-Inception"):
        GatedTSN(rgb, flow, fusion_layer="conv9")
    with pytest.raises(ValueError, match="feature_fusion"):
        GatedTSN(rgb, flow, feature_fusion="bilinear")
    with pytest.raises(ValueError, match="gate_activation"):
        GatedTSN(rgb, flow, gate_activation="sigmoid")
    with pytest.raises(ValueError, match="modality"):
        GatedTSN(flow, rgb)
    with pytest.raises(ValueError, match="TSN"):
        GatedTSN(keras.Sequential([keras.layers.Dense(2)]), flow)
    other = TSN(modality="flow", num_classes=CLASSES + 1, input_size=SIZE)
    with pytest.raises(ValueError, match="num_classes"):
        GatedTSN(rgb, other)


def test_keras_round_trip_remembers_what_it_is(tmp_path, streams):
    model = GatedTSN(*streams, feature_fusion="concat", gate_activation="softmax", dropout=0.5)
    loaded = run_model_saving_test(model, random_clips(SIZE, seed=5), tmp_path)
    assert (loaded.backbone, loaded.fusion_layer, loaded.feature_fusion) == ("bn_inception", "inception_4e_output", "concat")
    assert (loaded.num_classes, loaded.input_size, loaded.new_length, loaded.dropout) == (CLASSES, SIZE, 5, 0.5)
    assert isinstance(loaded.get_layer("gating_inception_5a_1x1_bn"), FrozenBatchNormalization)
    run_serialization_test(model)


def test_class_names_come_from_the_streams(streams):
    rgb, flow = streams
    names = ["jump", "run", "wave", "clap"]
    gated = GatedTSN({**rgb.get_config(), "class_names": names}, flow.get_config())
    assert gated.class_names == names and GatedTSN(*streams).class_names is None
    with pytest.raises(ValueError, match="class 2 is 'wave' for rgb, 'swim' for flow"):
        GatedTSN({**rgb.get_config(), "class_names": names},
                 {**flow.get_config(), "class_names": ["jump", "run", "swim", "clap"]})


def test_gate_init_from_a_backbone_file(tmp_path, monkeypatch, streams):
    """gate_init='imagenet' fills the gating ConvNet's trunk from the backbone's
    registered ImageNet file (Algorithm 1, input 2); conv fusion stays new."""
    from keras_gated_tsn.backbones import BNInception

    monkeypatch.setenv("KGT_WEIGHTS_DIR", str(tmp_path))
    imagenet = BNInception(include_top=False, input_shape=(SIZE, SIZE, 3))
    imagenet.get_layer("inception_5a_1x1").kernel.assign(np.full((1, 1, 1056, 352), 0.25, np.float32))
    imagenet.save_weights(tmp_path / "bn_inception_imagenet.weights.h5")
    model = GatedTSN(*streams, gate_init="imagenet")
    np.testing.assert_array_equal(model.get_layer("gating_inception_5a_1x1").kernel.numpy(), 0.25)
    assert model.get_config()["gate_init"] == "imagenet"
    with pytest.raises(FileNotFoundError, match="convert-weights"):
        monkeypatch.setenv("KGT_WEIGHTS_DIR", str(tmp_path / "empty"))
        GatedTSN(*streams, gate_init="imagenet")


def test_two_stream_convnets_streams_gate_across_their_norm2_variant():
    """The two-stream ConvNets' spatial net (CNN-M-2048) and temporal net (the same
    without norm2) make one gated model; the gate is built from the RGB backbone.
    Backbones without the fusion layer's maps in common are refused."""
    rgb = TSN("cnn_m_2048", "rgb", num_classes=3, num_segments=1, input_size=64)
    flow = TSN("cnn_m_2048_no_norm2", "flow", num_classes=3, num_segments=1, input_size=64)
    gated = GatedTSN(rgb, flow)
    assert gated.backbone == "cnn_m_2048" and gated.fusion_layer == "conv5"
    outputs = gated({"rgb": np.zeros((2, 1, 64, 64, 3), np.uint8), "flow": np.zeros((2, 1, 64, 64, 10), np.uint8)})
    assert outputs["fused"].shape == (2, 3)
    with pytest.raises(ValueError, match="the flow backbone has no 'norm2'"):
        GatedTSN(rgb, flow, fusion_layer="norm2")
    with pytest.raises(ValueError, match="streams disagree on backbone: rgb 'caffenet', flow 'cnn_m_2048_no_norm2'"):
        GatedTSN(TSN("caffenet", "rgb", num_classes=3, num_segments=1, input_size=67),
                 TSN("cnn_m_2048_no_norm2", "flow", num_classes=3, num_segments=1, input_size=67))
