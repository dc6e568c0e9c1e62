"""The gated-tsn command: help texts, train → evaluate → fuse on real frames,
the authors' streams in one command, validation choices, errors."""

import json
import os
import re

import keras
import numpy as np
import pytest

from conftest import TRAINED_INPUT_SIZE
from helpers import caffe_layers_of
from keras_gated_tsn.cli import build_parser, main
from keras_gated_tsn.cli.common import with_error_path
from keras_gated_tsn.data.lists import read_list_file
from keras_gated_tsn.evaluation.scores import load_scores
from keras_gated_tsn.models import TSN, GatedTSN


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in ("prepare", "split", "train", "evaluate", "fuse", "plot", "demo", "convert-weights"):
        assert command in text
    parser = build_parser()
    for command in ("train", "evaluate", "demo", "split", "plot"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        assert "usage: gated-tsn " + command in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 2


def test_train_help_is_the_config_and_names_the_recipe(capsys):
    """Every StageConfig field with a flag is an option (and nothing else),
    and the help says which validation list the paper used."""
    import dataclasses

    from keras_gated_tsn.training.stages import StageConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    flags = [f.metadata["flag"] for f in dataclasses.fields(StageConfig) if f.metadata.get("flag")]
    assert len(flags) == len(set(flags)) > 30
    for flag in flags:
        assert flag in text
    assert "4 x 32" in text and "5e-3 flow" in text and "authors validated on the test list" in text
    args = build_parser().parse_args(["train", "--stage", "gate", "--data", "d", "--out", "o.keras", "--lam", "0.5",
                                      "--no-partial-bn", "--stream-dropout", "--iter-size", "8"])
    assert (args.gating_loss_weight, args.partial_bn, args.stream_dropout, args.iter_size) == (0.5, False, True, 8)


@pytest.mark.parametrize("bad,message", [
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got 0"),
    (["--epochs", "-1"], "argument --epochs: expected an integer >= 1, got -1"),
    (["--batch-size", "0"], "argument --batch-size: expected an integer >= 1, got 0"),
    (["--checkpoint-every", "0"], "argument --checkpoint-every: expected an integer >= 1"),
    (["--lr", "-1"], "argument --lr: expected a positive number"),
    (["--gate-dropout", "1.5"], "argument --gate-dropout: expected a number in [0, 1)"),
    (["--precision", "float8"], "argument --precision: invalid choice"),
    (["--lr", "1e-6", "--min-lr", "1e-5"], "lowest learning rate (1e-05) is above the initial one (1e-06)"),
    (["--rgb", "r.keras"], "--rgb does not apply to --stage rgb"),
    (["--resume", "g.keras"], "--gate (--resume) does not apply to --stage rgb (a killed run resumes by itself"),
])
def test_train_refuses_values_that_make_no_sense(prepared_samples, tmp_path, capsys, bad, message):
    """Each value is refused before any work, with exit status 2, and a model
    already at --out (a trained one, say) is left as it was."""
    out = tmp_path / "m.keras"
    out.write_bytes(b"a trained model")
    try:
        status = main(["train", "--stage", "rgb", "--data", str(prepared_samples), "--out", str(out), *bad])
    except SystemExit as exit:  # argparse's usage errors
        status = exit.code
    assert status == 2
    assert message in capsys.readouterr().err
    assert out.read_bytes() == b"a trained model"


def test_train_and_evaluate_check_the_lists_before_any_work(prepared_samples, trained_models, tmp_path, capsys):
    """A label outside classes.txt, a frame count the folder does not hold, a name
    that leaves the frames folder: exit 2 in seconds (before the model is built),
    naming the list file and line; nothing written."""
    import time

    data = str(prepared_samples)
    good = (prepared_samples / "train.txt").read_text().splitlines()
    video, frames, label = good[1].split()
    cases = {
        "label": (f"{video} {frames} 7", r"line 2 \(video '.*'\): label 7 is not one of the 3 classes of classes.txt"),
        "frames": (f"{video} {int(frames) + 40} {label}", rf"line 2 \(video '.*'\): the list says {int(frames) + 40} "
                   rf"frames but .* holds {frames} RGB frames"),
        "outside": (f"../{video} {frames} {label}", r"line 2: video '\.\./.*' is outside the frames folder"),
    }
    paths, _ = trained_models
    for name, (line, message) in cases.items():
        bad_list = tmp_path / f"{name}.txt"
        bad_list.write_text("\n".join([good[0], line, *good[2:]]) + "\n")
        out = tmp_path / f"{name}.keras"
        start = time.monotonic()
        assert main(["train", "--stage", "rgb", "--data", data, "--train-list", str(bad_list), "--out", str(out),
                     "--epochs", "1", "--input-size", "64"]) == 2, name
        assert time.monotonic() - start < 20, f"{name}: refused only after {time.monotonic() - start:.0f} s"
        err = capsys.readouterr().err
        assert re.search(re.escape(str(bad_list)) + ", " + message, err), (name, err)
        assert not out.exists() and not os.path.exists(f"{out}.ckpt")
        assert main(["evaluate", "--data", data, "--list", str(bad_list), "--rgb", paths["rgb"],
                     "--out", str(tmp_path / "x.npz"), "--frames", "1", "--crops", "1", "--no-progress"]) == 2
        assert re.search(message, capsys.readouterr().err), name


def test_error_path_interrupt_and_bad_input(capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    def bad(args):
        raise FileNotFoundError("no such list 'x.txt'")

    assert with_error_path("train", interrupted)(None) == 130
    assert with_error_path("train", bad)(None) == 2
    err = capsys.readouterr().err
    assert "gated-tsn train: interrupted" in err and "gated-tsn train: error: no such list 'x.txt'" in err
    assert "Traceback" not in err


def test_train_evaluate_fuse_end_to_end(prepared_samples, trained_models, tmp_path, capsys):
    """The CLI on real frames: a gate with the non-default options, then evaluate and fuse."""
    data = str(prepared_samples)
    paths, _ = trained_models
    gate = str(tmp_path / "gate.keras")
    assert main(["train", "--stage", "gate", "--data", data, "--out", gate, "--rgb", paths["rgb"],
                 "--flow", paths["flow"], "--feature-fusion", "concat", "--gate-activation", "softmax",
                 "--epochs", "1", "--segments", "2", "--batch-size", "4", "--iter-size", "1"]) == 0
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

    # The gated model under bfloat16 and XLA: float32 scores close to the float32 run's.
    fast_out = tmp_path / "fast.npz"
    assert main(["evaluate", "--data", data, "--list", f"{data}/test.txt", "--model", gate, "--precision",
                 "mixed_bfloat16", "--jit-compile", "--out", str(fast_out), "--frames", "2", "--no-progress"]) == 0
    fast = load_scores(fast_out)
    assert fast.fused.dtype == np.float32 and not np.array_equal(fast.fused, test.fused)  # it ran in bfloat16
    np.testing.assert_allclose(fast.fusion_weights, test.fusion_weights, atol=0.05)
    np.testing.assert_allclose(fast.fused, test.fused, atol=0.1 * float(np.abs(test.fused).max()))

    capsys.readouterr()
    prefix = tmp_path / "table"
    assert main(["fuse", str(tmp_path / "test.npz"), "--val-scores", str(tmp_path / "val.npz"),
                 "--out", str(prefix)]) == 0
    printed = capsys.readouterr().out
    for method in ("rgb", "flow", "average", "weighted", "sci", "gated", "gating_classifier"):
        assert f"| {method} |" in printed
    rows = {row["method"]: row for row in json.loads((tmp_path / "table.json").read_text())}
    assert rows["gating_classifier"]["top1"] is not None
    assert rows["weighted"]["tuned_on"] == "validation"  # the sample lists share no video


def test_the_authors_streams_in_one_command(prepared_samples, trained_models, tmp_path, monkeypatch, capsys):
    """TSN's released streams are .caffemodel files: one convert-weights each
    gives .keras streams that `train --stage gate` takes as they are; the gate
    trunk starts from the ImageNet file when asked (--gate-init imagenet)."""
    from keras_gated_tsn.backbones import BNInception
    from keras_gated_tsn.weights.caffe import write_caffemodel

    paths, _ = trained_models
    data = str(prepared_samples)
    converted = {}
    for modality in ("rgb", "flow"):
        stream = keras.saving.load_model(paths[modality])
        src = tmp_path / f"tsn_bn_inception_{modality}_reference.caffemodel"
        write_caffemodel(src, caffe_layers_of(stream))
        converted[modality] = str(tmp_path / f"{modality}.keras")
        assert main(["convert-weights", str(src), converted[modality], "--arch", "bn_inception",
                     "--modality", modality, "--input-size", str(TRAINED_INPUT_SIZE), "--segments", "2"]) == 0
        ours = keras.saving.load_model(converted[modality])
        assert isinstance(ours, TSN) and ours.modality == modality and ours.num_classes == 3
        for mine, theirs in zip(ours.weights, stream.weights):
            np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), rtol=1e-6, atol=1e-7)

    monkeypatch.setenv("KGT_WEIGHTS_DIR", str(tmp_path / "weights"))
    os.makedirs(tmp_path / "weights")
    imagenet = BNInception(include_top=False, input_shape=(TRAINED_INPUT_SIZE, TRAINED_INPUT_SIZE, 3))
    imagenet.get_layer("inception_5b_3x3").bias.assign(np.full(320, 0.125, np.float32))
    imagenet.save_weights(tmp_path / "weights" / "bn_inception_imagenet.weights.h5")
    gate = str(tmp_path / "gate.keras")
    capsys.readouterr()
    assert main(["train", "--stage", "gate", "--data", data, "--out", gate, "--rgb", converted["rgb"],
                 "--flow", converted["flow"], "--gate-init", "imagenet", "--epochs", "1", "--segments", "2",
                 "--batch-size", "4", "--iter-size", "1", "--lr", "1e-12"]) == 0
    model = keras.saving.load_model(gate)
    assert isinstance(model, GatedTSN) and model.gate_init == "imagenet"
    np.testing.assert_allclose(model.get_layer("gating_inception_5b_3x3").bias.numpy(), 0.125, atol=1e-6)
    # A stream file given where the gate wants the other modality: a clear error.
    assert main(["train", "--stage", "gate", "--data", data, "--out", str(tmp_path / "g2.keras"),
                 "--rgb", converted["flow"], "--flow", converted["flow"], "--epochs", "1"]) == 2
    assert "modality 'rgb'" in capsys.readouterr().err


