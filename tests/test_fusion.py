"""Late-fusion comparators, the fusion table and ``gated-tsn fuse`` on hand-built score files."""

import csv
import json

import numpy as np
import pytest

from keras_gated_tsn import fusion
from keras_gated_tsn.cli import build_parser
from keras_gated_tsn.cli import main as gated_tsn
from keras_gated_tsn.evaluation.scores import ScoreFile, save_scores
from keras_gated_tsn.fusion import comparators as comparators_module

# ---------------------------------------------------------------------------
# A tiny score file (N=3 videos, C=3 classes, V=2 views) with known outcomes.
# View-averaged pre-softmax scores (the two views are S + D and S - D):
#   video A, label 0: S_rgb [3, 0, 0]    S_flow [0, 1, 0]   gate (1, 0)
#   video B, label 1: S_rgb [1, 0, 0]    S_flow [0, 2, 0]   gate (0, 1)
#   video C, label 2: S_rgb [0, 0, 1.2]  S_flow [2, 0, 1]   gate (1, 0)
# rgb: A, C right (2/3); flow: B right (1/3); average 1:1: all right (3/3);
# TSN 1:1.5: C -> [3, 0, 2.7] wrong (2/3); gated: all right (3/3).
# alpha*S_rgb + (1-alpha)*S_flow is right for A iff alpha > 0.25, for B iff
# alpha < 2/3, for C iff alpha > 1/2.2 = 0.4545: all right on 0.5 ... 0.65.
# ---------------------------------------------------------------------------
S_RGB = np.array([[3, 0, 0], [1, 0, 0], [0, 0, 1.2]])
S_FLOW = np.array([[0, 1, 0], [0, 2, 0], [2, 0, 1]])
D_RGB = np.array([[0.5, -0.25, 0.25], [-0.5, 0.5, 0.25], [0.25, 0.5, -0.5]])
D_FLOW = np.array([[-0.25, 0.5, 0.5], [0.5, 0.25, -0.5], [0.25, -0.25, 0.5]])
GATE = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
CLASSES = ["ApplyEyeMakeup", "Archery", "Basketball"]


def tiny_scores(gate=True, rgb=True, flow=True, class_names=CLASSES, video_ids=("A", "B", "C")):
    views_rgb = np.stack([S_RGB + D_RGB, S_RGB - D_RGB], axis=1).astype(np.float32)
    views_flow = np.stack([S_FLOW + D_FLOW, S_FLOW - D_FLOW], axis=1).astype(np.float32)
    fields = dict(
        video_ids=list(video_ids),
        labels=[0, 1, 2],
        class_names=class_names,
        rgb=views_rgb if rgb else None,
        flow=views_flow if flow else None,
        num_frames=2,
        num_crops=1,
    )
    if gate:
        weights = np.repeat(GATE[:, None, :], 2, axis=1).astype(np.float32)  # (N, V, 2)
        fields["fusion_weights"] = weights
        fields["fused"] = weights[..., :1] * views_rgb + weights[..., 1:] * views_flow
        fields["gating_classifier"] = views_rgb
    return ScoreFile(**fields)


def two_class_scores(thresholds_and_labels):
    """Videos with S_rgb = [t', 0] ... right for alpha on one side of threshold t.

    A label-0 video with S_rgb = [1-t, 0], S_flow = [0, t] is right iff alpha > t;
    a label-1 video with the same scores is right iff alpha < t.
    """
    rgb, flow, labels = [], [], []
    for t, label in thresholds_and_labels:
        rgb.append([[1 - t, 0]])
        flow.append([[0, t]])
        labels.append(label)
    return ScoreFile(
        video_ids=[f"v{i}" for i in range(len(labels))],
        labels=labels,
        class_names=["a", "b"],
        rgb=np.array(rgb, dtype=np.float32),
        flow=np.array(flow, dtype=np.float32),
        num_frames=1,
        num_crops=1,
    )


def correct(scores, labels=(0, 1, 2)):
    return list(np.argmax(scores, axis=1) == np.array(labels))


