"""The tf.distribute choices of `gated-tsn train --strategy` (issue 7): clear
errors for a missing or broken TF_CONFIG; one-device strategies describe where
they train. Two-worker training is tested in test_training_workers.py."""

import json

import pytest
import tensorflow as tf

from keras_gated_tsn.training import distribute


@pytest.mark.parametrize("tf_config,message", [
    (None, "reads the cluster from TF_CONFIG, which is not set"),
    ("{not json", "TF_CONFIG is not a usable cluster description"),
    (json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}),
     "task index 3 is outside the 1 worker tasks"),
])
def test_multi_worker_needs_a_usable_tf_config(monkeypatch, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        distribute.make_strategy("multi-worker")


def test_strategies_and_their_workers():
    with pytest.raises(ValueError, match="strategy must be one of"):
        distribute.make_strategy("horovod")
    workers = distribute.workers_of(distribute.make_strategy("default"))
    assert workers == distribute.Workers(count=1, index=0, is_chief=True, replicas=1)
    expected = "CPU" if not tf.config.list_physical_devices("GPU") else ""
    assert expected in distribute.describe_devices(distribute.make_strategy("default"))
    assert distribute.chief_values(distribute.make_strategy("default"), [7, -3]) == [7, -3]
    assert distribute.same_on_all_workers(distribute.make_strategy("default"), [7, -3])
