"""Top-k classes of raw video files with a trained model: ``gated-tsn predict``.

What a user tries first with a trained ``.keras`` file: no ``prepare``, no
list file. Each video goes through the test protocol of the paper (Sec.
IV-A: ``num_frames`` snippets uniformly spaced, ``crops`` crops each), with
its frames and optical flow extracted on the fly for the snippets only
(:func:`keras_gated_tsn.data.prepare.extract_snippets`, in a temporary
folder that is removed afterwards) and read by the same pipeline as
``gated-tsn evaluate``, so a prediction equals the evaluation of the same
frames. Scores are averaged over the views; probabilities are their softmax.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["Prediction", "predict_videos"]


@dataclasses.dataclass
class Prediction:
    """The top classes of one video.

    Attributes:
        video: the video file, as given.
        top: ``(class name, probability in [0, 1])`` pairs, most likely first:
            the gated fusion's for a gated model, the stream's for a stream.
        streams: the same for each stream (``"rgb"``, ``"flow"``) of a gated
            model; empty for a stream model.
        fusion_weights: the gate's ``(w_rgb, w_flow)`` averaged over the views
            (paper eq. (2)); None for a stream model.
        num_frames: the frames of the video.
        views: the views scored (snippets x crops).
        seconds: wall time of the video, extraction included.
    """

    video: str
    top: List[Tuple[str, float]]
    streams: Dict[str, List[Tuple[str, float]]]
    fusion_weights: Optional[Tuple[float, float]]
    num_frames: int
    views: int
    seconds: float

    def to_json(self) -> dict:
        """A JSON-ready dict of the fields."""
        return {
            "video": self.video,
            "top": [{"class": name, "probability": p} for name, p in self.top],
            "streams": {s: [{"class": name, "probability": p} for name, p in top] for s, top in self.streams.items()},
            "fusion_weights": None if self.fusion_weights is None else
            {"rgb": self.fusion_weights[0], "flow": self.fusion_weights[1]},
            "num_frames": self.num_frames,
            "views": self.views,
            "seconds": self.seconds,
        }


def _top(scores: np.ndarray, names: Sequence[str], k: int) -> List[Tuple[str, float]]:
    shifted = scores - scores.max()
    probabilities = np.exp(shifted) / np.exp(shifted).sum()
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(names[i], float(probabilities[i])) for i in order]


def predict_videos(
    videos: Sequence[str],
    model,
    *,
    class_names: Optional[Sequence[str]] = None,
    num_frames: int = 25,
    crops: int = 10,
    top: int = 5,
    flow: str = "tvl1",
    size: Sequence[int] = (340, 256),
    bound: float = 20.0,
    on_error=None,
) -> Iterator[Prediction]:
    """Predicts the classes of raw video files, one :class:`Prediction` each.

    Args:
        videos: video files (any format OpenCV's FFmpeg reads).
        model: a :class:`~keras_gated_tsn.models.GatedTSN` or a
            :class:`~keras_gated_tsn.models.TSN` stream.
        class_names: the model's class names; default the model's own
            (``model.class_names``, kept by ``gated-tsn train``), else
            ``"class <i>"``.
        num_frames: snippets per video (paper: 25), >= 1.
        crops: crops per snippet: 1, 5 or 10 (paper: 10).
        top: how many classes to return, >= 1.
        flow: the optical-flow method, as in ``gated-tsn prepare`` (use the
            one the model's training frames were extracted with).
        size: ``(width, height)`` the frames are resized to (the training
            frames' size; TSN's 340x256).
        bound: flow clipping bound in pixels.
        on_error: ``callable(video, error)`` for a video that cannot be read
            (the others go on); ``None`` raises.

    Yields:
        A :class:`Prediction` per readable video, in order.

    Raises:
        ValueError: a model of another kind, or class names of another count.
        keras_gated_tsn.data.video.VideoDecodeError: for a bad video when
            ``on_error`` is None.
    """
    from keras_gated_tsn.data import pipeline
    from keras_gated_tsn.data.lists import VideoRecord
    from keras_gated_tsn.data.prepare import extract_snippets
    from keras_gated_tsn.data.video import VideoDecodeError
    from keras_gated_tsn.evaluation.protocol import _scored_videos
    from keras_gated_tsn.models import TSN, GatedTSN
    from keras_gated_tsn.models.tsn import flow_input_of

    if isinstance(model, GatedTSN):
        modality, new_length, main_field = "rgb+flow", model.new_length, "fused"
        networks = {"gated_model": model}
    elif isinstance(model, TSN):
        modality, new_length, main_field = model.modality, model.new_length, model.modality
        networks = {f"{model.modality}_model": model}
    else:
        raise ValueError(f"the model must be a GatedTSN or a TSN stream, got {type(model).__name__}")
    names = list(class_names) if class_names is not None else (model.class_names or
                                                                 [f"class {i}" for i in range(model.num_classes)])
    if len(names) != model.num_classes:
        raise ValueError(f"{len(names)} class names for a model of {model.num_classes} classes")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be an int >= 1, got {top!r}")
    flow_input = flow_input_of(model)
    if flow_input is not None:  # the volumes follow the flow as it is extracted here, at this bound
        flow_input = dataclasses.replace(flow_input, bound=float(bound))
    for path in videos:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="gated-tsn-predict-") as folder:
            try:
                count = extract_snippets(
                    path, os.path.join(folder, "video"), num_frames,
                    new_length=new_length if modality != "rgb" else 1, modality=modality, flow=flow,
                    size=tuple(size), bound=bound,
                )
            except (VideoDecodeError, OSError) as error:
                if on_error is None:
                    raise
                on_error(path, error)
                continue
            dataset = pipeline.make_test_dataset(
                [VideoRecord("video", count, 0)], folder, modality, num_frames=num_frames, crops=crops,
                input_size=model.input_size, new_length=new_length if modality != "rgb" else None,
                flow_input=flow_input,
            )
            _, _, scored = next(iter(_scored_videos(dataset, 1, networks.get("gated_model"),
                                                     networks.get("rgb_model"), networks.get("flow_model"))))
        averaged = {name: np.asarray(value, dtype=np.float64).mean(axis=0) for name, value in scored.items()}
        weights = averaged.get("fusion_weights")
        yield Prediction(
            video=os.fspath(path),
            top=_top(averaged[main_field], names, top),
            streams={s: _top(averaged[s], names, top) for s in ("rgb", "flow")} if main_field == "fused" else {},
            fusion_weights=None if weights is None else (float(weights[0]), float(weights[1])),
            num_frames=count,
            views=int(next(iter(scored.values())).shape[0]),
            seconds=time.monotonic() - started,
        )
