"""Training: the recipe (:mod:`~keras_gated_tsn.training.recipes`), one stage of
Algorithm 1 (:mod:`~keras_gated_tsn.training.stages`), its state on disk for resuming
(:mod:`~keras_gated_tsn.training.checkpoints`), ``tf.distribute``
(:mod:`~keras_gated_tsn.training.distribute`) and the whole of it
(:mod:`~keras_gated_tsn.training.runner`)."""

from keras_gated_tsn.training.recipes import STAGE_RECIPES, CaffeSGD, StageRecipe, make_optimizer, stage_recipe
from keras_gated_tsn.training.runner import Algorithm1Result, run_algorithm1
from keras_gated_tsn.training.checkpoints import TrainingDiverged, TrainingState
from keras_gated_tsn.training.stages import StageConfig, StageResult, load_model, run_stage

__all__ = [
    "Algorithm1Result", "CaffeSGD", "STAGE_RECIPES", "StageConfig", "StageRecipe", "load_model", "make_optimizer",
    "run_algorithm1", "run_stage", "stage_recipe", "StageResult", "TrainingDiverged", "TrainingState",
]
