"""Official UCF101 / HMDB51 split files: parsing the real files, matching records, errors."""

import re
import shutil

import pytest

from keras_gated_tsn.data.lists import VideoRecord
from keras_gated_tsn.data.splits import Split, load_split, split_records


@pytest.fixture(scope="module")
def ucf_dir(shared_reference):
    return shared_reference / "ucf101_splits"


@pytest.fixture(scope="module")
def hmdb_dir(shared_reference):
    return shared_reference / "hmdb51_splits"


@pytest.fixture(scope="module")
def ucf1(ucf_dir):
    return load_split(ucf_dir, 1)


@pytest.fixture(scope="module")
def hmdb1(hmdb_dir):
    return load_split(hmdb_dir, 1)


# --------------------------------------------------------------------------- UCF101


def test_ucf101_split1_sizes_and_classes(ucf1):
    assert isinstance(ucf1, Split)
    assert (ucf1.dataset, ucf1.split) == ("ucf101", 1)
    assert len(ucf1.class_names) == 101
    assert ucf1.class_names[0] == "ApplyEyeMakeup"  # classInd id 1 -> label 0
    assert ucf1.class_names[100] == "YoYo"
    assert len(ucf1.train) == 9537
    assert len(ucf1.test) == 3783
    assert ucf1.train[0] == ("v_ApplyEyeMakeup_g08_c01", 0)
    assert ucf1.test[0] == ("v_ApplyEyeMakeup_g01_c01", 0)
    assert ucf1.unused == []
    # CRLF stripped, no folder or extension left, every class present in both sets.
    for stem, label in ucf1.train + ucf1.test:
        assert re.fullmatch(r"v_\w+_g\d\d_c\d\d", stem), stem
        assert 0 <= label < 101
    assert {label for _, label in ucf1.train} == set(range(101))
    assert {label for _, label in ucf1.test} == set(range(101))


def test_ucf101_labels_agree_with_video_names(ucf1):
    for stem, label in ucf1.train + ucf1.test:
        name_class = stem.split("_")[1]
        assert name_class.casefold() == ucf1.class_names[label].casefold(), stem


def test_ucf101_handstandpushups_quirk(ucf1):
    label = ucf1.class_names.index("HandstandPushups")
    videos = [(s, l) for s, l in ucf1.train + ucf1.test if s.lower().startswith("v_handstandpushups")]
    assert videos, "no HandstandPushups videos parsed"
    assert all(l == label for _, l in videos)
    # The official files spell the videos v_HandStandPushups_*, the stem keeps that.
    assert all(s.startswith("v_HandStandPushups_") for s, _ in videos)
    # A prepared dataset whose video uses the folder's spelling still matches.
    records = [VideoRecord("v_HandstandPushups_g01_c01", 100, 0)]
    train, test, _ = split_records(records, ucf1, ["HandstandPushups"])
    assert (train, test) == ([], records)


@pytest.mark.parametrize("split,n_train,n_test", [(1, 9537, 3783), (2, 9586, 3734), (3, 9624, 3696)])
def test_ucf101_all_splits_partition_the_dataset(ucf_dir, split, n_train, n_test):
    s = load_split(ucf_dir, split, dataset="ucf101")
    assert (len(s.train), len(s.test)) == (n_train, n_test)
    train = {v.casefold() for v, _ in s.train}
    test = {v.casefold() for v, _ in s.test}
    assert not train & test
    assert len(train | test) == 13320


# --------------------------------------------------------------------------- HMDB51


def test_hmdb51_split1_sizes_and_classes(hmdb1):
    assert (hmdb1.dataset, hmdb1.split) == ("hmdb51", 1)
    assert len(hmdb1.class_names) == 51
    # class_list.txt order (not sorted: "kick_ball" precedes "kick"), trailing blanks stripped.
    assert hmdb1.class_names[:2] == ["brush_hair", "cartwheel"]
    assert hmdb1.class_names.index("kick_ball") < hmdb1.class_names.index("kick")
    assert hmdb1.class_names[-1] == "wave"
    assert all(name == name.strip() for name in hmdb1.class_names)
    assert len(hmdb1.train) == 3570
    assert len(hmdb1.test) == 1530
    assert len(hmdb1.unused) == 6766 - 3570 - 1530
    for label in range(51):  # the 70/30 protocol
        assert sum(l == label for _, l in hmdb1.train) == 70
        assert sum(l == label for _, l in hmdb1.test) == 30
    wave = hmdb1.class_names.index("wave")
    assert ("20060723sfjffbartsinger_wave_f_cm_np1_ba_med_0", wave) in hmdb1.test
    assert ("21_wave_u_nm_np1_fr_goo_5", wave) in hmdb1.train


