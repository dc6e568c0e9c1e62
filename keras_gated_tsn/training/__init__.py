"""Training: the recipe (:mod:`~keras_gated_tsn.training.recipes`), one stage of
Algorithm 1 (:mod:`~keras_gated_tsn.training.stages`) and the whole of it
(:mod:`~keras_gated_tsn.training.runner`)."""