# ------------------------------------------------------------------- SCI
def test_sci_hand_values():
    assert fusion.sparsity_concentration_index([0.7, 0.1, 0.1, 0.1]) == pytest.approx(0.6)
    assert fusion.sparsity_concentration_index([0.25] * 4) == pytest.approx(0.0)
    assert fusion.sparsity_concentration_index([0.0, 0.0, 1.0, 0.0]) == pytest.approx(1.0)
    np.testing.assert_allclose(
        fusion.sparsity_concentration_index(np.array([[0.9, 0.1], [0.5, 0.5]])), [0.8, 0.0], atol=1e-12
    )
    with pytest.raises(ValueError, match="C >= 2"):
        fusion.sparsity_concentration_index([1.0])


def test_softmax_is_stable():
    np.testing.assert_allclose(fusion.softmax(np.array([1000.0, 1000.0])), [0.5, 0.5])
    p = fusion.softmax(np.log(np.array([[0.7, 0.2, 0.1]])) + 500.0)
    np.testing.assert_allclose(p, [[0.7, 0.2, 0.1]])


def sci_score_file():
    # RGB, one video, 2 views: p1 = [.7, .1, .1, .1] (SCI .6), p2 = [.1, .1, .4, .4] (SCI .2)
    # SCI-weighted: (.6 p1 + .2 p2) / .8 = [.55, .1, .175, .175] (plain mean: [.4, .1, .25, .25])
    # Flow: two uniform views (SCI 0 each) -> falls back to the plain mean [.25] * 4.
    rgb = np.log(np.array([[[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.4, 0.4]]])) + np.array([[[3.0], [-2.0]]])
    flow = np.full((1, 2, 4), 7.0)
    return ScoreFile(
        video_ids=["v"], labels=[0], class_names=list("abcd"), rgb=rgb, flow=flow, num_frames=2, num_crops=1
    )


def test_sci_weighting_two_view_hand_case():
    sf = sci_score_file()
    np.testing.assert_allclose(fusion.sci_stream_scores(sf, "rgb"), [[0.55, 0.1, 0.175, 0.175]], atol=1e-6)
    np.testing.assert_allclose(fusion.sci_stream_scores(sf, "flow"), [[0.25] * 4], atol=1e-12)
    # stream level: evenly averaged probabilities
    np.testing.assert_allclose(fusion.sci_fusion(sf), [[0.4, 0.175, 0.2125, 0.2125]], atol=1e-6)


# ------------------------------------------------------- fixed-weight fusion
def test_stream_scores_average_views():
    sf = tiny_scores()
    np.testing.assert_allclose(fusion.stream_scores(sf, "rgb"), S_RGB, atol=1e-6)
    np.testing.assert_allclose(fusion.stream_scores(sf, "flow"), S_FLOW, atol=1e-6)
    assert fusion.stream_scores(sf, "rgb").dtype == np.float64
    with pytest.raises(ValueError, match="stream must be one of"):
        fusion.stream_scores(sf, "depth")


def test_weighted_average_and_gated_outcomes():
    sf = tiny_scores()
    assert correct(fusion.stream_scores(sf, "rgb")) == [True, False, True]
    assert correct(fusion.stream_scores(sf, "flow")) == [False, True, False]
    np.testing.assert_allclose(fusion.average(sf), S_RGB + S_FLOW, atol=1e-6)
    assert correct(fusion.average(sf)) == [True, True, True]
    np.testing.assert_allclose(fusion.weighted_tsn(sf), S_RGB + 1.5 * S_FLOW, atol=1e-6)
    assert correct(fusion.weighted_tsn(sf)) == [True, True, False]
    np.testing.assert_allclose(fusion.weighted_average(sf, 0.25, 0.75), 0.25 * S_RGB + 0.75 * S_FLOW, atol=1e-6)
    np.testing.assert_allclose(fusion.gated(sf), GATE[:, :1] * S_RGB + GATE[:, 1:] * S_FLOW, atol=1e-6)
    assert correct(fusion.gated(sf)) == [True, True, True]


