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
            f"needs the real clips and frame folders of ../shared/data, which do not ship with the "
            f"repository (only the six sample clips do); not found at {path} (set KGT_SHARED_DATA)"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def sample_clips_dir() -> pathlib.Path:
    """The six committable real clips as the package ships them (the embedded
    sample set): ``<name>.avi`` in one folder. Present in every checkout, so
    tests of video decoding and extraction run from a fresh clone too (CI
    checks that they are byte-identical to ``../shared/data``)."""
    from keras_gated_tsn.datasets import sample_clips

    folders = {clip.path.parent for clip in sample_clips()}
    assert len(folders) == 1
    return folders.pop()


@pytest.fixture(scope="session")
def shared_reference() -> pathlib.Path:
    """``../shared/reference``: the authors' prototxt and the official split files,
    which do not ship with the repository. Same rules as ``shared_data``: a
    failure in CI, a skip (saying so) elsewhere."""
    env = os.environ.get("KGT_SHARED_REFERENCE")
    path = pathlib.Path(env) if env else REPO_ROOT.parent / "shared" / "reference"
    if not (path / "ucf101_splits").is_dir():
        message = (
            f"needs the authors' prototxt or the official UCF101/HMDB51 split files of ../shared/reference, "
            f"which do not ship with the repository; not found at {path} (set KGT_SHARED_REFERENCE)"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def prepared_samples(tmp_path_factory) -> pathlib.Path:
    """The embedded sample clips cut into 16-frame sub-clips and prepared with DIS
    flow at 128x96, with the demo's train/val/test lists: real frames and flow
    for the training, evaluation and CLI tests (they ship with the package, so
    these tests run from a fresh clone too)."""
    from keras_gated_tsn.datasets import prepare_sample_dataset

    return prepare_sample_dataset(tmp_path_factory.mktemp("samples"), 16, (128, 96), progress=False)


#: Crop side of the models trained once per session on the sample clips.
TRAINED_INPUT_SIZE = 64


@pytest.fixture(scope="session")
def trained_models(prepared_samples, tmp_path_factory):
    """Algorithm 1 run once on real frames through the package's runner (1 epoch
    per stage, K=2, 64x64 crops, gate and joint with 2 accumulated batches).

    Returns ``(paths, histories)``: the ``.keras`` file and the Keras history
    of each stage ``rgb``, ``flow``, ``gate``, ``joint``.
    """
    from keras_gated_tsn.training.runner import run_algorithm1

    result = run_algorithm1(
        str(prepared_samples), str(tmp_path_factory.mktemp("algorithm1")), evaluate_lists=(), log=lambda line: None,
        epochs=1, batch_size=4, num_segments=2, input_size=TRAINED_INPUT_SIZE, seed=1, verbose=0,
        stage_options={"rgb": {"iter_size": 1}, "flow": {"iter_size": 1}, "gate": {"iter_size": 2},
                       "joint": {"iter_size": 2}},
    )
    return result.models, result.histories
