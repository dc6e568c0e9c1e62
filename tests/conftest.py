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


@pytest.fixture(scope="session")
def prepared_samples(tmp_path_factory) -> pathlib.Path:
    """The embedded sample clips cut into 16-frame sub-clips and prepared with DIS
    flow at 128x96, with the demo's train/val/test lists: real frames and flow
    for the training, evaluation and CLI tests."""
    from keras_gated_tsn.data.lists import write_list_file
    from keras_gated_tsn.data.prepare import prepare_dataset
    from keras_gated_tsn.datasets import build_sample_videos, sample_split

    root = tmp_path_factory.mktemp("samples")
    videos = build_sample_videos(root / "videos", frames_per_clip=16)
    data_dir = root / "dataset"
    report = prepare_dataset(videos, data_dir, flow="dis", size=(128, 96), progress=False)
    assert report.ok, report.summary()
    for name, records in sample_split(report.records).items():
        write_list_file(data_dir / f"{name}.txt", records)
    return data_dir


#: Crop side of the models trained once per session on the sample clips.
TRAINED_INPUT_SIZE = 64


@pytest.fixture(scope="session")
def trained_models(prepared_samples, tmp_path_factory):
    """Algorithm 1 run once on real frames (1 epoch per stage, K=2, 64x64 crops).

    Returns ``(paths, histories)``: the ``.keras`` file and the Keras history
    of each stage ``rgb``, ``flow``, ``gate``, ``joint``.
    """
    from keras_gated_tsn.training import StageConfig, run_stage

    out = tmp_path_factory.mktemp("models")
    paths = {stage: str(out / f"{stage}.keras") for stage in ("rgb", "flow", "gate", "joint")}
    common = dict(
        data_dir=str(prepared_samples), epochs=1, batch_size=4, num_segments=2,
        input_size=TRAINED_INPUT_SIZE, seed=1, verbose=0,
    )
    histories = {}
    for stage, extra in (
        ("rgb", {}),
        ("flow", {"init_from": paths["rgb"]}),
        ("gate", {"rgb": paths["rgb"], "flow": paths["flow"]}),
        ("joint", {"resume": paths["gate"], "lam": 1.0}),
    ):
        _, history = run_stage(StageConfig(stage=stage, out=paths[stage], **common, **extra))
        histories[stage] = history.history
    return paths, histories
