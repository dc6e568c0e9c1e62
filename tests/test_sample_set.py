"""The embedded sample set: package data, sub-clip videos, the demo split."""

import collections
import hashlib
import pathlib
import random

import cv2
import numpy as np
import pytest

import keras_gated_tsn.datasets.sample_set as sample_set
from keras_gated_tsn.data.lists import VideoRecord
from keras_gated_tsn.datasets import SAMPLE_CLASSES, build_sample_videos, sample_clips, sample_split

SAMPLES_DIR = pathlib.Path(sample_set.__file__).resolve().parent / "samples"
SHARED_NAMES = {
    "v_SoccerJuggling_g23_c01.avi": "ucf101",
    "v_SoccerJuggling_g24_c01.avi": "ucf101",
    "RATRACE_wave_f_nm_np1_fr_goo_37.avi": "hmdb51",
    "SchoolRulesHowTheyHelpUs_wave_f_nm_np1_ba_med_0.avi": "hmdb51",
    "TrumanShow_wave_f_nm_np1_fr_med_26.avi": "hmdb51",
    "hmdb51_Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6.avi": "hmdb51",
}
# (class, frames, width) of each clip, decoded with OpenCV
CLIP_INFO = {
    "v_SoccerJuggling_g23_c01": ("SoccerJuggling", 240, 320),
    "v_SoccerJuggling_g24_c01": ("SoccerJuggling", 251, 320),
    "RATRACE_wave_f_nm_np1_fr_goo_37": ("wave", 72, 560),
    "SchoolRulesHowTheyHelpUs_wave_f_nm_np1_ba_med_0": ("wave", 74, 320),
    "TrumanShow_wave_f_nm_np1_fr_med_26": ("wave", 48, 432),
    "hmdb51_Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6": ("cartwheel", 83, 320),
}


