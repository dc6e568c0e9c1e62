"""Tests of ``gated-tsn prepare`` (keras_gated_tsn.data.prepare) on real clips.

Fast: DIS flow at a small frame size, except one TV-L1 run on a 4-frame cut.
"""

import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from keras_gated_tsn.cli import build_parser
from keras_gated_tsn.cli import main as gated_tsn
from keras_gated_tsn.data import lists, prepare, video

SMALL = (64, 48)  # (width, height)

# id -> (class, file under shared/data, decoded frames)
CLIPS = {
    "v_SoccerJuggling_g23_c01": ("SoccerJuggling", "v_SoccerJuggling_g23_c01.avi", 240),
    "TrumanShow_wave_f_nm_np1_fr_med_26": ("wave", "TrumanShow_wave_f_nm_np1_fr_med_26.avi", 48),
    "RATRACE_wave_f_nm_np1_fr_goo_37": ("wave", "RATRACE_wave_f_nm_np1_fr_goo_37.avi", 72),
}


def _make_src(root, sample_clips_dir, ids=tuple(CLIPS)):
    for video_id in ids:
        class_name, relative, _ = CLIPS[video_id]
        (root / class_name).mkdir(parents=True, exist_ok=True)
        shutil.copy(sample_clips_dir / relative, root / class_name / f"{video_id}.avi")
    return root


def _names(folder, prefix):
    return sorted(n for n in os.listdir(folder) if n.startswith(prefix))


def _parse(argv):
    return build_parser().parse_args(argv)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, sample_clips_dir):
    """A dataset of 3 real clips in 2 classes, prepared once with DIS at 64x48."""
    root = tmp_path_factory.mktemp("prepared")
    src = _make_src(root / "src", sample_clips_dir)
    (src / "SoccerJuggling" / "notes.txt").write_text("not a video")
    out = root / "out"
    report = prepare.prepare_dataset(src, out, flow="dis", size=SMALL, progress=False)
    return src, out, report


def test_prepare_writes_frames_flow_and_lists(prepared):
    src, out, report = prepared
    expected_ids = [
        "v_SoccerJuggling_g23_c01",
        "RATRACE_wave_f_nm_np1_fr_goo_37",
        "TrumanShow_wave_f_nm_np1_fr_med_26",
    ]  # by class, then id
    assert report.failed == [] and report.skipped == [] and report.ok
    assert report.done == expected_ids
    assert report.class_names == ["SoccerJuggling", "wave"]
    assert lists.read_class_names(out / "classes.txt") == ["SoccerJuggling", "wave"]
    expected = [
        lists.VideoRecord(v, CLIPS[v][2], 0 if CLIPS[v][0] == "SoccerJuggling" else 1)
        for v in expected_ids
    ]
    assert report.records == expected
    assert lists.read_list_file(out / "all.txt") == expected
    assert sorted(os.listdir(out / "frames")) == sorted(expected_ids)  # no temporary left

    for record in expected:
        folder = out / "frames" / record.video
        n = record.num_frames
        assert _names(folder, "img_") == [f"img_{i:05d}.jpg" for i in range(1, n + 1)]
        assert _names(folder, "flow_x_") == [f"flow_x_{i:05d}.jpg" for i in range(1, n)]
        assert _names(folder, "flow_y_") == [f"flow_y_{i:05d}.jpg" for i in range(1, n)]
        assert len(os.listdir(folder)) == 3 * n - 2
    folder = out / "frames" / "TrumanShow_wave_f_nm_np1_fr_med_26"
    rgb = cv2.imread(str(folder / "img_00001.jpg"), cv2.IMREAD_UNCHANGED)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    # The JPEG holds the decoded frame (resized), in the right colour order.
    first = next(video.iter_frames(src / "wave" / "TrumanShow_wave_f_nm_np1_fr_med_26.avi", SMALL))
    assert np.abs(rgb[:, :, ::-1].astype(int) - first.astype(int)).mean() < 4
    fx = cv2.imread(str(folder / "flow_x_00001.jpg"), cv2.IMREAD_UNCHANGED)
    assert fx.shape == (48, 64) and fx.dtype == np.uint8
    assert abs(float(np.median(fx)) - 128) < 20  # mostly still between neighbouring frames


