"""Linear-SVM fusion (Simonyan & Zisserman 2014, Sec. 2) on hand-built score files."""

import ast
import pathlib

import numpy as np
import pytest

from keras_gated_tsn import fusion
from keras_gated_tsn.evaluation.scores import ScoreFile
from keras_gated_tsn.fusion import svm as svm_module

# ---------------------------------------------------------------------------
# Feature vector, by hand (C = 3 classes, V = 2 views; logits = log p + a per-view
# constant, which softmax removes):
#   video 0  rgb views p = [1/2, 1/4, 1/4], [1/4, 1/2, 1/4] -> mean [3, 3, 2] / 8
#                      -> L2-normalised [3, 3, 2] / sqrt(22)
#            flow views p = [1/6, 1/6, 2/3] twice           -> [1, 1, 4] / sqrt(18)
#   video 1  rgb views uniform                              -> [1, 1, 1] / sqrt(3)
#            flow views p = [1/2, 1/4, 1/4] twice           -> [2, 1, 1] / sqrt(6)
# The feature is [rgb part, flow part]. (The softmax of the mean logits of video 0's
# rgb views would be [sqrt 2, sqrt 2, 1] / (2 sqrt 2 + 1), not [3, 3, 2] / 8.)
# ---------------------------------------------------------------------------


def feature_file():
    def logits(p, shifts):
        return np.log(np.array(p, dtype=np.float64)) + np.array(shifts, dtype=np.float64)[:, None]

    rgb = np.stack([
        logits([[1 / 2, 1 / 4, 1 / 4], [1 / 4, 1 / 2, 1 / 4]], [3.0, -1.0]),
        logits([[1 / 3] * 3, [1 / 3] * 3], [0.0, 5.0]),
    ])
    flow = np.stack([
        logits([[1 / 6, 1 / 6, 2 / 3], [1 / 6, 1 / 6, 2 / 3]], [0.5, 2.0]),
        logits([[1 / 2, 1 / 4, 1 / 4], [1 / 2, 1 / 4, 1 / 4]], [-4.0, 0.0]),
    ])
    return ScoreFile(video_ids=["v0", "v1"], labels=[0, 2], class_names=["a", "b", "c"],
                     rgb=rgb, flow=flow, num_frames=2, num_crops=1)


