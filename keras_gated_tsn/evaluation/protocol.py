"""The test protocol: every view of a video scored in one batched call.

Gated TSN paper, Sec. IV-A "Network Testing" (after TSN and the original
two-stream ConvNets): 25 snippets uniformly spaced in time, 10 crops each
(4 corners and the centre, and their horizontal flips), an RGB frame and
the flow stack starting at the same point; the gated fusion is applied to
every view; view scores are averaged later, by the fusion comparators
(:mod:`keras_gated_tsn.fusion`), from the score file this module writes.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

import keras
import numpy as np

from keras_gated_tsn.data import pipeline
from keras_gated_tsn.data.lists import VideoRecord, check_labels, read_list_file
from keras_gated_tsn.evaluation.scores import ScoreFile

GATE_FIELDS = ("fused", "gating_classifier", "fusion_weights")


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
    **dataset_options,
) -> ScoreFile:
    """Scores every view of every video with a gated model or with streams.

    Either ``gated_model`` (a :func:`~keras_gated_tsn.models.GatedTSN`: the
    score file then also holds ``fused``, ``gating_classifier`` and
    ``fusion_weights``), or one or both of ``rgb_model`` / ``flow_model``
    (TSN streams). Input size and flow length are read from the models' configs.

    Each video's ``V = num_frames · crops`` views go through the model as one
    batch of V clips with one segment each, so the segmental consensus is the
    identity and every output is per view.

    Args:
        records: the videos (list file path or records).
        frames_root: their frames (``<dataset>/frames``).
        class_names: names of the C classes (``classes.txt``).
        gated_model, rgb_model, flow_model: the networks (see above).
        num_frames: snippets per video (paper: 25).
        crops: 10 (paper), 5 or 1.
        progress: show a Keras progress bar, one step per video.
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
    if gated_model is not None and (rgb_model is not None or flow_model is not None):
        raise ValueError("give either gated_model or rgb_model/flow_model, not both")
    if gated_model is None and rgb_model is None and flow_model is None:
        raise ValueError("give a gated model or at least one stream model")

    from keras_gated_tsn.models import TSN, GatedTSN

    if gated_model is not None:
        if not isinstance(gated_model, GatedTSN):
            raise ValueError(f"gated_model must be a GatedTSN, got {type(gated_model).__name__}")
        modality, size, new_length = "rgb+flow", gated_model.input_size, gated_model.new_length
        metadata = {"backbone": gated_model.backbone, "model": "gated_tsn"}
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

    if isinstance(records, (str, os.PathLike)):
        check_labels(read_list_file(records), len(class_names), os.fspath(records))
    else:
        check_labels(records, len(class_names))
    dataset = pipeline.make_test_dataset(
        records, frames_root, modality, num_frames=num_frames, crops=crops,
        input_size=size, new_length=new_length, **dataset_options,
    )
    fields: Dict[str, List[np.ndarray]] = {}
    video_ids, labels = [], []
    total = int(dataset.cardinality().numpy())
    bar = keras.utils.Progbar(total, unit_name="video") if progress else None
    for index, (views, label, video) in enumerate(dataset):
        if gated_model is not None:
            outputs = gated_model.predict_on_batch(views)
            scored = {name: outputs[name] for name in ("rgb", "flow") + GATE_FIELDS}
        else:
            scored = {}
            for name, model in (("rgb", rgb_model), ("flow", flow_model)):
                if model is not None:
                    x = views[name] if isinstance(views, dict) else views
                    scored[name] = model.predict_on_batch(x)
        for name, value in scored.items():
            fields.setdefault(name, []).append(np.asarray(value, dtype=np.float32))
        video_ids.append(video.numpy().decode("utf-8"))
        labels.append(int(label.numpy()))
        if bar is not None:
            bar.update(index + 1)

    stacked = {name: np.stack(values) for name, values in fields.items()}
    return ScoreFile(
        video_ids=np.asarray(video_ids),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=np.asarray(list(class_names)),
        num_frames=num_frames,
        num_crops=crops,
        metadata={**metadata, "modality": modality, "input_size": int(size)},
        **stacked,
    )
