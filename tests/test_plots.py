"""The paper's figures: each PNG is written (atomically), readable and drawn
from the right numbers; t-SNE from a gate trained on real frames."""

import os

import cv2
import numpy as np
import pytest

from keras_gated_tsn import plots
from keras_gated_tsn.cli import main
from keras_gated_tsn.evaluation.scores import ScoreFile, save_scores

CLASSES = ["ApplyEyeMakeup", "BaseballPitch", "SoccerJuggling", "wave", "cartwheel", "jump"]


def _scores(num_videos=12, views=4, seed=0, gate=True):
    rng = np.random.default_rng(seed)
    labels = np.arange(num_videos) % len(CLASSES)
    rgb = rng.normal(size=(num_videos, views, len(CLASSES))).astype(np.float32)
    flow = rng.normal(size=(num_videos, views, len(CLASSES))).astype(np.float32)
    weights = rng.uniform(0.2, 1.0, size=(num_videos, views, 2)).astype(np.float32) if gate else None
    fused = weights[..., :1] * rgb + weights[..., 1:] * flow if gate else None
    return ScoreFile(video_ids=[f"v{i:02d}" for i in range(num_videos)], labels=labels, class_names=CLASSES,
                     rgb=rgb, flow=flow, fused=fused, fusion_weights=weights, num_frames=views, num_crops=1)


def _image(path):
    assert os.path.getsize(path) > 10_000
    image = cv2.imread(str(path))
    assert image is not None and image.ndim == 3
    assert float(image.std()) > 10  # something is drawn
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".")]  # no temporary file left
    return image


def test_fusion_weights_figure(tmp_path):
    path = plots.plot_fusion_weights([_scores(seed=0), _scores(seed=1)], tmp_path / "fig2.png",
                                     titles=["without MTL", "with MTL"])
    image = _image(path)
    assert image.shape[1] > image.shape[0]  # two columns side by side
    weights = plots.video_fusion_weights(_scores(seed=0))
    np.testing.assert_allclose(weights, _scores(seed=0).fusion_weights.mean(axis=1))
    with pytest.raises(ValueError, match="no fusion weights"):
        plots.plot_fusion_weights(_scores(gate=False), tmp_path / "x.png")
    with pytest.raises(ValueError, match="1 titles for 2"):
        plots.plot_fusion_weights([_scores(), _scores()], tmp_path / "x.png", titles=["one"])
    assert not (tmp_path / "x.png").exists()


def test_top5_videos_are_chosen_where_the_gate_beats_fixed_weights(tmp_path):
    scores = _scores(num_videos=3, views=1)
    scores.rgb[:] = -5.0
    scores.flow[:] = -5.0
    # Video 1 (label 1): the spatial net is right, the temporal one confidently wrong;
    # TSN's 1:1.5 follows the temporal net, the gate trusts the spatial one.
    scores.rgb[1, 0, 1], scores.flow[1, 0, 1] = 4.0, 0.0
    scores.rgb[1, 0, 3], scores.flow[1, 0, 3] = 0.0, 3.0
    scores.fusion_weights[1, 0] = (0.9, 0.1)
    scores.fused = scores.fusion_weights[..., :1] * scores.rgb + scores.fusion_weights[..., 1:] * scores.flow
    assert plots.choose_top5_videos(scores, count=1) == ["v01"]
    path = plots.plot_top5(scores, ["v01", "v00"], tmp_path / "fig3.png")
    image = _image(path)
    assert image.shape[0] > 400  # two rows of panels
    with pytest.raises(ValueError, match="not in the score file: nope"):
        plots.plot_top5(scores, ["nope"], tmp_path / "y.png")


def test_confusion_matrix_figure(tmp_path):
    path = plots.plot_confusion_matrix(_scores(), tmp_path / "cm.png", field="rgb")
    _image(path)
    with pytest.raises(ValueError, match="no 'fused' scores"):
        plots.plot_confusion_matrix(_scores(gate=False), tmp_path / "cm2.png")


def test_plot_command(tmp_path, capsys):
    save_scores(tmp_path / "a.npz", _scores(seed=0))
    save_scores(tmp_path / "b.npz", _scores(seed=1))
    save_scores(tmp_path / "streams.npz", _scores(gate=False))
    assert main(["plot", "weights", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--titles", "A", "B",
                 "--out", str(tmp_path / "w.png")]) == 0
    assert main(["plot", "top5", str(tmp_path / "a.npz"), "--count", "2", "--out", str(tmp_path / "t.png")]) == 0
    assert main(["plot", "confusion", str(tmp_path / "a.npz"), "--out", str(tmp_path / "c.png")]) == 0
    printed = capsys.readouterr().out
    for name in ("w.png", "t.png", "c.png"):
        assert f"wrote {tmp_path / name}" in printed
        _image(tmp_path / name)
    assert main(["plot", "weights", str(tmp_path / "streams.npz"), "--out", str(tmp_path / "z.png")]) == 2
    assert "no fusion weights" in capsys.readouterr().err
    assert main(["plot", "top5", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--out", str(tmp_path / "z.png")]) == 2
    assert "takes one score file" in capsys.readouterr().err
    assert main(["plot", "tsne", "--out", str(tmp_path / "z.png")]) == 2
    assert "needs --model, --data, --list" in capsys.readouterr().err
    assert not (tmp_path / "z.png").exists()


def test_tsne_of_gates_trained_on_real_frames(prepared_samples, trained_models, tmp_path, capsys):
    """Fig. 4 end to end: the gate (stage 2) and the joint model (stage 3) of
    Algorithm 1 on the sample clips, their gating features on the test list."""
    from keras_gated_tsn.evaluation.features import gating_features
    from keras_gated_tsn.models import GatedTSN
    from keras_gated_tsn.training.stages import load_model

    paths, _ = trained_models
    data = str(prepared_samples)
    features, labels, videos = gating_features(load_model(paths["joint"], GatedTSN), f"{data}/test.txt",
                                               f"{data}/frames", num_frames=2)
    assert features.shape == (len(videos), 1024) and features.dtype == np.float32  # BN-Inception's 5b, pooled
    assert len(set(labels.tolist())) > 1 and np.isfinite(features).all()
    out = tmp_path / "fig4.png"
    assert main(["plot", "tsne", "--model", paths["gate"], paths["joint"], "--titles", "stage 2", "stage 3",
                 "--data", data, "--list", f"{data}/test.txt", "--frames", "2", "--out", str(out)]) == 0
    assert f"of {len(videos)} videos" in capsys.readouterr().out
    _image(out)
