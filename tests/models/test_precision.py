"""Mixed precision and XLA for every model of the zoo (keras_gated_tsn.precision).

Under ``mixed_float16`` and ``mixed_bfloat16`` the models compute in float16 /
bfloat16 but keep float32 variables, BN statistics, class scores, fusion
weights and losses; the policy is part of a model's config, so a ``.keras``
file reloads under it; a gate takes its policy for the whole graph whatever
its streams were built under. Tiny inputs (32-48 px, K=2, 3 classes) keep the
file to about a minute on two cores; every test restores the global dtype
policy (``restore_global_policy``).
"""

import warnings

import keras
import numpy as np
import pytest

from helpers import first_batch, random_clips, run_model_saving_test
from keras_gated_tsn import precision
from keras_gated_tsn.backbones import get_backbone
from keras_gated_tsn.layers import FrozenBatchNormalization, LocalResponseNormalization, ModalityPreprocessing
from keras_gated_tsn.models import TSN, GatedTSN, with_precision
from keras_gated_tsn.precision import PRECISIONS, precision_scope
from keras_gated_tsn.training.recipes import CaffeSGD, make_optimizer

CLASSES = 3
K = 2
L = 2  # flow frames per snippet: 4 flow channels
#: The smallest sides that build (CaffeNet needs 39; 48 keeps its conv4 map even).
SIZES = {"bn_inception": 32, "caffenet": 48, "vgg16": 32}
MIXED = ("mixed_float16", "mixed_bfloat16")
COMPUTE = {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


@pytest.fixture(autouse=True)
def restore_global_policy():
    """Every test starts and ends under the global policy it found; a test (or a
    scope in the package) that leaks a policy fails here."""
    before = keras.config.dtype_policy()
    yield
    after = keras.config.dtype_policy()
    keras.config.set_dtype_policy(before)
    assert after.name == before.name, f"the global dtype policy leaked: {before.name} -> {after.name}"


def _stream(backbone="bn_inception", modality="rgb", dtype=None, **kwargs):
    return TSN(backbone, modality, num_classes=CLASSES, num_segments=K, input_size=SIZES[backbone],
               new_length=L, dtype=dtype, **kwargs)


def _clips(backbone="bn_inception", batch=2, seed=0):
    return random_clips(SIZES[backbone], batch=batch, segments=K, new_length=L, seed=seed)


def _check_float32_state(model):
    """Variables (kernels, BN scale/shift and statistics) are float32 under every policy."""
    assert {v.dtype for v in model.weights} == {"float32"}
    norms = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        assert layer.moving_mean.dtype == "float32" and layer.moving_variance.dtype == "float32", layer.name


def _all_layers(model):
    return [layer for layer in model._flatten_layers(include_self=False) if not isinstance(layer, keras.Model)]


# --------------------------------------------------------------- the module
def test_precision_names_are_checked_and_the_policy_restored():
    assert PRECISIONS == ("float32", "mixed_float16", "mixed_bfloat16")
    for bad in ("float16", "bfloat16", "fp16", None):
        with pytest.raises(ValueError, match="mixed_bfloat16"):  # the message lists the choices
            with precision_scope(bad, warn=False):
                pass
    with pytest.raises(ValueError, match="float64"):
        TSN(dtype="float64")
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(RuntimeError):
        with precision_scope("mixed_bfloat16", warn=False) as policy:
            assert policy.name == keras.config.dtype_policy().name == "mixed_bfloat16"
            raise RuntimeError("the body fails")
    assert keras.config.dtype_policy().name == "float32"  # restored on the way out of an error
    previous = precision.set_precision("mixed_float16", warn=False)
    assert previous.name == "float32" and keras.config.dtype_policy().name == "mixed_float16"
    # A model built with no dtype takes the global policy and records it.
    assert TSN("vgg16", num_classes=2, input_size=32).get_config()["dtype"] == "mixed_float16"
    keras.config.set_dtype_policy(previous)


def test_cpu_has_bfloat16_reads_the_cpuinfo_flags(tmp_path):
    lines = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {}\n\nprocessor\t: 1\nflags\t\t: fpu avx2 {}\n"
    for extra, expected in (("", False), ("avx512_bf16", True), ("amx_bf16 amx_tile", True),
                            ("avx512_bf16x", False)):
        cpuinfo = tmp_path / f"cpuinfo_{extra or 'none'}"
        cpuinfo.write_text(lines.format(extra, extra))
        assert precision.cpu_has_bfloat16(str(cpuinfo)) is expected, extra
    assert precision.cpu_has_bfloat16(str(tmp_path / "missing")) is False  # not Linux


def test_slow_precisions_warn(monkeypatch):
    """mixed_bfloat16 on a CPU-only machine without bf16 flags, and mixed_float16
    without a GPU, warn when chosen; the same choices on fitting hardware do not."""
    monkeypatch.setattr(precision, "has_gpu", lambda: False)
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda *a, **k: False)
    with pytest.warns(RuntimeWarning, match=r"mixed_bfloat16.*avx512_bf16 nor amx_bf16.*16x slower"):
        with precision_scope("mixed_bfloat16"):
            pass
    with pytest.warns(RuntimeWarning, match=r"mixed_float16.*no GPU"):
        precision.set_precision("mixed_float16")
    keras.config.set_dtype_policy("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with precision_scope("float32"):
            pass
        with precision_scope("mixed_bfloat16", warn=False):  # how the models build: never warn
            pass
        monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda *a, **k: True)
        with precision_scope("mixed_bfloat16"):
            pass
        monkeypatch.setattr(precision, "has_gpu", lambda: True)
        for name in PRECISIONS:
            assert precision.hardware_warning(name) is None


