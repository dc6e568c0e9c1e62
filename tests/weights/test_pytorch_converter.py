"""PyTorch state dicts → Keras: checkpoints written here with torch.save from
random tensors, converted, and the Keras model checked against a
torch.nn.functional forward pass driven by the authors' prototxt.

torch comes from the ``torch`` extra (``pip install -e ".[dev,torch]"``). In CI
(``CI=true``) a missing torch is a failure; elsewhere these tests skip.
"""

import argparse
import os
import pathlib
import sys

import numpy as np
import pytest

from keras_gated_tsn.backbones import BNInception
from keras_gated_tsn.backbones.bn_inception import preprocess_input
from keras_gated_tsn.weights import convert_pytorch, convert_weights
from keras_gated_tsn.weights.convert import checkpoint_format

_BACKBONE_TESTS = pathlib.Path(__file__).resolve().parents[1] / "backbones"
if str(_BACKBONE_TESTS) not in sys.path:
    sys.path.insert(0, str(_BACKBONE_TESTS))
from caffe_reference import parse_prototxt  # noqa: E402

SIZE = 96


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def torch():
    if _in_ci():
        import torch  # CI installs the torch extra: a missing torch must fail there

        return torch
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def nets(shared_reference):
    folder = shared_reference / "prototxt"
    return {
        m: parse_prototxt((folder / f"tsn_bn_inception_{m}_deploy.prototxt").read_text())
        for m in ("rgb", "flow")
    }


def _one(block, key, default=None):
    return block.get(key, [default])[0]


def random_state_dict(torch, net, channels, rng, prefix=""):
    """BN-Inception parameters named as TSN's PyTorch BNInception names them
    (Caffe name with / → _), random, in PyTorch layout, in graph order."""
    width = {"data": channels}
    state = {}
    for layer in net["layer"]:
        name, kind = _one(layer, "name"), _one(layer, "type")
        bottom, top = layer.get("bottom", []), layer.get("top", [])
        key = prefix + name.replace("/", "_")
        if kind == "Convolution":
            p = layer["convolution_param"][0]
            out, k, cin = _one(p, "num_output"), _one(p, "kernel_size"), width[bottom[0]]
            weight = rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (out, cin, k, k))
            state[key + ".weight"] = torch.tensor(weight, dtype=torch.float32)
            state[key + ".bias"] = torch.tensor(rng.normal(0, 0.1, out), dtype=torch.float32)
            width[top[0]] = out
        elif kind == "BN":
            c = width[bottom[0]]
            state[key + ".weight"] = torch.tensor(rng.uniform(0.5, 1.5, c), dtype=torch.float32)
            state[key + ".bias"] = torch.tensor(rng.normal(0, 0.2, c), dtype=torch.float32)
            state[key + ".running_mean"] = torch.tensor(rng.normal(0, 0.2, c), dtype=torch.float32)
            state[key + ".running_var"] = torch.tensor(rng.uniform(0.5, 2.0, c), dtype=torch.float32)
            state[key + ".num_batches_tracked"] = torch.tensor(1000, dtype=torch.int64)
            width[top[0]] = c
        elif kind == "Concat":
            width[top[0]] = sum(width[b] for b in bottom)
        elif kind != "InnerProduct":
            width[top[0]] = width[bottom[0]]
    return state


def torch_features(torch, net, image_nchw, state, prefix=""):
    """The prototxt run with torch.nn.functional up to inception_5b/output,
    then global average pooling: (N, 1024) float64."""
    import torch.nn.functional as F

    blobs = {"data": image_nchw.double()}
    for layer in net["layer"]:
        name, kind = _one(layer, "name"), _one(layer, "type")
        bottoms, top = layer.get("bottom", []), _one(layer, "top")
        key = prefix + name.replace("/", "_")
        x = blobs[bottoms[0]] if bottoms else None
        if kind == "Convolution":
            p = layer["convolution_param"][0]
            y = F.conv2d(x, state[key + ".weight"].double(), state[key + ".bias"].double(),
                         stride=_one(p, "stride", 1), padding=_one(p, "pad", 0))
        elif kind == "BN":
            y = F.batch_norm(x, state[key + ".running_mean"].double(), state[key + ".running_var"].double(),
                             state[key + ".weight"].double(), state[key + ".bias"].double(),
                             training=False, eps=1e-5)
        elif kind == "ReLU":
            y = F.relu(x)
        elif kind == "Pooling":
            p = layer["pooling_param"][0]
            k, s, pad = _one(p, "kernel_size"), _one(p, "stride", 1), _one(p, "pad", 0)
            if _one(p, "pool") == "MAX":
                y = F.max_pool2d(x, k, s, pad, ceil_mode=True)
            else:
                y = F.avg_pool2d(x, k, s, pad, ceil_mode=True, count_include_pad=True)
        elif kind == "Concat":
            y = torch.cat([blobs[b] for b in bottoms], dim=1)
        else:
            raise NotImplementedError(kind)
        blobs[top] = y
        if name == "inception_5b/output":
            return y.mean(dim=(2, 3))
    raise AssertionError("inception_5b/output not reached")


