"""GCF-Net: eqs. (1)-(7) on hand cases, the loss of eqs. (9)-(10), the ablations
and baselines of Tables 1-2, saving, the head over a 2D backbone, and fit()
on real frames."""

import math
import os

import keras
import numpy as np
import pytest

from helpers import count_weights, run_model_saving_test, run_serialization_test
from keras_gated_tsn.data.clips import make_clip_dataset
from keras_gated_tsn.layers import CentralClip, ClipUnfold, ClipWiseAttention, GatedClipResidual, InterClipFusion
from keras_gated_tsn.models import TSN, AttentionSparsity, GCFNet
from keras_gated_tsn.models.gcf_net import FUSIONS
from keras_gated_tsn.training.recipes import CaffeSGD

SIZE = 32
CLIPS = 4
FRAMES = 2
CLASSES = 3
DIM = 16
LIGHT = "mobilenet3d_v2"


def _clips(batch=2, clips=CLIPS, frames=FRAMES, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch, clips, frames, SIZE, SIZE, 3)).astype("uint8")


def _light(**kwargs):
    options = dict(num_classes=CLASSES, num_clips=CLIPS, clip_length=FRAMES, input_size=SIZE, descriptor_dim=DIM)
    return GCFNet(LIGHT, **{**options, **kwargs})


@pytest.fixture(scope="module")
def gcf():
    return _light()


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _cross_entropy(logits, labels):
    logits = logits.astype(np.float64)
    top = logits.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return float(np.mean(log_z - logits[np.arange(len(labels)), labels]))


# ------------------------------------------------------------------ equations


#: Three clip descriptors v_1 = (1, 0), v_2 = (0, 1), v_3 = (1, 1) of one video.
V = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], np.float32)
EYE2 = np.eye(2, dtype=np.float32)


def _fusion(normalization):
    layer = InterClipFusion(2, normalization=normalization)
    layer.build(V.shape)
    layer.set_weights([EYE2, EYE2, EYE2, 2 * EYE2])  # W_q, W_k, W_v = I; W_z = 2I
    return layer


def test_equation_1_hand_case_clips():
    """N(v) = C = 3: relations v_i·v_j / 3 = [[1, 0, 1], [0, 1, 1], [1, 1, 2]] / 3, so
    b_1 = 2(v_1 + v_3)/3, b_2 = 2(v_2 + v_3)/3, b_3 = 2(v_1 + v_2 + 2 v_3)/3 (W_z = 2I)."""
    b = _fusion("clips")(V)
    np.testing.assert_allclose(b[0], [[4 / 3, 2 / 3], [2 / 3, 4 / 3], [2.0, 2.0]], rtol=1e-6)


def test_equation_1_hand_case_softmax():
    """Softmax over j of v_i·v_j / sqrt(2): row 1 has products (1, 0, 1), so with
    a = e^(1/sqrt 2), b_1 = 2 (a v_1 + v_2 + a v_3) / (2a + 1)."""
    a = math.exp(1 / math.sqrt(2))
    c = math.exp(2 / math.sqrt(2))
    b = _fusion("softmax")(V)
    np.testing.assert_allclose(b[0, 0], 2 * np.array([2 * a, 1 + a]) / (2 * a + 1), rtol=1e-6)
    # Row 3: products (1, 1, 2): b_3 = 2 (a v_1 + a v_2 + c v_3) / (2a + c).
    np.testing.assert_allclose(b[0, 2], 2 * np.array([a + c, a + c]) / (2 * a + c), rtol=1e-6)


