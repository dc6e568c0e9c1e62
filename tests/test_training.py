"""Algorithm 1 with fit() on real frames, and the Caffe solver's update rule.

The issue's fidelity points, each through fit(): the gate's BN statistics stay
frozen (A1), the frozen streams run without dropout unless asked (A2), the
gradient is clipped by its global norm on the accumulated sum (A3), weight
decay is Caffe's L2 before momentum (A4), and the stage defaults are the
authors' recipe (A5).
"""

import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import TRAINED_INPUT_SIZE as SIZE
from helpers import first_batch
from keras_gated_tsn.models import TSN, GatedTSN
from keras_gated_tsn.training import recipes
from keras_gated_tsn.training.recipes import CaffeSGD, make_optimizer
from keras_gated_tsn.training.stages import StageConfig, build_stage_model, load_model, run_stage


def test_every_stage_writes_a_model_and_logs(trained_models):
    paths, histories = trained_models
    for stage, path in paths.items():
        assert keras.saving.load_model(path) is not None
        assert os.path.isfile(path[: -len(".keras")] + "_log.csv")
    assert "val_accuracy" in histories["rgb"] and "val_accuracy" in histories["flow"]
    assert "val_fused_accuracy" in histories["gate"]
    assert histories["gate"]["gating_classifier_loss"][0] > 0
    # Stage 2 has lambda = 0: the total loss is the fused loss alone; stage 3 adds lambda * CE(gate).
    np.testing.assert_allclose(histories["gate"]["loss"], histories["gate"]["fused_loss"], rtol=1e-4)
    joint = histories["joint"]
    np.testing.assert_allclose(
        joint["loss"][0], joint["fused_loss"][0] + joint["gating_classifier_loss"][0], rtol=1e-3
    )


def test_flow_stream_starts_from_rgb(trained_models):
    paths, _ = trained_models
    flow = load_model(paths["flow"], TSN)
    assert flow.get_layer("conv1_7x7_s2").kernel.shape == (7, 7, 10, 64)
    assert (flow.modality, flow.input_size, flow.new_length, flow.num_segments) == ("flow", SIZE, 5, 2)


def test_gate_training_keeps_streams_and_gate_statistics_frozen(trained_models):
    """After the gate and joint stages trained with fit() on real frames: the
    streams inside equal the trained streams, and every BN of the gating
    ConvNet still holds the RGB stream's statistics (copied at the start,
    never updated: the prototxt's frozen BN), while its scale and shift train
    (they are trainable weights, and some moved in one short epoch; the
    others' updates are below float32 resolution at 1.0)."""
    paths, _ = trained_models
    rgb = load_model(paths["rgb"], TSN)
    for stage in ("gate", "joint"):
        gated = load_model(paths[stage], GatedTSN)
        inner = gated.get_layer("rgb_stream")
        for name in ("inception_4e_3x3", "fc-action"):
            np.testing.assert_array_equal(inner.get_layer(name).get_weights()[0], rgb.get_layer(name).get_weights()[0])
        trainable = {id(v) for v in gated.trainable_weights}
        moved = 0
        for layer in gated.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                source = rgb.get_layer(layer.name[len("gating_"):])
                np.testing.assert_array_equal(layer.moving_mean.numpy(), source.moving_mean.numpy())
                np.testing.assert_array_equal(layer.moving_variance.numpy(), source.moving_variance.numpy())
                assert id(layer.gamma) in trainable and id(layer.beta) in trainable
                moved += not np.array_equal(layer.beta.numpy(), source.beta.numpy())
        assert moved >= 1, f"{stage}: no gate BN shift trained"


@pytest.mark.parametrize("stream_dropout", [False, True])
def test_stream_dropout_under_fit_on_real_frames(trained_models, prepared_samples, stream_dropout):
    """fit() runs the model in training mode: the rgb stream's loss it reports
    equals the inference-mode loss on the same batch exactly when the frozen
    streams' dropout is off (the default)."""
    paths, _ = trained_models
    model = GatedTSN(load_model(paths["rgb"], TSN), load_model(paths["flow"], TSN), stream_dropout=stream_dropout)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss={"fused": ce, "gating_classifier": ce, "rgb": ce},
                  loss_weights={"fused": 0.0, "gating_classifier": 0.0, "rgb": 1.0}, metrics=None)
    x, y = first_batch(prepared_samples, "rgb+flow", size=SIZE, batch_size=8)
    trained = model.fit(x, y, batch_size=len(y), epochs=1, shuffle=False, verbose=0).history["rgb_loss"][0]
    inference = model.evaluate(x, y, batch_size=len(y), verbose=0, return_dict=True)["rgb_loss"]
    if stream_dropout:
        assert abs(trained - inference) > 1e-5  # float noise is ~1e-7 here
    else:
        assert trained == pytest.approx(inference, rel=1e-6)


