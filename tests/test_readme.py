"""The README's examples work as written: its Python runs, its commands parse."""

import pathlib
import shlex
import subprocess
import sys

import pytest

from keras_gated_tsn.cli import build_parser

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _blocks(language):
    """The fenced code blocks of the README whose fence names ``language``."""
    blocks, current, fence_language = [], None, None
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            if current is None:
                current, fence_language = [], line[3:].strip()
            else:
                if fence_language == language:
                    blocks.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_python_examples_run_as_written(tmp_path):
    blocks = _blocks("python")
    assert blocks, "the README has no Python example"
    printed = ""
    for number, code in enumerate(blocks):
        script = tmp_path / f"readme_{number}.py"
        script.write_text(code, encoding="utf-8")
        result = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, f"README Python block {number} failed:\n{result.stderr[-4000:]}"
        printed += result.stdout
    # The blocks print what they promise: the shapes and what the loaded file says it is.
    assert "(2, 101) (2, 2)" in printed
    assert "inception_4e_output conv bn_inception" in printed
    assert "(1, 101) (1, 10)" in printed  # GCF-Net's scores and its attention per clip


def test_command_lines_parse():
    """Every `gated-tsn ...` line of the README is a valid command line (the
    recipe block is the paper's recipe: no option there may have drifted)."""
    parser = build_parser()
    lines = [
        line.strip() for block in _blocks("") for line in block.splitlines() if line.strip().startswith("gated-tsn ")
    ]
    assert len(lines) >= 8
    for line in lines:
        try:
            parser.parse_args(shlex.split(line)[1:])
        except SystemExit:  # argparse exits on a bad command line
            pytest.fail(f"README command does not parse: {line}")
