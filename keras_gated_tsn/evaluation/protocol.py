"""The test protocol: every view of a video scored in one batched call.

Gated TSN paper, Sec. IV-A "Network Testing" (after TSN and the original
two-stream ConvNets): 25 snippets uniformly spaced in time, 10 crops each
(4 corners and the centre, and their horizontal flips), an RGB frame and
the flow stack starting at the same point; the gated fusion is applied to
every view; view scores are averaged later, by the fusion comparators
(:mod:`keras_gated_tsn.fusion`), from the score file this module writes.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import keras
import numpy as np

from keras_gated_tsn.data import pipeline
from keras_gated_tsn.data.lists import VideoRecord, check_labels, read_list_file
from keras_gated_tsn.data.sampling import DEFAULT_STRIDE_RANGE
from keras_gated_tsn.evaluation.scores import ScoreFile

GATE_FIELDS = ("fused", "gating_classifier", "fusion_weights")


def _flow_input(gated_model, flow_model):
    """The flow input configuration the networks were trained on (None: optical flow stacking)."""
    from keras_gated_tsn.models.tsn import flow_input_of

    return flow_input_of(gated_model if gated_model is not None else flow_model)


def _is_gcf(model) -> bool:
    from keras_gated_tsn.models import GCFNet

    return isinstance(model, GCFNet)


def _test_dataset(records, frames_root, modality, gated_model, flow_model, num_frames, crops, snippet_stride,
                  size, new_length, dataset_options):
    """The test views of every video as ``(x, label, video)`` elements, x (V, ...):
    the protocol's views (:func:`~keras_gated_tsn.data.pipeline.make_test_dataset`),
    or for a GCF-Net one view holding its C clips of T frames, centre-cropped
    (:func:`~keras_gated_tsn.data.clips.make_clip_dataset`, GCF-Net Sec. 3.3)."""
    import tensorflow as tf

    if not _is_gcf(gated_model):
        return pipeline.make_test_dataset(
            records, frames_root, modality, num_frames=num_frames, crops=crops, snippet_stride=snippet_stride,
            input_size=size, new_length=new_length, flow_input=_flow_input(gated_model, flow_model),
            **dataset_options,
        )
    from keras_gated_tsn.data.clips import make_clip_dataset

    if isinstance(records, (str, os.PathLike)):
        records = read_list_file(records)
    names = tf.data.Dataset.from_tensor_slices(tf.constant([r.video for r in records]))
    clips = make_clip_dataset(
        records, frames_root, num_clips=gated_model.num_clips, clip_length=gated_model.clip_length,
        input_size=size, batch_size=1, training=False, modality=gated_model.modality,
        new_length=gated_model.new_length,
        **{k: v for k, v in dataset_options.items() if k in ("rgb_template", "flow_x_template", "flow_y_template")},
    ).unbatch()
    return tf.data.Dataset.zip((clips, names)).map(lambda element, video: (element[0][None], element[1], video))


def _test_snippets(gated_model, num_frames: int, crops: int):
    """``(snippets per video, crops, snippet_stride)`` of the test views: the
    protocol's ``num_frames`` uniformly spaced snippets scored one by one; for a
    convolutional fusion model with temporal fusion, its T snippets tau apart in
    each view (Feichtenhofer et al. 2016, Sec. 4 "Testing"); for a GCF-Net one
    view of its clips."""
    from keras_gated_tsn.models import ConvTwoStreamFusion

    if isinstance(gated_model, ConvTwoStreamFusion) and gated_model.temporal_fusion != "none":
        return gated_model.num_snippets, crops, (1, gated_model.snippet_stride or DEFAULT_STRIDE_RANGE[1])
    if _is_gcf(gated_model):
        return 1, 1, None
    return num_frames, crops, None


def _check_models(class_names, gated_model, rgb_model, flow_model):
    """``(modality, input_size, new_length, metadata)`` of the networks, after
    checking that they are of the package's kinds and score ``class_names``."""
    if gated_model is not None and (rgb_model is not None or flow_model is not None):
        raise ValueError("give either gated_model or rgb_model/flow_model, not both")
    if gated_model is None and rgb_model is None and flow_model is None:
        raise ValueError("give a gated model or at least one stream model")

    from keras_gated_tsn.models import TSN, GatedTSN

    if gated_model is not None:
        from keras_gated_tsn.models import GCFNet, ConvTwoStreamFusion

        if not isinstance(gated_model, (GatedTSN, ConvTwoStreamFusion, GCFNet)):
            raise ValueError(f"gated_model must be a GatedTSN, a ConvTwoStreamFusion or a GCFNet, got "
                             f"{type(gated_model).__name__}")
        if isinstance(gated_model, GCFNet):  # RGB clips, or flow stacks for a 2D flow backbone
            modality, size = gated_model.modality, gated_model.input_size
            new_length = gated_model.new_length if modality == "flow" else None
        else:
            modality, size, new_length = "rgb+flow", gated_model.input_size, gated_model.new_length
        kind = {GatedTSN: "gated_tsn", ConvTwoStreamFusion: "conv_fusion", GCFNet: "gcf_net"}[type(gated_model)]
        metadata = {"backbone": gated_model.backbone, "model": kind}
        classes = {gated_model.num_classes}
    else:
        streams = {name: model for name, model in (("rgb", rgb_model), ("flow", flow_model)) if model is not None}
        for name, model in streams.items():
            if not isinstance(model, TSN) or model.modality != name:
                raise ValueError(f"{name}_model must be a TSN stream of modality {name!r}, got {model.name!r}")
        sizes = sorted({model.input_size for model in streams.values()})
        if len(sizes) != 1:
            raise ValueError(f"the stream models disagree on input size: {sizes}")
        modality = "rgb+flow" if len(streams) == 2 else next(iter(streams))
        size = sizes[0]
        new_length = flow_model.new_length if flow_model is not None else None
        metadata = {"backbone": next(iter(streams.values())).backbone, "model": "streams"}
        classes = {model.num_classes for model in streams.values()}
    if classes != {len(class_names)}:  # before hours of scoring, not after
        raise ValueError(
            f"the model(s) score {sorted(classes)} classes but class_names has {len(class_names)}"
        )
    return modality, size, new_length, metadata