def _caffe_step(weights, history, group, *, lr, momentum, decay, clip, bias_mult, kinds):
    """One Caffe SGDSolver::ApplyUpdate in NumPy over the iter_size gradients in
    ``group``: sum them, clip the sum by its global L2 norm, divide by
    iter_size, add decay·w to kernels, bias lr x bias_mult, v = μv + lr·g,
    w -= v. Returns the new weights; ``history`` (v) is updated in place."""
    total = [sum(g[i] for g in group) for i in range(len(weights))]
    norm = np.sqrt(sum(float(np.sum(t ** 2)) for t in total))
    scale = clip / norm if clip is not None and norm > clip else 1.0
    out = []
    for i, (w, t) in enumerate(zip(weights, total)):
        w = np.asarray(w, np.float64)
        g = t * scale / len(group)
        rate = lr
        if kinds[i] == "kernel":
            g = g + decay * w
        elif kinds[i] == "bias":
            rate = lr * bias_mult
        history[i] = momentum * history[i] + rate * g
        out.append(w - history[i])
    return out


def test_caffe_sgd_matches_caffes_update_rule_through_fit():
    """Two updates of 2 accumulated batches each (momentum at work), clipping
    active: the weights after fit() equal Caffe's update rule in NumPy."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, name="fc")])
    w0 = [np.array([[0.5], [-1.0], [2.0]], np.float32), np.array([0.3], np.float32)]
    model.set_weights(w0)
    x = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 1.0], [4.0, 3.0, -2.0], [5.0, -6.0, 1.0]], np.float32)
    y = np.array([[1.0], [0.0], [2.0], [-1.0]], np.float32)
    settings = dict(lr=0.01, momentum=0.9, decay=0.05, clip=50.0, bias_mult=2.0, kinds=["kernel", "bias"])
    model.compile(make_optimizer(0.01, momentum=0.9, weight_decay=0.05, clip_gradients=50.0, iter_size=2,
                                 bias_lr_multiplier=2.0), loss="mse")
    model.fit(x, y, batch_size=1, epochs=1, shuffle=False, verbose=0)

    # The reference: squared error per sample, its gradient at the weights of its update.
    expected = [w.astype(np.float64) for w in w0]
    history = [np.zeros_like(w) for w in expected]
    norms = []
    for start in (0, 2):
        group = []
        for i in (start, start + 1):
            error = float(x[i] @ expected[0][:, 0] + expected[1][0] - y[i, 0])
            group.append([2 * error * x[i][:, None].astype(np.float64), np.array([2 * error])])
        norms.append(np.sqrt(sum(float(np.sum((a + b) ** 2)) for a, b in zip(*group))))
        expected = _caffe_step(expected, history, group, **settings)
    assert max(norms) > settings["clip"] > min(norms)  # one update clipped, one not
    for ours, theirs in zip(model.get_weights(), expected):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_one_caffe_update_of_a_stream_on_real_frames(prepared_samples):
    """A CaffeNet stream (no BN, no dropout: deterministic) takes one update of
    two accumulated real-frame batches with fit(); every weight equals
    Caffe's rule applied to the batches' gradients (taken with a gradient tape,
    independently of the optimizer), with the clip active on the summed
    gradient (per-variable clipping or clipping the mean would differ)."""
    size = 67
    model = TSN("caffenet", "rgb", num_classes=3, num_segments=1, input_size=size, dropout=0.0)
    x, y = first_batch(prepared_samples, "rgb", size=size, segments=1, batch_size=8)
    loss = recipes.classification_loss()
    start = [w.numpy().copy() for w in model.trainable_weights]
    groups = []
    for half in (slice(0, 4), slice(4, 8)):
        with tf.GradientTape() as tape:
            value = loss(y[half], model(x[half], training=True))
        groups.append([g.numpy().astype(np.float64) for g in tape.gradient(value, model.trainable_weights)])
    norm = np.sqrt(sum(float(np.sum((a + b) ** 2)) for a, b in zip(*groups)))
    clip, lr = 0.5 * norm, 1e-3
    model.compile(optimizer=make_optimizer(lr, clip_gradients=clip, iter_size=2), loss=loss)
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    kinds = [w.name for w in model.trainable_weights]
    assert set(kinds) == {"kernel", "bias"}
    history = [np.zeros_like(w, dtype=np.float64) for w in start]
    expected = _caffe_step(start, history, groups, lr=lr, momentum=0.9, decay=5e-4, clip=clip, bias_mult=2.0,
                           kinds=kinds)
    for variable, theirs in zip(model.trainable_weights, expected):
        np.testing.assert_allclose(variable.numpy(), theirs, rtol=2e-4, atol=1e-6, err_msg=variable.path)


def test_make_optimizer_is_caffes_solver():
    optimizer = make_optimizer(iter_size=32)
    assert isinstance(optimizer, CaffeSGD)
    assert optimizer.momentum == 0.9 and optimizer.clipnorm is None
    assert optimizer.global_clipnorm == pytest.approx(40 / 32) and optimizer.gradient_accumulation_steps == 32
    assert optimizer.caffe_weight_decay == 5e-4 and optimizer.weight_decay is None
    assert make_optimizer().gradient_accumulation_steps is None and make_optimizer().global_clipnorm == 40.0
    assert CaffeSGD.from_config(optimizer.get_config()).get_config() == optimizer.get_config()
    for bad in ({"learning_rate": 0}, {"iter_size": 0}, {"clip_gradients": -1}, {"weight_decay": -1}):
        with pytest.raises(ValueError):
            make_optimizer(**bad)


def test_stage_defaults_are_the_authors_recipe(trained_models, prepared_samples, tmp_path):
    """Streams: TSN's learning rates at batch 32; gate and joint: batch 4 x 32
    accumulated, lr 1e-3, lambda 0 then 1, the global clip at 40 on the sum."""
    paths, _ = trained_models
    data = str(prepared_samples)
    expected = {"rgb": (1e-3, 32, 1, None), "flow": (5e-3, 32, 1, None), "gate": (1e-3, 4, 32, 0.0),
                "joint": (1e-3, 4, 32, 1.0)}
    for stage, (lr, batch, iter_size, lam) in expected.items():
        recipe = StageConfig(stage=stage, data_dir=data, out="x.keras").recipe()
        assert (recipe.learning_rate, recipe.batch_size, recipe.iter_size, recipe.gating_loss_weight) == (
            lr, batch, iter_size, lam)
    # The schedule's floor follows the learning rate actually used (lr/100 streams, lr/10 gate).
    assert StageConfig(stage="rgb", data_dir=data, out="x.keras", learning_rate=1e-6).recipe().min_learning_rate == (
        pytest.approx(1e-8))
    config = StageConfig(stage="gate", data_dir=data, out=str(tmp_path / "g.keras"), rgb=paths["rgb"],
                         flow=paths["flow"], input_size=SIZE)
    gate = build_stage_model(config, num_classes=3)
    assert gate.optimizer.gradient_accumulation_steps == 32 and gate.optimizer.global_clipnorm == pytest.approx(40 / 32)
    assert gate.get_layer("gating_dropout").rate == 0.8  # the paper's, not the prototxt's 0.9
    assert gate.get_config()["stream_dropout"] is False

    # Through fit() at the defaults: one epoch of the 28 training sub-clips is 7 batches
    # of 4, fewer than the 32 an update accumulates, so the gate has not moved yet.
    result = run_stage(dataclasses.replace(config, epochs=1, num_segments=2, verbose=0))
    model = result.model
    assert np.isfinite(result.history["fused_loss"][0])
    # The per-epoch log a person follows: learning rate and the mean fusion weights too.
    header = open(result.files["log"]).readline().strip().split(",")
    for column in ("learning_rate", "rgb_weight", "flow_weight", "val_rgb_weight", "val_fused_accuracy"):
        assert column in header
    assert not os.path.exists(config.out[: -len(".keras")] + ".ckpt")  # removed when the stage ends
    np.testing.assert_array_equal(
        model.get_layer("gating_inception_5a_1x1").kernel.numpy(),
        load_model(paths["rgb"], TSN).get_layer("inception_5a_1x1").kernel.numpy(),
    )
    assert int(model.optimizer.iterations) == 0 and model.optimizer.gradient_accumulation_steps == 32


def test_concat_height_gate_trains_on_real_frames(trained_models, prepared_samples, tmp_path):
    """The authors' concatenation network, built by the gate stage, takes a
    fit() step on real frames: its heads read two 1024-d halves and move."""
    paths, _ = trained_models
    config = StageConfig(stage="gate", data_dir=str(prepared_samples), out=str(tmp_path / "c.keras"),
                         rgb=paths["rgb"], flow=paths["flow"], feature_fusion="concat_height", iter_size=1)
    model = build_stage_model(config, num_classes=3)
    assert model.feature_fusion == "concat_height"
    head = model.get_layer("gating_fc-action")
    assert head.kernel.shape == (2048, 2)  # the two streams' halves side by side
    before = head.kernel.numpy().copy()
    x, y = first_batch(prepared_samples, "rgb+flow", size=SIZE, batch_size=4)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["fused_loss"][0])
    assert not np.array_equal(head.kernel.numpy(), before)


def test_bad_stage_inputs(prepared_samples, tmp_path):
    with pytest.raises(ValueError, match="stage"):
        run_stage(StageConfig(stage="audio", data_dir=str(prepared_samples), out=str(tmp_path / "m.keras")))
    with pytest.raises(ValueError, match="--rgb"):
        run_stage(StageConfig(stage="gate", data_dir=str(prepared_samples), out=str(tmp_path / "m.keras"),
                              input_size=SIZE, epochs=1))
    with pytest.raises(FileNotFoundError, match="classes.txt"):
        run_stage(StageConfig(stage="rgb", data_dir=str(tmp_path), out=str(tmp_path / "m.keras")))
    (tmp_path / "classes.txt").write_text("a\nb\n")
    with pytest.raises(FileNotFoundError, match="training list"):
        run_stage(StageConfig(stage="rgb", data_dir=str(tmp_path), out=str(tmp_path / "m.keras")))
    with pytest.raises(ValueError, match="holds a TSN, expected a GatedTSN"):
        run_stage(StageConfig(stage="joint", data_dir=str(prepared_samples), out=str(tmp_path / "m.keras"),
                              gate_model=_any_stream(tmp_path)))


def _any_stream(tmp_path):
    path = tmp_path / "stream.keras"
    TSN(num_classes=3, input_size=32, num_segments=1).save(path)
    return str(path)


def test_accumulated_batches_update_as_one_big_batch(trained_models, prepared_samples):
    """Caffe's iter_size through fit(): 2 accumulated batches of 2 videos move the
    gate exactly as 1 batch of 4 (Keras averages the 2 gradients as Caffe's
    Normalize does; the clip acts on that mean). Exact up to float rounding because
    the gate's BN layers are frozen (moving statistics); in a stream whose BN
    trains, batch statistics over 2 videos differ from those over 4, so there
    accumulation is close but not identical. A wrong divisor, an update on every
    batch or a lost half-gradient fails this."""
    paths, _ = trained_models
    x, y = first_batch(prepared_samples, "rgb+flow", size=SIZE, batch_size=4)
    rgb, flow = load_model(paths["rgb"], TSN), load_model(paths["flow"], TSN)
    keras.utils.set_random_seed(0)
    accumulated = GatedTSN(rgb, flow, dropout=0.0)
    whole = GatedTSN(rgb, flow, dropout=0.0)
    whole.set_weights(accumulated.get_weights())
    start = [w.copy() for w in accumulated.get_weights()]
    accumulated.compile(optimizer=make_optimizer(0.1, iter_size=2, clip_gradients=None))
    whole.compile(optimizer=make_optimizer(0.1, iter_size=1, clip_gradients=None))
    accumulated.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    whole.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    moved = 0
    for before, a, b in zip(start, accumulated.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        moved += not np.array_equal(a, before)
    assert moved > 0


def test_the_joint_stage_takes_the_precision_asked_for(trained_models, prepared_samples, tmp_path):
    """A loaded .keras keeps the policy it was saved with; --precision must still
    hold for the joint stage (the gate was trained in float32)."""
    from keras_gated_tsn.precision import precision_scope

    paths, _ = trained_models
    config = StageConfig(stage="joint", data_dir=str(prepared_samples), out=str(tmp_path / "j.keras"),
                         gate_model=paths["gate"], precision="mixed_bfloat16", iter_size=1)
    with precision_scope("mixed_bfloat16", warn=False):
        model = build_stage_model(config, num_classes=3)
    assert model.precision == "mixed_bfloat16"
    assert model.get_layer("fused").dtype_policy.name == "float32"  # the scores stay float32


@pytest.mark.parametrize("clip_gradients,iter_size", [(None, 1), (0.5, 1), (0.5, 2), (100.0, 2)])
def test_fused_caffe_update_equals_the_keras_ops_update(monkeypatch, clip_gradients, iter_size):
    """CaffeSGD's TensorFlow update (norm by L2Loss, clip factor in the learning rate,
    one ResourceApplyKerasMomentum per weight, its own accumulation) moves every
    weight and momentum as the backend-neutral keras.ops update with Keras' clipping
    and accumulation does, through fit(): decay on kernels only, bias lr x2, the
    clip acting (0.5) or not (100), 1 or 2 accumulated batches."""
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 5.0, (32, 6)).astype("float32")
    y = rng.integers(0, 3, 32)

    def train():
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5), keras.layers.BatchNormalization(),
                                  keras.layers.Dense(3)])
        optimizer = make_optimizer(0.1, clip_gradients=clip_gradients, iter_size=iter_size)
        model.compile(optimizer=optimizer, loss=recipes.classification_loss())
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return [w.numpy() for w in model.weights + optimizer.variables]

    fused = train()
    monkeypatch.setattr(CaffeSGD, "_fused_update_applies", lambda self: False)
    reference = train()
    assert len(fused) == len(reference)
    for ours, theirs in zip(fused, reference):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
