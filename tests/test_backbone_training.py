"""A stream and a gate for CaffeNet and VGG16 train on real frames (one short epoch each)."""

import numpy as np
import pytest

from keras_gated_tsn.models import GatedTSN
from keras_gated_tsn.training.stages import StageConfig, load_model, run_stage

SIZES = {"caffenet": 67, "vgg16": 48}


@pytest.mark.parametrize("backbone", ["caffenet", "vgg16"])
def test_streams_and_gate_train(prepared_samples, tmp_path, backbone):
    paths = {stage: str(tmp_path / f"{stage}.keras") for stage in ("rgb", "flow", "gate")}
    common = dict(
        data_dir=str(prepared_samples), epochs=1, batch_size=4, num_segments=2,
        input_size=SIZES[backbone], backbone=backbone, partial_bn=False, seed=0, verbose=0, iter_size=1,
    )
    histories = {}
    for stage, extra in (
        ("rgb", {}),
        ("flow", {"init_from": paths["rgb"]}),
        ("gate", {"rgb": paths["rgb"], "flow": paths["flow"]}),
    ):
        histories[stage] = run_stage(StageConfig(stage=stage, out=paths[stage], **common, **extra)).history
    assert np.isfinite(histories["rgb"]["loss"][0]) and np.isfinite(histories["gate"]["fused_loss"][0])
    gate = load_model(paths["gate"], GatedTSN)
    assert gate.backbone == backbone and gate.fusion_layer == {"caffenet": "conv4", "vgg16": "block5_conv2"}[backbone]
    fusion = {"caffenet": "conv4", "vgg16": "block5_conv2"}[backbone]
    assert gate.get_layer(f"gating_{fusion}_conv_fusion").kernel.shape[2] == 2 * gate.get_layer(
        f"gating_{fusion}_conv_fusion").kernel.shape[3]
    flow = load_model(paths["flow"])
    assert flow.get_layer("dropout").rate == 0.8  # the paper's 0.8 for both streams here