def test_evaluate_errors(prepared_samples, tmp_path, capsys):
    data = str(prepared_samples)
    assert main(["evaluate", "--data", data, "--list", f"{data}/test.txt", "--out", str(tmp_path / "x.npz")]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["evaluate", "--data", data, "--list", f"{data}/test.txt", "--model", str(tmp_path / "none.keras"),
                 "--out", str(tmp_path / "x.npz")]) == 2
    assert "none.keras" in capsys.readouterr().err


def test_evaluate_names_a_damaged_or_wrong_model(prepared_samples, trained_models, tmp_path, capsys):
    """A truncated .keras (Keras itself says "File not found"), a stream given as the
    gated model, and swapped streams: exit 2 with what is wrong, before any scoring."""
    data, (paths, _) = str(prepared_samples), trained_models
    truncated = tmp_path / "gated.keras"
    truncated.write_bytes(open(paths["joint"], "rb").read()[:100_000])
    cases = [
        (["--model", str(truncated)], "gated.keras is not a whole .keras file"),
        (["--model", paths["rgb"]], "holds a TSN, expected a GatedTSN"),
        (["--rgb", paths["flow"]], "rgb_model must be a TSN stream of modality 'rgb'"),
    ]
    for models, message in cases:
        assert main(["evaluate", "--data", data, "--list", f"{data}/test.txt", *models,
                     "--out", str(tmp_path / "x.npz"), "--no-progress"]) == 2, message
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
        assert not (tmp_path / "x.npz").exists()


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
    printed = capsys.readouterr().out
    assert "not prepared (v_ApplyEyeMakeup_g08_c02, " in printed  # named, in split-file order
    missing = [line.split("\t")[0] for line in (tmp_path / "split_missing.txt").read_text().splitlines()]
    assert len(missing) == 9537 + 3783 - 5 and "v_YoYo_g07_c04" in missing
    assert main(["split", str(tmp_path), "--splits", str(tmp_path)]) == 2

    # The authors' protocol: validation on the test list, said so.
    assert main(["split", str(tmp_path), "--splits", str(shared_reference / "ucf101_splits"), "--val-from-test"]) == 0
    assert read_list_file(tmp_path / "val.txt") == read_list_file(tmp_path / "test.txt")
    assert "val.txt is the test list (as the authors)" in capsys.readouterr().out
    # No validation asked for: an old val.txt must not linger (training would silently use it).
    assert main(["split", str(tmp_path), "--splits", str(shared_reference / "ucf101_splits")]) == 0
    assert not (tmp_path / "val.txt").exists() and "no val.txt" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["split", str(tmp_path), "--splits", "x", "--val-from-test", "--val-fraction", "0.1"])
    # The official files fix the test set: a test fraction with them is refused.
    assert main(["split", str(tmp_path), "--splits", str(shared_reference / "ucf101_splits"),
                 "--test-fraction", "0.2"]) == 2