def test_svm_features_hand_computed():
    x = fusion.svm_features(feature_file())
    expected = np.array([
        np.r_[np.array([3, 3, 2]) / np.sqrt(22), np.array([1, 1, 4]) / np.sqrt(18)],
        np.r_[np.array([1, 1, 1]) / np.sqrt(3), np.array([2, 1, 1]) / np.sqrt(6)],
    ])
    assert x.shape == (2, 6) and x.dtype == np.float64
    np.testing.assert_allclose(x, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(x[:, :3], axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(x[:, 3:], axis=1), 1.0, atol=1e-12)


def test_svm_features_stack_rgb_then_flow():
    sf = feature_file()
    swapped = ScoreFile(video_ids=sf.video_ids, labels=sf.labels, class_names=sf.class_names,
                        rgb=sf.flow, flow=sf.rgb, num_frames=2, num_crops=1)
    x, y = fusion.svm_features(sf), fusion.svm_features(swapped)
    np.testing.assert_allclose(y, np.concatenate([x[:, 3:], x[:, :3]], axis=1), atol=1e-12)
    one_stream = ScoreFile(video_ids=sf.video_ids, labels=sf.labels, class_names=sf.class_names,
                           rgb=sf.rgb, num_frames=2, num_crops=1)
    with pytest.raises(ValueError, match="no 'flow' scores"):
        fusion.svm_features(one_stream)


# ---------------------------------------------------------------------------
# Each stream knows half the classes (C = 4), and is confidently wrong on the rest.
# View-averaged pre-softmax scores, m = 1, d = 2:
#   class  RGB                  flow
#   0      [m, 0, 0, 0]         [0, d, 0, 0]      RGB knows 0 vs 1; flow says "1"
#   1      [0, m, 0, 0]         [0, d, 0, 0]
#   2      [0, 0, 0, d]         [0, 0, m, 0]      flow knows 2 vs 3; RGB says "3"
#   3      [0, 0, 0, d]         [0, 0, 0, m]
# alpha*RGB + (1-alpha)*flow is right on class 0 iff alpha*m > (1-alpha)*d (alpha > 2/3)
# and on class 2 iff (1-alpha)*m > alpha*d (alpha < 1/3): no fixed weight gets both,
# averaging (alpha = 1/2) gets neither -> 50%; each stream alone 75%. The four
# (RGB, flow) patterns are distinct, so a linear SVM on the stacked softmax
# scores separates them: 100%. Each video adds a deterministic jitter of at most
# 0.2 per score and its two views differ by +/- 0.3 (which the view average removes).
# ---------------------------------------------------------------------------
M, D = 1.0, 2.0
RGB_MEANS = np.array([[M, 0, 0, 0], [0, M, 0, 0], [0, 0, 0, D], [0, 0, 0, D]])
FLOW_MEANS = np.array([[0, D, 0, 0], [0, D, 0, 0], [0, 0, M, 0], [0, 0, 0, M]])


def half_informative(prefix, per_class=4, phase=0.0, label_map=(0, 1, 2, 3)):
    rgb, flow, labels, ids = [], [], [], []
    view = 0.3 * np.array([1.0, -1.0, 1.0, -1.0])
    for c in range(4):
        for j in range(per_class):
            r = RGB_MEANS[c] + 0.2 * np.sin(1.7 * np.arange(4) + 3.1 * j + 0.9 * c + phase)
            f = FLOW_MEANS[c] + 0.2 * np.cos(2.3 * np.arange(4) + 1.3 * j + 0.7 * c + phase)
            rgb.append([r + view, r - view])
            flow.append([f - view, f + view])
            labels.append(label_map[c])
            ids.append(f"{prefix}_c{c}_{j}")
    return ScoreFile(video_ids=ids, labels=labels, class_names=["a", "b", "c", "d"],
                     rgb=np.array(rgb), flow=np.array(flow), num_frames=2, num_crops=1)


def test_svm_combines_streams_where_averaging_fails():
    val, test = half_informative("val", phase=0.0), half_informative("test", phase=1.0)
    by = {r["method"]: r for r in fusion.fusion_table(test, val)}
    assert by["rgb"]["top1"] == pytest.approx(75.0) and by["flow"]["top1"] == pytest.approx(75.0)
    assert by["average"]["top1"] == pytest.approx(50.0)
    assert by["weighted"]["top1"] <= 75.0  # no fixed weight is right on classes 0 and 2
    assert np.max(fusion.grid_search_curve(test)[1]) <= 0.75
    assert by["svm"]["top1"] == pytest.approx(100.0)  # chance: 25%
    assert by["svm"]["mean_class_accuracy"] == pytest.approx(100.0)
    assert by["svm"]["tuned_on"] == "validation"
    assert by["svm"]["rgb_weight"] is None and by["svm"]["flow_weight"] is None
    note = by["svm"]["note"]
    assert "C = " in note and "4-fold cross-validation on the validation score file (16 videos" in note


def test_svm_learns_from_validation_labels_only():
    """Validation labels shifted by one class: the SVM follows them, so on the test
    file (true labels) it is always wrong; it never looked at the test labels."""
    shifted = half_informative("val", label_map=(1, 2, 3, 0))
    row = fusion.fusion_table(half_informative("test", phase=1.0), shifted, methods=["svm"])[0]
    assert row["top1"] == pytest.approx(0.0)


def test_svm_skipped_without_validation():
    test = half_informative("test")
    row = {r["method"]: r for r in fusion.fusion_table(test)}["svm"]
    assert row["top1"] is None and row["mean_class_accuracy"] is None and row["tuned_on"] == ""
    assert "needs a validation score file (--val-scores)" in row["note"]
    one_class = half_informative("val", label_map=(2, 2, 2, 2))
    row = fusion.fusion_table(test, one_class, methods=["svm"])[0]
    assert row["top1"] is None and "videos of 1 class" in row["note"]
    rgb_only = ScoreFile(video_ids=test.video_ids, labels=test.labels, class_names=test.class_names,
                         rgb=test.rgb, num_frames=2, num_crops=1)
    row = fusion.fusion_table(test, rgb_only, methods=["svm"])[0]
    assert row["top1"] is None and "validation score file has no 'flow' scores" in row["note"]


def test_fit_svm_choice_of_c():
    val = half_informative("val")
    fit = fusion.fit_svm(val)
    assert fit.folds == 4  # min(5 folds, 4 videos in the largest class)
    assert fit.c_grid == fusion.DEFAULT_C_GRID and fit.cv_top1.shape == (len(fusion.DEFAULT_C_GRID),)
    # separable: every C is right on every held-out video; ties go to the smallest C
    np.testing.assert_allclose(fit.cv_top1, 1.0)
    assert fit.C == min(fusion.DEFAULT_C_GRID) and fit.train_top1 == 1.0
    assert fusion.fit_svm(val, c_grid=[10.0, 0.5, 10.0]).c_grid == (0.5, 10.0)
    fixed = fusion.fit_svm(val, C=3.0)
    assert (fixed.C, fixed.folds, fixed.cv_top1) == (3.0, 0, None)
    # one video per class: too few to cross-validate -> liblinear's default C = 1
    tiny = fusion.fit_svm(half_informative("val", per_class=1))
    assert (tiny.C, tiny.folds) == (svm_module.FALLBACK_C, 0)
    for kwargs, message in [({"C": 0.0}, "C must be"), ({"c_grid": []}, "c_grid"), ({"c_grid": [-1]}, "c_grid"),
                            ({"folds": 1}, "folds")]:
        with pytest.raises(ValueError, match=message):
            fusion.fit_svm(val, **kwargs)


def test_fit_svm_is_deterministic():
    val, test = half_informative("val"), half_informative("test", phase=1.0)
    np.testing.assert_array_equal(fusion.fit_svm(val).scores(test), fusion.fit_svm(val).scores(test))


def test_classes_without_validation_videos_are_never_predicted():
    full = half_informative("val")
    keep = full.labels != 3
    val = ScoreFile(video_ids=full.video_ids[keep], labels=full.labels[keep], class_names=full.class_names,
                    rgb=full.rgb[keep], flow=full.flow[keep], num_frames=2, num_crops=1)
    test = half_informative("test", phase=1.0)
    fit = fusion.fit_svm(val)
    scores = fit.scores(test)
    assert scores.shape == (16, 4) and np.all(np.isfinite(scores))
    assert np.all(scores[:, 3] < scores[:, :3].min(axis=1))
    np.testing.assert_array_equal(np.argmax(scores, axis=1), fit.classifier.predict(fusion.svm_features(test)))
    row = fusion.fusion_table(test, val, methods=["svm"])[0]
    assert "1 classes have no validation video" in row["note"]
    # two classes present: scikit-learn's one-column decision values, spread over C columns
    two = ScoreFile(video_ids=full.video_ids[full.labels < 2], labels=full.labels[full.labels < 2],
                    class_names=full.class_names, rgb=full.rgb[full.labels < 2], flow=full.flow[full.labels < 2],
                    num_frames=2, num_crops=1)
    fit = fusion.fit_svm(two)
    scores = fit.scores(test)
    assert scores.shape == (16, 4)
    np.testing.assert_array_equal(np.argmax(scores, axis=1), fit.classifier.predict(fusion.svm_features(test)))


def test_svm_row_sits_with_the_fusions_before_the_gate():
    names = [c.name for c in fusion.registered_comparators()]
    assert names.index("svm") == names.index("gated") - 1
    svm = fusion.get_comparator("svm")
    assert svm.uses_validation and svm.needs == ("rgb", "flow")
    with pytest.raises(ValueError, match="before 'nope': no such comparator"):
        fusion.register_comparator("x", "x", before="nope")(lambda t, v: None)


def test_fusion_modules_import_numpy_only():
    """scikit-learn is imported inside the functions that fit, never at import."""
    folder = pathlib.Path(fusion.__file__).parent
    for name in ("comparators.py", "svm.py", "table.py", "__init__.py"):
        tree = ast.parse((folder / name).read_text())
        for node in tree.body:
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= {"numpy", "keras_gated_tsn", "__future__", "dataclasses", "typing", "warnings",
                             "csv", "json", "os", "re"}, (name, roots)
