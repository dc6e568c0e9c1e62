"""Algorithm 1 end to end: streams → gate → joint → evaluate → fuse, in one call.

The one runner behind ``gated-tsn demo``, ``examples/compare_backbones.py``
and the test fixtures: each stage is a :func:`~keras_gated_tsn.training.stages.run_stage`
wired to the previous ones (the flow stream starts from the RGB stream unless
backbone weights are given, the gate takes both streams, the joint stage
resumes the gate), then the last model scores the evaluation lists with the
test protocol and the fusion table compares the comparators on the test list,
with settings tuned on the validation list.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from keras_gated_tsn.training.recipes import ALGORITHM1_STAGES as STAGES

#: What each stage is, for the log.
STAGE_TITLES = {
    "rgb": "stage 1: the RGB stream (TSN)",
    "flow": "stage 1: the flow stream (cross-modality initialisation)",
    "gate": "stage 2: gating ConvNet, fusion weights only (lambda = 0)",
    "joint": "stage 3: fusion weights + gating classifier (lambda = 1)",
}


@dataclasses.dataclass
class Algorithm1Result:
    """What :func:`run_algorithm1` wrote and measured.

    Attributes:
        models: stage -> its ``.keras`` file.
        histories: stage -> its Keras ``History.history`` dict.
        scores: evaluated list name (``"val"``, ``"test"``) -> score file.
        rows: the fusion table of the test scores (validation scores for the
            tuned comparators), or empty when nothing was evaluated.
        table: ``(csv, json)`` paths of the fusion table, or None.
    """

    models: Dict[str, str]
    histories: Dict[str, dict]
    scores: Dict[str, str]
    rows: List[dict]
    table: Optional[tuple] = None


def _wiring(stage: str, paths: Mapping[str, str], options: Mapping) -> dict:
    if stage == "flow":
        return {} if options.get("backbone_weights") or options.get("init_from") else {"init_from": paths["rgb"]}
    if stage == "gate":
        return {"rgb": paths["rgb"], "flow": paths["flow"]}
    if stage == "joint":
        return {"gate_model": paths["gate"]}
    return {}


def run_algorithm1(
    data_dir: str,
    out_dir: str,
    *,
    stages: Sequence[str] = STAGES,
    evaluate_lists: Sequence[str] = ("val", "test"),
    test_frames: int = 25,
    test_crops: int = 10,
    stage_options: Optional[Mapping[str, dict]] = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    **options,
) -> Algorithm1Result:
    """Runs the stages of Algorithm 1, evaluates and fuses.

    Args:
        data_dir: a prepared dataset (``frames/``, ``classes.txt``,
            ``train.txt`` and the lists to evaluate).
        out_dir: receives ``models/<stage>.keras`` (+ logs),
            ``scores/<list>.npz`` and ``fusion_table.csv`` / ``.json``.
        stages: the stages to run, in order (a subset of ``rgb``, ``flow``,
            ``gate``, ``joint``); a stage whose input is not trained here
            takes it from ``stage_options`` (e.g. ``{"gate": {"rgb": ...,
            "flow": ...}}``).
        evaluate_lists: list names under ``data_dir`` to score with the last
            model (a gated model if a gated stage ran, else the streams);
            lists that do not exist are left out. Empty: no evaluation.
        test_frames, test_crops: the test protocol (paper: 25 x 10).
        stage_options: per-stage :class:`~keras_gated_tsn.training.stages.StageConfig`
            fields, over ``options``.
        progress: progress bars while evaluating.
        log: where the step banners go.
        **options: :class:`~keras_gated_tsn.training.stages.StageConfig`
            fields for every stage (``epochs``, ``input_size``, ``seed``...).

    Returns:
        An :class:`Algorithm1Result`.

    Raises:
        ValueError, FileNotFoundError: from the stages (bad options, missing
            files), or for an unknown stage.
    """
    from keras_gated_tsn.data.layout import CLASSES_FILE, frames_source, list_file
    from keras_gated_tsn.data.lists import read_class_names
    from keras_gated_tsn.evaluation.protocol import evaluate
    from keras_gated_tsn.evaluation.scores import save_scores
    from keras_gated_tsn.fusion import fusion_table, write_csv, write_json
    from keras_gated_tsn.models import TSN, GatedTSN
    from keras_gated_tsn.training.stages import StageConfig, load_model, run_stage

    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        raise ValueError(f"unknown stages {unknown}; the stages of Algorithm 1 are {STAGES}")
    stage_options = dict(stage_options or {})
    out_dir = os.path.abspath(out_dir)
    models_dir = os.path.join(out_dir, "models")
    paths = {stage: os.path.join(models_dir, f"{stage}.keras") for stage in STAGES}
    lists = [name for name in evaluate_lists if os.path.isfile(os.path.join(data_dir, list_file(name)))]
    total = len(stages) + len(lists) + ("test" in lists)
    step = 0
    histories = {}
    for stage in stages:
        step += 1
        log(f"\n[{step}/{total}] gated-tsn train --stage {stage}: {STAGE_TITLES[stage]}")
        settings = {**options, **stage_options.get(stage, {})}
        config = StageConfig(
            stage=stage, data_dir=data_dir, out=paths[stage], **{**_wiring(stage, paths, settings), **settings}
        )
        histories[stage] = run_stage(config, log=log).history

    result = Algorithm1Result({stage: paths[stage] for stage in stages}, histories, {}, [])
    if not lists:
        return result
    class_names = read_class_names(os.path.join(data_dir, CLASSES_FILE))
    gated_stage = next((stage for stage in ("joint", "gate") if stage in stages), None)
    if gated_stage:
        models = {"gated_model": load_model(paths[gated_stage], GatedTSN)}
    else:
        models = {
            f"{stage}_model": load_model(paths[stage], TSN) for stage in ("rgb", "flow") if stage in stages
        }
    scores_dir = os.path.join(out_dir, "scores")
    os.makedirs(scores_dir, exist_ok=True)
    loaded = {}
    for name in lists:
        step += 1
        log(f"\n[{step}/{total}] gated-tsn evaluate: {list_file(name)}, {test_frames} frames x {test_crops} crops "
            "per video")
        loaded[name] = evaluate(
            os.path.join(data_dir, list_file(name)), frames_source(data_dir), class_names,
            num_frames=test_frames, crops=test_crops, progress=progress, **models,
        )
        result.scores[name] = save_scores(os.path.join(scores_dir, f"{name}.npz"), loaded[name])
    if "test" in loaded:
        step += 1
        log(f"\n[{step}/{total}] gated-tsn fuse: the fusion table of the test list")
        result.rows = fusion_table(loaded["test"], loaded.get("val"))
        prefix = os.path.join(out_dir, "fusion_table")
        result.table = (write_csv(prefix + ".csv", result.rows), write_json(prefix + ".json", result.rows))
    return result
