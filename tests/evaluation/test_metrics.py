"""Metrics on hand-computed cases."""

import numpy as np
import pytest

from keras_gated_tsn.evaluation.metrics import (
    confusion_matrix,
    mean_class_accuracy,
    top1_accuracy,
    topk_accuracy,
)


def test_top1_and_mean_class_accuracy_differ_on_imbalanced_classes():
    # Class 0 has 4 videos, all right; class 1 has 1 video, wrong.
    labels = np.array([0, 0, 0, 0, 1])
    preds = np.array([0, 0, 0, 0, 0])
    assert top1_accuracy(preds, labels) == pytest.approx(0.8)
    assert mean_class_accuracy(preds, labels) == pytest.approx(0.5)  # (4/4 + 0/1) / 2


def test_metrics_accept_scores():
    scores = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 3.0, 1.0], [5.0, 0.0, 1.0]])
    labels = np.array([0, 1, 2, 2])
    assert top1_accuracy(scores, labels) == pytest.approx(0.5)
    # class 0: 1/1, class 1: 1/1, class 2: 0/2 -> 2/3
    assert mean_class_accuracy(scores, labels) == pytest.approx(2 / 3)


def test_mean_class_accuracy_ignores_classes_absent_from_labels():
    labels = np.array([0, 0, 1])
    preds = np.array([0, 3, 1])
    # classes 2 and 3 have no videos: mean over classes 0 (1/2) and 1 (1/1)
    assert mean_class_accuracy(preds, labels, num_classes=4) == pytest.approx(0.75)


def test_topk_ranks_ties_like_argmax():
    scores = np.array([[0.1, 0.5, 0.4], [0.3, 0.3, 0.4]])
    labels = np.array([2, 1])
    # row 0: label's score 0.4 is second; row 1: label 1 is behind 0.4 and the equal class 0
    assert topk_accuracy(scores, labels, k=1) == 0.0
    assert topk_accuracy(scores, labels, k=2) == pytest.approx(0.5)
    assert topk_accuracy(scores, labels, k=3) == 1.0
    assert topk_accuracy(scores, labels, k=1) == top1_accuracy(scores, labels)


def test_confusion_matrix_rows_truth_columns_prediction():
    labels = np.array([0, 0, 1, 2, 2, 2])
    preds = np.array([0, 1, 1, 2, 0, 2])
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_array_equal(confusion_matrix(preds, labels), expected)
    assert confusion_matrix(preds, labels, num_classes=5).shape == (5, 5)
    assert confusion_matrix(preds, labels).dtype == np.int64


def test_errors():
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\) = \(2,\)"):
        top1_accuracy(np.array([0, 1]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="empty"):
        top1_accuracy(np.zeros((0, 3)), np.zeros((0,), dtype=int))
    with pytest.raises(ValueError, match="k must be"):
        topk_accuracy(np.eye(2), [0, 1], k=0)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        confusion_matrix(np.array([0, 2]), np.array([0, 1]), num_classes=2)
    with pytest.raises(ValueError, match="integers"):
        top1_accuracy(np.array([0.0, 1.0]), np.array([0, 1]))


def test_per_class_accuracy_and_the_score_report():
    from keras_gated_tsn.evaluation.metrics import per_class_accuracy, score_report
    from keras_gated_tsn.evaluation.scores import ScoreFile

    # Class 0: 2 of 3 right; class 1: 1 of 1; class 2: no video (NaN, not 0).
    preds, labels = np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1])
    np.testing.assert_allclose(per_class_accuracy(preds, labels, 3), [2 / 3, 1.0, np.nan])

    # Two views per video: the report averages them before the arg-max.
    rgb = np.array([
        [[3.0, 0.0, 0.0], [-1.0, 0.0, 0.0]],  # mean (1, 0, 0): class 0 (right)
        [[0.0, 4.0, 0.0], [2.0, -4.0, 0.0]],  # mean (1, 0, 0): class 0, though view 0 says 1 (wrong)
        [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]],   # class 2 (right)
    ], dtype=np.float32)
    scores = ScoreFile(video_ids=["a", "b", "c"], labels=[0, 1, 2], class_names=["x", "y", "z"], rgb=rgb,
                       num_frames=2, num_crops=1)
    report = score_report(scores)
    assert list(report) == ["rgb"]
    rgb_report = report["rgb"]
    assert rgb_report["top1"] == pytest.approx(2 / 3)
    assert rgb_report["top5"] == 1.0  # three classes: top-3 here
    assert rgb_report["per_class_accuracy"] == [1.0, 0.0, 1.0]
    assert rgb_report["confusion_matrix"] == [[1, 0, 0], [1, 0, 0], [0, 0, 1]]
    assert rgb_report["mean_class_accuracy"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no 'flow' scores"):
        score_report(scores, ["flow"])
