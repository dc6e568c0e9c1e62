"""Test protocol, metrics and score files.

The names exported here are pure NumPy; keep this package free of TensorFlow
imports at import time so ``gated-tsn fuse`` and the score-file tools start fast.
"""

from keras_gated_tsn.evaluation.metrics import (
    confusion_matrix,
    mean_class_accuracy,
    per_class_accuracy,
    score_report,
    top1_accuracy,
    topk_accuracy,
)
from keras_gated_tsn.evaluation.scores import ScoreFile, load_scores, save_scores

__all__ = [
    "ScoreFile",
    "confusion_matrix",
    "load_scores",
    "mean_class_accuracy",
    "per_class_accuracy",
    "save_scores",
    "score_report",
    "top1_accuracy",
    "topk_accuracy",
]