def test_equations_2_to_7_hand_case():
    """On the b_i above: g = (1, 1, 2) (eq. 2); with W_1 = W_2 = I, b_2 = (0, 0, -2):
    att = sigmoid((1, 1, 0)) (eq. 3); r_i = (1 + att_i) b_i (eqs. 4-6);
    v' = mean r_i = ((5 + 2 sigmoid(1)) / 3) (1, 1) (eq. 7)."""
    b = _fusion("clips")(V)
    attention = ClipWiseAttention()
    attention.build(b.shape)
    eye3 = np.eye(3, dtype=np.float32)
    attention.set_weights([eye3, np.zeros(3, np.float32), eye3, np.array([0.0, 0.0, -2.0], np.float32)])
    att = attention(b)
    s1 = 1 / (1 + math.exp(-1))
    np.testing.assert_allclose(att, [[s1, s1, 0.5]], rtol=1e-6)
    r = GatedClipResidual()([b, att])
    np.testing.assert_allclose(r[0, 2], [3.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(r[0, 0], [4 / 3 * (1 + s1), 2 / 3 * (1 + s1)], rtol=1e-6)
    video = keras.layers.GlobalAveragePooling1D()(r)
    np.testing.assert_allclose(video, [[(5 + 2 * s1) / 3] * 2], rtol=1e-6)


def test_model_computes_equations_1_to_8(gcf):
    """The model's scores and attention are eqs. (1)-(8) recomputed in NumPy from
    its own clip descriptors V and its weights."""
    clips = _clips(seed=1)
    probe = keras.Model(gcf.input, gcf.get_layer("clip_descriptors").output)
    v = probe.predict(clips, verbose=0).astype(np.float64)
    out = gcf.predict(clips, verbose=0)
    wq, wk, wv, wz = gcf.get_layer("inter_clip_fusion_1").get_weights()
    products = (v @ wq) @ np.swapaxes(v @ wk, 1, 2) / np.sqrt(DIM)
    relations = np.exp(products - products.max(-1, keepdims=True))
    relations /= relations.sum(-1, keepdims=True)
    b = relations @ (v @ wv) @ wz
    w1, b1, w2, b2 = gcf.get_layer("attention").get_weights()
    att = _sigmoid(np.maximum(b.mean(-1) @ w1 + b1, 0) @ w2 + b2)
    video = (b + att[..., None] * b).mean(axis=1)
    w3, b3 = gcf.get_layer("classifier").get_weights()
    np.testing.assert_allclose(out["attention"], att, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["scores"], video @ w3 + b3, rtol=1e-3, atol=1e-5)


def test_outputs_and_names(gcf):
    out = gcf.predict(_clips(), verbose=0)
    assert set(out) == {"scores", "attention"}
    assert out["scores"].shape == (2, CLASSES) and out["attention"].shape == (2, CLIPS)
    assert ((out["attention"] > 0) & (out["attention"] < 1)).all()
    assert gcf.input.shape == (None, CLIPS, FRAMES, SIZE, SIZE, 3)
    names = {layer.name for layer in gcf.layers}
    for name in ("rgb_preprocessing", "clip_fold", "Conv1", "block_16_project", "out_relu", "global_pool",
                 "clip_descriptors", "inter_clip_fusion_1", "attention", "residual_descriptors",
                 "video_descriptor", "dropout", "classifier"):
        assert name in names
    assert gcf.get_layer("inter_clip_fusion_1").value_kernel.shape == (1280, DIM)
    assert gcf.get_layer("attention").kernel_1.shape == (CLIPS, CLIPS)
    assert gcf.get_layer("classifier").kernel.shape == (DIM, CLASSES)
    assert gcf.get_layer("Conv1").strides == (1, 2, 2)  # no temporal stride (Sec. 3.1)


# ---------------------------------------------------------------------- loss


def test_attention_sparsity_hand_case():
    """Eq. (10): per video ||att||_1 = 0.8 and 1.3; the batch mean is 1.05 (labels ignored)."""
    att = np.array([[0.2, 0.5, 0.1], [1.0, 0.0, 0.3]], np.float32)
    loss = AttentionSparsity()
    assert float(loss(np.array([2, 0]), att)) == pytest.approx(1.05, rel=1e-6)
    assert float(loss(np.zeros(2), att, sample_weight=np.array([1.0, 0.0]))) == pytest.approx(0.4, rel=1e-6)
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(revived, AttentionSparsity) and revived.name == "attention_sparsity"


def test_compiled_loss_is_equation_9(gcf):
    """compile(sparsity_weight=λ): L = CE(y, scores) + λ·mean ||att||_1, from the
    model's own outputs."""
    lam = 0.5
    gcf.compile(sparsity_weight=lam)
    clips, labels = _clips(batch=3, seed=2), np.array([0, 2, 1])
    out = gcf.predict(clips, verbose=0)
    result = gcf.evaluate(clips, labels, verbose=0, return_dict=True)
    ce, sparsity = _cross_entropy(out["scores"], labels), float(out["attention"].sum(-1).mean())
    np.testing.assert_allclose(result["scores_loss"], ce, rtol=1e-4)
    np.testing.assert_allclose(result["attention_loss"], sparsity, rtol=1e-4)
    np.testing.assert_allclose(result["loss"], ce + lam * sparsity, rtol=1e-4)
    assert "scores_accuracy" in result


def test_compile_defaults_are_the_papers_sgd(gcf):
    """Sec. 3.3: lr 0.1 with dampening 0.9 is Caffe-style SGD at 0.01, momentum 0.9, decay 1e-3."""
    gcf.compile()
    optimizer = gcf.optimizer
    assert isinstance(optimizer, CaffeSGD)
    assert float(optimizer.learning_rate) == pytest.approx(0.01) and optimizer.momentum == pytest.approx(0.9)
    assert optimizer.caffe_weight_decay == pytest.approx(1e-3) and optimizer.global_clipnorm is None
    with pytest.raises(ValueError, match="lambda"):
        gcf.compile(sparsity_weight=-1.0)


# ------------------------------------------------------- ablations, baselines


def _names(model):
    return {layer.name for layer in model.layers}


def test_ablations_change_the_graph():
    """Table 2: inter-clip fusion only (v' = mean b_i), attention only (on the raw V),
    both; n stacked fusion layers (eqs. 11-12); Table 1's D-Clips and C-Clip."""
    head = {"inter_clip_fusion_1", "attention", "residual_descriptors", "video_descriptor"}
    expected = {
        "gcf": {"inter_clip_fusion_1", "attention", "residual_descriptors", "video_descriptor"},
        "inter_clip": {"inter_clip_fusion_1", "video_descriptor"},
        "attention": {"attention", "residual_descriptors", "video_descriptor"},
        "d_clips": {"clip_consensus"},
        "c_clip": {"central_clip", "clip_consensus"},
    }
    for fusion in FUSIONS:
        model = _light(fusion=fusion)
        names = _names(model)
        assert names & (head | {"central_clip", "clip_consensus"}) == expected[fusion], fusion
        assert set(model.output) == ({"scores", "attention"} if "attention" in expected[fusion] else {"scores"})
        assert model.has_attention == ("attention" in expected[fusion])
        # W_3 sees D after inter-clip fusion, the backbone's d = 1280 otherwise.
        width = DIM if fusion in ("gcf", "inter_clip") else 1280
        assert model.get_layer("classifier").kernel.shape == (width, CLASSES)
        # Only the attention's W_1, W_2 fix the number of clips.
        assert model.input.shape[1] == (CLIPS if model.has_attention else None)
        assert model.get_config()["fusion"] == fusion
    deep = _light(fusion_layers=2, key_dim=8)
    assert deep.get_layer("inter_clip_fusion_2").query_kernel.shape == (DIM, 8)
    assert deep.get_layer("inter_clip_fusion_1").query_kernel.shape == (1280, 8)
    assert "inter_clip_fusion_3" not in _names(deep)
    mixed = _light(dtype="mixed_bfloat16")
    assert mixed.get_layer("Conv1").compute_dtype == "bfloat16"
    assert mixed.output["scores"].dtype == mixed.output["attention"].dtype == "float32"


def test_d_clips_and_c_clip_are_the_baselines():
    """D-Clips: the mean of each clip's scores; C-Clip: the central clip's scores alone."""
    dense = _light(fusion="d_clips")
    central = _light(fusion="c_clip")
    central.init_from(dense, include_classifier=True)
    clips = _clips(batch=2, clips=3, seed=3)
    alone = [dense(clips[:, i : i + 1])["scores"] for i in range(3)]
    np.testing.assert_allclose(dense(clips)["scores"], np.mean(alone, axis=0), rtol=1e-4, atol=1e-5)
    scores = central(clips)["scores"]
    np.testing.assert_allclose(scores, alone[1], rtol=1e-4, atol=1e-5)
    changed = clips.copy()
    changed[:, [0, 2]] = 255 - changed[:, [0, 2]]
    np.testing.assert_allclose(central(changed)["scores"], scores, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------- saving


# (A compiled, never-trained model saves an unbuilt optimizer, which Keras notes on loading.)
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_keras_round_trip_remembers_what_it_is(tmp_path):
    model = _light(fusion_layers=2, relation_normalization="clips", attention_units=3, dropout=0.5,
                   class_names=["jump", "run", "wave"])
    model.compile(sparsity_weight=0.25)
    loaded = run_model_saving_test(model, _clips(seed=4), tmp_path, atol=1e-5)
    assert (loaded.backbone, loaded.fusion, loaded.num_clips, loaded.clip_length) == (LIGHT, "gcf", CLIPS, FRAMES)
    assert (loaded.descriptor_dim, loaded.fusion_layers, loaded.relation_normalization) == (DIM, 2, "clips")
    assert loaded.class_names == ["jump", "run", "wave"] and loaded.get_layer("dropout").rate == 0.5
    assert isinstance(loaded.loss["attention"], AttentionSparsity)
    assert loaded.get_compile_config()["loss_weights"] == {"scores": 1.0, "attention": 0.25}
    run_serialization_test(model)


def test_layers_round_trip_configs():
    for layer in (ClipUnfold(), CentralClip(), InterClipFusion(8, key_units=4, normalization="clips"),
                  ClipWiseAttention(5, bias_initializer="ones"), GatedClipResidual()):
        run_serialization_test(layer)
    with pytest.raises(ValueError, match="normalization must be one of"):
        InterClipFusion(8, normalization="cosine")
    with pytest.raises(ValueError, match="units must be a positive int, got 0"):
        InterClipFusion(0)
    with pytest.raises(ValueError, match="fixed number of clips"):
        ClipWiseAttention().build((None, None, 8))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"unknown backbone 'r2plus1d'; clip backbones: \['resnext3d_101'"):
        GCFNet("r2plus1d")
    with pytest.raises(ValueError, match="fusion must be one of"):
        _light(fusion="max")
    with pytest.raises(ValueError, match="takes RGB clips, got modality 'flow'"):
        _light(modality="flow")
    with pytest.raises(ValueError, match="input_size must be an int >= 32, got 16"):
        _light(input_size=16)
    with pytest.raises(ValueError, match="descriptor_dim must be an int >= 1, got 0"):
        _light(descriptor_dim=0)
    with pytest.raises(ValueError, match="no pretrained weights are registered"):
        _light(backbone_weights="imagenet")


def test_head_parameters_are_table_3s():
    """GCF-Net without backbone, Table 3: 0.86M parameters (15 MFLOPs). Over
    3D-ResNeXt-101 (d = 2048) with 10 clips and 600 classes that is D = 128:
    3·2048·128 + 128² (eq. 1) + 2·(10·10 + 10) (eq. 3) + 128·600 + 600 (W_3)."""
    model = GCFNet("resnext3d_101", num_classes=600, num_clips=10, clip_length=1, input_size=32,
                   descriptor_dim=128)
    head = sum(count_weights(model.get_layer(name).weights)
               for name in ("inter_clip_fusion_1", "attention", "classifier"))
    assert head == 3 * 2048 * 128 + 128**2 + 2 * (10 * 10 + 10) + 128 * 600 + 600 == 880_436
    assert abs(head - 0.86e6) / 0.86e6 < 0.03
    backbone = sum(count_weights(layer.trainable_weights) for layer in model.backbone_layers)
    assert backbone == 48_750_616 - (2048 * 600 + 600)


# ------------------------------------------------------- over a 2D backbone


def test_head_over_a_2d_backbone_of_the_zoo():
    """A clip of T frames through a 2D backbone frame by frame, features averaged over
    the frames (T = 1: the clip is one TSN snippet); weights from a TSN stream by name."""
    size = 39  # CaffeNet's smallest input: pool5 1x1x256
    model = GCFNet("caffenet", num_classes=CLASSES, num_clips=3, clip_length=2, input_size=size, descriptor_dim=8)
    names = _names(model)
    assert {"rgb_preprocessing", "clip_fold", "frame_fold", "conv1", "pool5", "flatten", "frame_consensus",
            "clip_descriptors", "inter_clip_fusion_1", "attention"} <= names
    assert model.get_layer("inter_clip_fusion_1").value_kernel.shape == (256, 8)
    stream = TSN("caffenet", num_classes=CLASSES, input_size=size)
    model.init_from(stream)
    np.testing.assert_array_equal(model.get_layer("conv3").kernel.numpy(), stream.get_layer("conv3").kernel.numpy())
    clip = np.random.default_rng(5).integers(0, 256, (1, 3, 1, size, size, 3)).astype("uint8")
    twice = np.repeat(clip, 2, axis=2)  # each clip: the same frame twice, whose average is that frame's features
    out = model.predict(twice, verbose=0)
    assert out["scores"].shape == (1, CLASSES) and out["attention"].shape == (1, 3)
    probe = keras.Model(model.input, model.get_layer("clip_descriptors").output)
    features = keras.Model(stream.input, stream.get_layer("flatten").output).predict(clip[:, :, 0], verbose=0)
    np.testing.assert_allclose(probe.predict(twice, verbose=0)[0], features.reshape(3, 256), rtol=1e-4, atol=1e-3)
    flow = GCFNet("caffenet", modality="flow", new_length=5, num_classes=CLASSES, num_clips=3, clip_length=1,
                  input_size=size, descriptor_dim=8)
    assert flow.input.shape == (None, 3, 1, size, size, 10) and flow.get_layer("conv1").kernel.shape[2] == 10


# --------------------------------------------------------------- training


def test_fit_on_real_frames_moves_the_right_weights(prepared_samples):
    """fit() on clips of the real sample videos (4 clips x 4 frames x 32x32): with
    freeze_backbone (the paper's UCF-101 fine-tuning) only the head learns and the
    backbone's BN keeps its statistics; unfrozen, the backbone learns too."""
    ds = make_clip_dataset(
        os.path.join(prepared_samples, "train.txt"), os.path.join(prepared_samples, "frames"),
        num_clips=4, clip_length=4, input_size=SIZE, batch_size=4, seed=0,
    ).take(2)
    model = GCFNet(LIGHT, num_classes=3, num_clips=4, clip_length=4, input_size=SIZE, descriptor_dim=DIM,
                   freeze_backbone=True)
    watched = {
        "conv": lambda: model.get_layer("Conv1").kernel, "bn_mean": lambda: model.get_layer("bn_Conv1").moving_mean,
        "bn_gamma": lambda: model.get_layer("block_16_project_BN").gamma,
        "fusion": lambda: model.get_layer("inter_clip_fusion_1").query_kernel,
        "attention": lambda: model.get_layer("attention").kernel_1,
        "classifier": lambda: model.get_layer("classifier").kernel,
    }

    def snapshot():
        return {name: get().numpy().copy() for name, get in watched.items()}

    def changed(before):
        after = snapshot()
        return {name for name in watched if not np.array_equal(before[name], after[name])}

    assert model.get_config()["freeze_backbone"] is True
    model.compile(optimizer=keras.optimizers.SGD(0.01), sparsity_weight=0.1)
    before = snapshot()
    history = model.fit(ds, epochs=1, shuffle=False, verbose=0).history
    assert {"loss", "scores_loss", "attention_loss", "scores_accuracy"} <= set(history)
    assert np.isfinite(history["loss"]).all()
    assert changed(before) == {"fusion", "attention", "classifier"}

    model.set_backbone_trainable(True)
    assert model.get_config()["freeze_backbone"] is False
    model.compile(optimizer=keras.optimizers.SGD(0.01), sparsity_weight=0.1)
    before = snapshot()
    history = model.fit(ds, epochs=1, shuffle=False, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    assert changed(before) == set(watched)


def test_evaluate_scores_a_gcf_net_from_the_cli(prepared_samples, tmp_path, capsys):
    """`gated-tsn evaluate --model gcf.keras`: one view per video holding its C
    centre-cropped clips (Sec. 3.3), the scores as the score file's fused field,
    and the metrics printed; the same scores as calling the model on the
    evaluation clips."""
    from keras_gated_tsn.cli import main
    from keras_gated_tsn.data.lists import read_list_file
    from keras_gated_tsn.evaluation.scores import load_scores

    classes = (prepared_samples / "classes.txt").read_text().split()
    model = _light(num_classes=len(classes))
    model.save(tmp_path / "gcf.keras")
    test_list = tmp_path / "test.txt"
    test_list.write_text("\n".join((prepared_samples / "test.txt").read_text().splitlines()[:3]) + "\n")
    out = tmp_path / "gcf.npz"
    assert main(["evaluate", "--data", str(prepared_samples), "--list", str(test_list), "--model",
                 str(tmp_path / "gcf.keras"), "--out", str(out), "--no-progress"]) == 0
    assert "fused" in capsys.readouterr().out
    scores = load_scores(str(out))
    assert scores.fused.shape == (3, 1, len(classes)) and scores.metadata["model"] == "gcf_net"
    assert list(scores.video_ids) == [r.video for r in read_list_file(test_list)]
    clips = make_clip_dataset(test_list, prepared_samples / "frames", num_clips=model.num_clips,
                              clip_length=model.clip_length, input_size=model.input_size, batch_size=3,
                              training=False)
    expected = model.predict(next(iter(clips))[0], verbose=0)["scores"]
    np.testing.assert_allclose(scores.fused[:, 0], expected, rtol=1e-4, atol=1e-5)