def _relative(ours, theirs):
    theirs = np.asarray(theirs, np.float64)
    return float(np.abs(np.asarray(ours, np.float64) - theirs).max() / np.abs(theirs).max())


def test_imagenet_state_dict_matches_torch(torch, nets, tmp_path):
    """bn_inception-*.pth style (classifier 'fc') → BNInception with top, and without."""
    rng = np.random.default_rng(0)
    state = random_state_dict(torch, nets["rgb"], 3, rng)
    state["fc.weight"] = torch.tensor(rng.normal(0, 0.05, (11, 1024)), dtype=torch.float32)
    state["fc.bias"] = torch.tensor(rng.normal(0, 0.1, 11), dtype=torch.float32)
    path = tmp_path / "bn_inception-0123456789.pth"
    torch.save(state, path)
    assert checkpoint_format(path) == "pytorch"

    model = BNInception(include_top=True, classes=11, classifier_activation=None, input_shape=(SIZE, SIZE, 3))
    report = convert_pytorch(path, model)
    assert report.loaded["predictions"] == "fc" and report.missing == [] and not report.skipped
    assert report.loaded["conv1_7x7_s2_bn"] == "conv1_7x7_s2_bn"

    images = np.stack([preprocess_input(rng.uniform(0, 255, (SIZE, SIZE, 3)), "rgb") for _ in range(2)])
    ours = model.predict(images.astype(np.float32), verbose=0)
    features = torch_features(torch, nets["rgb"], torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), state)
    theirs = torch.nn.functional.linear(features, state["fc.weight"].double(), state["fc.bias"].double())
    assert _relative(ours, theirs.numpy()) < 1e-3

    backbone = BNInception(include_top=False, input_shape=(SIZE, SIZE, 3))
    report = convert_pytorch(path, backbone)
    assert list(report.skipped) == ["fc"] and report.missing == []


@pytest.mark.parametrize("classifier", ["last_linear"])
def test_pretrainedmodels_classifier_name(torch, nets, tmp_path, classifier):
    rng = np.random.default_rng(1)
    state = random_state_dict(torch, nets["rgb"], 3, rng)
    state[f"{classifier}.weight"] = torch.zeros(4, 1024)
    state[f"{classifier}.bias"] = torch.arange(4, dtype=torch.float32)
    path = tmp_path / "bn_inception-52deb4733.pth"
    torch.save(state, path)
    model = BNInception(include_top=True, classes=4, input_shape=(64, 64, 3))
    report = convert_pytorch(path, model)
    assert report.loaded["predictions"] == classifier
    np.testing.assert_array_equal(model.get_layer("predictions").get_weights()[1], [0, 1, 2, 3])


