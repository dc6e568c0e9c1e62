"""Shared fixtures: the real video data in ``../shared/data``."""

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def shared_data_dir() -> pathlib.Path:
    """``$KGT_SHARED_DATA`` or ``../shared/data`` beside the project root."""
    env = os.environ.get("KGT_SHARED_DATA")
    return pathlib.Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The shared real-data folder. Missing: a failure in CI, a skip elsewhere."""
    path = shared_data_dir()
    if not (path / "clips").is_dir():
        message = (
            f"shared real-video data not found at {path} "
            "(set KGT_SHARED_DATA to the folder holding clips/ and frames/)"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_reference() -> pathlib.Path:
    """``../shared/reference`` (official split files, prototxt). Same rules as ``shared_data``."""
    env = os.environ.get("KGT_SHARED_REFERENCE")
    path = pathlib.Path(env) if env else REPO_ROOT.parent / "shared" / "reference"
    if not (path / "ucf101_splits").is_dir():
        message = f"shared reference folder not found at {path} (set KGT_SHARED_REFERENCE)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path
