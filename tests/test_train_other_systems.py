"""`gated-tsn train` for the other systems of the papers (issue 9): the
convolutional two-stream fusion, GCF-Net and the multi-task stream, trained on
real frames through the command, scored by `gated-tsn evaluate`, and their
options refused where they do not apply."""

import csv

import numpy as np
import pytest

from helpers import relabelled_copy
from keras_gated_tsn.cli import main
from keras_gated_tsn.evaluation.scores import load_scores
from keras_gated_tsn.models import ConvTwoStreamFusion, GCFNet, MultiTaskTSN
from keras_gated_tsn.training.stages import head_name, load_model

FAST = ["--epochs", "1", "--batch-size", "4", "--seed", "2"]


def _log(out) -> list:
    with open(str(out)[: -len(".keras")] + "_log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _weights(layer):
    return [np.array(w) for w in layer.get_weights()]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_conv_fusion_trains_past_the_fusion_layer_only(prepared_samples, trained_models, tmp_path, capsys):
    """Two trained streams fused by 3D conv + 3D pooling over T = 3 snippets tau in
    [1, 3] apart: the layers up to the fusion layer keep the streams' weights and BN
    statistics (Sec. 3.5: back-propagation stops at the fusion layer), the fusion
    conv and both towers' classifiers train, the best epoch is chosen on the fused
    prediction, and `evaluate --model` scores the saved model."""
    data = str(prepared_samples)
    paths, _ = trained_models
    out = tmp_path / "fusion.keras"
    assert main(["train", "--stage", "conv-fusion", "--data", data, "--out", str(out), "--rgb", paths["rgb"],
                 "--flow", paths["flow"], "--snippets", "3", "--snippet-stride", "1", "3", "--lr", "0.01",
                 *FAST]) == 0
    assert "best val_fused_accuracy" in capsys.readouterr().out
    model = load_model(str(out), ConvTwoStreamFusion)
    assert (model.num_snippets, model.snippet_stride, model.temporal_fusion, model.towers) == (
        3, 3, "conv3d_pool3d", "keep_both")
    streams = {m: load_model(paths[m]) for m in ("rgb", "flow")}
    for modality, stream in streams.items():
        trunk = model.get_layer(f"{modality}_stream")
        checked = [layer for layer in trunk.layers if layer.weights]
        assert checked
        for layer in checked:
            assert _same(_weights(layer), _weights(stream.get_layer(layer.name))), layer.name
    fresh = ConvTwoStreamFusion(streams["rgb"], streams["flow"], num_snippets=3, snippet_stride=3)
    fusion = [layer.name for layer in model.layers if layer.name.endswith("_conv3d_fusion")]
    assert len(fusion) == 1
    assert not _same(_weights(model.get_layer(fusion[0])), _weights(fresh.get_layer(fusion[0])))
    for tower in ("spatiotemporal_fc-action", "flow_fc-action"):
        assert not _same(_weights(model.get_layer(tower)), _weights(fresh.get_layer(tower))), tower
    assert [row["epoch"] for row in _log(out)] == ["0"] and "val_fused_accuracy" in _log(out)[0]

    scores = tmp_path / "fusion.npz"
    assert main(["evaluate", "--data", data, "--list", f"{data}/test.txt", "--model", str(out), "--out",
                 str(scores), "--frames", "3", "--crops", "1", "--no-progress"]) == 0
    loaded = load_scores(scores)
    assert loaded.fused.shape == (11, 1, 3) and np.isfinite(loaded.fused).all()


def test_gcf_net_trains_from_scratch_then_fine_tunes_its_head(prepared_samples, tmp_path, capsys):
    """GCF-Net over 3D-MobileNetV2 on real clips: a first run trains everything and
    writes the attention head; a second starts from it with --freeze-backbone (the
    paper's UCF-101 fine-tuning): the backbone's weights and BN statistics stay those
    of the first model, the fusion, attention and classifier move; the best epoch is
    chosen on the scores' accuracy; `evaluate --model` scores one view per video."""
    data = str(prepared_samples)
    tiny = ["--backbone", "mobilenet3d_v2", "--clips", "2", "--clip-length", "4", "--input-size", "32",
            "--descriptor-dim", "16"]
    first = tmp_path / "gcf.keras"
    assert main(["train", "--stage", "gcf", "--data", data, "--out", str(first), *tiny, *FAST]) == 0
    assert "best val_scores_accuracy" in capsys.readouterr().out
    scratch = load_model(str(first), GCFNet)
    assert scratch.fusion == "gcf" and scratch.output_keys == ("scores", "attention")
    assert (scratch.num_clips, scratch.clip_length, scratch.input_size) == (2, 4, 32)

    tuned_path = tmp_path / "tuned.keras"
    assert main(["train", "--stage", "gcf", "--data", data, "--out", str(tuned_path), *tiny, "--freeze-backbone",
                 "--init-from", str(first), "--lr", "1.0", *FAST]) == 0
    tuned = load_model(str(tuned_path), GCFNet)
    assert tuned.freeze_backbone
    for layer in tuned.backbone_layers:
        assert _same(_weights(layer), _weights(scratch.get_layer(layer.name))), layer.name
    for name in ("inter_clip_fusion_1", "attention", "classifier"):
        assert not _same(_weights(tuned.get_layer(name)), _weights(scratch.get_layer(name))), name
    assert "val_scores_accuracy" in _log(tuned_path)[0]

    scores = tmp_path / "gcf.npz"
    assert main(["evaluate", "--data", data, "--list", f"{data}/test.txt", "--model", str(tuned_path), "--out",
                 str(scores), "--no-progress"]) == 0
    assert load_scores(scores).fused.shape == (11, 1, 3)


def test_gcf_net_over_flow_stacks_of_a_2d_backbone(prepared_samples, tmp_path, capsys):
    """The GCF head over the zoo's 2D flow stream (each clip frame a TSN flow
    snippet of L=2 fields): trained by `train --stage gcf --modality flow`,
    scored by `evaluate --model`; a 3D backbone over flow is refused."""
    data = str(prepared_samples)
    out = tmp_path / "gcf_flow.keras"
    tiny = ["--backbone", "caffenet", "--modality", "flow", "--new-length", "2", "--clips", "2", "--clip-length",
            "2", "--input-size", "48", "--descriptor-dim", "16"]
    assert main(["train", "--stage", "gcf", "--data", data, "--out", str(out), *tiny, *FAST]) == 0
    model = load_model(str(out), GCFNet)
    assert (model.modality, model.new_length, model.backbone) == ("flow", 2, "caffenet")
    assert tuple(model.input.shape[1:]) == (2, 2, 48, 48, 4)
    scores = tmp_path / "gcf_flow.npz"
    assert main(["evaluate", "--data", data, "--list", f"{data}/test.txt", "--model", str(out), "--out",
                 str(scores), "--no-progress"]) == 0
    loaded = load_scores(scores)
    assert loaded.fused.shape == (11, 1, 3) and np.isfinite(loaded.fused).all()
    capsys.readouterr()
    assert main(["train", "--stage", "gcf", "--data", data, "--out", str(tmp_path / "x.keras"), "--modality",
                 "flow", *FAST]) == 2
    assert "the clip backbone 'resnext3d_101' takes RGB clips" in capsys.readouterr().err


@pytest.fixture
def second_dataset(prepared_samples, tmp_path):
    """A second head for the multi-task stream: ``other_set``, 2 classes."""
    return relabelled_copy(prepared_samples, tmp_path / "other_set")


def test_multitask_stream_has_a_head_per_dataset(prepared_samples, second_dataset, tmp_path, capsys):
    """One flow stream over two datasets: a head each, named after the folders,
    with their classes; both heads' validation accuracies logged (each on its own
    videos) and --data's chooses the best epoch; `evaluate --head` scores a head."""
    data = str(prepared_samples)
    out = tmp_path / "multitask.keras"
    assert main(["train", "--stage", "multitask", "--data", data, "--also-data", str(second_dataset), "--out",
                 str(out), "--backbone", "caffenet", "--input-size", "64", "--segments", "1", *FAST]) == 0
    printed = capsys.readouterr().out
    first = head_name(data)
    assert f"best val_{first}_accuracy" in printed and "head other_set: 28 training videos" in printed
    assert "14 batches per epoch" in printed  # 28 + 28 videos, batch 4
    model = load_model(str(out), MultiTaskTSN)
    assert model.heads == {first: 3, "other_set": 2} and model.modality == "flow"
    assert model.class_names["other_set"] == ["cartwheel", "other"]
    row = _log(out)[0]
    assert {f"val_{first}_accuracy", "val_other_set_accuracy"} <= set(row)

    scores = tmp_path / "head.npz"
    assert main(["evaluate", "--data", data, "--list", f"{data}/test.txt", "--flow", str(out), "--head", first,
                 "--out", str(scores), "--frames", "1", "--crops", "1", "--no-progress"]) == 0
    assert load_scores(scores).flow.shape == (11, 1, 3)


@pytest.mark.parametrize("stage,bad,message", [
    ("rgb", ["--spatial-fusion", "sum"], "--spatial-fusion does not apply to --stage rgb"),
    ("gcf", ["--snippet-stride", "1", "3"], "--snippet-stride does not apply to --stage gcf"),
    ("flow", ["--clips", "4"], "--clips does not apply to --stage flow"),
    ("joint", ["--other-fusion-layer", "conv5"], "--other-fusion-layer does not apply to --stage joint"),
    ("gate", ["--also-data", "x"], "--also-data does not apply to --stage gate"),
    ("conv-fusion", ["--backbone-weights", "imagenet"], "--backbone-weights does not apply to --stage conv-fusion"),
    ("conv-fusion", [], "--rgb (the trained RGB stream) is required"),
    ("conv-fusion", ["--snippet-stride", "4", "2"], "snippet_stride must be (tau_min, tau_max) ints with 1 <= tau_min"),
    ("gcf", ["--augment-on", "device"], "GCF-Net's clips are cropped on the host"),
    ("gcf", ["--sparsity-weight", "-1"], "argument --sparsity-weight: expected a number >= 0"),
    ("multitask", ["--also-data", "{data}"], "two datasets would give the head"),
    ("multitask", ["--also-data", "{data}/no_such_set"], "dataset: no such folder"),
])
def test_the_other_stages_refuse_what_does_not_apply(prepared_samples, tmp_path, capsys, stage, bad, message):
    """Each is refused with exit status 2 and the reason, before any training."""
    data = str(prepared_samples)
    out = tmp_path / "m.keras"
    try:
        status = main(["train", "--stage", stage, "--data", data, "--out", str(out),
                       *[arg.format(data=data) for arg in bad]])
    except SystemExit as exit:  # argparse's usage errors
        status = exit.code
    assert status == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