def test_tsn_flow_checkpoint_matches_torch(torch, nets, tmp_path):
    """A TSN PyTorch training checkpoint (module.base_model.*, module.new_fc,
    10-channel flow) → a TSN flow stream whose segment-averaged scores equal torch's."""
    rng = np.random.default_rng(2)
    state = random_state_dict(torch, nets["flow"], 10, rng, prefix="module.base_model.")
    state["module.new_fc.weight"] = torch.tensor(rng.normal(0, 0.05, (101, 1024)), dtype=torch.float32)
    state["module.new_fc.bias"] = torch.tensor(rng.normal(0, 0.1, 101), dtype=torch.float32)
    checkpoint = {"epoch": 340, "arch": "BNInception", "state_dict": state, "best_prec1": 85.1}
    src = tmp_path / "ucf101_bninception__flow_model_best.pth.tar"
    torch.save(checkpoint, src)
    dst = tmp_path / "tsn_flow.weights.h5"
    report = convert_weights(src, dst, "bn_inception", modality="flow", input_size=SIZE)
    assert report.model_kind == "tsn stream" and report.missing == [] and not report.skipped
    assert report.loaded["fc-action"] == "fc-action"
    assert any("epoch=340" in note for note in report.notes)

    from keras_gated_tsn.models import TSN

    model = TSN("bn_inception", "flow", num_classes=101, input_size=SIZE, new_length=5)
    model.load_weights(str(dst))
    clip = rng.integers(0, 256, (1, 2, SIZE, SIZE, 10)).astype(np.uint8)
    ours = model.predict(clip, verbose=0)[0]

    snippets = (clip[0].astype(np.float64) - 128.0).transpose(0, 3, 1, 2)  # TSN flow input: minus 128
    bare = {k[len("module.base_model."):]: v for k, v in state.items() if k.startswith("module.base_model.")}
    features = torch_features(torch, nets["flow"], torch.from_numpy(snippets.copy()), bare)
    scores = torch.nn.functional.linear(
        features, state["module.new_fc.weight"].double(), state["module.new_fc.bias"].double()
    )
    theirs = scores.mean(dim=0).numpy()  # TSN's average consensus over the segments
    assert _relative(ours, theirs) < 1e-3

    # As a whole .keras stream (what `train --stage gate --flow` takes): the same scores.
    import keras

    stream_path = tmp_path / "flow.keras"
    convert_weights(src, stream_path, "bn_inception", modality="flow", input_size=SIZE)
    stream = keras.saving.load_model(stream_path)
    assert isinstance(stream, TSN) and (stream.modality, stream.new_length) == ("flow", 5)
    np.testing.assert_allclose(stream.predict(clip, verbose=0)[0], ours, rtol=1e-5, atol=1e-5)

    # The same checkpoint into a backbone only: new_fc is skipped.
    backbone = BNInception(include_top=False, input_shape=(64, 64, 10))
    report = convert_pytorch(src, backbone)
    assert list(report.skipped) == ["fc-action"] and report.missing == []


def test_tsn_checkpoint_without_dropout_keeps_base_model_fc(torch, tmp_path):
    """tsn-pytorch trained with dropout 0 replaces base_model.fc itself: it is the classifier."""
    from keras_gated_tsn.weights.pytorch import pytorch_source_layers

    state = {
        "module.base_model.conv1_7x7_s2.weight": np.zeros((64, 3, 7, 7), np.float32),
        "module.base_model.fc.weight": np.zeros((51, 1024), np.float32),
        "module.base_model.fc.bias": np.zeros(51, np.float32),
    }
    sources, is_tsn = pytorch_source_layers(state)
    assert is_tsn and [s.keras_name for s in sources] == ["conv1_7x7_s2", "fc-action"]


def test_errors(torch, nets, tmp_path):
    rng = np.random.default_rng(3)
    state = random_state_dict(torch, nets["rgb"], 3, rng)
    state["inception_3a_1x1_bn.running_var"] = torch.ones(65)
    state["mystery.weight"] = torch.ones(3, 3, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    model = BNInception(include_top=False, input_shape=(64, 64, 3))
    with pytest.raises(ValueError) as info:
        convert_pytorch(path, model)
    message = str(info.value)
    assert "'inception_3a_1x1_bn'" in message and "(65,)" in message and "(64,)" in message
    assert "'mystery'" in message

    # Objects beyond tensors need an explicit, trusted unpickling.
    pickled = tmp_path / "with_args.pth.tar"
    good = random_state_dict(torch, nets["rgb"], 3, rng)
    torch.save({"state_dict": good, "args": argparse.Namespace(lr=0.001)}, pickled)
    with pytest.raises(ValueError, match="allow_pickle"):
        convert_pytorch(pickled, model)
    report = convert_pytorch(pickled, model, allow_pickle=True)
    assert report.missing == []


def test_missing_torch_says_how_to_install(monkeypatch, tmp_path):
    """Needs no torch: torch's import is made to fail."""
    monkeypatch.setitem(sys.modules, "torch", None)
    path = tmp_path / "x.pth"
    path.write_bytes(b"PK")
    model = BNInception(include_top=False, input_shape=(64, 64, 3))
    with pytest.raises(ImportError, match=r"pip install keras_gated_tsn\[torch\]"):
        convert_pytorch(path, model)