def _records_of(records, class_names) -> Tuple[List[VideoRecord], Optional[str]]:
    if isinstance(records, (str, os.PathLike)):
        list_file = os.fspath(records)
        records = read_list_file(list_file)
        check_labels(records, len(class_names), list_file)
        return records, list_file
    records = list(records)
    check_labels(records, len(class_names))
    return records, None


def _scored_videos(
    dataset, videos_per_batch: int, gated_model, rgb_model, flow_model
) -> Iterator[Tuple[str, int, Dict[str, np.ndarray]]]:
    """``(video, label, {field: (V, C) or (V, 2)})`` per video, in list order.

    The views of ``videos_per_batch`` videos go through a network as one
    batch of ``videos_per_batch * V`` one-segment clips (the last batch may
    hold fewer videos).
    """
    import tensorflow as tf

    def flatten(x):
        return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], axis=0))

    batched = dataset.batch(videos_per_batch).map(
        lambda x, label, video: (tf.nest.map_structure(flatten, x), label, video, tf.shape(label)[0]),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).prefetch(1)
    for views, labels, videos, count in batched:
        count = int(count)
        if gated_model is not None:
            outputs = gated_model.predict_on_batch(views)
            if "fusion_weights" in outputs:  # a GatedTSN
                scored = {name: outputs[name] for name in ("rgb", "flow") + GATE_FIELDS}
            else:  # convolutional fusion or GCF-Net: its fused prediction
                scored = {"fused": outputs["fused"] if "fused" in outputs else outputs["scores"]}
        else:
            scored = {}
            for name, model in (("rgb", rgb_model), ("flow", flow_model)):
                if model is not None:
                    scored[name] = model.predict_on_batch(views[name] if isinstance(views, dict) else views)
        per_video = {name: np.asarray(value, dtype=np.float32).reshape(count, -1, np.shape(value)[-1])
                     for name, value in scored.items()}
        for i in range(count):
            yield (videos[i].numpy().decode("utf-8"), int(labels[i].numpy()),
                   {name: value[i] for name, value in per_video.items()})


