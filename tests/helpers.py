"""Shared test helpers: the same serialization and ``.keras`` round trips for
every layer and model of the package (in the spirit of KerasHub's
``run_serialization_test`` / ``run_model_saving_test``), and random clips."""

from __future__ import annotations

import json

import keras
import numpy as np


def _as_json(config):
    """A config as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(config))


def run_serialization_test(obj):
    """``get_config`` -> JSON -> ``from_config`` gives an object of the same
    class with the same config, and Keras' own (de)serialization agrees."""
    config = obj.get_config()
    json.dumps(config)  # configs must be JSON
    clone = obj.__class__.from_config(json.loads(json.dumps(config)))
    assert type(clone) is type(obj)
    assert clone.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
    assert type(revived) is type(obj) and revived.get_config() == config
    return clone


def run_model_saving_test(model, inputs, tmp_path, atol=1e-6):
    """Saves ``model`` as ``.keras``, loads it back with ``keras.saving.load_model``
    and checks class, config, weights and outputs on ``inputs``. Returns the
    loaded model."""
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    assert _as_json(loaded.get_config()) == _as_json(model.get_config())
    for mine, theirs in zip(model.weights, loaded.weights):
        assert mine.path == theirs.path
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))
    ours, revived = model.predict(inputs, verbose=0), loaded.predict(inputs, verbose=0)
    if isinstance(ours, dict):
        assert set(ours) == set(revived)
        for name in ours:
            np.testing.assert_allclose(revived[name], ours[name], rtol=1e-5, atol=atol)
    else:
        np.testing.assert_allclose(revived, ours, rtol=1e-5, atol=atol)
    return loaded


def random_clips(size, batch=2, segments=3, new_length=5, seed=0):
    """Raw uint8 clips for both modalities: ``{"rgb": (B, K, S, S, 3), "flow": (B, K, S, S, 2L)}``."""
    rng = np.random.default_rng(seed)
    return {
        "rgb": rng.integers(0, 256, (batch, segments, size, size, 3)).astype("uint8"),
        "flow": rng.integers(0, 256, (batch, segments, size, size, 2 * new_length)).astype("uint8"),
    }


def first_batch(prepared_dataset, modality, *, size, segments=2, batch_size=4, new_length=None, seed=0,
                list_name="train.txt"):
    """The first batch ``(x, y)`` of a prepared dataset's training pipeline, as NumPy."""
    import os

    from keras_gated_tsn.data import pipeline

    ds = pipeline.make_dataset(
        os.path.join(prepared_dataset, list_name), os.path.join(prepared_dataset, "frames"), modality,
        num_segments=segments, input_size=size, batch_size=batch_size, seed=seed, new_length=new_length,
    )
    x, y = next(iter(ds))
    x = {k: v.numpy() for k, v in x.items()} if isinstance(x, dict) else x.numpy()
    return x, y.numpy()


def caffe_layers_of(model):
    """A Keras stream's weights as Caffe layers (Caffe blob layouts, the Keras
    layer names, which the converter maps back one to one): a stand-in for
    TSN's released ``.caffemodel`` files, which cannot be downloaded here."""
    from keras_gated_tsn.weights.caffe import CaffeLayer

    layers = []
    for layer in model.layers:
        weights = layer.get_weights()
        if isinstance(layer, keras.layers.Conv2D):
            blobs = [weights[0].transpose(3, 2, 0, 1), weights[1]]
            layers.append(CaffeLayer(layer.name, "Convolution", blobs, [], [layer.name]))
        elif isinstance(layer, keras.layers.BatchNormalization):
            blobs = [w.reshape(1, -1, 1, 1) for w in weights]  # scale, shift, mean, variance (TSN's BN)
            layers.append(CaffeLayer(layer.name, "BN", blobs, [], [layer.name]))
        elif isinstance(layer, keras.layers.Dense):
            layers.append(CaffeLayer(layer.name, "InnerProduct", [weights[0].T, weights[1]], [], [layer.name]))
    return layers


def count_weights(weights):
    """The number of scalars in a list of weights (variables or arrays)."""
    import numpy as np

    return sum(int(np.prod(w.shape)) for w in weights)


def caffe_pool_size(n, kernel=3, stride=2):
    """Caffe's output side of an unpadded max pool: it rounds up (ceil mode)."""
    import math

    return int(math.ceil((n - kernel) / stride)) + 1


def relabelled_copy(prepared, folder):
    """Another prepared dataset over the same frames: 2 classes (the sample
    set's labels mod 2), its train and val lists, in ``folder`` (whose name
    becomes a multi-task head's). Returns ``folder``."""
    import os
    import shutil

    folder.mkdir()
    os.symlink(prepared / "frames", folder / "frames")
    shutil.copy(prepared / "prepare.json", folder / "prepare.json")
    (folder / "classes.txt").write_text("cartwheel\nother\n")
    for name in ("train", "val"):
        lines = [line.split() for line in (prepared / f"{name}.txt").read_text().split("\n") if line.strip()]
        (folder / f"{name}.txt").write_text("".join(f"{v} {n} {int(label) % 2}\n" for v, n, label in lines))
    return folder