# --------------------------------------------------------------- dtypes
@pytest.mark.parametrize("policy", MIXED)
@pytest.mark.parametrize("backbone, modality", [
    ("bn_inception", "rgb"), ("bn_inception", "flow"), ("caffenet", "rgb"), ("vgg16", "flow"),
])
def test_stream_dtypes(backbone, modality, policy):
    """Backbone in float16/bfloat16 (LRN included), variables and BN statistics
    float32, classifier, consensus and output float32."""
    stream = _stream(backbone, modality, dtype=policy)
    assert stream.precision == policy and stream.get_config()["dtype"] == policy
    assert keras.config.dtype_policy().name == "float32"  # the constructor's scope is closed again
    assert stream.output.dtype == "float32"
    _check_float32_state(stream)
    for name in ("fc-action", "segment_consensus"):
        assert stream.get_layer(name).compute_dtype == "float32"
    convs = [layer for layer in stream.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.compute_dtype == COMPUTE[policy] for layer in convs)
    assert stream.get_layer("dropout").compute_dtype == COMPUTE[policy]
    if backbone == "caffenet":
        lrn = [layer for layer in stream.layers if isinstance(layer, LocalResponseNormalization)]
        assert len(lrn) == 2 and all(layer.output.dtype == COMPUTE[policy] for layer in lrn)
    # The mean is subtracted in float32 and cast once: raw pixels are not rounded first.
    pre = stream.get_layer(f"{modality}_preprocessing")
    assert pre.input_dtype == "float32" and pre.output.dtype == COMPUTE[policy]


@pytest.mark.parametrize("policy", PRECISIONS)
def test_preprocessing_subtracts_the_mean_before_rounding(policy):
    """VGG16's fractional mean: 200 - 123.68 = 76.32 in float32, then rounded
    once (bfloat16: 76.5); a layer that cast the input and the mean down first
    and subtracted in bfloat16 would give 200 - 124 = 76."""
    layer = ModalityPreprocessing("rgb", bgr_mean=(103.939, 116.779, 123.68), dtype=policy)
    out = layer(np.array([[200, 0, 0]], np.uint8))
    assert keras.backend.standardize_dtype(out.dtype) == COMPUTE[policy]
    expected = keras.ops.cast(np.array([[0 - 103.939, 0 - 116.779, 200 - 123.68]], np.float32), COMPUTE[policy])
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")),
        keras.ops.convert_to_numpy(keras.ops.cast(expected, "float32")),
    )
    # The backbones' preprocess_input says float32 whatever the global policy.
    with precision_scope(policy, warn=False):
        assert get_backbone("vgg16").preprocess_input(np.zeros((1, 3), np.uint8)).dtype == np.float32


