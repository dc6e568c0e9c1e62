"""The runnable examples run."""

import pathlib
import subprocess
import sys

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