def test_rerun_skips_complete_videos(prepared):
    src, out, first = prepared
    stamp = os.path.getmtime(out / "frames" / "v_SoccerJuggling_g23_c01" / "img_00001.jpg")
    report = prepare.prepare_dataset(src, out, flow="dis", size=SMALL, progress=True)
    assert report.done == [] and report.failed == []
    assert report.skipped == first.done
    assert report.records == first.records
    assert lists.read_list_file(out / "all.txt") == first.records
    assert os.path.getmtime(out / "frames" / "v_SoccerJuggling_g23_c01" / "img_00001.jpg") == stamp


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_bad_videos_are_reported_and_others_finished(tmp_path, sample_clips_dir, capsys):
    src = _make_src(tmp_path / "src", sample_clips_dir, ["TrumanShow_wave_f_nm_np1_fr_med_26"])
    soccer = sample_clips_dir / CLIPS["v_SoccerJuggling_g23_c01"][1]
    truncated = src / "SoccerJuggling" / "v_truncated.avi"
    truncated.parent.mkdir()
    truncated.write_bytes(soccer.read_bytes()[:3000])  # first bytes of a real .avi
    garbage = src / "wave" / "garbage.MP4"
    garbage.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes())
    one_frame = src / "wave" / "one_frame.avi"
    video.write_video(one_frame, video.read_frames(soccer, max_frames=1), fps=30)
    out = tmp_path / "out"
    # Leftovers of a killed run: a temporary folder of a dead process.
    stale = out / "frames" / f".TrumanShow_wave_f_nm_np1_fr_med_26.tmp-{_dead_pid()}"
    stale.mkdir(parents=True)
    (stale / "img_00001.jpg").write_bytes(b"half")

    assert gated_tsn(["prepare", str(src), str(out), "--flow", "dis", "--size", "64", "48", "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "1 done" in captured.out and "3 failed" in captured.out
    for path in (truncated, garbage, one_frame):
        assert str(path) in captured.err
    assert "at least 2" in captured.err  # the reason for the one-frame clip

    assert os.listdir(out / "frames") == ["TrumanShow_wave_f_nm_np1_fr_med_26"]
    assert lists.read_list_file(out / "all.txt") == [
        lists.VideoRecord("TrumanShow_wave_f_nm_np1_fr_med_26", 48, 1)
    ]
    assert lists.read_class_names(out / "classes.txt") == ["SoccerJuggling", "wave"]

    report = prepare.prepare_dataset(src, out, flow="dis", size=SMALL, progress=False)
    assert report.skipped == ["TrumanShow_wave_f_nm_np1_fr_med_26"]
    assert [path for path, _ in report.failed] == sorted(map(str, (garbage, one_frame, truncated)))
    assert all(reason for _, reason in report.failed)


def test_incomplete_existing_folder_is_reported(tmp_path, sample_clips_dir):
    src = _make_src(tmp_path / "src", sample_clips_dir, ["TrumanShow_wave_f_nm_np1_fr_med_26"])
    folder = tmp_path / "out" / "frames" / "TrumanShow_wave_f_nm_np1_fr_med_26"
    folder.mkdir(parents=True)
    (folder / "img_00001.jpg").write_bytes(b"x")
    report = prepare.prepare_dataset(src, tmp_path / "out", flow="dis", size=SMALL, progress=False)
    assert len(report.failed) == 1 and "delete it" in report.failed[0][1]
    assert report.records == []


def test_tvl1_default_size_on_a_short_cut(tmp_path, sample_clips_dir):
    src = tmp_path / "src"
    (src / "SoccerJuggling").mkdir(parents=True)
    frames = video.read_frames(sample_clips_dir / CLIPS["v_SoccerJuggling_g23_c01"][1], max_frames=4)
    video.write_video(src / "SoccerJuggling" / "cut.avi", frames, fps=30)
    report = prepare.prepare_dataset(src, tmp_path / "out", progress=False)  # tvl1, 340x256
    assert report.records == [lists.VideoRecord("cut", 4, 0)]
    folder = tmp_path / "out" / "frames" / "cut"
    assert cv2.imread(str(folder / "img_00004.jpg")).shape == (256, 340, 3)
    flows = [cv2.imread(str(folder / f"flow_{c}_0000{i}.jpg"), cv2.IMREAD_UNCHANGED)
             for c in "xy" for i in (1, 2, 3)]
    assert all(f.shape == (256, 340) and f.dtype == np.uint8 for f in flows)
    assert not (folder / "flow_x_00004.jpg").exists()


def test_two_workers(tmp_path, sample_clips_dir, prepared):
    _, _, serial = prepared
    src = _make_src(tmp_path / "src", sample_clips_dir)
    (src / "wave" / "broken.avi").write_bytes(b"RIFF" + bytes(2000))
    report = prepare.prepare_dataset(src, tmp_path / "out", flow="dis", size=SMALL,
                                     workers=2, progress=False)
    assert report.records == serial.records
    assert report.done == serial.done
    assert [os.path.basename(p) for p, _ in report.failed] == ["broken.avi"]
    assert sorted(os.listdir(tmp_path / "out" / "frames")) == sorted(serial.done)


def _crashing_task(source, frames_dir, settings):
    """A worker task that kills its process on videos whose id contains 'crash'."""
    if "crash" in source.video:
        os._exit(3)
    return prepare._extract_task(source, frames_dir, settings)


def test_a_crashing_worker_only_fails_its_video(tmp_path, sample_clips_dir):
    src = _make_src(tmp_path / "src", sample_clips_dir, ["TrumanShow_wave_f_nm_np1_fr_med_26"])
    shutil.copy(src / "wave" / "TrumanShow_wave_f_nm_np1_fr_med_26.avi", src / "wave" / "crash.avi")
    shutil.copy(src / "wave" / "TrumanShow_wave_f_nm_np1_fr_med_26.avi", src / "wave" / "other.avi")
    _, sources = prepare.find_videos(src)
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    results = {}
    prepare._run_parallel(
        sources, str(frames_dir), ("dis", SMALL, 20.0, 90), 2,
        lambda source, status, value: results.setdefault(source.video, (status, value)),
        task=_crashing_task,
    )
    assert results["crash"][0] == "failed" and "died" in results["crash"][1]
    assert results["other"] == ("done", 48)
    assert results["TrumanShow_wave_f_nm_np1_fr_med_26"] == ("done", 48)
    assert sorted(os.listdir(frames_dir)) == ["TrumanShow_wave_f_nm_np1_fr_med_26", "other"]


def test_duplicate_ids_fail_before_any_work(tmp_path, sample_clips_dir):
    src = _make_src(tmp_path / "src", sample_clips_dir, ["TrumanShow_wave_f_nm_np1_fr_med_26"])
    (src / "other").mkdir()
    shutil.copy(src / "wave" / "TrumanShow_wave_f_nm_np1_fr_med_26.avi",
                src / "other" / "TrumanShow_wave_f_nm_np1_fr_med_26.mkv")
    with pytest.raises(ValueError) as info:
        prepare.prepare_dataset(src, tmp_path / "out", flow="dis", progress=False)
    message = str(info.value)
    assert "unique" in message
    assert str(src / "other" / "TrumanShow_wave_f_nm_np1_fr_med_26.mkv") in message
    assert str(src / "wave" / "TrumanShow_wave_f_nm_np1_fr_med_26.avi") in message
    assert not (tmp_path / "out").exists()


def test_bad_sources(tmp_path, sample_clips_dir, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no class folder"):
        prepare.find_videos(empty)
    (empty / "loose.avi").write_bytes(b"")  # a video outside any class folder
    with pytest.raises(ValueError, match="no class folder"):
        prepare.find_videos(empty)
    (empty / "classA").mkdir()
    (empty / "classA" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no video"):
        prepare.find_videos(empty)
    with pytest.raises(FileNotFoundError):
        prepare.find_videos(tmp_path / "missing")
    with pytest.raises(NotADirectoryError):
        prepare.find_videos(empty / "loose.avi")
    src = _make_src(tmp_path / "src", sample_clips_dir, ["TrumanShow_wave_f_nm_np1_fr_med_26"])
    with pytest.raises(ValueError, match="inside the source"):
        prepare.prepare_dataset(src, src / "out", flow="dis", progress=False)
    with pytest.raises(ValueError, match="'tvl1', 'dis'"):
        prepare.prepare_dataset(src, tmp_path / "out", flow="farneback", progress=False)
    with pytest.raises(ValueError, match="workers"):
        prepare.prepare_dataset(src, tmp_path / "out", workers=0, progress=False)
    assert not (tmp_path / "out").exists()

    assert gated_tsn(["prepare", str(empty), str(tmp_path / "o2"), "--no-progress"]) == 2
    assert "no video" in capsys.readouterr().err


def test_class_order_and_extensions(tmp_path, sample_clips_dir):
    clip = sample_clips_dir / CLIPS["TrumanShow_wave_f_nm_np1_fr_med_26"][1]
    for class_name, file_name in [("JumpRope", "a.AVI"), ("JumpingJack", "b.mp4"),
                                  ("apply", "c.MKV"), (".hidden", "d.avi")]:
        (tmp_path / class_name).mkdir()
        os.symlink(clip, tmp_path / class_name / file_name)
    names, sources = prepare.find_videos(tmp_path)
    # Case-insensitive, as UCF101's classInd.txt (JumpingJack before JumpRope).
    assert names == ["apply", "JumpingJack", "JumpRope"]
    assert [(s.video, s.label) for s in sources] == [("c", 0), ("b", 1), ("a", 2)]


def test_cli_help_and_defaults(capsys):
    args = _parse(["prepare", "in", "out"])
    assert (args.flow, args.workers, args.size, args.bound, args.jpeg_quality, args.progress) == (
        "tvl1", 1, [340, 256], 20.0, 95, True)
    with pytest.raises(SystemExit) as info:
        _parse(["prepare", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("flow_x_00001.jpg", "img_00001.jpg", "classes.txt", "all.txt", "example", "--workers"):
        assert needle in text
    for bad in (["--flow", "farneback"], ["--workers", "0"], ["--size", "340"], ["--bound", "-1"]):
        with pytest.raises(SystemExit) as info:
            _parse(["prepare", "in", "out", *bad])
        assert info.value.code == 2


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_no_half_written_output_on_error(tmp_path, sample_clips_dir, monkeypatch, error):
    src = _make_src(tmp_path / "src", sample_clips_dir, ["TrumanShow_wave_f_nm_np1_fr_med_26"])
    calls = []
    original = prepare.flow_lib.encode_flow

    def failing_encode(field, bound):  # fails on the third flow pair
        calls.append(1)
        if len(calls) == 3:
            raise error
        return original(field, bound)

    monkeypatch.setattr(prepare.flow_lib, "encode_flow", failing_encode)
    out = tmp_path / "out"
    if isinstance(error, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            prepare.prepare_dataset(src, out, flow="dis", size=SMALL, progress=False)
    else:
        report = prepare.prepare_dataset(src, out, flow="dis", size=SMALL, progress=False)
        assert report.failed == [
            (str(src / "wave" / "TrumanShow_wave_f_nm_np1_fr_med_26.avi"), "RuntimeError: boom")
        ]
    assert os.listdir(out / "frames") == []