def test_weighted_average_rejects_bad_weights_and_missing_inputs():
    sf = tiny_scores(gate=False)
    for weights in [(-1, 1), (0, 0), (np.nan, 1)]:
        with pytest.raises(ValueError, match="fusion weights"):
            fusion.weighted_average(sf, *weights)
    with pytest.raises(ValueError, match="'fused'"):
        fusion.gated(sf)
    with pytest.raises(ValueError, match="no 'flow' scores"):
        fusion.average(tiny_scores(gate=False, flow=False))


def test_grid_search_on_tiny_file():
    alphas, top1 = fusion.grid_search_curve(tiny_scores())
    assert alphas.shape == (21,)
    best = set(np.round(alphas[top1 == 1.0], 2))
    assert best == {0.5, 0.55, 0.6, 0.65}
    assert fusion.grid_search_weight(tiny_scores()) == 0.5


def test_grid_search_picks_known_best_alpha():
    # right iff alpha > 0.77 (label 0) and iff alpha < 0.83 (label 1): only 0.8 gets both.
    sf = two_class_scores([(0.77, 0), (0.83, 1)])
    assert fusion.grid_search_weight(sf) == 0.8
    assert fusion.grid_search_weight(sf, grid=[0.1, 0.9]) == 0.1  # both 1/2: 0.1 and 0.9 tie, lower wins


def test_grid_search_tie_rule_closest_to_half_then_lower():
    # right iff alpha < 0.33 (label 1) or alpha > 0.67 (label 0): every alpha outside
    # [0.33, 0.67] scores 1/2; 0.3 and 0.7 are equally close to 0.5 -> the lower, 0.3
    # (in floating point |0.7 - 0.5| < |0.3 - 0.5|, so a naive comparison would pick 0.7).
    sf = two_class_scores([(0.33, 1), (0.67, 0)])
    assert fusion.grid_search_weight(sf) == 0.3
    with pytest.raises(ValueError, match="grid"):
        fusion.grid_search_weight(sf, grid=[0.5, 1.5])


# -------------------------------------------------------------------- table
def test_fusion_table_rows_and_values():
    rows = fusion.fusion_table(tiny_scores(), tiny_scores(video_ids="DEF"))
    assert [r["method"] for r in rows] == [
        "rgb", "flow", "average", "weighted", "weighted_tsn", "sci", "svm", "gated", "gating_classifier"]
    assert all(set(r) == set(fusion.ROW_FIELDS) for r in rows)
    by = {r["method"]: r for r in rows}
    assert by["rgb"]["top1"] == pytest.approx(200 / 3)
    assert by["flow"]["top1"] == pytest.approx(100 / 3)
    assert by["average"]["top1"] == pytest.approx(100.0)
    assert (by["average"]["rgb_weight"], by["average"]["flow_weight"]) == (1.0, 1.0)
    assert by["weighted"]["rgb_weight"] == 0.5 and by["weighted"]["flow_weight"] == 0.5
    assert by["weighted"]["top1"] == pytest.approx(100.0)
    assert (by["weighted_tsn"]["rgb_weight"], by["weighted_tsn"]["flow_weight"]) == (1.0, 1.5)
    assert by["weighted_tsn"]["top1"] == pytest.approx(200 / 3)
    assert by["gated"]["top1"] == pytest.approx(100.0)
    # the gating classifier's own scores (here: the rgb views) get their own row
    assert by["gating_classifier"]["top1"] == pytest.approx(200 / 3)
    assert by["weighted"]["tuned_on"] == "validation" and by["svm"]["tuned_on"] == "validation"
    assert all(by[m]["tuned_on"] == "" for m in by if m not in ("weighted", "svm"))
    # one video per class: mean class accuracy equals top-1
    assert by["rgb"]["mean_class_accuracy"] == pytest.approx(by["rgb"]["top1"])
    # per-video gate weights (1,0), (0,1), (1,0): w_rgb 2/3 +/- sqrt(2)/3
    assert "w_rgb 0.667 +/- 0.471, w_flow 0.333 +/- 0.471" in by["gated"]["note"]


