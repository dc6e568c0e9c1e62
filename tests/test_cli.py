"""The gated-tsn command: help texts, evaluate → fuse on a trained gate, errors."""

import json

import numpy as np
import pytest

from keras_gated_tsn.cli import build_parser, main
from keras_gated_tsn.evaluation.scores import load_scores


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in ("prepare", "train", "evaluate", "fuse", "demo"):
        assert command in text
    parser = build_parser()
    for command in ("train", "evaluate", "demo"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        assert "usage: gated-tsn " + command in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 2


def test_train_evaluate_fuse_end_to_end(prepared_samples, trained_models, tmp_path, capsys):
    """The CLI on real frames: a gate with the non-default options, then evaluate and fuse."""
    data = str(prepared_samples)
    paths, _ = trained_models
    gate = str(tmp_path / "gate.keras")
    assert main(["train", "--stage", "gate", "--data", data, "--out", gate, "--rgb", paths["rgb"],
                 "--flow", paths["flow"], "--feature-fusion", "concat", "--gate-activation", "softmax",
                 "--epochs", "1", "--segments", "2", "--batch-size", "4"]) == 0
    scores = {}
    for split in ("val", "test"):
        out = tmp_path / f"{split}.npz"
        assert main(["evaluate", "--data", data, "--list", f"{data}/{split}.txt", "--model", gate,
                     "--out", str(out), "--frames", "2", "--no-progress"]) == 0
        scores[split] = load_scores(out)
    test = scores["test"]
    assert test.num_views == 20 and test.fused.shape == (test.num_videos, 20, 3)
    np.testing.assert_allclose(test.fusion_weights.sum(-1), 1.0, rtol=1e-5)  # softmax gate
    expected = test.fusion_weights[..., :1] * test.rgb + test.fusion_weights[..., 1:] * test.flow
    np.testing.assert_allclose(test.fused, expected, rtol=1e-4, atol=1e-5)

    # Streams alone: the same stream scores as inside the gated model.
    streams_out = tmp_path / "streams.npz"
    assert main(["evaluate", "--data", data, "--list", f"{data}/test.txt", "--rgb", paths["rgb"],
                 "--flow", paths["flow"], "--out", str(streams_out), "--frames", "2", "--no-progress"]) == 0
    streams = load_scores(streams_out)
    assert streams.fused is None
    np.testing.assert_allclose(streams.rgb, test.rgb, rtol=1e-4, atol=1e-4)

    capsys.readouterr()
    prefix = tmp_path / "table"
    assert main(["fuse", str(tmp_path / "test.npz"), "--val-scores", str(tmp_path / "val.npz"),
                 "--out", str(prefix)]) == 0
    printed = capsys.readouterr().out
    for method in ("rgb", "flow", "average", "weighted", "sci", "gated"):
        assert f"| {method} |" in printed
    rows = json.loads((tmp_path / "table.json").read_text())
    assert [row["method"] for row in rows][-1] == "gated"


def test_evaluate_errors(prepared_samples, tmp_path, capsys):
    data = str(prepared_samples)
    assert main(["evaluate", "--data", data, "--list", f"{data}/test.txt", "--out", str(tmp_path / "x.npz")]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["evaluate", "--data", data, "--list", f"{data}/test.txt", "--model", str(tmp_path / "none.keras"),
                 "--out", str(tmp_path / "x.npz")]) == 2
    assert "none.keras" in capsys.readouterr().err


def test_split_writes_official_lists(shared_reference, tmp_path, capsys):
    """`split` on a hand-made all.txt against the real UCF101 split-1 files."""
    from keras_gated_tsn.data.lists import VideoRecord, read_list_file, write_list_file

    classes = ["ApplyEyeMakeup", "BaseballPitch", "HandstandPushups"]
    (tmp_path / "classes.txt").write_text("\n".join(classes) + "\n")
    records = [
        VideoRecord("v_ApplyEyeMakeup_g08_c01", 100, 0),   # train, split 1
        VideoRecord("v_ApplyEyeMakeup_g09_c01", 90, 0),    # train
        VideoRecord("v_ApplyEyeMakeup_g01_c01", 164, 0),   # test
        VideoRecord("v_BaseballPitch_g01_c01", 107, 1),    # test
        VideoRecord("v_HandStandPushups_g08_c01", 80, 2),  # train (folder/file case quirk)
    ]
    write_list_file(tmp_path / "all.txt", records)
    status = main(["split", str(tmp_path), "--splits", str(shared_reference / "ucf101_splits"),
                   "--split", "1", "--val-fraction", "0.5"])
    assert status == 0
    train = [r.video for r in read_list_file(tmp_path / "train.txt")]
    val = [r.video for r in read_list_file(tmp_path / "val.txt")]
    test = [r.video for r in read_list_file(tmp_path / "test.txt")]
    assert sorted(test) == ["v_ApplyEyeMakeup_g01_c01", "v_BaseballPitch_g01_c01"]
    assert val == ["v_ApplyEyeMakeup_g09_c01"]
    assert sorted(train) == ["v_ApplyEyeMakeup_g08_c01", "v_HandStandPushups_g08_c01"]
    assert "not prepared" in capsys.readouterr().out
    assert main(["split", str(tmp_path), "--splits", str(tmp_path)]) == 2