def _sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _read(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


# --------------------------------------------------------------------------- package data


def test_six_clips_are_byte_identical_to_shared(shared_data):
    shipped = sorted(p.name for p in SAMPLES_DIR.iterdir() if p.suffix == ".avi")
    assert shipped == sorted(SHARED_NAMES)
    for name, dataset in SHARED_NAMES.items():
        assert _sha256(SAMPLES_DIR / name) == _sha256(shared_data / "clips" / dataset / name), name
    # Nothing else from shared/ is in the package.
    others = {p.name for p in SAMPLES_DIR.iterdir()} - set(SHARED_NAMES) - {"__pycache__"}
    assert others == {"README.md", "__init__.py"}


def test_readme_gives_provenance_and_licence():
    text = (SAMPLES_DIR / "README.md").read_text(encoding="utf-8")
    for needed in ("BSD-3-Clause", "torchvision 0.14.1", "pytorch-vision", "UCF101", "HMDB51",
                   "not a benchmark", *SHARED_NAMES):
        assert needed in text, needed


def test_sample_clips_metadata():
    clips = sample_clips()
    assert [c.path.name for c in clips] == list(SHARED_NAMES)
    assert SAMPLE_CLASSES == ("SoccerJuggling", "wave", "cartwheel")
    assert collections.Counter(c.class_name for c in clips) == {"SoccerJuggling": 2, "wave": 3, "cartwheel": 1}
    for clip in clips:
        assert clip.path.is_file()
        assert clip.dataset == SHARED_NAMES[clip.path.name]
        assert clip.stem == clip.path.stem
        assert clip.class_name == CLIP_INFO[clip.stem][0]
        assert clip.num_frames == CLIP_INFO[clip.stem][1]
        assert clip.sha256 == _sha256(clip.path)


def test_sample_clips_decode_to_the_documented_frames():
    for clip in sample_clips():
        frames = _read(clip.path)
        assert len(frames) == clip.num_frames, clip.stem
        assert frames[0].shape == (240, CLIP_INFO[clip.stem][2], 3)


# --------------------------------------------------------------------------- build_sample_videos


@pytest.fixture(scope="module")
def built24(tmp_path_factory):
    return build_sample_videos(tmp_path_factory.mktemp("samples24") / "videos", frames_per_clip=24)


def test_build_writes_ucf101_layout_with_expected_counts(built24):
    files = sorted(built24.glob("*/*.avi"))
    counts = collections.Counter(f.parent.name for f in files)
    assert counts == {"SoccerJuggling": 20, "wave": 8, "cartwheel": 3}
    assert sorted(p.name for p in built24.iterdir() if p.is_dir()) == sorted(SAMPLE_CLASSES)
    per_clip = collections.Counter(f.stem.rsplit("_part", 1)[0] for f in files)
    # 240 -> 10; 251 -> 10 (tail of 11 < 12 dropped); 72 -> 3; 74 -> 3; 48 -> 2; 83 -> 3
    assert per_clip == {
        "v_SoccerJuggling_g23_c01": 10, "v_SoccerJuggling_g24_c01": 10,
        "RATRACE_wave_f_nm_np1_fr_goo_37": 3, "SchoolRulesHowTheyHelpUs_wave_f_nm_np1_ba_med_0": 3,
        "TrumanShow_wave_f_nm_np1_fr_med_26": 2,
        "hmdb51_Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6": 3,
    }
    assert (built24 / "SoccerJuggling" / "v_SoccerJuggling_g23_c01_part00.avi").is_file()
    assert (built24 / "SoccerJuggling" / "v_SoccerJuggling_g23_c01_part09.avi").is_file()
    # No temporary folder is left beside the output.
    assert [p.name for p in built24.parent.iterdir()] == ["videos"]


def test_built_videos_are_readable_mjpg_with_the_source_content(built24):
    sources = {clip.stem: clip for clip in sample_clips()}
    for path in sorted(built24.glob("*/*.avi")):
        capture = cv2.VideoCapture(str(path))
        fourcc = int(capture.get(cv2.CAP_PROP_FOURCC))
        fps = capture.get(cv2.CAP_PROP_FPS)
        capture.release()
        assert "".join(chr((fourcc >> (8 * i)) & 255) for i in range(4)) == "MJPG"
        frames = _read(path)
        stem, index = path.stem.rsplit("_part", 1)
        assert len(frames) == 24, path
        assert frames[0].shape == (240, CLIP_INFO[stem][2], 3)
        assert fps == pytest.approx(30.0 if sources[stem].dataset == "hmdb51" else 30000 / 1001, rel=1e-3)
    # Content: part 01 of g23 is source frames 24..47 (JPEG re-encoding: small differences).
    source = _read(sources["v_SoccerJuggling_g23_c01"].path)
    part = _read(built24 / "SoccerJuggling" / "v_SoccerJuggling_g23_c01_part01.avi")
    for i in (0, 23):
        diff = np.abs(part[i].astype(np.int16) - source[24 + i]).mean()
        assert diff < 4.0, (i, diff)
        assert diff < np.abs(part[i].astype(np.int16) - source[24 + i + 12]).mean()


def test_build_is_skipped_when_already_built(built24):
    path = built24 / "wave" / "TrumanShow_wave_f_nm_np1_fr_med_26_part00.avi"
    mtime = path.stat().st_mtime_ns
    assert build_sample_videos(built24, frames_per_clip=24) == built24
    assert build_sample_videos(str(built24), 24, 12) == built24
    assert path.stat().st_mtime_ns == mtime


def test_build_16_tails_and_overwrite(tmp_path):
    out = build_sample_videos(tmp_path / "v", frames_per_clip=24)
    with pytest.raises(FileExistsError, match="frames_per_clip=24"):
        build_sample_videos(out, frames_per_clip=16)
    assert build_sample_videos(out, frames_per_clip=16, overwrite=True) == out
    files = sorted(out.glob("*/*.avi"))
    assert collections.Counter(f.parent.name for f in files) == {"SoccerJuggling": 31, "wave": 13, "cartwheel": 5}
    # Tails of >= 8 frames are kept: 251 = 15*16 + 11, 72 = 4*16 + 8, 74 = 4*16 + 10; 83 = 5*16 + 3 dropped.
    assert len(_read(out / "SoccerJuggling" / "v_SoccerJuggling_g24_c01_part15.avi")) == 11
    assert len(_read(out / "wave" / "RATRACE_wave_f_nm_np1_fr_goo_37_part04.avi")) == 8
    assert not (out / "cartwheel" / "hmdb51_Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6_part05.avi").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v"]


def test_build_refuses_foreign_folders_and_bad_arguments(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="not built by build_sample_videos"):
            build_sample_videos(foreign, overwrite=overwrite)
    assert (foreign / "notes.txt").read_text() == "keep me"
    for kwargs in ({"frames_per_clip": 0}, {"frames_per_clip": 2.5}, {"frames_per_clip": 8, "min_frames": 9},
                   {"frames_per_clip": 8, "min_frames": 0}):
        with pytest.raises(ValueError):
            build_sample_videos(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_build_is_atomic_on_failure(tmp_path, monkeypatch):
    real_write = sample_set._write_video
    calls = []

    def failing_write(path, frames, fps, clip):
        calls.append(path)
        if len(calls) == 5:
            raise RuntimeError("disk full")
        real_write(path, frames, fps, clip)

    monkeypatch.setattr(sample_set, "_write_video", failing_write)
    (tmp_path / "out").mkdir()  # an empty folder may be given
    with pytest.raises(RuntimeError, match="disk full"):
        build_sample_videos(tmp_path / "out", frames_per_clip=48)
    assert list((tmp_path / "out").iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


# --------------------------------------------------------------------------- sample_split


def _records(frames_per_clip, min_frames=None):
    """Records as `gated-tsn prepare` would list the sub-clips (labels: sorted class folders)."""
    min_frames = min_frames or -(-frames_per_clip // 2)
    labels = {name: i for i, name in enumerate(sorted(SAMPLE_CLASSES))}
    records = []
    for stem, (class_name, n, _) in CLIP_INFO.items():
        for i, start in enumerate(range(0, n, frames_per_clip)):
            length = min(frames_per_clip, n - start)
            if length >= min_frames:
                records.append(VideoRecord(f"{stem}_part{i:02d}", length, labels[class_name]))
    return records


def _key(record):
    return (record.video, record.num_frames, record.label)


def _source(record):
    return record.video.rsplit("_part", 1)[0]


def test_sample_split_on_built_videos(built24):
    labels = {name: i for i, name in enumerate(sorted(SAMPLE_CLASSES))}
    records = [VideoRecord(p.stem, len(_read(p)), labels[p.parent.name])
               for p in sorted(built24.glob("*/*.avi"))]
    assert sorted(records, key=_key) == sorted(_records(24), key=_key)
    split = sample_split(records)
    assert {k: len(v) for k, v in split.items()} == {"train": 17, "val": 7, "test": 7}


@pytest.mark.parametrize("frames_per_clip,sizes", [(24, (17, 7, 7)), (16, (28, 10, 11)), (40, (11, 3, 5))])
def test_sample_split_properties(frames_per_clip, sizes):
    records = _records(frames_per_clip)
    split = sample_split(records)
    assert tuple(len(split[k]) for k in ("train", "val", "test")) == sizes
    # A partition of the records, each list in input order.
    assert sorted(sum(split.values(), []), key=_key) == sorted(records, key=_key)
    for subset in split.values():
        assert subset == [r for r in records if r in subset]
    # Every class in train and test; in val when it has enough sub-clips: >= 2 in the
    # held-out clip (SoccerJuggling, wave), >= 3 in all (cartwheel).
    for label in {r.label for r in records}:
        sources = collections.Counter(_source(r) for r in records if r.label == label)
        enough = sources[max(sources)] >= 2 if len(sources) >= 2 else sum(sources.values()) >= 3
        assert any(r.label == label for r in split["train"])
        assert any(r.label == label for r in split["test"])
        assert any(r.label == label for r in split["val"]) == enough
    # Whole source clips held out where a class has two or more.
    train_sources = {_source(r) for r in split["train"]}
    held = {_source(r) for r in split["val"] + split["test"]} - train_sources
    assert held == {"v_SoccerJuggling_g24_c01", "TrumanShow_wave_f_nm_np1_fr_med_26"}
    assert {"v_SoccerJuggling_g23_c01", "RATRACE_wave_f_nm_np1_fr_goo_37",
            "SchoolRulesHowTheyHelpUs_wave_f_nm_np1_ba_med_0"} <= train_sources
    # Cartwheel (one clip) is split in time: train < val < test.
    index = {k: [int(r.video[-2:]) for r in v if "cartwheel" in r.video] for k, v in split.items()}
    assert max(index["train"]) < min(index["val"] + index["test"])
    assert max(index["val"] + index["train"]) < min(index["test"])
    # Deterministic, whatever the input order.
    shuffled = list(records)
    random.Random(0).shuffle(shuffled)
    again = sample_split(shuffled)
    assert {k: sorted(v, key=_key) for k, v in again.items()} == {k: sorted(v, key=_key) for k, v in split.items()}


def test_sample_split_two_cartwheel_parts_has_no_val():
    records = [r for r in _records(24) if "cartwheel" not in r.video or r.video.endswith(("00", "01"))]
    split = sample_split(records)
    cart = {k: [r.video[-6:] for r in v if "cartwheel" in r.video] for k, v in split.items()}
    assert cart == {"train": ["part00"], "val": [], "test": ["part01"]}


def test_sample_split_errors():
    records = _records(24)
    with pytest.raises(ValueError, match="v_ApplyEyeMakeup_g01_c01_part00"):
        sample_split(records + [VideoRecord("v_ApplyEyeMakeup_g01_c01_part00", 24, 0)])
    with pytest.raises(ValueError, match="TrumanShow_wave_f_nm_np1_fr_med_26"):
        sample_split(records + [VideoRecord("TrumanShow_wave_f_nm_np1_fr_med_26", 48, 2)])
    with pytest.raises(ValueError, match="listed twice"):
        sample_split(records + records[:1])
    relabelled = [VideoRecord(r.video, r.num_frames, 2) if r.video.endswith("g24_c01_part03") else r
                  for r in records]
    with pytest.raises(ValueError, match="v_SoccerJuggling_g24_c01_part03.*label 2"):
        sample_split(relabelled)
    merged = [VideoRecord(r.video, r.num_frames, 0) if "cartwheel" in r.video else r for r in records]
    with pytest.raises(ValueError, match="cartwheel.*label 0.*SoccerJuggling"):
        sample_split(merged)
    single = [r for r in records if "cartwheel" not in r.video or r.video.endswith("00")]
    with pytest.raises(ValueError, match="'cartwheel' has a single sub-clip"):
        sample_split(single)
