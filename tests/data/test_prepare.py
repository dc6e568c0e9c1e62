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

    # The TensorFlow TV-L1, batched over the pairs: OpenCV's flow, as stored.
    from keras_gated_tsn.data.flow import decode_flow

    report = prepare.prepare_dataset(src, tmp_path / "out_tf", flow="tvl1-tf", progress=False)
    assert report.records == [lists.VideoRecord("cut", 4, 0)]
    other = tmp_path / "out_tf" / "frames" / "cut"
    for i in (1, 2, 3):
        ours, theirs = (decode_flow(*(cv2.imread(str(f / f"flow_{c}_0000{i}.jpg"), cv2.IMREAD_UNCHANGED)
                                      for c in "xy")) for f in (other, folder))
        assert np.linalg.norm(ours - theirs, axis=-1).mean() < 0.25


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
        sources, str(frames_dir), prepare.ExtractionSettings(flow="dis", size=SMALL, jpeg_quality=90), 2,
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
    with pytest.raises(ValueError, match="'tvl1', 'dis', 'tvl1-tf'"):
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


# ----------------------------------------------------------------------------- at scale

_CLI = "import sys; from keras_gated_tsn.cli import main; sys.exit(main(sys.argv[1:]))"


def _cli_process(*argv):
    return subprocess.Popen([sys.executable, "-c", _CLI, *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_mid_extraction(process, frames_dir, timeout=120.0):
    """Polls until a video is finished and another one is half written; returns the finished ones."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if frames_dir.is_dir():
            names = os.listdir(frames_dir)
            finished = [n for n in names if not n.startswith(".")]
            partial = [n for n in names if n.startswith(".") and ".tmp-" in n]
            if finished and any(len(os.listdir(frames_dir / n)) >= 3 for n in partial if (frames_dir / n).is_dir()):
                return finished
        time.sleep(0.002)
    process.kill()
    raise AssertionError(f"never caught the run between two videos: {process.communicate()}")


def _tree(folder):
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_killed_run_resumes_to_the_same_result(tmp_path, sample_clips_dir, prepared):
    """SIGKILL in the middle of a video, then the same command: the finished
    videos are kept as they were, the half-written one is removed and redone,
    and the result is byte for byte the uninterrupted run's."""
    import signal

    _, reference, _ = prepared
    src = _make_src(tmp_path / "src", sample_clips_dir)
    out = tmp_path / "out"
    argv = ["prepare", src, out, "--flow", "dis", "--size", *SMALL, "--no-progress"]
    process = _cli_process(*argv)
    finished = _wait_for_mid_extraction(process, out / "frames")
    process.send_signal(signal.SIGKILL)
    process.wait()
    stamps = {name: os.path.getmtime(out / "frames" / name / "img_00001.jpg") for name in finished}
    assert not (out / "all.txt").exists()  # the lists come at the end: nothing claims the unfinished videos

    assert gated_tsn([str(a) for a in argv]) == 0
    assert sorted(os.listdir(out / "frames")) == sorted(CLIPS)  # the temporary folder is gone
    assert {name: os.path.getmtime(out / "frames" / name / "img_00001.jpg") for name in finished} == stamps
    assert lists.read_list_file(out / "all.txt") == lists.read_list_file(reference / "all.txt")
    assert _tree(out / "frames") == _tree(reference / "frames")


def test_ctrl_c_stops_cleanly_and_the_rerun_finishes(tmp_path, sample_clips_dir, prepared):
    import signal

    _, reference, _ = prepared
    src = _make_src(tmp_path / "src", sample_clips_dir)
    out = tmp_path / "out"
    argv = ["prepare", src, out, "--flow", "dis", "--size", *SMALL, "--workers", "2", "--no-progress"]
    process = _cli_process(*argv)
    _wait_for_mid_extraction(process, out / "frames")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted" in err and "run the same command again" in err
    assert not [n for n in os.listdir(out / "frames") if n.startswith(".")]  # nothing half-written
    assert gated_tsn([str(a) for a in argv]) == 0
    assert lists.read_list_file(out / "all.txt") == lists.read_list_file(reference / "all.txt")


def test_settings_are_recorded_and_a_rerun_with_others_is_refused(prepared, tmp_path, sample_clips_dir, capsys):
    import json

    src, out, _ = prepared
    recorded = json.loads((out / "prepare.json").read_text())
    assert recorded["size"] == list(SMALL) and recorded["flow"] == "dis" and recorded["bound"] == 20.0
    assert recorded["modality"] == "rgb+flow" and recorded["layout"]["flow_x"] == "flow_x_{:05d}.jpg"
    listing = _tree(out)
    for extra, message in [
        (["--flow", "dis", "--size", "32", "24"], "size 64x48 vs 32x24"),
        (["--flow", "tvl1", "--size", *map(str, SMALL)], "flow dis vs tvl1"),
        (["--flow", "dis", "--size", *map(str, SMALL), "--bound", "15"], "bound 20 vs 15"),
        (["--flow", "dis", "--size", *map(str, SMALL), "--modality", "rgb"], "modality rgb+flow vs rgb"),
    ]:
        assert gated_tsn(["prepare", str(src), str(out), "--no-progress", *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "another folder" in err, err
    assert _tree(out) == listing  # nothing written, nothing skipped

    # A folder written before settings were recorded is judged by its frames.
    legacy = tmp_path / "legacy"
    shutil.copytree(out, legacy)
    (legacy / "prepare.json").unlink()
    assert gated_tsn(["prepare", str(src), str(legacy), "--no-progress", "--flow", "dis", "--size", "32", "24"]) == 2
    assert "has modality rgb+flow, size 64x48; this run asks for modality rgb+flow, size 32x24" in capsys.readouterr().err
    assert gated_tsn(["prepare", str(src), str(legacy), "--no-progress", "--flow", "dis",
                      "--size", *map(str, SMALL)]) == 0
    assert json.loads((legacy / "prepare.json").read_text())["size"] == list(SMALL)
    (legacy / "prepare.json").write_text("{not json")
    assert gated_tsn(["prepare", str(src), str(legacy), "--no-progress", "--flow", "dis",
                      "--size", *map(str, SMALL)]) == 2
    assert "prepare.json does not hold readable extraction settings" in capsys.readouterr().err


def test_loose_videos_and_empty_class_folders_are_reported(tmp_path, sample_clips_dir, capsys):
    src = _make_src(tmp_path / "src", sample_clips_dir, ["TrumanShow_wave_f_nm_np1_fr_med_26"])
    shutil.copy(src / "wave" / "TrumanShow_wave_f_nm_np1_fr_med_26.avi", src / "stray_clip.avi")
    (src / "jump").mkdir()
    (src / "jump" / "readme.txt").write_text("the videos are elsewhere")
    assert gated_tsn(["prepare", str(src), str(tmp_path / "out"), "--flow", "dis", "--size", *map(str, SMALL),
                      "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"1 video file(s) outside any class folder, not extracted: {src / 'stray_clip.avi'}" in err
    assert "1 class folder(s) without any video: jump" in err
    # The empty class keeps its label (a model's classes do not shift with what was extracted).
    assert lists.read_class_names(tmp_path / "out" / "classes.txt") == ["jump", "wave"]
    assert lists.read_list_file(tmp_path / "out" / "all.txt") == [
        lists.VideoRecord("TrumanShow_wave_f_nm_np1_fr_med_26", 48, 1)]


def test_rgb_only_extraction(tmp_path, sample_clips_dir, prepared):
    from keras_gated_tsn.data import pipeline

    _, reference, serial = prepared
    src = _make_src(tmp_path / "src", sample_clips_dir)
    out = tmp_path / "out"
    report = prepare.prepare_dataset(src, out, size=SMALL, modality="rgb", progress=False)
    assert report.records == serial.records
    folder = out / "frames" / "v_SoccerJuggling_g23_c01"
    assert _names(folder, "flow") == [] and len(_names(folder, "img_")) == 240
    assert (folder / "img_00240.jpg").read_bytes() == (
        reference / "frames" / "v_SoccerJuggling_g23_c01" / "img_00240.jpg").read_bytes()
    pipeline.check_frame_folders(out / "all.txt", out / "frames", "rgb")
    with pytest.raises(FileNotFoundError, match="flow_x_"):
        pipeline.check_frame_folders(out / "all.txt", out / "frames", "flow")
    assert prepare.prepare_dataset(src, out, size=SMALL, modality="rgb", progress=False).skipped == serial.done


def test_memory_does_not_grow_with_the_video(tmp_path, sample_clips_dir):
    """A 480-frame video (110 MB of decoded frames) is extracted holding a few
    frames at a time: frames stream from the decoder to the files."""
    import itertools
    import tracemalloc

    clip = sample_clips_dir / CLIPS["v_SoccerJuggling_g23_c01"][1]
    long_video = tmp_path / "long.avi"
    assert video.write_video(long_video, itertools.chain(video.iter_frames(clip), video.iter_frames(clip)),
                             fps=30) == 480
    tracemalloc.start()
    try:
        count = prepare.extract_video(long_video, tmp_path / "frames", flow="dis", size=(320, 240))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 480
    frame_bytes = 320 * 240 * 3
    assert peak < 20 * frame_bytes, f"peak {peak / 1e6:.1f} MB while extracting"


def test_progress_shows_videos_per_second(tmp_path, sample_clips_dir, capsys):
    src = _make_src(tmp_path / "src", sample_clips_dir, ["TrumanShow_wave_f_nm_np1_fr_med_26",
                                                        "RATRACE_wave_f_nm_np1_fr_goo_37"])
    prepare.prepare_dataset(src, tmp_path / "out", flow="dis", size=SMALL, progress=True)
    printed = capsys.readouterr().out
    assert "2/2" in printed and "videos/s:" in printed and "failed: 0" in printed


# ----------------------------------------------------------------------------- official splits


def _missing(path):
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_prepare_ucf101_with_its_official_splits(tmp_path, sample_clips_dir, shared_reference, capsys):
    """The two UCF101 clips under the official class list: labels from
    classInd.txt, the lists of all three splits, every other video of a split
    named as not prepared (split 1: 9,537 train and 3,783 test videos)."""
    src = _make_src(tmp_path / "src", sample_clips_dir, ["v_SoccerJuggling_g23_c01"])
    shutil.copy(sample_clips_dir / "v_SoccerJuggling_g24_c01.avi", src / "SoccerJuggling")
    out = tmp_path / "out"
    splits = shared_reference / "ucf101_splits"
    assert gated_tsn(["prepare", str(src), str(out), "--flow", "dis", "--size", *map(str, SMALL), "--no-progress",
                      "--dataset", "ucf101", "--splits", str(splits), "--val-from-test"]) == 0
    printed = capsys.readouterr().out
    classes = lists.read_class_names(out / "classes.txt")
    assert len(classes) == 101 and classes[83] == "SoccerJuggling" and classes[0] == "ApplyEyeMakeup"
    expected = [lists.VideoRecord("v_SoccerJuggling_g23_c01", 240, 83), lists.VideoRecord("v_SoccerJuggling_g24_c01", 251, 83)]
    assert lists.read_list_file(out / "all.txt") == expected
    for number in (1, 2, 3):  # groups 23 and 24 are training videos in every split
        folder = out / "splits" / str(number)
        assert lists.read_list_file(folder / "train.txt") == expected
        assert lists.read_list_file(folder / "test.txt") == [] and not (folder / "val.txt").exists()
        missing = _missing(folder / "split_missing.txt")
        assert len(missing) == {1: 9537 + 3783, 2: 9586 + 3734, 3: 9624 + 3696}[number] - 2
        assert all(reason == "not prepared (no such video in the dataset folder)" for _, _, reason in missing)
        assert f"ucf101 split {number}: train 2, val 0, test 0 videos" in printed
    missing = _missing(out / "splits" / "1" / "split_missing.txt")
    assert sum(subset == "train" for _, subset, _ in missing) == 9537 - 2
    assert sum(subset == "test" for _, subset, _ in missing) == 3783
    assert ["v_HandStandPushups_g01_c01", "test"] in [m[:2] for m in missing]  # spelled as the split file has it
    assert lists.read_list_file(out / "train.txt") == expected  # split 1, what `train` reads by default

    # A class folder that is not a UCF101 class is refused before any work.
    (src / "NotAClass").mkdir()
    assert gated_tsn(["prepare", str(src), str(tmp_path / "o2"), "--no-progress", "--splits", str(splits)]) == 2
    assert "NotAClass" in capsys.readouterr().err and not (tmp_path / "o2").exists()
    # --dataset needs the split files.
    assert gated_tsn(["prepare", str(src), str(tmp_path / "o3"), "--dataset", "hmdb51"]) == 2
    assert "needs --splits" in capsys.readouterr().err


def test_prepare_hmdb51_with_its_official_splits(tmp_path, sample_clips_dir, shared_reference, capsys):
    """HMDB51's 1/2/0 codes per split on the four HMDB51 clips, and a failed
    video of the split reported with its reason."""
    src = _make_src(tmp_path / "src", sample_clips_dir, ["TrumanShow_wave_f_nm_np1_fr_med_26",
                                                        "RATRACE_wave_f_nm_np1_fr_goo_37"])
    shutil.copy(sample_clips_dir / "SchoolRulesHowTheyHelpUs_wave_f_nm_np1_ba_med_0.avi", src / "wave")
    (src / "cartwheel").mkdir()
    shutil.copy(sample_clips_dir / "hmdb51_Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6.avi",
                src / "cartwheel" / "Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6.avi")  # its official name
    broken = src / "wave" / "20060723sfjffbartsinger_wave_f_cm_np1_ba_med_0.avi"
    broken.write_bytes(b"RIFF" + bytes(3000))
    out = tmp_path / "out"
    status = gated_tsn(["prepare", str(src), str(out), "--flow", "dis", "--size", *map(str, SMALL),
                        "--no-progress", "--splits", str(shared_reference / "hmdb51_splits"), "--split", "2"])
    assert status == 1  # one video failed; the lists are still written
    captured = capsys.readouterr()
    assert str(broken) in captured.err
    classes = lists.read_class_names(out / "classes.txt")
    assert len(classes) == 51 and classes.index("cartwheel") == 1 and classes.index("wave") == 50

    def videos(number, name):
        return sorted(r.video for r in lists.read_list_file(out / "splits" / str(number) / f"{name}.txt"))

    truman, ratrace, school = ("TrumanShow_wave_f_nm_np1_fr_med_26", "RATRACE_wave_f_nm_np1_fr_goo_37",
                               "SchoolRulesHowTheyHelpUs_wave_f_nm_np1_ba_med_0")
    cartwheel = "Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6"
    assert (videos(1, "train"), videos(1, "test")) == ([ratrace, cartwheel], [truman])  # School...: 0, unused
    assert (videos(2, "train"), videos(2, "test")) == ([truman, cartwheel], [ratrace])
    assert (videos(3, "train"), videos(3, "test")) == ([ratrace, school, truman], [cartwheel])
    assert videos(2, "train") == sorted(r.video for r in lists.read_list_file(out / "train.txt"))  # --split 2
    missing = _missing(out / "splits" / "1" / "split_missing.txt")
    assert len(missing) == 3570 + 1530 - 3
    failed = [m for m in missing if m[0] == broken.stem]
    assert len(failed) == 1 and failed[0][2].startswith("extraction failed: ")
    assert "(1 of them failed to extract)" in captured.out


def test_prepare_writes_tfrecord_shards_that_read_as_the_folders(tmp_path, sample_clips_dir, capsys):
    from keras_gated_tsn.data import pipeline
    from keras_gated_tsn.data.layout import frames_source
    from keras_gated_tsn.data.tfrecord import read_index

    src = _make_src(tmp_path / "src", sample_clips_dir, ["TrumanShow_wave_f_nm_np1_fr_med_26",
                                                        "RATRACE_wave_f_nm_np1_fr_goo_37"])
    out = tmp_path / "out"
    assert gated_tsn(["prepare", str(src), str(out), "--flow", "dis", "--size", *map(str, SMALL), "--no-progress",
                      "--format", "tfrecord", "--shards", "2"]) == 0
    assert f"wrote 2 TFRecord shard(s) of 2 videos to {out / 'tfrecord'}" in capsys.readouterr().out
    index = read_index(out / "tfrecord")
    assert len(index["shards"]) == 2 and sorted(v["video"] for v in index["videos"]) == sorted(
        ["TrumanShow_wave_f_nm_np1_fr_med_26", "RATRACE_wave_f_nm_np1_fr_goo_37"])
    assert frames_source(str(out)) == str(out / "frames")
    folders = list(pipeline.make_test_dataset(out / "all.txt", out / "frames", "rgb+flow", num_frames=2, crops=1,
                                              input_size=32))
    (out / "frames").rename(tmp_path / "elsewhere")  # the dataset on remote storage: lists and shards only
    assert frames_source(str(out)) == str(out / "tfrecord")
    shards = list(pipeline.make_test_dataset(out / "all.txt", frames_source(str(out)), "rgb+flow", num_frames=2,
                                             crops=1, input_size=32))
    for (x_folder, _, video_folder), (x_shards, _, video_shards) in zip(folders, shards):
        assert video_folder.numpy() == video_shards.numpy()
        for kind in ("rgb", "flow"):
            np.testing.assert_array_equal(x_folder[kind].numpy(), x_shards[kind].numpy())
    assert gated_tsn(["prepare", str(src), str(tmp_path / "o2"), "--shards", "2"]) == 2
    assert "--shards is for --format tfrecord" in capsys.readouterr().err
