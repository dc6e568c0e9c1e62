"""The gating ConvNet's last features per video, for t-SNE (paper Fig. 4).

Paper Sec. IV-D: "the features of the last convolutional layer of the gating
ConvNet [...] The outputs of inception5b with 1024 dimension are mapped to the
two dimensional points". Here that is the gating ConvNet's pooled map, the
input of its dropout (``gating_dropout``): 1024-D for BN-Inception, the
flattened last pool for CaffeNet and VGG16.
"""

from __future__ import annotations

import os
from typing import Sequence, Tuple, Union

import numpy as np

from keras_gated_tsn.data.lists import VideoRecord

__all__ = ["FEATURE_LAYER", "gating_features"]

#: The layer whose input is the gating ConvNet's pooled feature vector.
FEATURE_LAYER = "gating_dropout"


def gating_features(
    gated_model,
    records: Union[str, os.PathLike, Sequence[VideoRecord]],
    frames_root: Union[str, os.PathLike],
    num_frames: int = 3,
    **dataset_options,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The gating ConvNet's pooled features of each video, averaged over snippets.

    Every video is read as in the test protocol with the centre crop only
    (:func:`keras_gated_tsn.data.pipeline.make_test_dataset`, ``crops=1``):
    ``num_frames`` snippets uniformly spaced, each through the gate (streams
    and gating ConvNet in inference mode); the snippets' feature vectors are
    averaged.

    Args:
        gated_model: a :class:`~keras_gated_tsn.models.GatedTSN`.
        records: the videos (a list file or records).
        frames_root: ``DATA/frames``.
        num_frames: snippets per video (>= 1).
        **dataset_options: passed to ``make_test_dataset`` (templates, ...).

    Returns:
        ``(features, labels, video_ids)``: (N, D) float32, (N,) int64, (N,) str.

    Raises:
        ValueError: if ``gated_model`` is not a GatedTSN; as
            ``make_test_dataset`` for bad lists or frames.
    """
    import keras

    from keras_gated_tsn.data import pipeline
    from keras_gated_tsn.models import GatedTSN
    from keras_gated_tsn.models.tsn import flow_input_of

    if not isinstance(gated_model, GatedTSN):
        raise ValueError(f"gated_model must be a GatedTSN, got {type(gated_model).__name__}")
    extractor = keras.Model(gated_model.inputs, gated_model.get_layer(FEATURE_LAYER).input)
    dataset = pipeline.make_test_dataset(
        records, frames_root, "rgb+flow", num_frames=num_frames, crops=1,
        input_size=gated_model.input_size, new_length=gated_model.new_length,
        flow_input=flow_input_of(gated_model), **dataset_options,
    )
    features, labels, videos = [], [], []
    for views, label, video in dataset:
        values = np.asarray(extractor.predict_on_batch(views), dtype=np.float32)
        features.append(values.reshape(values.shape[0], -1).mean(axis=0))
        labels.append(int(label))
        videos.append(video.numpy().decode("utf-8"))
    return np.stack(features), np.asarray(labels, dtype=np.int64), np.asarray(videos)
