"""Training that survives being killed (issue 7): SIGKILL a stage at a checkpoint
write and between writes, damage the newest state, and start it again: it ends
with the weights of an uninterrupted run (deterministic ops on)."""

import dataclasses
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from keras_gated_tsn.training.stages import StageConfig, checkpoint_folder, load_model

#: Runs one stage in a fresh process; argv: the StageConfig as JSON, then an optional
#: kill plan {"save": n, "when": "writing" | "after"}: SIGKILL at the n-th state save,
#: halfway through writing its weights file or right after the state is whole.
DRIVER = r"""
import json, os, signal, sys
import tensorflow as tf
tf.config.experimental.enable_op_determinism()
import keras
from keras_gated_tsn.training import checkpoints
from keras_gated_tsn.training.stages import StageConfig, run_stage

config = StageConfig(**json.loads(sys.argv[1]))
plan = json.loads(sys.argv[2]) if len(sys.argv) > 2 else None
if plan and plan.get("keep_last"):  # the model file gets the last epoch's weights, not the best's
    checkpoints.TrainingState.load_best = lambda self, model: True
    plan = plan if "save" in plan else None
if plan:
    save, saves = checkpoints.TrainingState._save, [0]
    write_weights = keras.Model.save_weights

    def dying_write(model, path, *args, **kwargs):
        write_weights(model, path, *args, **kwargs)
        with open(path, "r+b") as handle:
            handle.truncate(os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)

    def counted_save(self):
        saves[0] += 1
        if saves[0] == plan["save"] and plan["when"] == "writing":
            keras.Model.save_weights = dying_write
        save(self)
        if saves[0] == plan["save"]:
            os.kill(os.getpid(), signal.SIGKILL)

    checkpoints.TrainingState._save = counted_save
result = run_stage(config, log=lambda line: print(line, flush=True))
print("BEST", result.best_epoch, "RESUMED", result.resumed_from)
"""


def _run(config: StageConfig, plan=None):
    args = [sys.executable, "-c", DRIVER, json.dumps(dataclasses.asdict(config))]
    if plan:
        args.append(json.dumps(plan))
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def _config(prepared_samples, out) -> StageConfig:
    # 28 training videos, batch 4: 7 batches per epoch; a state every 3 batches and at
    # each epoch end: saves 1-6 at batches 3, 6, 7, 9, 12, 14 of the run.
    return StageConfig(
        stage="rgb", data_dir=str(prepared_samples), out=str(out), epochs=2, batch_size=4, num_segments=2,
        input_size=64, seed=3, checkpoint_every=3, verbose=0,
    )


@pytest.fixture(scope="module")
def uninterrupted(prepared_samples, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "rgb.keras"
    done = _run(_config(prepared_samples, out))
    assert done.returncode == 0, done.stderr[-3000:]
    return load_model(str(out))


def _assert_same_weights(model, reference):
    names = [v.path for v in reference.weights]
    assert names == [v.path for v in model.weights]
    for name, ours, theirs in zip(names, model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(ours, theirs, err_msg=name)


def test_killed_while_writing_a_state_resumes_mid_epoch(prepared_samples, tmp_path, uninterrupted):
    """SIGKILL halfway through writing the 5th state (batch 12): the 4th (epoch 2,
    batch 2) is whole and the run goes on from it, mid-epoch, to the weights, BN
    statistics and dropout draws of the uninterrupted run; the CSV log keeps epoch 1
    and gains epoch 2 once; the state folder is gone at the end."""
    config = _config(prepared_samples, tmp_path / "rgb.keras")
    killed = _run(config, {"save": 5, "when": "writing"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    folder = checkpoint_folder(config.out)
    assert any(name.startswith(".") for name in os.listdir(folder))  # the half-written file
    assert not os.path.exists(config.out)
    log = tmp_path / "rgb_log.csv"
    assert [line.split(",")[0] for line in log.read_text().splitlines()] == ["epoch", "0"]

    resumed = _run(config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout and "state-000000009.json: epoch 2, batch 3" in resumed.stdout
    _assert_same_weights(load_model(config.out), uninterrupted)
    assert [line.split(",")[0] for line in log.read_text().splitlines()] == ["epoch", "0", "1"]
    assert not os.path.exists(folder)


def test_a_damaged_state_is_named_and_the_one_before_used(prepared_samples, tmp_path, uninterrupted):
    """SIGKILL right after the 5th state; then its weights file loses its second
    half (a disk fault): the restart names that file, goes on from the 4th state
    and still ends with the uninterrupted weights."""
    config = _config(prepared_samples, tmp_path / "rgb.keras")
    killed = _run(config, {"save": 5, "when": "after"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    newest = os.path.join(checkpoint_folder(config.out), "state-000000012.weights.h5")
    with open(newest, "r+b") as handle:
        handle.truncate(os.path.getsize(newest) // 2)

    resumed = _run(config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"skipping a damaged training state: {newest[:-len('.weights.h5')]}.json" in resumed.stderr
    assert "state-000000009.json: epoch 2, batch 3" in resumed.stdout
    _assert_same_weights(load_model(config.out), uninterrupted)


def test_a_nan_loss_stops_the_run_naming_the_batch(tmp_path):
    """Through fit(): the 3rd batch carries a NaN, so its loss is NaN; training
    stops there, the message names epoch 1, batch 3 and the last saved state (batch
    2), and no state is written from the NaN weights."""
    import keras

    from keras_gated_tsn.training.checkpoints import TrainingState

    x = np.ones((8, 4), "float32")
    x[4] = np.nan  # batch 3 of 2 videos
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    state = TrainingState(str(tmp_path / "ckpt"), {}, "loss", save_every=2)
    history = model.fit(x, np.zeros((8, 2)), batch_size=2, epochs=3, callbacks=[state], verbose=0, shuffle=False)
    assert len(history.history["loss"]) == 1  # stopped in the first epoch
    assert "became nan at epoch 1, batch 3 (batch 3 of the run)" in state.diverged
    assert "state-000000002.json" in state.diverged
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["state-000000002.json", "state-000000002.weights.h5"]


def test_a_killed_multitask_stage_resumes_on_the_same_batches(prepared_samples, tmp_path):
    """The multi-task stream over two datasets (the dataset of each batch drawn
    from the seed and the run's step): SIGKILL right after the state of epoch 2,
    batch 1 (states at batches 5, 10, 14 and 15 of the run), then the same command
    goes on mid-epoch, each dataset from its own place, to the weights of the
    uninterrupted run."""
    from helpers import relabelled_copy

    other = relabelled_copy(prepared_samples, tmp_path / "other_set")

    def config(out):
        return StageConfig(
            stage="multitask", data_dir=str(prepared_samples), also_data=[str(other)], out=str(out), epochs=2,
            batch_size=4, num_segments=1, input_size=48, backbone="caffenet", new_length=2, seed=5,
            checkpoint_every=5, verbose=0,
        )

    last = {"keep_last": True}  # so that epoch 2's weights are compared, whichever epoch is best
    whole = _run(config(tmp_path / "whole.keras"), last)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed_config = config(tmp_path / "mt.keras")
    killed = _run(killed_config, {"save": 4, "when": "after", **last})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = _run(killed_config, last)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "epoch 2, batch 2" in resumed.stdout
    _assert_same_weights(load_model(killed_config.out), load_model(str(tmp_path / "whole.keras")))
