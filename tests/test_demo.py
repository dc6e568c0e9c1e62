"""gated-tsn demo end to end, with the smallest settings (CI runs it in minutes)."""

import json

from keras_gated_tsn.cli import main


def test_demo_runs_every_step(tmp_path, capsys):
    out = tmp_path / "demo"
    status = main(["demo", "--out", str(out), "--epochs", "1", "--input-size", "64"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "| gated |" in printed and "not how well the method works" in printed
    for path in ("models/joint.keras", "scores/test.npz", "scores/val.npz", "fusion_table.csv"):
        assert (out / path).is_file(), path
    rows = json.loads((out / "fusion_table.json").read_text())
    assert [row["method"] for row in rows] == [
        "rgb", "flow", "average", "weighted", "weighted_tsn", "sci", "svm", "gated", "gating_classifier"]
    assert all(row["top1"] is not None for row in rows)
    for banner in ("train --stage rgb", "train --stage joint", "evaluate: val.txt", "fuse"):
        assert banner in printed  # the demo runs through the one Algorithm-1 runner
