"""Training over two worker processes (issue 7): `--strategy multi-worker` with
TF_CONFIG on 127.0.0.1, a stream stage and the gate stage on real frames. Both
workers end with the same weights, equal to one process training the same
global batch; only worker 0 writes files."""

import dataclasses
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from keras_gated_tsn.training.stages import StageConfig

#: Runs one stage; argv: the StageConfig as JSON, then the .npz to write with the
#: weights by path, as they were when fit() started ("initial|...") and at the end.
DRIVER = r"""
import json, sys
import keras
import numpy as np
from keras_gated_tsn.training.stages import StageConfig, run_stage

initial, fit = {}, keras.Model.fit

def recording_fit(model, *args, **kwargs):
    if not initial:
        initial.update({"initial|" + w.path.replace("/", "|"): w.numpy() for w in model.weights})
    return fit(model, *args, **kwargs)

keras.Model.fit = recording_fit
result = run_stage(StageConfig(**json.loads(sys.argv[1])), log=lambda line: print(line, flush=True))
np.savez(sys.argv[2], **initial, **{w.path.replace("/", "|"): w.numpy() for w in result.model.weights})
"""


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start(config, weights, tf_config=None):
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, json.dumps(dataclasses.asdict(config)), str(weights)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )


def _finish(process, name):
    try:
        output, _ = process.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"{name} did not finish:\n{output[-4000:]}")
    assert process.returncode == 0, f"{name} failed:\n{output[-4000:]}"
    return output


def _weights(path):
    with np.load(path) as saved:
        return {name: saved[name] for name in saved.files}


def _train_on_two_workers_and_alone(config, tmp_path, **alone_changes):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = [
        _start(dataclasses.replace(config, strategy="multi-worker"), tmp_path / f"worker{index}.npz",
               {"cluster": cluster, "task": {"type": "worker", "index": index}})
        for index in range(2)
    ]
    logs = [_finish(process, f"worker {index}") for index, process in enumerate(workers)]
    alone = tmp_path / "alone"
    alone_config = dataclasses.replace(config, out=str(alone / os.path.basename(config.out)), **alone_changes)
    _finish(_start(alone_config, tmp_path / "alone.npz"),
            "the one-process run")
    return logs, [_weights(tmp_path / f"worker{index}.npz") for index in range(2)], _weights(tmp_path / "alone.npz")


def _check(logs, workers, alone, config):
    """Returns the names of the weights training changed."""
    assert "2 workers x CPU" in logs[0] and "global batch 4 (2 workers x 2)" in logs[0], logs[0]
    assert "stage" not in logs[1]  # worker 1 trains quietly
    # Keras' own multi-worker failures (keras-team/keras#20585, tensorflow#72388) and the
    # end-of-data warning of a distributed validation set do not come back.
    assert "PerReplica" not in logs[0] + logs[1] and "ran out of data" not in logs[0] + logs[1]
    assert workers[0].keys() == workers[1].keys() == alone.keys()
    for name, value in workers[0].items():
        np.testing.assert_array_equal(value, workers[1][name], err_msg=name)  # one all-reduced update on both
        np.testing.assert_allclose(value, alone[name], rtol=2e-5, atol=2e-6, err_msg=name)
    # Only worker 0 writes the model and the logs; the training state is gone at the end.
    assert os.path.isfile(config.out) and os.path.isfile(config.out[: -len(".keras")] + "_log.csv")
    assert sorted(os.listdir(os.path.dirname(config.out))) == ["gate.keras", "gate_log.csv", "gate_logs"] or \
        sorted(os.listdir(os.path.dirname(config.out))) == ["rgb.keras", "rgb_log.csv", "rgb_logs"]
    return {
        name for name, value in workers[0].items()
        if not name.startswith("initial|") and not np.array_equal(value, workers[0]["initial|" + name])
    }


@pytest.fixture
def few_videos(prepared_samples, tmp_path):
    """8 training and 4 validation videos of the sample set: 2 batches of 4."""
    lists = {}
    for name, count in (("train", 8), ("val", 4)):
        lines = (prepared_samples / f"{name}.txt").read_text().splitlines()[:count]
        lists[name] = tmp_path / f"{name}8.txt"
        lists[name].write_text("\n".join(lines) + "\n")
    return lists


def test_two_workers_train_a_stream_as_one_process(prepared_samples, few_videos, tmp_path):
    """The rgb stream with partial BN: its first BN takes the global batch's statistics
    (synchronized over the workers) and the gradient is clipped after the sum over
    the workers, so the two workers' update is one process's."""
    config = StageConfig(
        stage="rgb", data_dir=str(prepared_samples), train_list=str(few_videos["train"]),
        val_list=str(few_videos["val"]), out=str(tmp_path / "workers" / "rgb.keras"), epochs=1, batch_size=4,
        num_segments=2, input_size=64, seed=5, dropout=0.0, verbose=2,
        clip_gradients=0.05,  # far below the gradient's norm: the clipping acts, on the global gradient
    )
    logs, workers, alone = _train_on_two_workers_and_alone(config, tmp_path)
    changed = _check(logs, workers, alone, config)
    # Partial BN: the first BN's statistics moved (over the global batch), the others did not.
    bn_statistics = {name for name in changed if "moving_" in name}
    assert bn_statistics and all("conv1_7x7_s2_bn" in name for name in bn_statistics), sorted(bn_statistics)
    assert any(name.endswith("|kernel") for name in changed)


def test_two_workers_train_the_gate_as_one_process(prepared_samples, trained_models, few_videos, tmp_path):
    """The gate over the two frozen streams, 2 accumulated batches per update.

    The workers crop on the device (``--augment-on device``: whole frames and
    crop boxes reach the distributed training step, which is built from their
    specs), the single process on the host: the same training either way."""
    paths, _ = trained_models
    config = StageConfig(
        stage="gate", data_dir=str(prepared_samples), train_list=str(few_videos["train"]),
        val_list=str(few_videos["val"]), out=str(tmp_path / "workers" / "gate.keras"), rgb=paths["rgb"],
        flow=paths["flow"], epochs=1, batch_size=4, iter_size=2, num_segments=2, seed=5, gate_dropout=0.0,
        verbose=2, augment_on="device",
    )
    logs, workers, alone = _train_on_two_workers_and_alone(config, tmp_path, augment_on="host")
    assert "crops on the device" in logs[0]
    changed = _check(logs, workers, alone, config)
    assert changed, "the gate did not train"
    assert not any("_stream|" in name for name in changed), sorted(changed)  # the streams stay frozen


def test_workers_agree_or_all_learn_that_they_do_not():
    """The start-up collectives of a multi-worker run: worker 0's values reach every
    worker, and a disagreement (a resume point only one worker sees) is known to
    every worker, so all stop instead of one waiting for the others forever."""
    driver = (
        "import json, os, sys\n"
        "from keras_gated_tsn.training import distribute\n"
        "strategy = distribute.make_strategy('multi-worker')\n"
        "index = json.loads(os.environ['TF_CONFIG'])['task']['index']\n"
        "print('RESULT', json.dumps([distribute.chief_values(strategy, [10 + index, 7]),\n"
        "      distribute.same_on_all_workers(strategy, [3, 4]),\n"
        "      distribute.same_on_all_workers(strategy, [3, index])]))\n"
    )
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    processes = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True, env=env))
    for index, process in enumerate(processes):
        output = _finish(process, f"worker {index}")
        result = json.loads(output.split("RESULT ", 1)[1].splitlines()[0])
        assert result == [[10, 7], True, False], (index, result)
