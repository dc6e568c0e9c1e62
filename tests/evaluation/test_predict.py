"""``gated-tsn predict`` on raw video files: the same numbers as preparing
and evaluating the same video, class names from the model, bad videos named."""

import json

import numpy as np
import pytest

from keras_gated_tsn.cli import main
from keras_gated_tsn.data import prepare
from keras_gated_tsn.data.lists import read_class_names, read_list_file
from keras_gated_tsn.evaluation.scores import load_scores
from keras_gated_tsn.models import GatedTSN
from keras_gated_tsn.training.stages import load_model

# How the sample dataset was prepared (keras_gated_tsn.datasets.prepare_sample_dataset).
PREPARED = ["--flow", "dis", "--size", "128", "96"]


def _softmax(scores):
    exp = np.exp(scores - scores.max())
    return exp / exp.sum()


def test_extract_snippets_writes_what_the_protocol_reads(tmp_path, sample_clips_dir, tmp_path_factory):
    clip = sample_clips_dir / "TrumanShow_wave_f_nm_np1_fr_med_26.avi"  # 48 frames
    full = tmp_path / "full"
    prepare.extract_video(clip, full, flow="dis", size=(64, 48))
    part = tmp_path / "part"
    assert prepare.extract_snippets(clip, part, num_snippets=3, new_length=2, flow="dis", size=(64, 48)) == 48
    # 47 pairs: ticks of 46/3 -> offsets 7, 23, 38; pairs 7-8, 23-24, 38-39 and the last (46); 1-based names.
    names = sorted(p.name for p in part.iterdir())
    assert names == sorted([f"img_{i:05d}.jpg" for i in (8, 24, 39, 48)]
                           + [f"flow_{c}_{i:05d}.jpg" for c in "xy" for i in (8, 9, 24, 25, 39, 40, 47)])
    for name in names:  # byte for byte what a whole extraction writes
        assert (part / name).read_bytes() == (full / name).read_bytes(), name
    with pytest.raises(ValueError, match="num_snippets"):
        prepare.extract_snippets(clip, tmp_path / "x", num_snippets=0)


def test_predict_equals_evaluating_the_prepared_video(prepared_samples, trained_models, tmp_path, capsys):
    paths, _ = trained_models
    data = prepared_samples
    record = read_list_file(data / "test.txt")[0]
    video = next((data.parent / "videos").rglob(f"{record.video}.avi"))
    listed = tmp_path / "one.txt"
    listed.write_text(f"{record.video} {record.num_frames} {record.label}\n")
    assert main(["evaluate", "--data", str(data), "--list", str(listed), "--model", paths["joint"],
                 "--out", str(tmp_path / "one.npz"), "--frames", "3", "--crops", "1", "--no-progress"]) == 0
    scores = load_scores(tmp_path / "one.npz")
    capsys.readouterr()

    assert main(["predict", str(video), "--model", paths["joint"], "--frames", "3", "--crops", "1", "--json",
                 *PREPARED]) == 0
    result = json.loads(capsys.readouterr().out)["predictions"][0]
    classes = read_class_names(data / "classes.txt")
    assert load_model(paths["joint"], GatedTSN).class_names == classes  # the model names its classes
    expected = _softmax(scores.fused[0].mean(axis=0).astype(np.float64))
    order = np.argsort(-expected, kind="stable")[:3]
    assert [t["class"] for t in result["top"]] == [classes[i] for i in order]
    np.testing.assert_allclose([t["probability"] for t in result["top"]], expected[order], rtol=1e-4)
    np.testing.assert_allclose([result["fusion_weights"]["rgb"], result["fusion_weights"]["flow"]],
                               scores.fusion_weights[0].mean(axis=0), rtol=1e-4)
    assert result["num_frames"] == record.num_frames and result["views"] == 3

    # A table for people; a bad video is named and the others still predicted.
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF" + bytes(1000))
    assert main(["predict", str(broken), str(video), "--model", paths["rgb"], "--frames", "2", "--crops", "1",
                 "--top", "2", *PREPARED]) == 1
    captured = capsys.readouterr()
    assert f"cannot read {broken}" in captured.err
    assert f"{video}: {record.num_frames} frames, 2 views" in captured.out and "  2. " in captured.out
    assert "  3. " not in captured.out
    assert main(["predict", str(video), "--model", str(tmp_path / "one.npz")]) == 2