def evaluate(
    records: Sequence[VideoRecord] | str | os.PathLike,
    frames_root: str | os.PathLike,
    class_names: Sequence[str],
    *,
    gated_model: Optional[keras.Model] = None,
    rgb_model: Optional[keras.Model] = None,
    flow_model: Optional[keras.Model] = None,
    num_frames: int = 25,
    crops: int = 10,
    progress: bool = True,
    videos_per_batch: int = 1,
    **dataset_options,
) -> ScoreFile:
    """Scores every view of every video with a gated model or with streams.

    Either ``gated_model`` (a :func:`~keras_gated_tsn.models.GatedTSN`: the
    score file then also holds ``fused``, ``gating_classifier`` and
    ``fusion_weights``; or a
    :class:`~keras_gated_tsn.models.ConvTwoStreamFusion`: its ``fused``
    scores only, and with temporal fusion each view holds its T snippets,
    ``num_frames`` being replaced by T; or a :class:`~keras_gated_tsn.models.GCFNet`
    over RGB clips: one view of its C centre-cropped clips per video, its
    scores as ``fused``), or one or both of ``rgb_model`` / ``flow_model``
    (TSN streams). Input size and flow length are read from the models' configs.

    The ``V = num_frames · crops`` views of ``videos_per_batch`` videos go
    through the model as one batch of one-segment clips, so the segmental
    consensus is the identity and every output is per view. Videos stream
    through the input pipeline; only the scores are kept.
    :func:`evaluate_to_file` does the same, writing as it goes and resuming
    after a kill.

    Args:
        records: the videos (list file path or records).
        frames_root: their frames (``<dataset>/frames``).
        class_names: names of the C classes (``classes.txt``).
        gated_model, rgb_model, flow_model: the networks (see above).
        num_frames: snippets per video (paper: 25).
        crops: 10 (paper), 5, 3 or 1.
        progress: show a Keras progress bar, one step per video.
        videos_per_batch: videos whose views share one forward pass (>= 1;
            larger batches keep a GPU busy: 250 views x 4 videos = 1000 clips).
        **dataset_options: passed to
            :func:`keras_gated_tsn.data.pipeline.make_test_dataset`
            (file-name templates, ``scale_size``...).

    Returns:
        A :class:`~keras_gated_tsn.evaluation.scores.ScoreFile` with per-view
        pre-softmax scores ``(N, V, C)`` float32.

    Raises:
        ValueError: if no model, or both a gated model and streams, are
            given, a model is not of the package's kind (GatedTSN, TSN of the
            right modality), or the models disagree on input size or classes;
            naming the list file and line, for a label outside
            ``class_names``, or a video whose frame folder is missing or
            holds fewer frames than its line says (FileNotFoundError for a
            missing folder).
    """
    modality, size, new_length, metadata = _check_models(class_names, gated_model, rgb_model, flow_model)
    num_frames, crops, snippet_stride = _test_snippets(gated_model, num_frames, crops)
    records, list_file = _records_of(records, class_names)
    _check_batch(videos_per_batch)
    dataset = _test_dataset(
        list_file or records, frames_root, modality, gated_model, flow_model, num_frames, crops, snippet_stride,
        size, new_length, dataset_options,
    )
    fields: Dict[str, List[np.ndarray]] = {}
    video_ids, labels = [], []
    bar = keras.utils.Progbar(len(records), unit_name="video") if progress else None
    for video, label, scored in _scored_videos(dataset, videos_per_batch, gated_model, rgb_model, flow_model):
        for name, value in scored.items():
            fields.setdefault(name, []).append(value)
        video_ids.append(video)
        labels.append(label)
        if bar is not None:
            bar.add(1)
    return _score_file(video_ids, labels, fields, class_names, num_frames, crops,
                       {**metadata, "modality": modality, "input_size": int(size)}, snippet_stride)


def _check_batch(videos_per_batch) -> None:
    if isinstance(videos_per_batch, bool) or not isinstance(videos_per_batch, (int, np.integer)) \
            or videos_per_batch < 1:
        raise ValueError(f"videos_per_batch must be an int >= 1, got {videos_per_batch!r}")


