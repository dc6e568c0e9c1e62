"""The test protocol at scale: views of several videos in one pass, scores
written as they come, a killed run resumed; on real frames through the CLI."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_gated_tsn.cli import main
from keras_gated_tsn.evaluation.metrics import score_report
from keras_gated_tsn.evaluation.scores import load_scores

_CLI = "import sys; from keras_gated_tsn.cli import main; sys.exit(main(sys.argv[1:]))"


def _evaluate_argv(data, model, out, *extra, crops=1):
    return ["evaluate", "--data", str(data), "--list", f"{data}/test.txt", "--model", model, "--out", str(out),
            "--frames", "2", "--crops", str(crops), "--no-progress", *extra]


@pytest.fixture(scope="module")
def reference(prepared_samples, trained_models, tmp_path_factory):
    """The joint model's scores of the test list, one video per pass, uninterrupted."""
    paths, _ = trained_models
    out = tmp_path_factory.mktemp("reference") / "test.npz"
    assert main(_evaluate_argv(prepared_samples, paths["joint"], out)) == 0
    return load_scores(out)


def test_views_of_several_videos_in_one_pass_score_the_same(prepared_samples, trained_models, reference, tmp_path):
    paths, _ = trained_models
    out = tmp_path / "batched.npz"
    assert main(_evaluate_argv(prepared_samples, paths["joint"], out, "--videos-per-batch", "3")) == 0
    batched = load_scores(out)
    assert reference.num_videos > 3 and reference.num_videos % 3  # full batches and a last partial one
    assert batched.video_ids.tolist() == reference.video_ids.tolist()
    for field in ("rgb", "flow", "fused", "gating_classifier", "fusion_weights"):
        np.testing.assert_allclose(getattr(batched, field), getattr(reference, field), rtol=1e-4, atol=1e-5,
                                   err_msg=field)


def test_metrics_are_printed_and_written(prepared_samples, trained_models, reference, tmp_path, capsys):
    paths, _ = trained_models
    out = tmp_path / "test.npz"
    assert main(_evaluate_argv(prepared_samples, paths["joint"], out)) == 0
    printed = capsys.readouterr().out
    written = json.loads((tmp_path / "test_metrics.json").read_text())
    expected = score_report(load_scores(out))
    assert written["scores"] == expected and set(expected) == {"rgb", "flow", "fused", "gating_classifier"}
    fused = expected["fused"]
    assert f"| fused | {100 * fused['top1']:.2f} | {100 * fused['top5']:.2f} | " \
           f"{100 * fused['mean_class_accuracy']:.2f} |" in printed
    assert np.sum(fused["confusion_matrix"]) == reference.num_videos


def test_a_killed_evaluation_resumes(prepared_samples, trained_models, reference, tmp_path, capsys):
    """SIGKILL after some chunks: no score file, the chunks kept; the same
    command scores only the rest and ends with the uninterrupted scores. Other
    settings are refused while the partial run exists; --restart discards it."""
    paths, _ = trained_models
    out = tmp_path / "test.npz"
    argv = _evaluate_argv(prepared_samples, paths["joint"], out, "--flush-every", "1")
    process = subprocess.Popen([sys.executable, "-c", _CLI, *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    partial = tmp_path / "test.npz.partial"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if partial.is_dir() and len([n for n in os.listdir(partial) if n.startswith("chunk_")]) >= 2:
            break
        time.sleep(0.01)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGKILL)
    process.wait()
    chunks = sorted(n for n in os.listdir(partial) if n.startswith("chunk_") and n.endswith(".npz"))
    assert len(chunks) >= 2 and not out.exists()
    assert len(chunks) < reference.num_videos, "the run finished before the kill"

    assert main(_evaluate_argv(prepared_samples, paths["joint"], out, "--flush-every", "1", crops=5)) == 2
    assert "other settings (differing: crops)" in capsys.readouterr().err

    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"{len(chunks)} of {reference.num_videos} videos already scored" in printed
    resumed = load_scores(out)
    assert resumed.video_ids.tolist() == reference.video_ids.tolist()
    for field in ("fused", "fusion_weights", "rgb", "flow"):
        np.testing.assert_allclose(getattr(resumed, field), getattr(reference, field), rtol=1e-5, atol=1e-6)
    assert not partial.exists()

    # A damaged chunk is named; --restart starts over.
    assert main(_evaluate_argv(prepared_samples, paths["joint"], out, "--flush-every", "100")) == 0
    assert not partial.exists()  # a finished run leaves no partial behind
    partial.mkdir()
    (partial / "run.json").write_text("{}")
    assert main(argv) == 2 and "other settings" in capsys.readouterr().err
    assert main([*argv, "--restart"]) == 0 and not partial.exists()