def test_split_of_a_dataset_without_official_files(tmp_path, capsys):
    """A user's own dataset: each class divided in the same proportions with a
    seed; the same seed gives the same lists, another seed other ones; a class
    too small to be in every set is named."""
    from keras_gated_tsn.data.lists import VideoRecord, read_list_file, write_list_file

    (tmp_path / "classes.txt").write_text("jump\nrun\nwave\n")
    sizes = {0: 20, 1: 10, 2: 30}
    write_list_file(tmp_path / "all.txt", [VideoRecord(f"c{label}_v{i:02d}", 50, label)
                                           for label, count in sizes.items() for i in range(count)])

    def lists(seed):
        assert main(["split", str(tmp_path), "--test-fraction", "0.2", "--val-fraction", "0.1",
                     "--seed", str(seed)]) == 0
        return {name: read_list_file(tmp_path / f"{name}.txt") for name in ("train", "val", "test")}

    first = lists(0)
    for name, fraction in (("test", 0.2), ("val", 0.1)):
        per_class = {label: sum(r.label == label for r in first[name]) for label in sizes}
        assert per_class == {label: round(count * fraction) for label, count in sizes.items()}, name
    videos = [r.video for part in first.values() for r in part]
    assert sorted(videos) == sorted(r.video for r in read_list_file(tmp_path / "all.txt"))  # each once
    assert "train 42, val 6, test 12" in capsys.readouterr().out
    assert lists(0) == first
    assert lists(1)["test"] != first["test"]
    # Without a validation share, an old val.txt goes.
    assert main(["split", str(tmp_path), "--test-fraction", "0.2"]) == 0
    assert not (tmp_path / "val.txt").exists()

    write_list_file(tmp_path / "all.txt", [VideoRecord("c0_v00", 50, 0), VideoRecord("c0_v01", 50, 0),
                                           VideoRecord("c1_v00", 50, 1), VideoRecord("c1_v01", 50, 1)])
    assert main(["split", str(tmp_path), "--test-fraction", "0.3", "--val-fraction", "0.3"]) == 2
    assert "class 'jump' has 2 video(s)" in capsys.readouterr().err
    assert main(["split", str(tmp_path)]) == 2
    assert "give --splits" in capsys.readouterr().err