@pytest.fixture(scope="module")
def bn_streams():
    """Float32 BN-Inception streams with distinct weights."""
    keras.utils.set_random_seed(3)
    rgb, flow = _stream(modality="rgb"), _stream(modality="flow")
    flow.init_from(rgb)
    return rgb, flow


@pytest.mark.parametrize("policy, feature_fusion", [
    ("mixed_float16", "conv"), ("mixed_bfloat16", "concat"), ("mixed_bfloat16", "concat_height"),
])
def test_gated_dtypes_whole_graph(bn_streams, policy, feature_fusion):
    """A mixed gate over float32 streams: the frozen stream copies, the fusion
    and the gating trunk compute in the gate's policy; variables, BN statistics
    (the frozen BN of the trunk too), fusion weights and every output float32;
    the stream copies hold the float32 streams' weights."""
    rgb, flow = bn_streams
    gated = GatedTSN(rgb, flow, feature_fusion=feature_fusion, dtype=policy)
    assert gated.precision == policy and gated.get_config()["dtype"] == policy
    assert len(gated.outputs) == 5 and {out.dtype for out in gated.outputs} == {"float32"}
    _check_float32_state(gated)
    for modality, source in (("rgb", rgb), ("flow", flow)):
        copy = gated.get_layer(f"{modality}_stream")
        assert copy.dtype_policy.name == policy
        conv1 = copy.get_layer("conv1_7x7_s2")
        assert conv1.compute_dtype == COMPUTE[policy]
        np.testing.assert_array_equal(conv1.kernel.numpy(), source.get_layer("conv1_7x7_s2").kernel.numpy())
    frozen = [layer for layer in gated.layers if isinstance(layer, FrozenBatchNormalization)]
    assert frozen and all(layer.compute_dtype == COMPUTE[policy] for layer in frozen)
    assert gated.get_layer("gating_inception_5a_1x1").compute_dtype == COMPUTE[policy]
    for name in ("gating_fc-action", "gating_fc_classify", "fusion_weights", "fused"):
        assert gated.get_layer(name).compute_dtype == "float32"


def test_mixed_streams_go_into_a_float32_gate(bn_streams):
    """The other way round: streams built under mixed_bfloat16 (their configs
    say so) give a gate built in float32 throughout, with their weights."""
    rgb, flow = bn_streams
    mixed = []
    for stream in (rgb, flow):
        copy = TSN.from_config({**stream.get_config(), "dtype": "mixed_bfloat16"})
        copy.set_weights(stream.get_weights())
        mixed.append(copy)
    gated = GatedTSN(*mixed, dtype="float32")
    assert gated.rgb_stream_config["dtype"] == "mixed_bfloat16"  # kept as given
    assert {layer.compute_dtype for layer in _all_layers(gated)} == {"float32"}
    for name in ("conv1_7x7_s2", "inception_5b_1x1_bn", "fc-action"):
        for mine, theirs in zip(gated.get_layer("rgb_stream").get_layer(name).weights, rgb.get_layer(name).weights):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