def _score_file(video_ids, labels, fields, class_names, num_frames, crops, metadata,
                snippet_stride=None) -> ScoreFile:
    """The score file of a run. With strided views (a view = one crop of T
    snippets) the file has ``num_frames`` 1 and records T and the stride range
    as ``snippets_per_view`` and ``snippet_stride`` in its metadata."""
    stacked = {name: np.stack(values) for name, values in fields.items()}
    if snippet_stride is not None:
        metadata = {**metadata, "snippets_per_view": int(num_frames), "snippet_stride": list(snippet_stride)}
        num_frames = 1
    return ScoreFile(
        video_ids=np.asarray(video_ids),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=np.asarray(list(class_names)),
        num_frames=num_frames,
        num_crops=crops,
        metadata=metadata,
        **stacked,
    )


# ------------------------------------------------------------------ resumable runs

#: Beside ``OUT``: the scores written so far by an unfinished run.
PARTIAL_SUFFIX = ".partial"
_RUN_FILE = "run.json"


def _file_identity(path: str) -> List:
    status = os.stat(path)
    return [os.path.abspath(path), status.st_size, status.st_mtime_ns]


def _read_chunks(folder: str) -> Tuple[List[str], List[int], Dict[str, List[np.ndarray]]]:
    video_ids: List[str] = []
    labels: List[int] = []
    fields: Dict[str, List[np.ndarray]] = {}
    for name in sorted(n for n in os.listdir(folder) if n.startswith("chunk_") and n.endswith(".npz")):
        path = os.path.join(folder, name)
        try:
            with np.load(path, allow_pickle=False) as chunk:
                ids = chunk["video_ids"].tolist()
                video_ids += ids
                labels += chunk["labels"].tolist()
                for key in chunk.files:
                    if key not in ("video_ids", "labels"):
                        fields.setdefault(key, []).extend(list(chunk[key]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise ValueError(
                f"{path} is damaged ({type(error).__name__}: {error}); delete it (its videos are scored "
                "again) or run with --restart"
            ) from None
    return video_ids, labels, fields


def evaluate_to_file(
    out: str | os.PathLike,
    records: Sequence[VideoRecord] | str | os.PathLike,
    frames_root: str | os.PathLike,
    class_names: Sequence[str],
    *,
    gated_model: Optional[keras.Model] = None,
    rgb_model: Optional[keras.Model] = None,
    flow_model: Optional[keras.Model] = None,
    num_frames: int = 25,
    crops: int = 10,
    progress: bool = True,
    videos_per_batch: int = 1,
    flush_every: int = 50,
    restart: bool = False,
    run_identity: Optional[Dict] = None,
    log: Callable[[str], None] = print,
    **dataset_options,
) -> ScoreFile:
    """:func:`evaluate`, writing the scores as it goes and resuming after a kill.

    Every ``flush_every`` videos the new scores are written to
    ``OUT.partial/chunk_NNNNNN.npz`` (each atomically: a temporary file, then
    a rename), beside ``OUT.partial/run.json`` which records what is being
    scored. The same call after a kill (or Ctrl-C) reads the chunks, scores
    only the videos after them and, at the end, writes ``OUT``
    (:func:`~keras_gated_tsn.evaluation.scores.save_scores`, atomic) and
    removes ``OUT.partial``. A partial run of other settings (list, models,
    frames, crops, ``run_identity``) is refused, not mixed in.

    Args:
        out: the score file to write (``.npz``).
        records, frames_root, class_names, gated_model, rgb_model,
            flow_model, num_frames, crops, progress, videos_per_batch,
            **dataset_options: as in :func:`evaluate`.
        flush_every: videos per chunk (>= 1): at most this many videos are
            scored again after a kill.
        restart: discard the scores of an unfinished run and start over.
        run_identity: more JSON values that must match for a run to resume
            (the CLI adds the model files, their sizes and times, and the
            precision).
        log: called with one line when a run resumes.

    Returns:
        The :class:`~keras_gated_tsn.evaluation.scores.ScoreFile` written to ``out``.

    Raises:
        ValueError: as :func:`evaluate`; if ``OUT.partial`` belongs to a run
            with other settings (naming them) or a chunk is damaged (naming it).
    """
    from keras_gated_tsn.atomic import atomic_write
    from keras_gated_tsn.evaluation.scores import save_scores

    modality, size, new_length, metadata = _check_models(class_names, gated_model, rgb_model, flow_model)
    num_frames, crops, snippet_stride = _test_snippets(gated_model, num_frames, crops)
    records, list_file = _records_of(records, class_names)
    _check_batch(videos_per_batch)
    if isinstance(flush_every, bool) or not isinstance(flush_every, (int, np.integer)) or flush_every < 1:
        raise ValueError(f"flush_every must be an int >= 1, got {flush_every!r}")
    pipeline.check_frame_folders(list_file or records, frames_root, modality, **{
        k: v for k, v in dataset_options.items() if k.endswith("_template")})
    out = os.fspath(out)
    partial = out + PARTIAL_SUFFIX
    identity = {
        "videos": [[r.video, r.num_frames, r.label] for r in records],
        "class_names": list(class_names),
        "num_frames": num_frames,
        "crops": crops,
        "modality": modality,
        "input_size": int(size),
        **(run_identity or {}),
    }
    run_path = os.path.join(partial, _RUN_FILE)
    if restart and os.path.isdir(partial):
        shutil.rmtree(partial)
    if os.path.isfile(run_path):
        with open(run_path, encoding="utf-8") as handle:
            try:
                recorded = json.load(handle)
            except ValueError:
                recorded = {}
        differing = sorted(k for k in set(recorded) | set(identity)
                           if json.dumps(recorded.get(k)) != json.dumps(identity.get(k)))
        if differing:
            raise ValueError(
                f"{partial} holds the scores of an unfinished run with other settings "
                f"(differing: {', '.join('the list of videos' if k == 'videos' else k for k in differing)}); "
                "run the same command as before to finish it, or add --restart to discard it"
            )
    else:
        os.makedirs(partial, exist_ok=True)
        atomic_write(run_path, lambda handle: handle.write(json.dumps(identity)))

    video_ids, labels, fields = _read_chunks(partial)
    expected = [r.video for r in records[: len(video_ids)]]
    if video_ids != expected:
        raise ValueError(f"the chunks in {partial} do not follow the list's order; run with --restart")
    chunk_index = sum(1 for n in os.listdir(partial) if n.startswith("chunk_") and n.endswith(".npz"))
    remaining = records[len(video_ids):]
    if video_ids:
        log(f"resuming {partial}: {len(video_ids)} of {len(records)} videos already scored")

    pending: Dict[str, List[np.ndarray]] = {}
    pending_ids: List[str] = []
    pending_labels: List[int] = []

    def flush() -> None:
        nonlocal chunk_index
        if not pending_ids:
            return
        arrays = {"video_ids": np.asarray(pending_ids), "labels": np.asarray(pending_labels, dtype=np.int64),
                  **{name: np.stack(values) for name, values in pending.items()}}
        atomic_write(os.path.join(partial, f"chunk_{chunk_index:06d}.npz"),
                     lambda handle: np.savez(handle, **arrays), binary=True)
        chunk_index += 1
        video_ids.extend(pending_ids)
        labels.extend(pending_labels)
        for name, values in pending.items():
            fields.setdefault(name, []).extend(values)
        pending.clear()
        pending_ids.clear()
        pending_labels.clear()

    if remaining:
        dataset = _test_dataset(
            remaining, frames_root, modality, gated_model, flow_model, num_frames, crops, snippet_stride,
            size, new_length, dataset_options,
        )
        bar = keras.utils.Progbar(len(records), unit_name="video") if progress else None
        if bar is not None and video_ids:
            bar.update(len(video_ids))
        try:
            for video, label, scored in _scored_videos(
                dataset, videos_per_batch, gated_model, rgb_model, flow_model
            ):
                for name, value in scored.items():
                    pending.setdefault(name, []).append(value)
                pending_ids.append(video)
                pending_labels.append(label)
                if len(pending_ids) >= flush_every:
                    flush()
                if bar is not None:
                    bar.add(1)
        except KeyboardInterrupt:
            flush()  # keep what was scored: the same command goes on from here
            raise
        flush()
    scores = _score_file(video_ids, labels, fields, class_names, num_frames, crops,
                         {**metadata, "modality": modality, "input_size": int(size)}, snippet_stride)
    save_scores(out, scores)
    shutil.rmtree(partial, ignore_errors=True)
    return scores