def test_frames_of_another_tool_through_the_recorded_layout(shared_data, prepared_samples, trained_models,
                                                              tmp_path, capsys):
    """mmaction's dense-flow names (x_00001.jpg / y_00001.jpg) read by
    evaluate once DATA/prepare.json names them; without it, the missing file
    and the template are named."""
    import shutil

    paths, _ = trained_models
    data = tmp_path / "data"
    shutil.copytree(shared_data / "frames" / "tsn_layout_sample", data / "frames" / "tsn_layout_sample")
    shutil.copy(prepared_samples / "classes.txt", data / "classes.txt")
    (data / "test.txt").write_text("tsn_layout_sample 6 0\n")  # 5 flow pairs
    argv = ["evaluate", "--data", str(data), "--list", str(data / "test.txt"), "--rgb", paths["rgb"], "--flow",
            paths["flow"], "--out", str(tmp_path / "s.npz"), "--frames", "2", "--crops", "1", "--no-progress"]
    assert main(argv) == 2
    assert "flow_x_00005.jpg' does not exist" in capsys.readouterr().err
    (data / "prepare.json").write_text('{"layout": {"flow_x": "x_{:05d}.jpg", "flow_y": "y_{:05d}.jpg"}}')
    assert main(argv) == 0
    scores = load_scores(tmp_path / "s.npz")
    assert scores.video_ids.tolist() == ["tsn_layout_sample"] and np.isfinite(scores.flow).all()
    (data / "prepare.json").write_text('{"layout": {"flow_x": "x_{}_{}.jpg"}}')
    assert main(argv) == 2
    assert "prepare.json" in capsys.readouterr().err