# --------------------------------------------------------------- fit, save, reload
@pytest.mark.parametrize("policy", MIXED)
def test_stream_trains_saves_and_reloads(tmp_path, policy):
    """CaffeNet (LRN in the trunk) with the recipe's optimizer and 2 accumulated
    batches: mixed_float16 wraps CaffeSGD in a LossScaleOptimizer, and both policies
    train (finite loss, moved weights) and reload as they were saved."""
    stream = _stream("caffenet", "rgb", dtype=policy)
    stream.compile(optimizer=make_optimizer(1e-2, iter_size=2))
    if policy == "mixed_float16":
        assert isinstance(stream.optimizer, keras.optimizers.LossScaleOptimizer)
        assert isinstance(stream.optimizer.inner_optimizer, CaffeSGD)
    else:
        assert isinstance(stream.optimizer, CaffeSGD)
    clips = _clips("caffenet", batch=4)["rgb"]
    before = [w.numpy().copy() for w in stream.trainable_weights]
    history = stream.fit(clips, np.array([0, 1, 2, 0]), batch_size=2, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    moved = [not np.array_equal(a, w.numpy()) for a, w in zip(before, stream.trainable_weights)]
    assert all(moved), "an accumulated update should move every kernel and bias"
    out = stream.predict(clips, verbose=0)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    loaded = run_model_saving_test(stream, clips, tmp_path)
    assert loaded.precision == policy and loaded.get_layer("conv1").compute_dtype == COMPUTE[policy]
    assert loaded.get_layer("norm1").compute_dtype == COMPUTE[policy]
    assert type(loaded.optimizer) is type(stream.optimizer)
    assert int(loaded.optimizer.iterations) == int(stream.optimizer.iterations) > 0


def test_gate_trains_logs_fusion_weights_and_reloads(tmp_path):
    """A mixed_float16 CaffeNet gate over float32 streams (loss scaling and 2
    accumulated batches): finite losses, the gate moves, and fit() logs the
    epoch's mean fusion weights per stream; the validation means are those of
    the trained model's own fusion_weights output, rgb first. The file reloads
    as mixed_float16 with the same predictions."""
    keras.utils.set_random_seed(5)
    rgb, flow = _stream("caffenet", "rgb"), _stream("caffenet", "flow")
    gated = GatedTSN(rgb, flow, fusion_initializer="identity", dtype="mixed_float16")
    gated.compile(optimizer=make_optimizer(1e-2, iter_size=2), gating_loss_weight=1.0)
    assert isinstance(gated.optimizer, keras.optimizers.LossScaleOptimizer)
    clips, labels = _clips("caffenet", batch=4, seed=1), np.array([0, 1, 2, 1])
    head = gated.get_layer("gating_fc-action")
    before = head.kernel.numpy().copy()
    history = gated.fit(clips, labels, batch_size=2, epochs=1, shuffle=False, verbose=0,
                        validation_data=(clips, labels)).history
    assert all(np.isfinite(history[key][0]) for key in ("loss", "fused_loss", "gating_classifier_loss"))
    assert not np.array_equal(head.kernel.numpy(), before)
    for key in ("rgb_weight", "flow_weight", "val_rgb_weight", "val_flow_weight"):
        assert key in history and np.isfinite(history[key][0])
    weights = gated.predict(clips, verbose=0)["fusion_weights"]
    assert weights.dtype == np.float32
    np.testing.assert_allclose(
        [history["val_rgb_weight"][0], history["val_flow_weight"][0]], weights.mean(axis=0), rtol=1e-5
    )
    loaded = run_model_saving_test(gated, clips, tmp_path)
    assert loaded.precision == "mixed_float16"
    assert loaded.get_layer("flow_stream").get_layer("conv3").compute_dtype == "float16"
    assert isinstance(loaded.optimizer, keras.optimizers.LossScaleOptimizer)


def test_loss_scaling_keeps_the_caffe_update():
    """The LossScaleOptimizer that mixed_float16 puts around CaffeSGD changes no
    update: on a float32 stream (no float16 rounding), 4 batches with 2
    accumulated per update, clipping that bites, Caffe's weight decay and bias
    multiplier give the same weights wrapped or not (the loss scale is a power
    of two, so scaling and unscaling are exact)."""
    keras.utils.set_random_seed(4)
    stream = _stream("caffenet", "rgb", dropout=0.0)
    clips, labels = _clips("caffenet", batch=4, seed=2)["rgb"], np.array([0, 1, 2, 1])
    start = stream.get_weights()
    results = []
    for wrap in (False, True):
        stream.set_weights(start)
        optimizer = make_optimizer(0.05, clip_gradients=1e-3, iter_size=2)
        if wrap:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        stream.compile(optimizer=optimizer)
        stream.fit(clips, labels, batch_size=1, epochs=1, shuffle=False, verbose=0)
        assert int(stream.optimizer.iterations) == 2  # two updates of two batches each
        results.append(stream.get_weights())
    for plain, scaled, first in zip(*results, start):
        assert not np.array_equal(plain, first) or plain.ndim == 0
        np.testing.assert_allclose(scaled, plain, rtol=1e-6, atol=1e-9)


def test_with_precision_changes_the_policy_and_keeps_the_weights():
    """A loaded model keeps its policy; with_precision rebuilds it under another
    one with the same weights and config (a float32 gate resumed in mixed_bfloat16)."""
    stream = _stream("caffenet", "flow")
    assert with_precision(stream, "float32") is stream
    mixed = with_precision(stream, "mixed_bfloat16")
    assert type(mixed) is TSN and mixed.precision == "mixed_bfloat16"
    assert mixed.get_layer("conv2").compute_dtype == "bfloat16"
    assert {**mixed.get_config(), "dtype": "float32"} == stream.get_config()
    for mine, theirs in zip(mixed.weights, stream.weights):
        assert mine.path == theirs.path
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    with pytest.raises(ValueError, match="mixed_float16"):
        with_precision(stream, "float16")


# --------------------------------------------------------------- XLA
def test_jit_compile_passes_through_and_trains(bn_streams):
    """compile(jit_compile=True) reaches Keras (both overrides), and an XLA
    train step and predict give what the plain graph gives."""
    gated = GatedTSN(*bn_streams)
    gated.compile(jit_compile=True)
    assert gated.jit_compile is True
    gated.compile(jit_compile=False)
    assert gated.jit_compile is False
    keras.utils.set_random_seed(2)
    stream = _stream("caffenet", "flow", dropout=0.0)
    clips, labels = _clips("caffenet", batch=2)["flow"], np.array([0, 2])
    start = stream.get_weights()
    results = {}
    for jit in (False, True):
        stream.set_weights(start)
        stream.compile(optimizer=make_optimizer(1e-2), jit_compile=jit)
        assert stream.jit_compile is jit
        loss = stream.fit(clips, labels, epochs=1, verbose=0).history["loss"][0]
        results[jit] = loss, stream.predict(clips, verbose=0)
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-4)
    np.testing.assert_allclose(results[True][1], results[False][1], rtol=1e-3, atol=1e-6)


