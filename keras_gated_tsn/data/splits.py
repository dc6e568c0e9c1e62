"""The official train/test split files of UCF101 and HMDB51, and seeded splits of other datasets.

Both datasets are evaluated on three official splits, and results are the
mean over them. This module reads a user's copy of the split files (they are
not shipped with the package) and matches a prepared dataset's list records
(:class:`~keras_gated_tsn.data.lists.VideoRecord`) against them.

UCF101 (``ucfTrainTestlist/``), CRLF line endings::

    classInd.txt        "<id> <ClassName>", ids 1..101
    trainlist01.txt     "<ClassName>/v_<ClassName>_gXX_cYY.avi <id>"
    testlist01.txt      "<ClassName>/v_<ClassName>_gXX_cYY.avi"      (no id)

Quirk: the folder ``HandstandPushups`` holds files named
``v_HandStandPushups_*``; class folders and video names are therefore
matched case-insensitively.

HMDB51 (``testTrainMulti_7030_splits/``)::

    <class>_test_split1.txt   "<name>.avi <id>", id 1 = train, 2 = test,
                              0 = not used in this split
    class_list.txt            optional: one class name per line (trailing
                              blanks allowed), line i = label i

Labels here are 0-based: UCF101 label = ``classInd`` id - 1; HMDB51 label =
line index in ``class_list.txt`` or, without that file, index in the sorted
class names of the split files. A prepared dataset may order its classes
differently, which is why :func:`split_records` matches classes by name.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from typing import Dict, List, Optional, Sequence, Tuple

from keras_gated_tsn.data.lists import VideoRecord

DATASETS = ("ucf101", "hmdb51")
#: Why a split video has no record: it is not in the prepared dataset at all.
NOT_PREPARED = "not prepared (no such video in the dataset folder)"

_HMDB_SPLIT_RE = re.compile(r"^(?P<cls>.+)_test_split(?P<split>\d+)\.txt$")
_UCF_STEM_RE = re.compile(r"^v_(?P<cls>.+)_g\d+_c\d+$", re.IGNORECASE)


@dataclasses.dataclass
class Split:
    """One official train/test split.

    Attributes:
        dataset: ``"ucf101"`` or ``"hmdb51"``.
        split: the split number (1, 2 or 3 for the official files).
        class_names: the dataset's class names; index = 0-based label
            (UCF101: ``classInd.txt`` order, 101 names; HMDB51:
            ``class_list.txt`` order or sorted, 51 names).
        train: ``(video_stem, label)`` pairs in file order, e.g.
            ``("v_ApplyEyeMakeup_g08_c01", 0)``; the stem is the file name
            without folder and extension, spelled as in the split file.
        test: ``(video_stem, label)`` pairs, as ``train``.
        unused: HMDB51 video stems marked 0 (in neither set) in this split;
            empty for UCF101.
    """

    dataset: str
    split: int
    class_names: List[str]
    train: List[Tuple[str, int]]
    test: List[Tuple[str, int]]
    unused: List[str] = dataclasses.field(default_factory=list)


def load_split(
    split_dir: str | os.PathLike,
    split: int = 1,
    dataset: Optional[str] = None,
) -> Split:
    """Reads one official split of UCF101 or HMDB51 from a folder of split files.

    Args:
        split_dir: folder holding the split files (UCF101: ``classInd.txt``,
            ``trainlist0N.txt``, ``testlist0N.txt``; HMDB51:
            ``<class>_test_splitN.txt`` and optionally ``class_list.txt``).
        split: split number N, an int >= 1 (the official files have 1 to 3).
        dataset: ``"ucf101"``, ``"hmdb51"`` or ``None`` to detect it from the
            files present.

    Returns:
        A :class:`Split`. UCF101 split 1: 101 classes, 9,537 train and 3,783
        test videos; HMDB51 split 1: 51 classes, 3,570 train and 1,530 test.

    Raises:
        FileNotFoundError: if ``split_dir`` or a needed split file is missing,
            or (auto-detection) the folder holds neither dataset's files.
        ValueError: if ``split`` or ``dataset`` is invalid, both datasets'
            files are present and ``dataset`` is None, or a file is malformed
            -- naming the file and line: a line without the expected fields, a
            non-integer or out-of-range id, an unknown class, a video listed
            twice, a train label that disagrees with its class folder.
    """
    if isinstance(split, bool) or not isinstance(split, int) or split < 1:
        raise ValueError(f"split must be an int >= 1, got {split!r}")
    split_dir, dataset = _split_folder(split_dir, dataset)
    if dataset == "ucf101":
        return _load_ucf101(split_dir, split)
    return _load_hmdb51(split_dir, split)


def split_records(
    records: Sequence[VideoRecord],
    split: Split,
    class_names: Sequence[str],
) -> Tuple[List[VideoRecord], List[VideoRecord], List[str]]:
    """Divides a prepared dataset's records into the split's train and test sets.

    A record matches a split video when ``record.video`` equals the split's
    video stem, ignoring case (``v_HandstandPushups_g08_c01`` matches the
    official ``v_HandStandPushups_g08_c01``). Its class is checked by name:
    ``class_names[record.label]`` must equal the split's class of that video,
    ignoring case, so the prepared dataset may number its classes in any order.
    Records the split does not name (HMDB51 videos marked 0, extra videos) are
    left out of both sets.

    Args:
        records: the prepared dataset's records (e.g. ``all.txt``), whose
            ``video`` is the video file stem.
        split: from :func:`load_split`.
        class_names: the prepared dataset's class names (``classes.txt``);
            ``class_names[record.label]`` is a record's class.

    Returns:
        ``(train_records, test_records, missing)``: the records of each set, in
        the order of ``records`` and unchanged (labels stay the prepared
        dataset's); ``missing`` = stems of the split's train and test videos
        that no record matches, in split-file order (reported, not an error).

    Raises:
        ValueError: naming the video, if a record's label is out of range for
            ``class_names``, its class disagrees with the split's, or two
            records match the same split video.
    """
    wanted: Dict[str, Tuple[str, int, str]] = {}
    for subset, pairs in (("train", split.train), ("test", split.test)):
        for stem, label in pairs:
            wanted[stem.casefold()] = (stem, label, subset)
    found: Dict[str, str] = {}
    train_records: List[VideoRecord] = []
    test_records: List[VideoRecord] = []
    for record in records:
        key = record.video.casefold()
        if key not in wanted:
            continue
        stem, split_label, subset = wanted[key]
        if not 0 <= record.label < len(class_names):
            raise ValueError(
                f"video {record.video!r}: label {record.label} is out of range for "
                f"{len(class_names)} class names"
            )
        ours, theirs = class_names[record.label], split.class_names[split_label]
        if ours.casefold() != theirs.casefold():
            raise ValueError(
                f"video {record.video!r}: labelled {ours!r} (label {record.label}) but the "
                f"{split.dataset} split {split.split} puts {stem!r} in class {theirs!r}"
            )
        if key in found:
            raise ValueError(
                f"video {record.video!r}: two records ({found[key]!r} and {record.video!r}) "
                f"match split video {stem!r}"
            )
        found[key] = record.video
        (train_records if subset == "train" else test_records).append(record)
    missing = [stem for stem, _ in (*split.train, *split.test) if stem.casefold() not in found]
    return train_records, test_records, missing


def hold_out_validation(
    train_records: Sequence[VideoRecord], fraction: float
) -> Tuple[List[VideoRecord], List[VideoRecord]]:
    """Moves the last ``fraction`` of each class's training videos to a validation set
    (rounded, and never a class's last training video).

    Videos are taken in name order within each class, so for UCF101 mostly
    whole groups (``gXX``) move and no group straddles the two sets except at
    the cut. Note that streams trained on the *whole* training split (TSN's
    released models, for example) have seen these videos: validate such
    streams on a list they were not trained on.

    Args:
        train_records: the split's training records.
        fraction: in [0, 1): the share of each class to hold out (rounded).

    Returns:
        ``(train, val)``, each in the order of ``train_records``.

    Raises:
        ValueError: for a fraction outside [0, 1).
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction < 1.0:
        raise ValueError(f"the validation fraction must be in [0, 1), got {fraction!r}")
    by_class: Dict[int, List[VideoRecord]] = {}
    for record in sorted(train_records, key=lambda r: r.video):
        by_class.setdefault(record.label, []).append(record)
    held = set()
    for videos in by_class.values():
        count = min(int(round(len(videos) * fraction)), len(videos) - 1)  # keep one for training
        held.update(r.video for r in videos[len(videos) - count:])
    return [r for r in train_records if r.video not in held], [r for r in train_records if r.video in held]


def stratified_split(
    records: Sequence[VideoRecord],
    class_names: Sequence[str],
    *,
    test_fraction: float,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> Tuple[List[VideoRecord], List[VideoRecord], List[VideoRecord]]:
    """A seeded train / val / test split of a dataset without official split files.

    Every class is divided in the same proportions (stratified, scikit-learn's
    ``train_test_split``): about ``test_fraction`` of its videos go to the test
    set, ``val_fraction`` to the validation set, the rest to training. The
    same records, fractions and seed give the same split on any machine.

    Videos cut from one recording (UCF101's groups, the ``_partNN`` pieces of
    a long video) should not straddle two sets; this split does not know
    which videos belong together, so prefer official or group-aware splits
    where they exist.

    Args:
        records: the dataset's records (``all.txt``).
        class_names: its class names (``classes.txt``); a record's label
            indexes them.
        test_fraction: in (0, 1).
        val_fraction: in [0, 1), with ``test_fraction + val_fraction < 1``.
        seed: the shuffling seed.

    Returns:
        ``(train, val, test)``, each in the order of ``records``.

    Raises:
        ValueError: for fractions out of range, a label outside
            ``class_names`` (the video named), or a class with too few videos
            to have one in each set (the class named, with its count).
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"the test fraction must be in (0, 1), got {test_fraction!r}")
    if not 0.0 <= val_fraction < 1.0 or test_fraction + val_fraction >= 1.0:
        raise ValueError(
            f"the validation fraction must be in [0, 1) and leave videos for training; got val {val_fraction!r} "
            f"with test {test_fraction!r}"
        )
    counts: Dict[int, int] = {}
    for record in records:
        if not 0 <= record.label < len(class_names):
            raise ValueError(
                f"video {record.video!r}: label {record.label} is out of range for {len(class_names)} class names"
            )
        counts[record.label] = counts.get(record.label, 0) + 1
    sets = 3 if val_fraction > 0 else 2
    for label, count in sorted(counts.items()):
        if count < sets:
            raise ValueError(
                f"class {class_names[label]!r} has {count} video(s): a stratified split into "
                f"{'train, val and test' if sets == 3 else 'train and test'} needs at least {sets}"
            )
    indices = list(range(len(records)))
    labels = [record.label for record in records]

    def divide(pool, fraction):
        pool_labels = [labels[i] for i in pool]
        share = max(int(round(len(pool) * fraction)), len(counts))  # at least one video of each class
        return train_test_split(pool, test_size=share, stratify=pool_labels, random_state=seed)

    rest, test = divide(indices, test_fraction)
    val: List[int] = []
    if val_fraction > 0:
        rest, val = divide(rest, val_fraction / (1.0 - test_fraction))
    chosen = [set(part) for part in (rest, val, test)]
    return tuple([records[i] for i in indices if i in part] for part in chosen)  # type: ignore[return-value]


def available_splits(split_dir: str | os.PathLike, dataset: Optional[str] = None) -> Tuple[str, List[int]]:
    """The dataset and split numbers whose files a split folder holds.

    Args:
        split_dir: the folder of official split files.
        dataset: ``"ucf101"``, ``"hmdb51"`` or ``None`` to detect it.

    Returns:
        ``(dataset, numbers)``, e.g. ``("ucf101", [1, 2, 3])``: UCF101 splits
        with a ``trainlistNN.txt``, HMDB51 splits with at least one
        ``<class>_test_splitN.txt``.

    Raises:
        FileNotFoundError: if the folder is missing or holds no split file.
        ValueError: for an unknown ``dataset``, or both datasets' files and
            ``dataset`` None.
    """
    folder, dataset = _split_folder(split_dir, dataset)
    numbers = set()
    for path in folder.iterdir():
        if dataset == "ucf101":
            match = re.fullmatch(r"trainlist(\d+)\.txt", path.name)
            if match:
                numbers.add(int(match.group(1)))
        else:
            match = _HMDB_SPLIT_RE.match(path.name)
            if match:
                numbers.add(int(match.group("split")))
    numbers.discard(0)
    if not numbers:
        expected = "trainlist01.txt" if dataset == "ucf101" else "<class>_test_split1.txt"
        raise FileNotFoundError(f"{folder} holds no {dataset} split file ({expected} ...)")
    return dataset, sorted(numbers)


@dataclasses.dataclass
class SplitLists:
    """The list records of one split of a prepared dataset.

    Attributes:
        dataset, split: which split (``"ucf101"``, 1 ...); split 0 for a
            seeded split of a dataset without official files.
        train, val, test: the records of each set (labels are the prepared
            dataset's).
        missing: ``(video, subset, reason)`` for each video the split names
            that no record matches, in split-file order; ``reason`` is the
            extraction failure when the video failed, else :data:`NOT_PREPARED`.
        val_source: what ``val`` holds, in words (empty without a val set).
    """

    dataset: str
    split: int
    train: List[VideoRecord]
    val: List[VideoRecord]
    test: List[VideoRecord]
    missing: List[Tuple[str, str, str]] = dataclasses.field(default_factory=list)
    val_source: str = ""

    def describe(self) -> str:
        """One line: the set sizes, what val holds, and the missing videos (first five named)."""
        name = f"{self.dataset} split {self.split}" if self.split else f"seeded split of {self.dataset}"
        text = (
            f"{name}: train {len(self.train)}, val {len(self.val)}, test {len(self.test)} videos"
            + (f"; val.txt is {self.val_source}" if self.val else "; no val.txt")
        )
        if self.split:
            failed = sum(1 for _, _, reason in self.missing if reason != NOT_PREPARED)
            text += f"; {len(self.missing)} videos of the split were not prepared"
            if failed:
                text += f" ({failed} of them failed to extract)"
            if self.missing:
                names = ", ".join(video for video, _, _ in self.missing[:5])
                text += f" ({names}{', ...' if len(self.missing) > 5 else ''})"
        return text


def official_split_lists(
    records: Sequence[VideoRecord],
    class_names: Sequence[str],
    split: Split,
    *,
    val_from_test: bool = False,
    val_fraction: float = 0.0,
    failed: Optional[Dict[str, str]] = None,
) -> SplitLists:
    """Train / val / test records of one official split (:func:`split_records`),
    with a validation set and the split's missing videos named with the reason.

    Args:
        records, class_names: the prepared dataset (``all.txt``, ``classes.txt``).
        split: from :func:`load_split`.
        val_from_test: val = the test list (the authors' protocol: their
            solver validated on the test videos).
        val_fraction: else, in [0, 1): this share of each class's training
            videos moves to val (:func:`hold_out_validation`); 0 for no val.
        failed: video id -> reason of the videos whose extraction failed
            (``failed.txt``), matched ignoring case.

    Returns:
        A :class:`SplitLists`.

    Raises:
        ValueError: as :func:`split_records`, or both validation options given.
    """
    if val_from_test and val_fraction:
        raise ValueError("give either val_from_test or val_fraction, not both")
    train, test, missing = split_records(records, split, class_names)
    subset = {stem.casefold(): "train" for stem, _ in split.train}
    subset.update({stem.casefold(): "test" for stem, _ in split.test})
    failures = {video.casefold(): reason for video, reason in (failed or {}).items()}
    named = [
        (stem, subset[stem.casefold()], f"extraction failed: {failures[stem.casefold()]}"
         if stem.casefold() in failures else NOT_PREPARED)
        for stem in missing
    ]
    val: List[VideoRecord] = []
    source = ""
    if val_from_test:
        val, source = list(test), "the test list (as the authors)"
    elif val_fraction > 0:
        train, val = hold_out_validation(train, val_fraction)
        source = f"{val_fraction:g} of each class's training videos"
    return SplitLists(split.dataset, split.split, train, val, test, named, source)


def seeded_split_lists(
    records: Sequence[VideoRecord],
    class_names: Sequence[str],
    *,
    test_fraction: float,
    val_fraction: float = 0.0,
    seed: int = 0,
    dataset: str = "the dataset",
) -> SplitLists:
    """:func:`stratified_split` as a :class:`SplitLists` (split number 0).

    Raises:
        ValueError: as :func:`stratified_split`.
    """
    train, val, test = stratified_split(
        records, class_names, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed
    )
    source = f"{val_fraction:g} of each class's videos (seed {seed})" if val else ""
    return SplitLists(dataset, 0, train, val, test, [], source)


def write_split_lists(folder: str | os.PathLike, lists: SplitLists) -> None:
    """Writes ``train.txt``, ``val.txt``, ``test.txt`` and ``split_missing.txt``
    into ``folder`` (created), each atomically; a ``val.txt`` or
    ``split_missing.txt`` of an earlier run that this split has none of is
    removed (training would silently use a stale ``val.txt``).

    ``split_missing.txt`` has one line per missing video:
    ``<video>\t<train|test>\t<reason>``.
    """
    from keras_gated_tsn.atomic import atomic_write
    from keras_gated_tsn.data.layout import SPLIT_MISSING, list_file
    from keras_gated_tsn.data.lists import write_list_file

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    for name, part in (("train", lists.train), ("val", lists.val), ("test", lists.test)):
        path = os.path.join(folder, list_file(name))
        if part or name != "val":
            write_list_file(path, part)
        elif os.path.isfile(path):
            os.remove(path)
    missing_path = os.path.join(folder, SPLIT_MISSING)
    if lists.missing:
        atomic_write(missing_path, lambda handle: handle.write(
            "".join(f"{video}\t{subset}\t{reason}\n" for video, subset, reason in lists.missing)))
    elif os.path.isfile(missing_path):
        os.remove(missing_path)


def read_failed_videos(path: str | os.PathLike) -> Dict[str, str]:
    """``failed.txt`` of ``gated-tsn prepare`` as video id -> reason (empty if
    the file does not exist)."""
    failed: Dict[str, str] = {}
    if not os.path.isfile(path):
        return failed
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            video_path, _, reason = line.rstrip("\n").partition("\t")
            if video_path:
                failed[_stem(video_path)] = reason
    return failed


# ---------------------------------------------------------------------------
# Detection and file reading


def _split_folder(split_dir, dataset: Optional[str]) -> Tuple[pathlib.Path, str]:
    """The split folder as a path and its dataset, checked (detected when None)."""
    folder = pathlib.Path(split_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"split folder {folder} does not exist")
    if dataset is None:
        return folder, _detect_dataset(folder)
    if not isinstance(dataset, str) or dataset.lower() not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS} or None, got {dataset!r}")
    return folder, dataset.lower()


def _detect_dataset(split_dir: pathlib.Path) -> str:
    names = {p.name for p in split_dir.iterdir() if p.is_file()}
    is_ucf = "classInd.txt" in names or any(
        re.fullmatch(r"(train|test)list\d+\.txt", n) for n in names
    )
    is_hmdb = any(_HMDB_SPLIT_RE.match(n) for n in names)
    if is_ucf and is_hmdb:
        raise ValueError(
            f"{split_dir} holds both UCF101 (classInd.txt, trainlistNN.txt) and HMDB51 "
            "(<class>_test_splitN.txt) split files; pass dataset='ucf101' or 'hmdb51'"
        )
    if is_ucf:
        return "ucf101"
    if is_hmdb:
        return "hmdb51"
    raise FileNotFoundError(
        f"{split_dir} holds no split files: expected UCF101's classInd.txt, trainlist01.txt, "
        "testlist01.txt ... or HMDB51's <class>_test_split1.txt ..."
    )


def _read_lines(path: pathlib.Path) -> List[Tuple[int, str]]:
    """``(line_number, stripped_text)`` of the non-blank lines; CRLF or LF."""
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} does not exist")
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ValueError(f"{path}, line {number}: not UTF-8 text: {raw[:80]!r}") from None
        if text:
            lines.append((number, text))
    return lines


def _parse_int(text: str, path: pathlib.Path, number: int, line: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{path}, line {number}: {what} must be an integer, got {line!r}") from None


def _stem(name: str) -> str:
    """File name without folder and extension: ``A/v_A_g01_c01.avi`` -> ``v_A_g01_c01``."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    root, ext = os.path.splitext(base)
    return root if ext else base


def _add_video(
    seen: Dict[str, Tuple[pathlib.Path, int]], stem: str, path: pathlib.Path, number: int
) -> None:
    key = stem.casefold()
    if key in seen:
        other_path, other_number = seen[key]
        raise ValueError(
            f"{path}, line {number}: video {stem!r} is already listed "
            f"({other_path}, line {other_number})"
        )
    seen[key] = (path, number)


# ---------------------------------------------------------------------------
# UCF101


def _load_ucf101(split_dir: pathlib.Path, split: int) -> Split:
    class_path = split_dir / "classInd.txt"
    class_names = _read_class_ind(class_path)
    by_name = {name.casefold(): label for label, name in enumerate(class_names)}
    seen: Dict[str, Tuple[pathlib.Path, int]] = {}

    def class_of(path: pathlib.Path, number: int, line: str, video: str) -> Optional[int]:
        """Label from the class folder, else from ``v_<Class>_gXX_cYY``; None if neither."""
        parts = video.replace("\\", "/").split("/")
        if len(parts) > 1:
            folder = parts[-2]
            if folder.casefold() not in by_name:
                raise ValueError(
                    f"{path}, line {number}: unknown class folder {folder!r} "
                    f"(not in {class_path.name}): {line!r}"
                )
            return by_name[folder.casefold()]
        match = _UCF_STEM_RE.match(_stem(video))
        if match and match.group("cls").casefold() in by_name:
            return by_name[match.group("cls").casefold()]
        return None

    train_path = split_dir / f"trainlist{split:02d}.txt"
    train = []
    for number, line in _read_lines(train_path):
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(
                f"{train_path}, line {number}: expected '<Class>/<video>.avi <class id>', "
                f"got {line!r}"
            )
        video, id_text = fields
        class_id = _parse_int(id_text, train_path, number, line, "the class id")
        if not 1 <= class_id <= len(class_names):
            raise ValueError(
                f"{train_path}, line {number}: class id {class_id} is not in "
                f"1..{len(class_names)} ({class_path.name}): {line!r}"
            )
        label = class_id - 1
        folder_label = class_of(train_path, number, line, video)
        if folder_label is not None and folder_label != label:
            raise ValueError(
                f"{train_path}, line {number}: class id {class_id} "
                f"({class_names[label]!r}) disagrees with the video's class "
                f"{class_names[folder_label]!r}: {line!r}"
            )
        stem = _stem(video)
        _add_video(seen, stem, train_path, number)
        train.append((stem, label))

    test_path = split_dir / f"testlist{split:02d}.txt"
    test = []
    for number, line in _read_lines(test_path):
        fields = line.split()
        if len(fields) not in (1, 2):
            raise ValueError(
                f"{test_path}, line {number}: expected '<Class>/<video>.avi', got {line!r}"
            )
        video = fields[0]
        label = class_of(test_path, number, line, video)
        if len(fields) == 2:  # tolerate a label column, as in the train lists
            class_id = _parse_int(fields[1], test_path, number, line, "the class id")
            if not 1 <= class_id <= len(class_names) or (
                label is not None and label != class_id - 1
            ):
                raise ValueError(
                    f"{test_path}, line {number}: bad class id {class_id} for {video!r}"
                )
            label = class_id - 1
        if label is None:
            raise ValueError(
                f"{test_path}, line {number}: cannot tell the class of {video!r} "
                f"(expected '<Class>/v_<Class>_gXX_cYY.avi' with <Class> in {class_path.name})"
            )
        stem = _stem(video)
        _add_video(seen, stem, test_path, number)
        test.append((stem, label))
    return Split("ucf101", split, class_names, train, test)


def _read_class_ind(path: pathlib.Path) -> List[str]:
    """``classInd.txt``: ``<id> <name>`` lines, ids 1..N each once."""
    by_id: Dict[int, str] = {}
    names: Dict[str, int] = {}
    for number, line in _read_lines(path):
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{path}, line {number}: expected '<id> <ClassName>', got {line!r}")
        class_id = _parse_int(fields[0], path, number, line, "the class id")
        name = fields[1]
        if class_id < 1:
            raise ValueError(f"{path}, line {number}: class id must be >= 1, got {line!r}")
        if class_id in by_id:
            raise ValueError(f"{path}, line {number}: class id {class_id} repeats: {line!r}")
        if name.casefold() in names:
            raise ValueError(f"{path}, line {number}: class {name!r} repeats: {line!r}")
        by_id[class_id] = name
        names[name.casefold()] = class_id
    if not by_id:
        raise ValueError(f"{path}: no classes")
    if sorted(by_id) != list(range(1, len(by_id) + 1)):
        gaps = sorted(set(range(1, max(by_id) + 1)) - set(by_id))
        raise ValueError(f"{path}: class ids must be 1..{len(by_id)}; missing ids {gaps[:10]}")
    return [by_id[i] for i in range(1, len(by_id) + 1)]


# ---------------------------------------------------------------------------
# HMDB51


def _load_hmdb51(split_dir: pathlib.Path, split: int) -> Split:
    files: Dict[str, pathlib.Path] = {}
    for path in sorted(split_dir.iterdir()):
        match = _HMDB_SPLIT_RE.match(path.name)
        if match and path.is_file() and int(match.group("split")) == split:
            files[match.group("cls")] = path
    class_list_path = split_dir / "class_list.txt"
    if class_list_path.is_file():
        class_names = []
        for number, name in _read_lines(class_list_path):
            if len(name.split()) != 1:
                raise ValueError(
                    f"{class_list_path}, line {number}: a class name has no blanks, got {name!r}"
                )
            if name in class_names:
                raise ValueError(f"{class_list_path}, line {number}: class {name!r} repeats")
            class_names.append(name)
        if not class_names:
            raise ValueError(f"{class_list_path}: no classes")
        for cls, path in files.items():
            if cls not in class_names:
                raise ValueError(
                    f"{path}: unknown class {cls!r} (not in {class_list_path.name})"
                )
        absent = [c for c in class_names if c not in files]
        if absent:
            raise FileNotFoundError(
                f"{split_dir}: no split file for class(es) "
                + ", ".join(f"{c}_test_split{split}.txt" for c in absent[:5])
                + (" ..." if len(absent) > 5 else "")
                + f" listed in {class_list_path.name}"
            )
    else:
        if not files:
            raise FileNotFoundError(
                f"{split_dir}: no HMDB51 split files <class>_test_split{split}.txt"
            )
        class_names = sorted(files)

    seen: Dict[str, Tuple[pathlib.Path, int]] = {}
    train, test, unused = [], [], []
    for label, cls in enumerate(class_names):
        path = files[cls]
        for number, line in _read_lines(path):
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(
                    f"{path}, line {number}: expected '<video>.avi <id>' (id 0, 1 or 2), "
                    f"got {line!r}"
                )
            video, id_text = fields
            set_id = _parse_int(id_text, path, number, line, "the id")
            if set_id not in (0, 1, 2):
                raise ValueError(
                    f"{path}, line {number}: id must be 0 (unused), 1 (train) or 2 (test), "
                    f"got {line!r}"
                )
            stem = _stem(video)
            _add_video(seen, stem, path, number)
            if set_id == 1:
                train.append((stem, label))
            elif set_id == 2:
                test.append((stem, label))
            else:
                unused.append(stem)
    return Split("hmdb51", split, class_names, train, test, unused)
