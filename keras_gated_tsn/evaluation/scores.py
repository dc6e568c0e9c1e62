"""Score files: the per-view scores of a test run, the seam between networks and fusion.

A score file holds, for every test video and every test view (frame x crop), the
pre-softmax class scores of the spatial (RGB) and temporal (optical flow) streams
and, when the networks include a gating ConvNet, its fused scores, its own
classification scores and the two fusion weights. A model with one fused output
(convolutional fusion, a GCF-Net, ...) may write its scores as ``fused`` alone:
such a file is an extra row of the fusion table (``gated-tsn fuse --extra``). The fusion comparators of
:mod:`keras_gated_tsn.fusion` are pure NumPy over this file, so a new comparator
never touches a model and a new model only has to write scores.

Test protocol (paper Sec. IV-A, "Network Testing"): 25 frames uniformly spaced,
10 crops each (4 corners + centre and their horizontal flips), so ``V = 250``
views per video by default. Views are stored in the order the evaluator wrote
them (conventionally frame-major, ``v = t * num_crops + c``); every comparator in
:mod:`keras_gated_tsn.fusion` is invariant to that order.

On disk a score file is an uncompressed ``.npz`` (read with ``allow_pickle=False``)
with these keys:

============================  ==============  =========  ==========================================
key                           shape           dtype      meaning
============================  ==============  =========  ==========================================
``video_ids``                 (N,)            str        video names (folder names under frames/)
``labels``                    (N,)            int64      0-based ground-truth class, in [0, C)
``class_names``               (C,)            str        line i = name of class i
``rgb`` (optional)            (N, V, C)       float32    RGB stream, per-view pre-softmax scores
``flow`` (optional)           (N, V, C)       float32    flow stream, per-view pre-softmax scores
``fused`` (optional)          (N, V, C)       float32    gated scores w_rgb*G_rgb + w_flow*G_flow,
                                                         or another fusion model's output
``gating_classifier`` (opt.)  (N, V, C)       float32    gating ConvNet's classification branch
``fusion_weights`` (opt.)     (N, V, 2)       float32    gate weights (w_rgb, w_flow), >= 0 (ReLU)
``num_frames``                ()              int64      frames sampled per video (25)
``num_crops``                 ()              int64      crops per frame (10); V = frames * crops
``metadata``                  ()              str        JSON object, free-form
``format``                    ()              str        ``"keras_gated_tsn.scores"``
``format_version``            ()              int64      1
============================  ==============  =========  ==========================================

An optional array is simply absent from the file when it is ``None``. At least
one of ``rgb``, ``flow`` and ``fused`` must be present (``fused`` alone: the
output of a single-output fusion model).
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from typing import Any, Dict, Optional, Tuple

import numpy as np

from keras_gated_tsn.atomic import atomic_write

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SCORE_FIELDS",
    "STREAMS",
    "ScoreFile",
    "load_scores",
    "save_scores",
]

FORMAT_NAME = "keras_gated_tsn.scores"
FORMAT_VERSION = 1

#: The two expert streams, in the order used everywhere (fusion weights included).
STREAMS: Tuple[str, str] = ("rgb", "flow")

#: Per-view score arrays of shape (N, V, C).
SCORE_FIELDS: Tuple[str, ...] = ("rgb", "flow", "fused", "gating_classifier")

_OPTIONAL_FIELDS: Tuple[str, ...] = SCORE_FIELDS + ("fusion_weights",)
_IN_MEMORY = "<in-memory score file>"


@dataclasses.dataclass
class ScoreFile:
    """Per-view test scores of one run (see the module docstring for the file layout).

    The constructor converts array-likes to NumPy arrays of the stored dtypes
    (scores to float32, labels to int64, names to unicode strings) but does not
    check shapes; :meth:`validate` does, and :func:`save_scores` /
    :func:`load_scores` call it.

    Attributes:
        video_ids: (N,) str, unique video names.
        labels: (N,) int64, 0-based ground-truth classes in ``[0, C)``.
        class_names: (C,) str, class ``i`` is ``class_names[i]``.
        rgb: (N, V, C) float32 pre-softmax scores of the spatial stream per view,
            or ``None`` for a flow-only score file.
        flow: (N, V, C) float32 pre-softmax scores of the temporal stream per
            view, or ``None`` for an RGB-only score file.
        fused: (N, V, C) float32 per-view gated scores
            ``w_rgb * G_rgb + w_flow * G_flow`` (paper Sec. III-A, eq. (2)), or
            another fusion model's per-view output (then possibly the only
            scores in the file), or ``None`` when the streams were run
            without a gate.
        gating_classifier: (N, V, C) float32 per-view pre-softmax scores of the
            gating ConvNet's classification branch (paper Sec. III-B,
            multi-task learning), or ``None``.
        fusion_weights: (N, V, 2) float32 per-view gate outputs in the order
            (rgb, flow); non-negative with the paper's ReLU output activation.
            ``None`` without a gate.
        num_frames: frames sampled per video (paper Sec. IV-A: 25).
        num_crops: crops per frame (paper Sec. IV-A: 10). ``V`` must equal
            ``num_frames * num_crops``.
        metadata: free-form JSON-serializable dict (model paths, split,
            backbone, ...).
    """

    video_ids: np.ndarray
    labels: np.ndarray
    class_names: np.ndarray
    rgb: Optional[np.ndarray] = None
    flow: Optional[np.ndarray] = None
    fused: Optional[np.ndarray] = None
    gating_classifier: Optional[np.ndarray] = None
    fusion_weights: Optional[np.ndarray] = None
    num_frames: int = 25
    num_crops: int = 10
    metadata: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.video_ids = _as_str_array(self.video_ids, "video_ids", _IN_MEMORY)
        self.class_names = _as_str_array(self.class_names, "class_names", _IN_MEMORY)
        self.labels = _as_int_array(self.labels, "labels", _IN_MEMORY)
        for name in _OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _as_float32_array(value, name, _IN_MEMORY))
        self.num_frames = _as_int(self.num_frames, "num_frames", _IN_MEMORY)
        self.num_crops = _as_int(self.num_crops, "num_crops", _IN_MEMORY)
        if self.metadata is None:
            self.metadata = {}
        if not isinstance(self.metadata, dict):
            raise ValueError(
                f"{_IN_MEMORY}: field 'metadata' must be a dict, got {type(self.metadata).__name__}"
            )

    # ------------------------------------------------------------------ shape
    @property
    def num_videos(self) -> int:
        """N, the number of videos."""
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return int(self.class_names.shape[0])

    @property
    def num_views(self) -> int:
        """V, the number of views per video (taken from the first score array present)."""
        for name in SCORE_FIELDS + ("fusion_weights",):
            value = getattr(self, name)
            if value is not None and value.ndim >= 2:
                return int(value.shape[1])
        return self.num_frames * self.num_crops

    @property
    def streams(self) -> Tuple[str, ...]:
        """The streams present, a sub-tuple of ``("rgb", "flow")``."""
        return tuple(s for s in STREAMS if getattr(self, s) is not None)

    @property
    def has_gate(self) -> bool:
        """True when the gated fused scores are present."""
        return self.fused is not None

    def stream(self, name: str) -> np.ndarray:
        """The (N, V, C) scores of stream ``name`` ("rgb" or "flow").

        Raises:
            ValueError: unknown stream name, or that stream is absent.
        """
        if name not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, got {name!r}")
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"the score file has no {name!r} scores (present: {self.streams})")
        return value

    # ------------------------------------------------------------- validation
    def validate(self, source: Optional[str | os.PathLike] = None) -> "ScoreFile":
        """Checks shapes, dtypes and values of every field.

        Args:
            source: file name quoted in error messages (default: in-memory).

        Returns:
            ``self``, for chaining.

        Raises:
            ValueError: a field has the wrong shape, dtype or values (the message
                names the file, the field and the expected vs. actual shape), or
                none of ``rgb``, ``flow`` and ``fused`` is present.
        """
        where = _IN_MEMORY if source is None else str(source)
        if self.video_ids.ndim != 1:
            raise ValueError(_shape_error(where, "video_ids", "(N,)", self.video_ids.shape))
        n = self.video_ids.shape[0]
        if self.labels.shape != (n,):
            raise ValueError(_shape_error(where, "labels", f"(N,) = ({n},)", self.labels.shape))
        if self.class_names.ndim != 1 or self.class_names.shape[0] < 1:
            raise ValueError(_shape_error(where, "class_names", "(C,) with C >= 1", self.class_names.shape))
        c = self.class_names.shape[0]
        if self.num_frames < 1 or self.num_crops < 1:
            raise ValueError(
                f"{where}: fields 'num_frames' and 'num_crops' must be >= 1, "
                f"got {self.num_frames} and {self.num_crops}"
            )
        v = self.num_frames * self.num_crops
        if self.rgb is None and self.flow is None and self.fused is None:
            raise ValueError(
                f"{where}: a score file needs at least one of the fields 'rgb' and 'flow' "
                f"(or 'fused' alone, for a single-output fusion model)"
            )
        expected = {name: (n, v, c) for name in SCORE_FIELDS}
        expected["fusion_weights"] = (n, v, 2)
        for name in _OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if value.dtype != np.float32:
                raise ValueError(f"{where}: field {name!r} must be float32, got {value.dtype}")
            if value.shape != expected[name]:
                last = "2" if name == "fusion_weights" else "C"
                raise ValueError(
                    _shape_error(
                        where,
                        name,
                        f"(N, V, {last}) = {expected[name]} "
                        f"(V = num_frames {self.num_frames} x num_crops {self.num_crops})",
                        value.shape,
                    )
                )
            finite = np.isfinite(value).reshape(n, -1).all(axis=1)
            if not finite.all():
                bad = int(np.flatnonzero(~finite)[0])
                raise ValueError(
                    f"{where}: field {name!r} holds NaN or infinite values "
                    f"(first at video {str(self.video_ids[bad])!r}, index {bad})"
                )
        if self.labels.dtype != np.int64:
            raise ValueError(f"{where}: field 'labels' must be int64, got {self.labels.dtype}")
        if n and (self.labels.min() < 0 or self.labels.max() >= c):
            bad = int(np.flatnonzero((self.labels < 0) | (self.labels >= c))[0])
            raise ValueError(
                f"{where}: field 'labels' must lie in [0, {c}) (C = len(class_names)), "
                f"got {int(self.labels[bad])} for video {str(self.video_ids[bad])!r}"
            )
        uniq, counts = np.unique(self.video_ids, return_counts=True)
        if uniq.shape[0] != n:
            raise ValueError(
                f"{where}: field 'video_ids' must be unique, {str(uniq[counts > 1][0])!r} "
                f"appears {int(counts[counts > 1][0])} times"
            )
        try:
            json.dumps(self.metadata)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: field 'metadata' is not JSON-serializable: {err}") from None
        return self


# ----------------------------------------------------------------------- I/O
def save_scores(path: str | os.PathLike, scores: ScoreFile) -> str:
    """Validates ``scores`` and writes it atomically as an uncompressed ``.npz``.

    The data go to a temporary file in the same folder, which is then renamed
    over ``path`` (``os.replace``), so a crash never leaves a half-written score
    file. ``path`` is used exactly as given (no ``.npz`` is appended).

    Args:
        path: destination file; its folder must exist.
        scores: the score file to write.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: ``scores`` fails :meth:`ScoreFile.validate` (message names
            ``path`` and the field).
        OSError: the folder does not exist or is not writable.
    """
    path = os.fspath(path)
    scores.validate(path)
    arrays: Dict[str, np.ndarray] = {
        "format": np.array(FORMAT_NAME),
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "video_ids": scores.video_ids,
        "labels": scores.labels,
        "class_names": scores.class_names,
        "num_frames": np.array(scores.num_frames, dtype=np.int64),
        "num_crops": np.array(scores.num_crops, dtype=np.int64),
        "metadata": np.array(json.dumps(scores.metadata, sort_keys=True)),
    }
    for name in _OPTIONAL_FIELDS:
        value = getattr(scores, name)
        if value is not None:
            arrays[name] = value

    def write(handle):
        np.savez(handle, **arrays)

    atomic_write(path, write, binary=True)
    return path


def load_scores(path: str | os.PathLike) -> ScoreFile:
    """Reads and validates a score file written by :func:`save_scores`.

    Args:
        path: the ``.npz`` score file.

    Returns:
        The :class:`ScoreFile`, arrays in their stored dtypes.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not an ``.npz`` score file, a required field is missing, or
            a field has the wrong shape, dtype or values (message names ``path``
            and the field, with expected vs. actual shape).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"score file not found: {path}")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable .npz score file ({err})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not a .npz score file (a single .npy array?)")
    with npz:
        keys = set(npz.files)
        if "format" in keys and str(npz["format"]) != FORMAT_NAME:
            raise ValueError(f"{path}: field 'format' is {str(npz['format'])!r}, expected {FORMAT_NAME!r}")
        if "format_version" in keys and int(npz["format_version"]) > FORMAT_VERSION:
            raise ValueError(
                f"{path}: format_version {int(npz['format_version'])} is newer than this "
                f"package reads ({FORMAT_VERSION}); upgrade keras_gated_tsn"
            )
        for name in ("video_ids", "labels", "class_names"):
            if name not in keys:
                raise ValueError(f"{path}: required field {name!r} is missing (fields: {sorted(keys)})")

        def get(name):
            try:
                return npz[name]
            except ValueError as err:  # object arrays need pickle: refuse them
                raise ValueError(f"{path}: field {name!r} cannot be read without pickle ({err})") from None

        fields: Dict[str, Any] = {
            "video_ids": _as_str_array(get("video_ids"), "video_ids", path),
            "labels": _as_int_array(get("labels"), "labels", path),
            "class_names": _as_str_array(get("class_names"), "class_names", path),
        }
        for name in _OPTIONAL_FIELDS:
            if name in keys:
                value = get(name)
                if value.dtype.kind not in "fiu":
                    raise ValueError(f"{path}: field {name!r} must be float32, got {value.dtype}")
                fields[name] = value
        for name in ("num_frames", "num_crops"):
            if name in keys:
                fields[name] = _as_int(get(name), name, path)
        if "metadata" in keys:
            raw = get("metadata")
            try:
                metadata = json.loads(str(raw))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: field 'metadata' is not a JSON string ({err})") from None
            if not isinstance(metadata, dict):
                raise ValueError(f"{path}: field 'metadata' must hold a JSON object")
            fields["metadata"] = metadata
    scores = ScoreFile(**fields)
    return scores.validate(path)


# ------------------------------------------------------------------- helpers
def _shape_error(where: str, name: str, expected: str, actual) -> str:
    return f"{where}: field {name!r} has shape {tuple(actual)}, expected {expected}"


def _as_str_array(value, name: str, where: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind == "U":
        return array
    if array.dtype.kind == "S":
        return np.char.decode(array, "utf-8")
    if array.dtype.kind == "O" and all(isinstance(x, str) for x in array.ravel()):
        return array.astype(str)
    if array.size == 0:
        return array.astype(str)
    raise ValueError(f"{where}: field {name!r} must hold strings, got dtype {array.dtype}")


def _as_int_array(value, name: str, where: str) -> np.ndarray:
    array = np.asarray(value)
    if array.size == 0 and array.dtype.kind == "f":
        return array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{where}: field {name!r} must hold integers (int64), got dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _as_float32_array(value, name: str, where: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{where}: field {name!r} must hold real numbers (float32), got dtype {array.dtype}")
    return array.astype(np.float32, copy=False)


def _as_int(value, name: str, where: str) -> int:
    array = np.asarray(value)
    if array.shape != () or array.dtype.kind not in "iu":
        raise ValueError(f"{where}: field {name!r} must be a scalar integer, got {value!r}")
    return int(array)