def test_fusion_table_says_when_the_weight_was_tuned_on_test_videos():
    """The authors validated on the test list: a weight tuned on the very videos
    it is reported on is marked, as is a validation list that shares videos."""
    same = {r["method"]: r for r in fusion.fusion_table(tiny_scores(), tiny_scores())}
    assert same["weighted"]["tuned_on"] == "test list"
    overlap = {r["method"]: r for r in fusion.fusion_table(tiny_scores(), tiny_scores(video_ids="AXY"))}
    assert overlap["weighted"]["tuned_on"] == "validation (1 of 3 are test videos)"
    assert "| weighted | 0.5 | 0.5 | 100.00 | 100.00 | test list |" in fusion.format_markdown(
        fusion.fusion_table(tiny_scores(), tiny_scores()))


def test_fusion_table_without_validation_does_not_tune_on_test():
    rows = fusion.fusion_table(tiny_scores(gate=False))
    assert [r["method"] for r in rows][:6] == ["rgb", "flow", "average", "weighted", "weighted_tsn", "sci"]
    by = {r["method"]: r for r in rows}
    assert by["gated"]["top1"] is None and "no 'fused' scores" in by["gated"]["note"]
    weighted = rows[3]
    assert weighted["top1"] is None and weighted["rgb_weight"] is None
    assert "validation score file" in weighted["note"]


def test_fusion_table_single_stream_skips_two_stream_rows():
    rows = fusion.fusion_table(tiny_scores(gate=False, rgb=False))
    by = {r["method"]: r for r in rows}
    assert by["rgb"]["top1"] is None and "no 'rgb' scores" in by["rgb"]["note"]
    assert by["flow"]["top1"] == pytest.approx(100 / 3)
    for method in ("average", "weighted", "weighted_tsn", "sci"):
        assert by[method]["top1"] is None and "the score file has no 'rgb' scores" in by[method]["note"]


def test_fusion_table_rejects_mismatched_classes():
    other = tiny_scores(class_names=["ApplyEyeMakeup", "Archery", "Bowling"])
    with pytest.raises(ValueError, match="class 2 is 'Bowling' in validation, 'Basketball' in test"):
        fusion.fusion_table(tiny_scores(), other)


def test_markdown_csv_json(tmp_path):
    rows = fusion.fusion_table(tiny_scores(), tiny_scores(video_ids="DEF"))
    text = fusion.format_markdown(rows)
    lines = text.strip().splitlines()
    assert lines[0] == "| Method | RGB weight | Flow weight | Top-1 (%) | Mean class acc. (%) | Tuned on | Note |"
    assert len(lines) == 2 + len(rows)
    for row, line in zip(rows, lines[2:]):
        assert line.startswith(f"| {row['method']} |")
    assert "| rgb | - | - | 66.67 | 66.67 |" in text
    assert "| weighted_tsn | 1 | 1.5 | 66.67 | 66.67 |" in text

    fusion.write_csv(tmp_path / "t.csv", rows)
    fusion.write_json(tmp_path / "t.json", rows)
    with open(tmp_path / "t.csv", newline="") as handle:
        back = list(csv.DictReader(handle))
    assert [r["method"] for r in back] == [r["method"] for r in rows]
    assert float(back[0]["top1"]) == pytest.approx(200 / 3)
    assert back[0]["rgb_weight"] == ""
    assert json.loads((tmp_path / "t.json").read_text()) == rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.json"]