# --------------------------------------------------------------- real frames
#: Largest allowed |loss(mixed_bfloat16) - loss(float32)| per step, in nats, on
#: the same real batch from the same weights. bfloat16 keeps 8 significant bits
#: (relative rounding 2^-9, about 0.2%, per operation) and the two runs drift
#: apart step by step. Measured with this test's settings on two batches: at
#: most 0.0005 while the float32 loss fell by 0.27-0.29 (with lr 0.02 on other
#: batches: up to 0.005; with lr 0.1 the drift reaches 0.03 as the loss falls
#: fast). 0.02 leaves a margin of 40x over this test's measurement.
BF16_LOSS_TOLERANCE = 0.02
REAL_STEPS = 5
REAL_LEARNING_RATE = 0.05


def test_mixed_bfloat16_tracks_float32_on_real_frames(prepared_samples):
    """A BN-Inception RGB stream fitted for REAL_STEPS = 5 steps on one batch of
    the sample clips' real frames (4 videos of the 3 classes, K=2, 64x64, no
    dropout, lr 0.05, the classifier drawn with std 0.1 so that the scores are
    not all near 0) from the same weights under float32 and mixed_bfloat16:
    each step's loss agrees within BF16_LOSS_TOLERANCE = 0.02 nats (absolute),
    and the loss falls by more than 0.15 in both (so the agreement is not that
    of two models that do not learn)."""
    keras.utils.set_random_seed(7)
    x, y = first_batch(prepared_samples, "rgb", size=64, segments=K, batch_size=4)
    classes = len((prepared_samples / "classes.txt").read_text().split())  # one name a line
    losses, start = {}, None
    for policy in ("float32", "mixed_bfloat16"):
        keras.utils.set_random_seed(7)
        model = TSN("bn_inception", "rgb", num_classes=classes, num_segments=K, input_size=64,
                    dropout=0.0, dtype=policy)
        if start is None:
            classifier = model.get_layer("fc-action")
            classifier.kernel.assign(np.random.default_rng(7).normal(0, 0.1, classifier.kernel.shape))
            start = model.get_weights()
        else:
            model.set_weights(start)
        model.compile(optimizer=make_optimizer(REAL_LEARNING_RATE, clip_gradients=None))
        history = model.fit(x, y, batch_size=len(y), epochs=REAL_STEPS, shuffle=False, verbose=0)
        losses[policy] = np.array(history.history["loss"])
    reference, mixed = losses["float32"], losses["mixed_bfloat16"]
    assert np.isfinite(mixed).all()
    assert reference[-1] < reference[0] - 0.15 and mixed[-1] < mixed[0] - 0.15, losses
    np.testing.assert_allclose(mixed, reference, atol=BF16_LOSS_TOLERANCE, rtol=0)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_fused_batch_norm_trains_as_keras_batch_norm(policy):
    """Through fit() under a half-precision policy, a small conv net with the fused
    BN ends with the weights and moving statistics of the same net with Keras' BN
    (the fused kernel's unbiased variance converted back to Keras' biased one);
    a frozen (partial-BN) layer keeps its statistics and normalises with them."""
    from keras_gated_tsn.layers import FusedBatchNormalization

    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (16, 6, 6, 3)).astype("float32")
    y = rng.integers(0, 2, 16)

    def train(norm):
        keras.utils.set_random_seed(3)
        with precision_scope(policy):
            inputs = keras.Input((6, 6, 3))
            h = keras.layers.Conv2D(8, 3, name="conv")(inputs)
            h = norm(momentum=0.5, epsilon=1e-5, name="bn")(h)
            frozen = norm(momentum=0.5, epsilon=1e-5, name="frozen_bn")
            frozen.trainable = False
            h = frozen(keras.layers.ReLU()(h))
            h = keras.layers.GlobalAveragePooling2D()(h)
            outputs = keras.layers.Dense(2, dtype="float32", name="fc")(h)
            model = keras.Model(inputs, outputs)
        model.get_layer("frozen_bn").set_weights(
            [np.full(8, 1.5, "float32"), np.full(8, 0.1, "float32"), np.full(8, 0.2, "float32"), np.full(8, 2.0, "float32")]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return model

    ours, theirs = train(FusedBatchNormalization), train(keras.layers.BatchNormalization)
    assert isinstance(ours.get_layer("bn"), FusedBatchNormalization)
    for layer in ("conv", "bn", "frozen_bn", "fc"):
        for mine, reference, weight in zip(ours.get_layer(layer).get_weights(), theirs.get_layer(layer).get_weights(),
                                           ours.get_layer(layer).weights):
            np.testing.assert_allclose(mine, reference, rtol=1e-3, atol=1e-4, err_msg=weight.path)
    moving_variance = ours.get_layer("bn").moving_variance.numpy()
    assert not np.allclose(moving_variance, 1.0)  # it trained
    np.testing.assert_array_equal(ours.get_layer("frozen_bn").moving_variance.numpy(), 2.0)
    probe = x[:4]
    np.testing.assert_allclose(ours.predict(probe, verbose=0), theirs.predict(probe, verbose=0), rtol=5e-2, atol=5e-2)
