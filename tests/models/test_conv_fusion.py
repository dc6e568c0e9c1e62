"""Convolutional two-stream fusion (Feichtenhofer et al. 2016) as a model of the zoo:
the proposed architecture (3D conv fusion + 3D pooling, both towers kept,
Fig. 4), truncation, every spatial fusion, the initialisations seen through
the model, fit() on real frames (what trains, what stays frozen), mixed
precision, configs and .keras round trips.

Tiny inputs keep the file short on two cores: CaffeNet at 67 px (its conv5 is
3x3 there), VGG16 and BN-Inception at 32, CNN-M-2048 at 48; T = 2 snippets,
L = 2 flow frames, 3 classes. The paper's VGG-16 + VGG-M pair (Sec. 4.1,
Table 6) runs at 48 px, the cheapest input where VGG16's block5_conv3 (3x3)
and CNN-M-2048's conv5 (2x2) differ by one row and column, as 14x14 and
13x13 do at 224.
"""

import os

import keras
import numpy as np
import pytest

from helpers import random_clips, run_model_saving_test, run_serialization_test
from keras_gated_tsn.data import pipeline
from keras_gated_tsn.layers import (
    BilinearFusion,
    ConcatFusion,
    Conv3DFusion,
    ConvFusion,
    FrozenBatchNormalization,
    MaxFusion,
    Pooling3D,
    SumFusion,
)
from keras_gated_tsn.models import TSN, ConvTwoStreamFusion
from keras_gated_tsn.models.conv_fusion import last_conv_layer
from keras_gated_tsn.training.recipes import CaffeSGD

CLASSES = 3
T = 2
L = 2
SIZES = {"caffenet": 67, "vgg16": 32, "bn_inception": 32, "cnn_m_2048": 48, "cnn_m_2048_no_norm2": 48}


def _streams(backbone="caffenet", flow_backbone=None, seed=0, size=None):
    """Two streams whose classifiers give scores of order 1 (the default 0.001
    init would make every comparison trivially small)."""
    size = size or SIZES[backbone]
    rgb = TSN(backbone, "rgb", num_classes=CLASSES, num_segments=T, input_size=size, new_length=L)
    flow = TSN(flow_backbone or backbone, "flow", num_classes=CLASSES, num_segments=T, input_size=size, new_length=L)
    rng = np.random.default_rng(seed)
    for stream in (rgb, flow):
        fc = stream.get_layer("fc-action")
        fc.kernel.assign(rng.normal(0, 0.5, fc.kernel.shape).astype("float32"))
    return rgb, flow


def _clips(backbone="caffenet", batch=2, segments=T, seed=0, size=None):
    return random_clips(size or SIZES[backbone], batch=batch, segments=segments, new_length=L, seed=seed)


@pytest.fixture(scope="module")
def streams():
    return _streams()


@pytest.fixture(scope="module")
def proposed(streams):
    """The paper's architecture (Sec. 3.4, Fig. 4) with the defaults."""
    return ConvTwoStreamFusion(*streams, num_snippets=T)


def test_proposed_architecture(proposed):
    """ReLU5 fusion into the spatial net by a 3x3x3 conv 2D -> D, 3D pooling in
    both towers, a loss per tower, predictions averaged."""
    model = proposed
    assert model.fusion_layer == "conv5" == last_conv_layer("caffenet")
    assert (model.spatial_fusion, model.temporal_fusion, model.towers) == ("conv", "conv3d_pool3d", "keep_both")
    assert model.input["rgb"].shape[1:] == (T, 67, 67, 3) and model.input["flow"].shape[1:] == (T, 67, 67, 4)
    fusion = model.get_layer("spatiotemporal_conv5_conv3d_fusion")
    assert isinstance(fusion, Conv3DFusion) and fusion.kernel.shape == (3, 3, 3, 512, 256)
    assert fusion.identity_scales == (1.0, 3.0)
    for prefix in ("spatiotemporal", "flow"):
        pool = model.get_layer(f"{prefix}_pool3d")
        assert isinstance(pool, Pooling3D) and pool.pool_size == (T, 3, 3) and pool.strides == (T, 1, 1)
        assert model.get_layer(f"{prefix}_pool5").output.shape[1:] == (1, 1, 256)
        assert model.get_layer(f"{prefix}_fc-action").kernel.shape == (256, CLASSES)
    out = model.predict(_clips(), verbose=0)
    assert set(out) == {"spatiotemporal", "flow", "fused"}
    assert all(v.shape == (2, CLASSES) and v.dtype == np.float32 for v in out.values())
    np.testing.assert_allclose(out["fused"], (out["spatiotemporal"] + out["flow"]) / 2, rtol=1e-6, atol=1e-7)
    assert model.tower_outputs == ("spatiotemporal", "flow")
    # "We only propagate back to the injected fusion layer" (Sec. 3.5).
    trainable = {w.path.split("/")[0] for w in model.trainable_weights}
    assert not any(name.startswith(("rgb_stream", "flow_stream")) for name in trainable)
    assert {"spatiotemporal_conv5_conv3d_fusion", "spatiotemporal_fc-action", "flow_fc-action"} <= trainable