def test_evaluate_a_multitask_stream_through_one_head(prepared_samples, tmp_path, capsys):
    """`evaluate --flow multitask.keras --head NAME` scores that head's stream
    (the two-stream ConvNets' multi-task stream, Sec. 4) as the plain stream of
    MultiTaskTSN.head_stream scores; without --head, with a head it lacks, with
    a head of other classes than classes.txt's, or --head with plain streams:
    exit 2 before any scoring, saying what is wrong."""
    from keras_gated_tsn.models import MultiTaskTSN

    data = str(prepared_samples)
    assert len((prepared_samples / "classes.txt").read_text().split()) == 3
    keras.utils.set_random_seed(0)
    model = MultiTaskTSN("caffenet", "flow", heads={"samples": 3, "other": 5}, num_segments=1, input_size=64,
                         new_length=2, dropout=0.0)
    classifier = model.get_layer("fc-action_samples")
    classifier.kernel.assign(np.random.default_rng(0).normal(0, 0.05, classifier.kernel.shape))
    multitask, plain = str(tmp_path / "multitask.keras"), str(tmp_path / "samples.keras")
    model.save(multitask)
    model.head_stream("samples").save(plain)
    common = ["evaluate", "--data", data, "--list", f"{data}/test.txt", "--frames", "1", "--crops", "1",
              "--no-progress"]
    assert main([*common, "--flow", multitask, "--head", "samples", "--out", str(tmp_path / "head.npz")]) == 0
    assert main([*common, "--flow", plain, "--out", str(tmp_path / "plain.npz")]) == 0
    head, stream = load_scores(tmp_path / "head.npz"), load_scores(tmp_path / "plain.npz")
    assert head.flow.shape == (head.num_videos, 1, 3) and head.rgb is None and np.abs(head.flow).max() > 1e-3
    np.testing.assert_allclose(head.flow, stream.flow, rtol=1e-5, atol=1e-5)
    assert head.video_ids.tolist() == stream.video_ids.tolist()
    capsys.readouterr()

    cases = [
        (["--flow", multitask], f"--flow {multitask} is a multi-task stream (MultiTaskTSN) with the heads "
                                "samples, other: give --head NAME"),
        (["--flow", multitask, "--head", "ucf101"], f"--flow {multitask} has no head 'ucf101'; its heads are "
                                                    "samples, other"),
        (["--flow", multitask, "--head", "other"], "the model(s) score [5] classes but class_names has 3"),
        (["--flow", plain, "--head", "samples"], "--head samples names a head of a multi-task stream "
                                                 "(MultiTaskTSN), but neither --rgb nor --flow is one"),
    ]
    for models, message in cases:
        out = tmp_path / "x.npz"
        assert main([*common, *models, "--out", str(out)]) == 2, message
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
        assert not out.exists()
