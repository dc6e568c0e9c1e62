"""Score files: round trip, validation errors, atomic writes."""

import os

import numpy as np
import pytest

from keras_gated_tsn.evaluation import scores as scores_module
from keras_gated_tsn.evaluation.scores import ScoreFile, load_scores, save_scores

N, FRAMES, CROPS, C = 3, 2, 2, 4
V = FRAMES * CROPS


def make_scores(gate=True, rgb=True, flow=True, seed=0):
    rng = np.random.default_rng(seed)
    fields = dict(
        video_ids=["v_A_g01_c01", "v_B_g01_c01", "v_C_g02_c03"],
        labels=[0, 3, 1],
        class_names=["ApplyEyeMakeup", "Archery", "Basketball", "Biking"],
        num_frames=FRAMES,
        num_crops=CROPS,
        metadata={"split": 1, "backbone": "bn_inception", "models": ["rgb.keras", "flow.keras"]},
    )
    if rgb:
        fields["rgb"] = rng.normal(size=(N, V, C)).astype(np.float32)
    if flow:
        fields["flow"] = rng.normal(size=(N, V, C)).astype(np.float32)
    if gate:
        weights = rng.uniform(0, 2, size=(N, V, 2)).astype(np.float32)
        fields["fusion_weights"] = weights
        fields["fused"] = weights[..., :1] * fields["rgb"] + weights[..., 1:] * fields["flow"]
        fields["gating_classifier"] = rng.normal(size=(N, V, C)).astype(np.float32)
    return ScoreFile(**fields)