# ----------------------------------------------------------------- registry
def test_a_new_comparator_is_one_function_and_one_registration(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(comparators_module, "_COMPARATORS", dict(comparators_module._COMPARATORS))

    @fusion.register_comparator("max_stream", "element-wise maximum of the two streams' view-averaged scores")
    def _max_stream(test_sf, val_sf):
        return fusion.Fused(np.maximum(fusion.stream_scores(test_sf, "rgb"), fusion.stream_scores(test_sf, "flow")))

    rows = {r["method"]: r for r in fusion.fusion_table(tiny_scores())}
    # A: max(S_rgb, S_flow) = [3, 1, 0] right; B: [1, 2, 0] right; C: [2, 0, 1.2] wrong.
    assert rows["max_stream"]["top1"] == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="already registered"):
        fusion.register_comparator("max_stream", "again")(_max_stream)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fuse", "--help"])
    assert "max_stream" in capsys.readouterr().out
    assert fusion.fusion_table(tiny_scores(), methods=["max_stream"])[0]["method"] == "max_stream"
    with pytest.raises(ValueError, match="unknown fusion comparator 'nope'"):
        fusion.fusion_table(tiny_scores(), methods=["nope"])


# ---------------------------------------------------------------------- CLI
def test_run_fuse_end_to_end(tmp_path, capsys):
    save_scores(tmp_path / "test.npz", tiny_scores())
    save_scores(tmp_path / "val.npz", tiny_scores(gate=False, video_ids="DEF"))
    prefix = tmp_path / "out" / "split1"
    assert gated_tsn(
        ["fuse", str(tmp_path / "test.npz"), "--val-scores", str(tmp_path / "val.npz"), "--out", str(prefix)]
    ) == 0
    out = capsys.readouterr().out
    assert "| Method |" in out and "| gated |" in out and "| gating_classifier |" in out and "alpha = 0.5" in out
    assert f"{prefix}.csv" in out and f"{prefix}.json" in out
    rows = json.loads((tmp_path / "out" / "split1.json").read_text())
    assert [r["method"] for r in rows][-2:] == ["gated", "gating_classifier"]