def test_towers_start_as_the_streams(streams):
    """No temporal fusion: the kept tower *is* the flow stream (its scores
    averaged over the snippets), and the fused tower with identity-initialised
    conv fusion computes exactly what sum fusion does: the RGB net's layers
    after conv5 on x_rgb + x_flow."""
    rgb, flow = streams
    clips = _clips(seed=1)
    conv = ConvTwoStreamFusion(rgb, flow, spatial_fusion="conv", temporal_fusion="none", num_snippets=T)
    summed = ConvTwoStreamFusion(rgb, flow, spatial_fusion="sum", temporal_fusion="none", towers="truncate")
    out_conv, out_sum = conv.predict(clips, verbose=0), summed.predict(clips, verbose=0)
    np.testing.assert_allclose(out_conv["flow"], flow.predict(clips["flow"], verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out_conv["spatiotemporal"], out_sum["spatiotemporal"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out_sum["fused"], out_sum["spatiotemporal"])
    assert set(out_sum) == {"spatiotemporal", "fused"}
    assert not any(layer.name.startswith("flow_") and layer.name != "flow_stream" for layer in summed.layers)
    np.testing.assert_array_equal(
        conv.get_layer("spatiotemporal_fc-action").kernel.numpy(), rgb.get_layer("fc-action").kernel.numpy()
    )
    # Fig. 3(a): without temporal fusion the snippets' scores are averaged (T is free).
    one = [summed.predict({m: clips[m][:, t:t + 1] for m in clips}, verbose=0)["fused"] for t in range(T)]
    np.testing.assert_allclose(out_sum["fused"], np.mean(one, axis=0), rtol=1e-5, atol=1e-6)
    assert summed.predict(_clips(segments=3), verbose=0)["fused"].shape == (2, CLASSES)


def test_concat_fusion_starts_on_the_mean_of_the_maps(streams):
    """Eq. (3)'s interleaved channels: the next layer's kernel is the stream's,
    each input channel repeated and halved, so the tower starts on
    (x_rgb + x_flow) / 2 — what conv fusion with identities (1/2, 1/2) computes."""
    rgb, flow = streams
    kwargs = dict(fusion_layer="conv4", temporal_fusion="none", towers="truncate")
    concat = ConvTwoStreamFusion(rgb, flow, spatial_fusion="concat", **kwargs)
    halves = ConvTwoStreamFusion(rgb, flow, spatial_fusion="conv", fusion_identity_scales=(0.5, 0.5), **kwargs)
    assert isinstance(concat.get_layer("spatiotemporal_conv4_concat_fusion"), ConcatFusion)
    kernel = concat.get_layer("spatiotemporal_conv5").kernel.numpy()  # grouped: (3, 3, 2 * 384 / 2, 256)
    source = rgb.get_layer("conv5").kernel.numpy()
    assert kernel.shape == (3, 3, 384, 256) and source.shape == (3, 3, 192, 256)
    np.testing.assert_array_equal(kernel[:, :, 0::2], source / 2)
    np.testing.assert_array_equal(kernel[:, :, 1::2], source / 2)
    clips = _clips(seed=2)
    np.testing.assert_allclose(
        concat.predict(clips, verbose=0)["fused"], halves.predict(clips, verbose=0)["fused"], rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize(
    "backbone,options,fusion_type,fused_shape",
    [
        ("vgg16", dict(spatial_fusion="max", temporal_fusion="pool3d"), MaxFusion, (T, 2, 2, 512)),
        ("vgg16", dict(spatial_fusion="concat", temporal_fusion="pool3d", towers="truncate",
                       pool3d_size=(1, 3, 3)), ConcatFusion, (T, 2, 2, 1024)),
        ("vgg16", dict(spatial_fusion="bilinear", temporal_fusion="none"), BilinearFusion, (512 * 512,)),
        ("vgg16", dict(spatial_fusion="sum", temporal_fusion="none", fuse_into="flow"), SumFusion, (2, 2, 512)),
        ("bn_inception", dict(fusion_layer="inception_5a_output", temporal_fusion="conv3d_pool3d",
                              conv3d_init_profile="temporal_gaussian"), Conv3DFusion, (T, 1, 1, 1024)),
        ("cnn_m_2048", dict(spatial_fusion="conv", temporal_fusion="pool3d", towers="truncate"), ConvFusion,
         (T, 2, 2, 512)),
    ],
    ids=["vgg16-max-pool3d", "vgg16-concat-pool3d-truncate", "vgg16-bilinear", "vgg16-sum-into-flow",
         "bn_inception-conv3d", "cnn_m-conv-pool3d"],
)
def test_fusion_types_and_backbones(backbone, options, fusion_type, fused_shape):
    flow_backbone = "cnn_m_2048_no_norm2" if backbone == "cnn_m_2048" else None  # the two-stream paper's pair
    rgb, flow = _streams(backbone, flow_backbone)
    model = ConvTwoStreamFusion(rgb, flow, num_snippets=T, **options)
    [fusion] = [layer for layer in model.layers if isinstance(layer, fusion_type)]
    assert fusion.name.startswith(f"spatiotemporal_{model.fusion_layer}_")
    assert tuple(fusion.output.shape[1:]) == fused_shape
    out = model.predict(_clips(backbone), verbose=0)
    assert all(v.shape == (2, CLASSES) and np.isfinite(v).all() for v in out.values())
    other = {"rgb": "flow", "flow": "rgb"}[model.fuse_into]
    expected = {"spatiotemporal", "fused"} | ({other} if model.towers == "keep_both" else set())
    assert set(out) == expected
    if model.towers == "keep_both":
        np.testing.assert_allclose(out["fused"], (out["spatiotemporal"] + out[other]) / 2, rtol=1e-5, atol=1e-6)
    if options.get("fuse_into") == "flow":
        # Fig. 2 right: fused into the temporal net, a purely spatial tower kept.
        np.testing.assert_array_equal(
            model.get_layer("spatiotemporal_fc-action").kernel.numpy(), flow.get_layer("fc-action").kernel.numpy()
        )
        np.testing.assert_allclose(out["rgb"], rgb.predict(_clips(backbone)["rgb"], verbose=0), rtol=1e-5,
                                   atol=1e-6)
    if backbone == "bn_inception":
        bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        assert bns and all(isinstance(layer, FrozenBatchNormalization) for layer in bns)
        assert model.get_layer("spatiotemporal_inception_5b_1x1").kernel.shape[2] == 1024
    if options.get("spatial_fusion") == "bilinear":
        assert model.get_layer("spatiotemporal_fc-action").kernel.shape == (512 * 512, CLASSES)


def _real_batches(prepared_samples, backbone, batches=2):
    ds = pipeline.make_dataset(
        os.path.join(prepared_samples, "train.txt"), os.path.join(prepared_samples, "frames"), "rgb+flow",
        num_segments=T, input_size=SIZES[backbone], batch_size=4, new_length=L, seed=0,
    )
    return ds.take(batches)


def _values(model, names):
    return {name: [w.numpy().copy() for w in model.get_layer(name).weights] for name in names}


def test_fit_on_real_frames_trains_after_the_fusion_only(prepared_samples, streams):
    """fit() on real frames with flow: the 3D conv fusion and both towers'
    layers after the fusion point train; the streams' layers up to conv5 stay."""
    model = ConvTwoStreamFusion(*streams, num_snippets=T, snippet_stride=4)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    frozen = [model.get_layer(f"{m}_stream").get_layer(name) for m in ("rgb", "flow") for name in ("conv1", "conv5")]
    frozen_before = [[w.numpy().copy() for w in layer.weights] for layer in frozen]
    trained = ["spatiotemporal_conv5_conv3d_fusion", "spatiotemporal_fc-action", "flow_fc-action"]
    before = _values(model, trained)
    history = model.fit(_real_batches(prepared_samples, "caffenet"), epochs=1, verbose=0)
    logs = history.history
    assert {"loss", "spatiotemporal_loss", "flow_loss", "fused_accuracy", "spatiotemporal_accuracy"} <= set(logs)
    assert "fused_loss" not in logs
    np.testing.assert_allclose(logs["loss"][0], logs["spatiotemporal_loss"][0] + logs["flow_loss"][0], rtol=1e-4)
    for layer, weights in zip(frozen, frozen_before):
        for w, old in zip(layer.weights, weights):
            np.testing.assert_array_equal(w.numpy(), old, err_msg=layer.name)
    after = _values(model, trained)
    for name in trained:
        assert not np.array_equal(after[name][0], before[name][0]), name


def test_fit_keeps_bn_statistics_and_can_train_everything(prepared_samples):
    """BN-Inception, conv fusion + 3D pooling, one tower, freeze_before_fusion=False:
    the streams' layers up to the fusion train too, their BN layers after the
    first (TSN's partial BN) and the tower's frozen BN keep their statistics,
    the tower's BN scale trains."""
    rgb, flow = _streams("bn_inception")
    model = ConvTwoStreamFusion(
        rgb, flow, fusion_layer="inception_5a_output", temporal_fusion="pool3d", towers="truncate",
        num_snippets=T, freeze_before_fusion=False,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    trunk = model.get_layer("rgb_stream")
    tower_bn = model.get_layer("spatiotemporal_inception_5b_1x1_bn")
    trunk_bn = trunk.get_layer("inception_5a_1x1_bn")  # partial BN of the stream: frozen
    before = {
        "trunk_conv": trunk.get_layer("inception_5a_1x1").kernel.numpy().copy(),
        "trunk_bn_mean": trunk_bn.moving_mean.numpy().copy(),
        "tower_mean": tower_bn.moving_mean.numpy().copy(), "tower_variance": tower_bn.moving_variance.numpy().copy(),
        "tower_gamma": tower_bn.gamma.numpy().copy(),
        "fusion": model.get_layer("spatiotemporal_inception_5a_output_conv_fusion").kernel.numpy().copy(),
    }
    model.fit(_real_batches(prepared_samples, "bn_inception", batches=1), epochs=1, verbose=0)
    np.testing.assert_array_equal(trunk_bn.moving_mean.numpy(), before["trunk_bn_mean"])
    np.testing.assert_array_equal(tower_bn.moving_mean.numpy(), before["tower_mean"])
    np.testing.assert_array_equal(tower_bn.moving_variance.numpy(), before["tower_variance"])
    assert not np.array_equal(tower_bn.gamma.numpy(), before["tower_gamma"])
    assert not np.array_equal(trunk.get_layer("inception_5a_1x1").kernel.numpy(), before["trunk_conv"])
    assert not np.array_equal(
        model.get_layer("spatiotemporal_inception_5a_output_conv_fusion").kernel.numpy(), before["fusion"]
    )


def test_compile_defaults(proposed):
    proposed.compile()
    assert isinstance(proposed.optimizer, CaffeSGD) and float(proposed.optimizer.learning_rate) == pytest.approx(1e-3)
    clips, labels = _clips(batch=3, seed=4), np.array([0, 2, 1])
    result = proposed.evaluate(clips, labels, verbose=0, return_dict=True)
    np.testing.assert_allclose(result["loss"], result["spatiotemporal_loss"] + result["flow_loss"], rtol=1e-4)
    assert {"fused_accuracy", "flow_accuracy", "spatiotemporal_accuracy"} <= set(result)


def test_keras_round_trip_remembers_what_it_is(tmp_path, proposed):
    loaded = run_model_saving_test(proposed, _clips(seed=5), tmp_path)
    assert (loaded.backbone, loaded.fusion_layer, loaded.spatial_fusion, loaded.temporal_fusion) == (
        "caffenet", "conv5", "conv", "conv3d_pool3d")
    assert (loaded.towers, loaded.fuse_into, loaded.num_snippets, loaded.pool3d_size) == (
        "keep_both", "rgb", T, (T, 3, 3))
    assert (loaded.num_classes, loaded.input_size, loaded.new_length) == (CLASSES, 67, L)
    assert isinstance(loaded.get_layer("spatiotemporal_conv5_conv3d_fusion"), Conv3DFusion)
    run_serialization_test(proposed)


def test_bilinear_truncated_round_trip(tmp_path, streams):
    model = ConvTwoStreamFusion(
        *streams, fusion_layer="conv5", spatial_fusion="bilinear", temporal_fusion="none", towers="truncate",
        dropout=0.5, name="bilinear_fusion",
    )
    assert model.get_layer("spatiotemporal_dropout").rate == 0.5
    loaded = run_model_saving_test(model, _clips(seed=6), tmp_path)
    assert loaded.spatial_fusion == "bilinear" and loaded.dropout == 0.5 and loaded.tower_outputs == ("spatiotemporal",)


def test_mixed_precision(tmp_path, streams):
    """Under mixed_float16 the fusion and towers compute in float16, variables
    and outputs are float32, fit() runs (loss scaling), and a .keras file keeps
    the policy."""
    before = keras.config.dtype_policy().name
    model = ConvTwoStreamFusion(*streams, num_snippets=T, dtype="mixed_float16")
    assert keras.config.dtype_policy().name == before  # the global policy is left as it was
    assert model.precision == "mixed_float16"
    assert model.get_layer("spatiotemporal_conv5_conv3d_fusion").compute_dtype == "float16"
    assert {w.dtype for w in model.weights} == {"float32"}
    out = model.predict(_clips(), verbose=0)
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in out.values())
    model.compile()
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    history = model.fit(_clips(batch=2, seed=7), np.array([0, 1]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    loaded = run_model_saving_test(model, _clips(seed=8), tmp_path, atol=1e-3)
    assert loaded.precision == "mixed_float16"
    bf16 = ConvTwoStreamFusion(*streams, temporal_fusion="none", spatial_fusion="bilinear", dtype="mixed_bfloat16")
    assert all(np.isfinite(v).all() for v in bf16.predict(_clips(), verbose=0).values())


def test_from_backbone_builds_a_fresh_model():
    model = ConvTwoStreamFusion.from_backbone(
        "caffenet", CLASSES, input_size=67, new_length=L, class_names=["a", "b", "c"], temporal_fusion="none",
        spatial_fusion="sum", towers="truncate",
    )
    config = model.get_config()
    assert config["rgb_stream"]["backbone"] == config["flow_stream"]["backbone"] == "caffenet"
    assert config["flow_stream"]["new_length"] == L and model.class_names == ["a", "b", "c"]
    assert model.predict(_clips(), verbose=0)["fused"].shape == (2, CLASSES)


def test_bad_options(streams):
    rgb, flow = streams
    cases = [
        (dict(spatial_fusion="product"), "spatial_fusion"),
        (dict(temporal_fusion="lstm"), "temporal_fusion"),
        (dict(towers="both"), "towers"),
        (dict(fuse_into="depth"), "fuse_into"),
        (dict(fusion_layer="fc7"), "not a feature layer of CaffeNet"),
        (dict(spatial_fusion="sum", temporal_fusion="conv3d_pool3d"), "needs spatial_fusion='conv'"),
        (dict(spatial_fusion="bilinear", temporal_fusion="pool3d"), "temporal_fusion='none'"),
        (dict(num_snippets=0), "num_snippets"),
        (dict(num_snippets=2, pool3d_size=(3, 3, 3)), "T'=3 exceeds"),
        (dict(pool3d_size=(2, 3)), "pool3d_size"),
        (dict(temporal_fusion="none", pool3d_size=(1, 3, 3)), "pool3d_size"),
        (dict(dropout=1.0), "dropout"),
        (dict(snippet_stride=0), "snippet_stride"),
        (dict(conv3d_init_profile="box"), "conv3d_init_profile"),
        (dict(dtype="float16"), "precision"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            ConvTwoStreamFusion(rgb, flow, **{"num_snippets": T, **options})
    with pytest.raises(ValueError, match="modality"):
        ConvTwoStreamFusion(flow, rgb)
    with pytest.raises(ValueError, match="TSN"):
        ConvTwoStreamFusion(keras.Sequential([keras.layers.Dense(2)]), flow)
    other = TSN("caffenet", "flow", num_classes=CLASSES + 1, input_size=67, new_length=L)
    with pytest.raises(ValueError, match="num_classes"):
        ConvTwoStreamFusion(rgb, other)
    vgg_flow = TSN("vgg16", "flow", num_classes=CLASSES, input_size=67, new_length=L)
    with pytest.raises(ValueError, match="not a feature layer of VGG16"):
        ConvTwoStreamFusion(rgb, vgg_flow, other_fusion_layer="conv5")
    # By default the VGG16 flow stream is cut at its block5_conv3 (4x4 at 67 px), larger than
    # CaffeNet's conv5 (3x3) that the fused tower goes on from: never padded.
    with pytest.raises(ValueError, match="the rgb stream's map, which the fused tower goes on from, is the smaller"):
        ConvTwoStreamFusion(rgb, vgg_flow)


def test_evaluate_and_fuse_a_temporal_fusion_model_from_the_cli(prepared_samples, trained_models, tmp_path, capsys):
    """`gated-tsn evaluate --model conv.keras`: each view of a 3D-conv fusion
    model holds its T snippets tau apart (Feichtenhofer et al. Sec. 4,
    "Testing"); the score file holds the fused scores per view, and
    `gated-tsn fuse --extra` puts the model in the fusion table beside the
    streams' rows."""
    import json

    from keras_gated_tsn.cli import main
    from keras_gated_tsn.evaluation.scores import load_scores

    classes = (prepared_samples / "classes.txt").read_text().split()
    model = ConvTwoStreamFusion.from_backbone(
        "caffenet", len(classes), input_size=67, new_length=5, class_names=classes, num_snippets=3,
        snippet_stride=2, temporal_fusion="conv3d_pool3d", spatial_fusion="conv",
    )
    model.save(tmp_path / "conv.keras")
    test_list = tmp_path / "test.txt"
    test_list.write_text("\n".join((prepared_samples / "test.txt").read_text().splitlines()[:3]) + "\n")
    out = tmp_path / "conv.npz"
    assert main(["evaluate", "--data", str(prepared_samples), "--list", str(test_list), "--model",
                 str(tmp_path / "conv.keras"), "--out", str(out), "--crops", "1", "--no-progress"]) == 0
    scores = load_scores(str(out))
    assert scores.fused.shape == (3, 1, len(classes))  # one view: 1 crop of the T = 3 snippets
    assert scores.num_frames == 1 and scores.metadata["snippets_per_view"] == 3
    assert scores.metadata["snippet_stride"] == [1, 2] and scores.metadata["model"] == "conv_fusion"
    assert scores.rgb is None and scores.flow is None
    # The streams' score file of the same videos, then one table with the extra row.
    paths, _ = trained_models
    streams = tmp_path / "streams.npz"
    assert main(["evaluate", "--data", str(prepared_samples), "--list", str(test_list), "--rgb", paths["rgb"],
                 "--flow", paths["flow"], "--out", str(streams), "--frames", "2", "--crops", "1",
                 "--no-progress"]) == 0
    table = tmp_path / "table"
    assert main(["fuse", str(streams), "--extra", f"conv_fusion={out}", "--out", str(table)]) == 0
    rows = json.loads((tmp_path / "table.json").read_text())
    assert [row["method"] for row in rows][-1] == "conv_fusion" and rows[-1]["top1"] is not None
    capsys.readouterr()


# ------------------------------------------- fusion at different layers, padding
PAIR_SIZE = 48  # VGG16 block5_conv3 3x3x512, CNN-M-2048 conv5 2x2x512


@pytest.fixture(scope="module")
def paper_pair():
    """Sec. 4.1 / Table 6: a VGG-16 RGB stream and a VGG-M(-2048) flow stream."""
    return _streams("vgg16", "cnn_m_2048_no_norm2", seed=3, size=PAIR_SIZE)


def _pair_clips(seed=0):
    return _clips(seed=seed, size=PAIR_SIZE)


def test_paper_pair_pads_the_smaller_map_for_the_fused_path_only(paper_pair):
    """Sum fusion, no temporal fusion: VGG16's block5_conv3 (3x3) and CNN-M's
    conv5 (2x2, the default other layer: block5_conv3 is not a CNN-M layer);
    the flow map gets a bottom row and a right column of zeros before the sum,
    so the fused map's last row and column are the RGB map's; the kept flow
    tower goes on from its own 2x2 map and *is* the flow stream."""
    rgb, flow = paper_pair
    model = ConvTwoStreamFusion(rgb, flow, spatial_fusion="sum", temporal_fusion="none")
    assert (model.fusion_layer, model.other_fusion_layer) == ("block5_conv3", "conv5")
    assert model.get_config()["other_fusion_layer"] == "conv5"
    pad = model.get_layer("flow_fusion_padding")
    assert isinstance(pad, keras.layers.ZeroPadding2D) and pad.padding == ((0, 1), (0, 1))
    assert tuple(pad.input.shape[1:]) == (2, 2, 512) and tuple(pad.output.shape[1:]) == (3, 3, 512)
    assert not any(layer.name == "rgb_fusion_padding" for layer in model.layers)
    fusion = model.get_layer("spatiotemporal_block5_conv3_sum_fusion")
    assert isinstance(fusion, SumFusion) and tuple(fusion.output.shape[1:]) == (3, 3, 512)
    # The kept tower: CNN-M's layers after conv5 on the unpadded 2x2 map.
    assert tuple(model.get_layer("flow_pool5").input.shape[1:]) == (2, 2, 512)
    assert model.get_layer("flow_fc-action").kernel.shape == flow.get_layer("fc-action").kernel.shape
    assert model.get_layer("spatiotemporal_fc-action").kernel.shape == rgb.get_layer("fc-action").kernel.shape

    clips = _pair_clips(seed=1)
    probe = keras.Model(model.input, [*fusion.input, fusion.output, pad.input])
    rgb_map, padded, fused, flow_map = (np.asarray(v) for v in probe.predict(clips, verbose=0))
    assert rgb_map.shape == fused.shape == padded.shape == (2 * T, 3, 3, 512) and flow_map.shape == (2 * T, 2, 2, 512)
    assert flow_map.any()
    np.testing.assert_array_equal(padded[:, :2, :2], flow_map)
    np.testing.assert_array_equal(padded[:, 2, :], 0)
    np.testing.assert_array_equal(padded[:, :, 2], 0)
    np.testing.assert_allclose(fused, rgb_map + padded, rtol=1e-6)
    np.testing.assert_array_equal(fused[:, 2, :], rgb_map[:, 2, :])
    np.testing.assert_array_equal(fused[:, :, 2], rgb_map[:, :, 2])

    out = model.predict(clips, verbose=0)
    assert all(v.shape == (2, CLASSES) and np.isfinite(v).all() for v in out.values())
    np.testing.assert_allclose(out["flow"], flow.predict(clips["flow"], verbose=0), rtol=1e-5, atol=1e-6)


def test_paper_pair_proposed_architecture_round_trip(tmp_path, paper_pair):
    """The proposed architecture (3D conv fusion + 3D pooling, both towers) on
    the padded pair: the padding comes before the stacking across time, the
    kept tower stacks and 3D-pools its own 2x2 maps; .keras round trip."""
    model = ConvTwoStreamFusion(*paper_pair, num_snippets=T, other_fusion_layer="conv5")
    assert tuple(model.get_layer("flow_stack").output.shape[1:]) == (T, 3, 3, 512)
    assert tuple(model.get_layer("flow_tower_stack").output.shape[1:]) == (T, 2, 2, 512)
    assert tuple(model.get_layer("rgb_stack").output.shape[1:]) == (T, 3, 3, 512)
    fusion = model.get_layer("spatiotemporal_block5_conv3_conv3d_fusion")
    assert isinstance(fusion, Conv3DFusion) and tuple(fusion.output.shape[1:]) == (T, 3, 3, 512)
    assert tuple(model.get_layer("spatiotemporal_pool3d").output.shape[1:]) == (1, 3, 3, 512)
    assert tuple(model.get_layer("flow_pool3d").output.shape[1:]) == (1, 2, 2, 512)
    loaded = run_model_saving_test(model, _pair_clips(seed=2), tmp_path)
    assert (loaded.fusion_layer, loaded.other_fusion_layer) == ("block5_conv3", "conv5")
    assert loaded.get_layer("flow_fusion_padding").padding == ((0, 1), (0, 1))
    assert loaded.get_config()["rgb_stream"]["backbone"] == "vgg16"
    assert loaded.get_config()["flow_stream"]["backbone"] == "cnn_m_2048_no_norm2"
    run_serialization_test(model)


def test_paper_pair_refusals(paper_pair):
    rgb, flow = paper_pair
    shapes = r"\(6, 6, 512\).*\(2, 2, 512\)"
    with pytest.raises(ValueError, match=r"differ in height or width by 4 > 2 pixels: rgb's map at 'block4_conv3' "
                                         + shapes):
        ConvTwoStreamFusion(rgb, flow, fusion_layer="block4_conv3", other_fusion_layer="conv5")
    with pytest.raises(ValueError, match=r"the flow stream's map, which the fused tower goes on from, is the smaller "
                                         r"one: rgb's map at 'block5_conv3' \(3, 3, 512\) and flow's map at 'conv5' "
                                         r"\(2, 2, 512\)"):
        ConvTwoStreamFusion(rgb, flow, fuse_into="flow")  # defaults: conv5 and block5_conv3
    with pytest.raises(ValueError, match=r"sum fusion needs the same channels.*\(3, 3, 512\).*'pool2' \(2, 2, 256\)"):
        ConvTwoStreamFusion(rgb, flow, other_fusion_layer="pool2", spatial_fusion="sum", temporal_fusion="none")
    with pytest.raises(ValueError, match="not a feature layer of CNN-M-2048"):
        ConvTwoStreamFusion(rgb, flow, fusion_layer="block5_conv3", other_fusion_layer="block5_conv3")
    with pytest.raises(ValueError, match="not a feature layer of VGG16"):
        ConvTwoStreamFusion(rgb, flow, fusion_layer="conv5")


def test_other_fusion_layer_defaults_and_own_tower(streams):
    """A layer both backbones have is the other stream's default too; a
    different one cuts the other trunk there and its kept tower goes on
    through its own layers from it (CaffeNet: conv4 and conv5 are both 3x3)."""
    rgb, flow = streams
    conv4 = ConvTwoStreamFusion(rgb, flow, fusion_layer="conv4", spatial_fusion="sum", temporal_fusion="none",
                                towers="truncate")
    assert conv4.get_config()["other_fusion_layer"] == "conv4" == conv4.fusion_layer
    mixed = ConvTwoStreamFusion(rgb, flow, other_fusion_layer="conv4", spatial_fusion="bilinear",
                                temporal_fusion="none")
    assert (mixed.fusion_layer, mixed.other_fusion_layer) == ("conv5", "conv4")
    assert mixed.get_layer("rgb_stream").output.shape[1:] == (3, 3, 256)
    assert mixed.get_layer("flow_stream").output.shape[1:] == (3, 3, 384)
    assert mixed.get_layer("flow_conv5").kernel.shape == flow.get_layer("conv5").kernel.shape
    assert not any(layer.name.endswith("_fusion_padding") for layer in mixed.layers)
    clips = _clips(seed=3)
    np.testing.assert_allclose(mixed.predict(clips, verbose=0)["flow"], flow.predict(clips["flow"], verbose=0),
                               rtol=1e-5, atol=1e-6)
    for fusion in ("sum", "concat"):
        with pytest.raises(ValueError, match=f"{fusion} fusion needs the same channels"):
            ConvTwoStreamFusion(rgb, flow, other_fusion_layer="conv4", spatial_fusion=fusion, temporal_fusion="none")


def test_proposed_records_the_shared_layer(proposed):
    assert proposed.other_fusion_layer == proposed.fusion_layer == "conv5"
    assert proposed.get_config()["other_fusion_layer"] == "conv5"
