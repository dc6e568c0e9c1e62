"""The backbone registry: one spec per backbone, looked up by name everywhere."""

import numpy as np
import pytest

from helpers import run_model_saving_test
from keras_gated_tsn.backbones import BackboneSpec, backbone_names, get_backbone, register_backbone
from keras_gated_tsn.cli import build_parser
from keras_gated_tsn.training.stages import StageConfig

SMALL = {"bn_inception": 32, "caffenet": 67, "vgg16": 32}


def test_every_backbone_is_registered_once():
    assert backbone_names() == ("bn_inception", "caffenet", "cnn_m_2048", "cnn_m_2048_no_norm2", "vgg16")
    for name in backbone_names():
        spec = get_backbone(name)
        assert spec.name == name and spec.default_fusion_layer in spec.feature_layers
        assert set(spec.stream_dropout) == {"rgb", "flow"} and "imagenet" in spec.pretrained
    with pytest.raises(ValueError, match="already registered"):
        register_backbone(BackboneSpec(**{**get_backbone("vgg16").__dict__, "display_name": "other"}))
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet50'; available: \['bn_inception'"):
        get_backbone("resnet50")


def test_cli_choices_come_from_the_registry():
    parser = build_parser()
    for argv in (["train", "--stage", "rgb", "--data", "d", "--out", "o.keras", "--backbone", "resnet50"],
                 ["convert-weights", "a.caffemodel", "b.weights.h5", "--arch", "resnet50"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
    args = parser.parse_args(["train", "--stage", "rgb", "--data", "d", "--out", "o.keras", "--backbone", "vgg16"])
    assert StageConfig(**{k: v for k, v in vars(args).items() if k not in ("func", "command")}).backbone == "vgg16"


@pytest.mark.parametrize("name", ["bn_inception", "caffenet", "vgg16"])
def test_builders_round_trip_as_keras_files(name, tmp_path):
    spec = get_backbone(name)
    size = SMALL[name]
    model = spec.builder(include_top=False, input_shape=(size, size, 3), pooling="avg")
    image = np.random.default_rng(0).normal(0, 50, (1, size, size, 3)).astype("float32")
    run_model_saving_test(model, image, tmp_path, atol=1e-4)
