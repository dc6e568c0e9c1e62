"""Datasets shipped with the package: the embedded sample clips (``samples/``).

See :mod:`keras_gated_tsn.datasets.sample_set`.
"""

from keras_gated_tsn.datasets.sample_set import (
    SAMPLE_CLASSES,
    SampleClip,
    build_sample_videos,
    prepare_sample_dataset,
    sample_clips,
    sample_split,
)

__all__ = [
    "SAMPLE_CLASSES",
    "SampleClip",
    "build_sample_videos",
    "prepare_sample_dataset",
    "sample_clips",
    "sample_split",
]