def test_hmdb51_without_class_list_sorts_classes(hmdb_dir, tmp_path):
    for path in hmdb_dir.glob("*_test_split2.txt"):
        shutil.copy(path, tmp_path / path.name)
    s = load_split(tmp_path, 2)
    assert s.dataset == "hmdb51"
    assert s.class_names == sorted(s.class_names)
    assert len(s.class_names) == 51
    assert (len(s.train), len(s.test)) == (3570, 1530)


# --------------------------------------------------------------------------- arguments


def test_detection_and_argument_errors(ucf_dir, hmdb_dir, tmp_path):
    assert load_split(hmdb_dir, 3, dataset="HMDB51").dataset == "hmdb51"
    with pytest.raises(ValueError, match="dataset"):
        load_split(ucf_dir, 1, dataset="kinetics")
    for bad in (0, -1, "1", 1.0, True):
        with pytest.raises(ValueError, match="split"):
            load_split(ucf_dir, bad)
    with pytest.raises(FileNotFoundError, match="trainlist04.txt"):
        load_split(ucf_dir, 4)
    with pytest.raises(FileNotFoundError, match="no split files"):
        load_split(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_split(tmp_path / "absent")
    shutil.copy(ucf_dir / "classInd.txt", tmp_path / "classInd.txt")
    shutil.copy(hmdb_dir / "wave_test_split1.txt", tmp_path / "wave_test_split1.txt")
    with pytest.raises(ValueError, match="both"):
        load_split(tmp_path)


# --------------------------------------------------------------------------- malformed files


def _corrupt(src_dir, dst_dir, filename, line_number, new_line):
    """Copies src_dir to dst_dir, replacing one line of one file (keeping its line ending)."""
    shutil.copytree(src_dir, dst_dir)
    path = dst_dir / filename
    lines = path.read_bytes().splitlines(keepends=True)
    ending = b"\r\n" if lines[0].endswith(b"\r\n") else b"\n"
    lines[line_number - 1] = new_line.encode() + ending
    path.write_bytes(b"".join(lines))
    return path


@pytest.mark.parametrize(
    "filename,line_number,new_line,message",
    [
        ("classInd.txt", 7, "seven BasketballDunk", "class id must be an integer"),
        ("classInd.txt", 7, "7", "expected '<id> <ClassName>'"),
        ("classInd.txt", 7, "3 Archery2", "class id 3 repeats"),
        ("trainlist01.txt", 5, "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c05.avi", "expected"),
        ("trainlist01.txt", 5, "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c05.avi x", "integer"),
        ("trainlist01.txt", 5, "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c05.avi 102", "not in 1..101"),
        ("trainlist01.txt", 5, "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c05.avi 2", "disagrees"),
        ("trainlist01.txt", 5, "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1", "already listed"),
        ("testlist01.txt", 9, "MakeUp/v_MakeUp_g01_c01.avi", "unknown class folder 'MakeUp'"),
        ("testlist01.txt", 9, "a b c", "expected"),
    ],
)
def test_malformed_ucf101_file_names_file_and_line(
    ucf_dir, tmp_path, filename, line_number, new_line, message
):
    path = _corrupt(ucf_dir, tmp_path / "splits", filename, line_number, new_line)
    with pytest.raises(ValueError) as info:
        load_split(path.parent, 1)
    text = str(info.value)
    assert str(path) in text
    assert message in text
    assert f"line {line_number}" in text


@pytest.mark.parametrize(
    "new_line,message",
    [
        ("21_wave_u_nm_np1_fr_goo_5.avi 3", "id must be 0 (unused), 1 (train) or 2 (test)"),
        ("21_wave_u_nm_np1_fr_goo_5.avi", "expected '<video>.avi <id>'"),
        ("21_wave_u_nm_np1_fr_goo_5.avi one", "the id must be an integer"),
        ("50_FIRST_DATES_wave_f_cm_np1_fr_med_0.avi 1", "already listed"),
    ],
)
def test_malformed_hmdb51_file_names_file_and_line(hmdb_dir, tmp_path, new_line, message):
    path = _corrupt(hmdb_dir, tmp_path / "splits", "wave_test_split1.txt", 2, new_line)
    with pytest.raises(ValueError) as info:
        load_split(path.parent, 1)
    assert f"{path}, line 2" in str(info.value)
    assert message in str(info.value)


def test_hmdb51_unknown_class_names_the_file(hmdb_dir, tmp_path):
    shutil.copytree(hmdb_dir, tmp_path / "splits")
    extra = tmp_path / "splits" / "juggle_test_split1.txt"
    extra.write_text("juggling_juggle_f_cm_np1_ba_med_0.avi 1 \n")
    with pytest.raises(ValueError, match=r"juggle_test_split1\.txt: unknown class 'juggle'"):
        load_split(tmp_path / "splits", 1)


def test_hmdb51_class_without_split_file(hmdb_dir, tmp_path):
    shutil.copytree(hmdb_dir, tmp_path / "splits")
    (tmp_path / "splits" / "wave_test_split1.txt").unlink()
    with pytest.raises(FileNotFoundError, match="wave_test_split1.txt"):
        load_split(tmp_path / "splits", 1)


# --------------------------------------------------------------------------- split_records


@pytest.fixture
def tiny_split():
    return Split(
        dataset="ucf101",
        split=1,
        class_names=["ApplyEyeMakeup", "HandstandPushups", "YoYo"],
        train=[("v_ApplyEyeMakeup_g08_c01", 0), ("v_HandStandPushups_g08_c01", 1), ("v_YoYo_g08_c01", 2)],
        test=[("v_ApplyEyeMakeup_g01_c01", 0), ("v_YoYo_g01_c01", 2)],
    )


def test_split_records_matches_by_name_and_class_name(tiny_split):
    # Our classes are in another order than the split's.
    ours = ["YoYo", "ApplyEyeMakeup", "HandstandPushups"]
    records = [
        VideoRecord("v_YoYo_g01_c01", 50, 0),
        VideoRecord("v_handstandpushups_g08_c01", 80, 2),
        VideoRecord("v_ApplyEyeMakeup_g08_c01", 120, 1),
        VideoRecord("v_Extra_g01_c01", 30, 0),  # not in the split: left out
    ]
    train, test, missing = split_records(records, tiny_split, ours)
    assert train == [records[1], records[2]]  # records' order, records unchanged
    assert test == [records[0]]
    assert missing == ["v_YoYo_g08_c01", "v_ApplyEyeMakeup_g01_c01"]


def test_split_records_class_disagreement_names_the_video(tiny_split):
    records = [VideoRecord("v_YoYo_g08_c01", 50, 0)]
    with pytest.raises(ValueError, match=r"v_YoYo_g08_c01.*'ApplyEyeMakeup'.*'YoYo'"):
        split_records(records, tiny_split, ["ApplyEyeMakeup", "YoYo", "HandstandPushups"])


def test_split_records_label_out_of_range_and_duplicates(tiny_split):
    with pytest.raises(ValueError, match="v_YoYo_g08_c01.*out of range"):
        split_records([VideoRecord("v_YoYo_g08_c01", 50, 7)], tiny_split, ["YoYo"])
    twice = [VideoRecord("v_YoYo_g08_c01", 50, 0), VideoRecord("V_YOYO_G08_C01", 50, 0)]
    with pytest.raises(ValueError, match="V_YOYO_G08_C01"):
        split_records(twice, tiny_split, ["YoYo"])


def test_split_records_on_real_hmdb51_split(hmdb1):
    ours = sorted(hmdb1.class_names)  # a prepared dataset with sorted classes
    records = [
        VideoRecord("21_wave_u_nm_np1_fr_goo_5", 40, ours.index("wave")),
        VideoRecord("20060723sfjffbartsinger_wave_f_cm_np1_ba_med_0", 60, ours.index("wave")),
        VideoRecord(hmdb1.unused[0], 60, 0),  # marked 0: in neither set (class unchecked)
    ]
    train, test, missing = split_records(records, hmdb1, ours)
    assert train == records[:1] and test == records[1:2]
    assert len(missing) == 3570 + 1530 - 2


def test_hold_out_validation_by_class_in_name_order():
    from keras_gated_tsn.data.lists import VideoRecord
    from keras_gated_tsn.data.splits import hold_out_validation

    records = [VideoRecord(f"v_A_g0{i}_c01", 10, 0) for i in (3, 1, 2, 4)] + [VideoRecord("v_B_g01_c01", 10, 1)]
    train, val = hold_out_validation(records, 0.5)
    assert [r.video for r in val] == ["v_A_g03_c01", "v_A_g04_c01"]  # the last half of A in name order
    assert [r.video for r in train] == ["v_A_g01_c01", "v_A_g02_c01", "v_B_g01_c01"]  # B's only video stays
    train, val = hold_out_validation(records, 0.9)
    assert {r.label for r in train} == {0, 1}  # never a class's last training video
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        hold_out_validation(records, 1.0)
