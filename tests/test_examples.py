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