def test_run_fuse_warns_when_validation_videos_are_test_videos(tmp_path, capsys):
    save_scores(tmp_path / "test.npz", tiny_scores())
    save_scores(tmp_path / "val.npz", tiny_scores())  # the same videos: the authors' protocol
    assert gated_tsn(["fuse", str(tmp_path / "test.npz"), "--val-scores", str(tmp_path / "val.npz")]) == 0
    captured = capsys.readouterr()
    count = len(tiny_scores().video_ids)
    assert f"warning: {count} of the {count} validation videos are test videos" in captured.err
    assert "tuned on the test list" in captured.err and "test list" in captured.out
    save_scores(tmp_path / "val.npz", tiny_scores(gate=False, video_ids="DEF"))
    assert gated_tsn(["fuse", str(tmp_path / "test.npz"), "--val-scores", str(tmp_path / "val.npz")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_run_fuse_default_prefix(tmp_path, capsys):
    save_scores(tmp_path / "ucf_test.npz", tiny_scores(gate=False))
    assert gated_tsn(["fuse", str(tmp_path / "ucf_test.npz")]) == 0
    assert (tmp_path / "ucf_test_fusion.csv").is_file() and (tmp_path / "ucf_test_fusion.json").is_file()
    assert "needs a validation score file" in capsys.readouterr().out


def test_run_fuse_bad_input_returns_2(tmp_path, capsys):
    assert gated_tsn(["fuse", str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz" in capsys.readouterr().err
    save_scores(tmp_path / "test.npz", tiny_scores())
    save_scores(tmp_path / "val.npz", tiny_scores(class_names=["x", "y", "z"]))
    assert gated_tsn(["fuse", str(tmp_path / "test.npz"), "--val-scores", str(tmp_path / "val.npz")]) == 2
    assert "different class lists" in capsys.readouterr().err
    assert not (tmp_path / "test_fusion.csv").exists()


def test_fuse_help_describes_rows(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["fuse", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for comparator in fusion.registered_comparators():
        assert f"  {comparator.name} " in text
    assert "example:" in text and "--val-scores" in text and "tuned_on" in text


# ------------------------------------------------- validation-only tuning
def test_only_comparators_that_declare_it_see_the_validation_file(monkeypatch):
    monkeypatch.setattr(comparators_module, "_COMPARATORS", dict(comparators_module._COMPARATORS))
    seen = {}

    @fusion.register_comparator("spy_fixed", "tunes nothing")
    def _spy_fixed(test_sf, val_sf):
        seen["fixed"] = val_sf
        return fusion.Fused(fusion.average(test_sf))

    @fusion.register_comparator("spy_tuned", "tunes on validation", uses_validation=True)
    def _spy_tuned(test_sf, val_sf):
        seen["tuned"] = val_sf
        return fusion.Fused(fusion.average(test_sf), note="setting = 1")

    val = tiny_scores(video_ids="DEF")
    rows = {r["method"]: r for r in fusion.fusion_table(tiny_scores(), val, methods=["spy_fixed", "spy_tuned"])}
    assert seen == {"fixed": None, "tuned": val}
    assert rows["spy_fixed"]["tuned_on"] == "" and rows["spy_tuned"]["tuned_on"] == "validation"
    assert rows["spy_tuned"]["note"] == "setting = 1"


def test_every_tuned_row_names_its_setting():
    rows = fusion.fusion_table(tiny_scores(), tiny_scores(video_ids="DEF"))
    tuned = {r["method"]: r for r in rows if r["tuned_on"]}
    assert set(tuned) == {c.name for c in fusion.registered_comparators() if c.uses_validation}
    assert "alpha = 0.5" in tuned["weighted"]["note"]
    assert "C = 1 " in tuned["svm"]["note"]  # one validation video per class: liblinear's default


# ------------------------------------------------ extra rows: other models
def fused_only(order=(0, 1, 2), video_ids=("A", "B", "C"), labels=(0, 1, 2), class_names=CLASSES):
    """A single-output model's score file: per-view 'fused' scores only.

    View-averaged scores S_flow + [0, 0, 3] for A, B, C: right on C only (1/3)."""
    views = np.stack([S_FLOW + D_FLOW, S_FLOW - D_FLOW], axis=1) + np.array([0, 0, 3.0])
    order = list(order)
    return ScoreFile(video_ids=[video_ids[i] for i in order], labels=[labels[i] for i in order],
                     class_names=class_names, fused=views[order], num_frames=2, num_crops=1)


def test_fusion_table_extra_rows(tmp_path):
    save_scores(tmp_path / "conv.npz", fused_only(order=(2, 0, 1)))  # any video order
    rgb_model = tiny_scores(gate=False, flow=False)  # a single-stream model: its only stream
    rows = fusion.fusion_table(tiny_scores(), tiny_scores(video_ids="DEF"),
                               extra=[("conv_fusion", tmp_path / "conv.npz"), ("i3d_rgb", rgb_model)])
    names = [r["method"] for r in rows]
    assert names[-2:] == ["conv_fusion", "i3d_rgb"]
    assert names[:-2] == [c.name for c in fusion.registered_comparators()]
    conv, rgb = rows[-2], rows[-1]
    assert set(conv) == set(fusion.ROW_FIELDS)
    assert conv["top1"] == pytest.approx(100 / 3) and conv["mean_class_accuracy"] == pytest.approx(100 / 3)
    assert rgb["top1"] == pytest.approx(200 / 3)
    assert conv["tuned_on"] == "" and conv["rgb_weight"] is None and conv["flow_weight"] is None
    assert str(tmp_path / "conv.npz") in conv["note"] and "'fused' scores averaged over 2 views" in conv["note"]
    assert "'rgb' scores" in rgb["note"]
    text = fusion.format_markdown(rows)
    assert "| conv_fusion | - | - | 33.33 | 33.33 |  |" in text
    # a mapping keeps its order too
    rows = fusion.fusion_table(tiny_scores(), extra={"b_model": fused_only(), "a_model": rgb_model})
    assert [r["method"] for r in rows][-2:] == ["b_model", "a_model"]


def test_fusion_table_extra_rows_must_match_the_test_videos(tmp_path):
    test = tiny_scores()
    cases = [
        (fused_only(video_ids=("A", "X", "C")), "test video 'B' is missing"),
        (ScoreFile(video_ids=["A", "B", "C", "Z"], labels=[0, 1, 2, 0], class_names=CLASSES,
                   fused=np.zeros((4, 2, 3)), num_frames=2, num_crops=1), "video 'Z' is not a test video"),
        (fused_only(labels=(0, 2, 2)), "video 'B' has label 2 \\('Basketball'\\), the test score file says 1"),
        (fused_only(class_names=["ApplyEyeMakeup", "Archery", "Bowling"]),
         "class 2 is 'Bowling' in .*, 'Basketball' in test"),
        (tiny_scores(gate=False), "holds 'rgb' and 'flow' scores but no 'fused' scores"),
    ]
    for i, (extra_sf, message) in enumerate(cases):
        path = tmp_path / f"extra{i}.npz"
        save_scores(path, extra_sf)
        with pytest.raises(ValueError, match=message) as info:
            fusion.fusion_table(test, extra={"model": path})
        assert str(path) in str(info.value) and "extra row 'model'" in str(info.value)
    for extra, message in [({"svm": fused_only()}, "is a fusion comparator's"),
                           ([("m", fused_only()), ("m", fused_only())], "given twice"),
                           ({"two words": fused_only()}, "name must be"),
                           ({"": fused_only()}, "name must be")]:
        with pytest.raises(ValueError, match=message):
            fusion.fusion_table(test, extra=extra)
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        fusion.fusion_table(test, extra={"m": tmp_path / "nope.npz"})


def test_run_fuse_with_extra_score_files(tmp_path, capsys):
    save_scores(tmp_path / "test.npz", tiny_scores())
    save_scores(tmp_path / "val.npz", tiny_scores(gate=False, video_ids="DEF"))
    save_scores(tmp_path / "conv.npz", fused_only(order=(1, 2, 0)))
    save_scores(tmp_path / "gcf.npz", tiny_scores(gate=False, rgb=False))
    prefix = tmp_path / "table"
    assert gated_tsn(["fuse", str(tmp_path / "test.npz"), "--val-scores", str(tmp_path / "val.npz"),
                      "--extra", f"conv_fusion={tmp_path / 'conv.npz'}", "--extra", f"gcf_net={tmp_path / 'gcf.npz'}",
                      "--out", str(prefix)]) == 0
    out = capsys.readouterr().out
    assert "| conv_fusion | - | - | 33.33 |" in out and "| gcf_net | - | - | 33.33 |" in out
    assert f"extra row conv_fusion: {tmp_path / 'conv.npz'}" in out
    rows = json.loads((tmp_path / "table.json").read_text())
    assert [r["method"] for r in rows][-2:] == ["conv_fusion", "gcf_net"]
    with open(f"{prefix}.csv", newline="") as handle:
        assert [r["method"] for r in csv.DictReader(handle)][-2:] == ["conv_fusion", "gcf_net"]


def test_run_fuse_extra_with_other_videos_names_file_and_video(tmp_path, capsys):
    save_scores(tmp_path / "test.npz", tiny_scores())
    save_scores(tmp_path / "conv.npz", fused_only(video_ids=("A", "B", "Q")))
    assert gated_tsn(["fuse", str(tmp_path / "test.npz"), "--extra", f"conv_fusion={tmp_path / 'conv.npz'}",
                      "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gated-tsn fuse: error: ")
    assert str(tmp_path / "conv.npz") in err and "test video 'C' is missing" in err and "conv_fusion" in err
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "t.json").exists()
    with pytest.raises(SystemExit) as info:
        gated_tsn(["fuse", str(tmp_path / "test.npz"), "--extra", str(tmp_path / "conv.npz")])
    assert info.value.code == 2
    assert "expected NAME=FILE" in capsys.readouterr().err


def test_fuse_help_teaches_extra_rows(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fuse", "--help"])
    text = capsys.readouterr().out
    assert "--extra NAME=FILE" in text and "--extra conv_fusion=" in text
    assert "'weighted', 'svm'" in text and "  svm " in text
