"""Gated TSN: outputs, eq. (2), eq. (4), frozen streams, options, saving."""

import keras
import numpy as np
import pytest

from keras_gated_tsn.layers import GatedFusion
from keras_gated_tsn.models import TSN, GatedTSN, init_from_rgb
from keras_gated_tsn.training import compile_gated, gated_targets

SIZE = 64
CLASSES = 4


@pytest.fixture(scope="module")
def streams():
    rgb = TSN(modality="rgb", num_classes=CLASSES, input_size=SIZE)
    flow = TSN(modality="flow", num_classes=CLASSES, input_size=SIZE)
    init_from_rgb(flow, rgb)
    return rgb, flow


@pytest.fixture(scope="module")
def gated(streams):
    return GatedTSN(*streams)


def _clips(batch=2, segments=3, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "rgb": rng.integers(0, 256, (batch, segments, SIZE, SIZE, 3)).astype("uint8"),
        "flow": rng.integers(0, 256, (batch, segments, SIZE, SIZE, 10)).astype("uint8"),
    }


def test_outputs_and_names(gated):
    out = gated.predict(_clips(), verbose=0)
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


def test_fused_is_equation_2_and_streams_match(gated, streams):
    clips = _clips(seed=3)
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


def test_equation_4_loss_hand_case():
    """compile_gated's loss is CE(fused) + λ·CE(gating_classifier) on logits."""
    fused = keras.Input((3,), name="fused_in")
    classify = keras.Input((3,), name="classify_in")
    outputs = {name: keras.layers.Identity(name=name)(fused) for name in ("fused", "rgb", "flow")}
    outputs["gating_classifier"] = keras.layers.Identity(name="gating_classifier")(classify)
    outputs["fusion_weights"] = keras.layers.Identity(name="fusion_weights")(classify[:, :2])
    model = keras.Model([fused, classify], outputs)
    lam = 0.3
    compile_gated(model, lam=lam)
    g_adap = np.array([[2.0, 0.0, -1.0]], np.float32)
    g_c = np.array([[0.0, 1.0, 0.0]], np.float32)
    label = np.array([0])
    # eq. (4) by hand: -(G_y - log sum exp G)
    ce_adap = -(2.0 - np.log(np.exp(2.0) + np.exp(0.0) + np.exp(-1.0)))
    ce_c = -(0.0 - np.log(2 * np.exp(0.0) + np.exp(1.0)))
    result = model.evaluate([g_adap, g_c], gated_targets(label), verbose=0, return_dict=True)
    np.testing.assert_allclose(result["loss"], ce_adap + lam * ce_c, rtol=1e-5)
    np.testing.assert_allclose(result["fused_loss"], ce_adap, rtol=1e-5)


def test_streams_frozen_and_gate_initialised_from_rgb(gated, streams):
    rgb, _ = streams
    trainable = {w.path.split("/")[0] for w in gated.trainable_weights}
    assert not any(name.startswith(("rgb_stream", "flow_stream")) for name in trainable)
    assert "gating_inception_5a_1x1" in trainable
    np.testing.assert_array_equal(
        gated.get_layer("gating_inception_5b_3x3").kernel.numpy(), rgb.get_layer("inception_5b_3x3").kernel.numpy()
    )


def test_callers_streams_stay_trainable(gated, streams):
    rgb, flow = streams
    assert len(rgb.trainable_weights) > 100 and len(flow.trainable_weights) > 100


def test_training_moves_only_the_gate(streams):
    rgb, flow = streams
    model = GatedTSN(rgb, flow)
    compile_gated(model, lam=1.0)
    inner = model.get_layer("rgb_stream")
    before_stream = inner.get_layer("inception_5a_1x1").kernel.numpy().copy()
    before_gate = model.get_layer("gating_fc-action").kernel.numpy().copy()
    model.fit(_clips(), gated_targets(np.array([0, 1])), epochs=1, verbose=0)
    np.testing.assert_array_equal(inner.get_layer("inception_5a_1x1").kernel.numpy(), before_stream)
    assert not np.array_equal(model.get_layer("gating_fc-action").kernel.numpy(), before_gate)


@pytest.mark.parametrize(
    "fusion_layer,feature_fusion,activation",
    [("inception_3c_output", "concat", "softmax"), ("inception_5b_output", "conv", "relu")],
)
def test_options(streams, fusion_layer, feature_fusion, activation):
    model = GatedTSN(
        *streams, fusion_layer=fusion_layer, feature_fusion=feature_fusion, gate_activation=activation,
        fusion_initializer="identity",
    )
    out = model.predict(_clips(batch=1), verbose=0)
    assert out["fused"].shape == (1, CLASSES)
    if activation == "softmax":
        np.testing.assert_allclose(out["fusion_weights"].sum(-1), 1.0, rtol=1e-5)
    if feature_fusion == "concat":
        # 4a's first layers take the 2 x 576 stacked channels.
        assert model.get_layer("gating_inception_4a_1x1").kernel.shape[2] == 1152


def test_bad_options(streams):
    with pytest.raises(ValueError, match="fusion_layer"):
        GatedTSN(*streams, fusion_layer="conv9")
    with pytest.raises(ValueError, match="feature_fusion"):
        GatedTSN(*streams, feature_fusion="bilinear")
    with pytest.raises(ValueError, match="gate_activation"):
        GatedTSN(*streams, gate_activation="sigmoid")


def test_keras_round_trip(tmp_path, gated):
    path = tmp_path / "gated.keras"
    gated.save(path)
    loaded = keras.models.load_model(path)
    clips = _clips(seed=5)
    ours, theirs = gated.predict(clips, verbose=0), loaded.predict(clips, verbose=0)
    for name in ours:
        np.testing.assert_allclose(theirs[name], ours[name], rtol=1e-5, atol=1e-6)
