"""Algorithm 1 with fit() on real frames: every stage, short."""

import os

import keras
import numpy as np
import pytest

from keras_gated_tsn.training import (
    StageConfig,
    load_model,
    make_optimizer,
    run_stage,
)

from conftest import TRAINED_INPUT_SIZE as SIZE


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
    flow = load_model(paths["flow"])
    assert flow.get_layer("conv1_7x7_s2").kernel.shape == (7, 7, 10, 64)
    assert flow.input.shape[1:] == (None, SIZE, SIZE, 10)


def test_gate_keeps_the_streams_frozen(trained_models):
    paths, _ = trained_models
    rgb = load_model(paths["rgb"])
    joint = load_model(paths["joint"])
    inner = joint.get_layer("rgb_stream")
    for name in ("inception_4e_3x3", "fc-action"):
        np.testing.assert_array_equal(inner.get_layer(name).get_weights()[0], rgb.get_layer(name).get_weights()[0])


def test_optimizer_recipe():
    optimizer = make_optimizer()
    assert optimizer.momentum == 0.9 and optimizer.clipnorm == 40.0
    assert float(optimizer.learning_rate) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="learning_rate"):
        make_optimizer(learning_rate=0)


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


def test_gradient_accumulation_is_caffe_iter_size():
    """With accumulate=2 the weights move every second step only."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(make_optimizer(0.1, gradient_accumulation_steps=2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    start = model.get_weights()[0].copy()
    model.fit(rng.random((1, 4)), np.array([0]), batch_size=1, verbose=0)
    np.testing.assert_array_equal(model.get_weights()[0], start)
    model.fit(rng.random((1, 4)), np.array([1]), batch_size=1, verbose=0)
    assert not np.allclose(model.get_weights()[0], start)


def test_weight_decay_spares_biases_and_bn():
    optimizer = make_optimizer()
    dense = keras.layers.Dense(2)
    bn = keras.layers.BatchNormalization()
    dense.build((None, 3))
    bn.build((None, 2))
    assert optimizer._use_weight_decay(dense.kernel)
    assert not optimizer._use_weight_decay(dense.bias)
    assert not optimizer._use_weight_decay(bn.gamma) and not optimizer._use_weight_decay(bn.beta)
