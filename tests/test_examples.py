"""The runnable examples run."""

import json
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def test_build_models_example():
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "build_models.py"), "--input-size", "96", "--classes", "5"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "fusion_weights" in result.stdout and "fusion weights of this clip" in result.stdout


def test_ucf101_recipe_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(EXAMPLES / "ucf101_gated_tsn.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_compare_backbones_smoke_one_backbone(tmp_path):
    """Table III's script on the sample clips, CaffeNet rows only (the full --smoke
    covers all three backbones; here one keeps CI short)."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "compare_backbones.py"), "--smoke", "--backbones", "caffenet",
         "--out", str(tmp_path / "cmp"), "--frames", "2"],
        capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| CaffeNet (two-stream) |" in result.stdout and "| CaffeNet (TSN) |" in result.stdout
    lines = (tmp_path / "cmp" / "table3.csv").read_text().splitlines()
    assert lines[0] == "architecture,gated,weighted,sci,minutes" and len(lines) == 3


def _run_table(script, *argv, timeout=1800):
    result = subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, argv)],
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    return result.stdout


def _cells(csv_path):
    import csv

    with open(csv_path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_table1_smoke_with_trained_streams(trained_models, tmp_path):
    """Table I's script on the sample clips, one cell of each row kind, over
    the streams the fixtures trained on the same sample dataset."""
    paths, _ = trained_models
    printed = _run_table("table1_gate_activation.py", "--smoke", "--rgb", paths["rgb"], "--flow", paths["flow"],
                         "--fusions", "conv", "concat", "--activations", "softmax", "--out", tmp_path / "t1")
    assert "| Conv fusion of inception4e |" in printed and "| Concatenation fusion of inception4e |" in printed
    rows = _cells(tmp_path / "t1" / "table1.csv")
    assert [row["input"] for row in rows] == ["Conv fusion of inception4e", "Concatenation fusion of inception4e"]
    assert all(0.0 <= float(row["softmax"]) <= 100.0 for row in rows)
    assert (tmp_path / "t1" / "concat_softmax" / "models" / "gate.keras").is_file()
    assert not (tmp_path / "t1" / "streams").exists()  # the given streams were used


def test_table2_smoke_on_the_paper_layer_names(trained_models, tmp_path):
    paths, _ = trained_models
    printed = _run_table("table2_fusion_layers.py", "--smoke", "--rgb", paths["rgb"], "--flow", paths["flow"],
                         "--layers", "inception5b", "--fusions", "conv", "--out", tmp_path / "t2")
    assert "| inception5b (inception_5b_output) |" in printed
    assert [row["layer"] for row in _cells(tmp_path / "t2" / "table2.csv")] == ["inception5b (inception_5b_output)"]
    bad = subprocess.run([sys.executable, str(EXAMPLES / "table2_fusion_layers.py"), "--smoke", "--layers", "conv9"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "unknown layer(s) conv9" in bad.stderr


def test_table4_smoke_two_splits_and_their_mean(tmp_path):
    printed = _run_table("table4_splits.py", "--smoke", "--splits", "1", "2", "--out", tmp_path / "t4",
                         timeout=3000)
    rows = _cells(tmp_path / "t4" / "table4.csv")
    assert [row["split"] for row in rows] == ["split 1", "split 2", "mean"]
    for key in ("gated", "joint"):
        assert float(rows[2][key]) == pytest.approx((float(rows[0][key]) + float(rows[1][key])) / 2, abs=1e-6)
    assert "| mean |" in printed
    tests = [(tmp_path / "t4" / f"split{n}" / "data" / "test.txt").read_text() for n in (1, 2)]
    assert tests[0] != tests[1]  # two different seeded splits


def test_fusion_comparison_smoke_puts_every_system_in_one_table(trained_models, tmp_path):
    """Issue 9's one table on the sample clips over the fixtures' streams: the
    late fusions (SVM included), the gate, the conv-fusion variant and the
    GCF-Net lambda chosen on val, each row a test accuracy."""
    paths, _ = trained_models
    printed = _run_table("fusion_comparison.py", "--smoke", "--rgb", paths["rgb"], "--flow", paths["flow"],
                         "--conv-fusions", "sum", "conv", "--gcf-lambdas", "0.0001", "0", "--out", tmp_path / "fc")
    rows = {row["method"]: row for row in _cells(tmp_path / "fc" / "fusion_table.csv")}
    for method in ("rgb", "flow", "average", "weighted", "sci", "svm", "gated", "conv_fusion", "gcf_net"):
        assert method in rows and 0.0 <= float(rows[method]["top1"]) <= 100.0, method
    assert rows["conv_fusion"]["tuned_on"] == "val" and "chosen on val" in rows["conv_fusion"]["note"]
    choices = json.loads((tmp_path / "fc" / "choices.json").read_text())
    assert set(choices["conv_fusion"]) == {"sum", "conv"} and set(choices["gcf_net"]) == {"lambda_0.0001", "lambda_0"}
    assert rows["conv_fusion"]["note"].split()[0] == max(choices["conv_fusion"], key=choices["conv_fusion"].get)
    assert "| gcf_net |" in printed