def assert_same(a: ScoreFile, b: ScoreFile):
    for name in ("video_ids", "labels", "class_names"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in ("rgb", "flow", "fused", "gating_classifier", "fusion_weights"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert y.dtype == np.float32
            np.testing.assert_array_equal(x, y)
    assert (a.num_frames, a.num_crops, a.metadata) == (b.num_frames, b.num_crops, b.metadata)


def test_round_trip_with_gate(tmp_path):
    sf = make_scores(gate=True)
    path = tmp_path / "test_scores.npz"
    assert save_scores(path, sf) == str(path)
    back = load_scores(path)
    assert_same(sf, back)
    assert back.labels.dtype == np.int64
    assert back.video_ids.dtype.kind == "U" and back.class_names.dtype.kind == "U"
    assert back.has_gate and back.streams == ("rgb", "flow")
    assert (back.num_videos, back.num_views, back.num_classes) == (N, V, C)
    assert os.listdir(tmp_path) == ["test_scores.npz"]  # no temp file left behind


def test_round_trip_without_gate_stores_no_gate_arrays(tmp_path):
    sf = make_scores(gate=False)
    path = tmp_path / "s.npz"
    save_scores(path, sf)
    with np.load(path) as npz:
        assert not {"fused", "gating_classifier", "fusion_weights"} & set(npz.files)
    back = load_scores(path)
    assert_same(sf, back)
    assert back.fused is None and not back.has_gate


@pytest.mark.parametrize("missing", ["rgb", "flow"])
def test_round_trip_single_stream(tmp_path, missing):
    sf = make_scores(gate=False, **{missing: False})
    save_scores(tmp_path / "one.npz", sf)
    back = load_scores(tmp_path / "one.npz")
    assert getattr(back, missing) is None
    assert back.streams == tuple(s for s in ("rgb", "flow") if s != missing)
    with pytest.raises(ValueError, match=missing):
        back.stream(missing)


def test_constructor_casts_dtypes():
    sf = make_scores(gate=False)
    sf64 = ScoreFile(
        video_ids=sf.video_ids,
        labels=np.array([0, 3, 1], dtype=np.int32),
        class_names=list(sf.class_names),
        rgb=sf.rgb.astype(np.float64),
        num_frames=FRAMES,
        num_crops=CROPS,
    )
    assert sf64.rgb.dtype == np.float32 and sf64.labels.dtype == np.int64
    sf64.validate()


@pytest.mark.parametrize(
    "field, bad_shape, expected_text",
    [
        ("rgb", (N, V, C + 1), "(N, V, C) = (3, 4, 4)"),
        ("flow", (N, V - 1, C), "(N, V, C) = (3, 4, 4)"),
        ("fused", (N + 1, V, C), "(N, V, C) = (3, 4, 4)"),
        ("gating_classifier", (N, V), "(N, V, C) = (3, 4, 4)"),
        ("fusion_weights", (N, V, 3), "(N, V, 2) = (3, 4, 2)"),
    ],
)
def test_save_rejects_wrong_shape_naming_file_and_field(tmp_path, field, bad_shape, expected_text):
    sf = make_scores(gate=True)
    setattr(sf, field, np.zeros(bad_shape, dtype=np.float32))
    path = tmp_path / "bad.npz"
    with pytest.raises(ValueError) as info:
        save_scores(path, sf)
    message = str(info.value)
    assert str(path) in message and repr(field) in message
    assert expected_text in message and str(bad_shape) in message
    assert not path.exists() and os.listdir(tmp_path) == []


def test_load_rejects_wrong_shape_naming_file_and_field(tmp_path):
    sf = make_scores(gate=False)
    path = tmp_path / "handmade.npz"
    np.savez(
        path,
        video_ids=sf.video_ids,
        labels=sf.labels[:2],
        class_names=sf.class_names,
        rgb=sf.rgb,
        num_frames=FRAMES,
        num_crops=CROPS,
    )
    with pytest.raises(ValueError, match=r"handmade\.npz: field 'labels' has shape \(2,\), expected \(N,\) = \(3,\)"):
        load_scores(path)


def test_load_rejects_views_not_frames_times_crops(tmp_path):
    sf = make_scores(gate=False)
    path = tmp_path / "v.npz"
    np.savez(path, video_ids=sf.video_ids, labels=sf.labels, class_names=sf.class_names, rgb=sf.rgb,
             num_frames=25, num_crops=10)
    with pytest.raises(ValueError, match=r"field 'rgb' has shape \(3, 4, 4\), expected \(N, V, C\) = \(3, 250, 4\)"):
        load_scores(path)


def test_load_rejects_missing_required_field(tmp_path):
    sf = make_scores(gate=False)
    path = tmp_path / "nolabels.npz"
    np.savez(path, video_ids=sf.video_ids, class_names=sf.class_names, rgb=sf.rgb)
    with pytest.raises(ValueError, match=r"nolabels\.npz: required field 'labels' is missing"):
        load_scores(path)


def test_value_errors():
    sf = make_scores(gate=False)
    sf.labels = np.array([0, 4, 1])
    with pytest.raises(ValueError, match=r"'labels' must lie in \[0, 4\).*'v_B_g01_c01'"):
        sf.validate()
    sf = make_scores(gate=False)
    sf.video_ids = np.array(["a", "b", "a"])
    with pytest.raises(ValueError, match="'video_ids' must be unique, 'a'"):
        sf.validate()
    sf = make_scores(gate=False)
    sf.flow[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match="'flow' holds NaN.*'v_C_g02_c03'"):
        sf.validate()
    sf = make_scores(gate=False)
    sf.rgb = sf.rgb.astype(np.float64)  # assigned after construction: not cast
    with pytest.raises(ValueError, match="'rgb' must be float32, got float64"):
        sf.validate()
    with pytest.raises(ValueError, match="at least one of the fields 'rgb' and 'flow'"):
        make_scores(gate=False, rgb=False, flow=False).validate()
    with pytest.raises(ValueError, match="'labels' must hold integers"):
        ScoreFile(video_ids=["a"], labels=[0.5], class_names=["x"])


def test_load_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_scores(tmp_path / "nope.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="junk.npz"):
        load_scores(junk)


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "scores.npz"
    save_scores(path, make_scores(gate=False, seed=1))
    before = path.read_bytes()

    def broken_savez(handle, **arrays):
        handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(scores_module.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_scores(path, make_scores(gate=True, seed=2))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["scores.npz"]
