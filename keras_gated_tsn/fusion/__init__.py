"""Late fusion of the two streams over score files: the comparators (one
registry) and the table built from it, plus rows for the score files of other
models. NumPy only at import, no TensorFlow (the ``svm`` comparator imports
scikit-learn when it runs).

A new comparator is one function plus one registration::

    import numpy as np
    from keras_gated_tsn.fusion import Fused, register_comparator, stream_scores

    @register_comparator("max", "element-wise max of the two streams' mean scores")
    def _max(test_sf, val_sf):
        return Fused(np.maximum(stream_scores(test_sf, "rgb"), stream_scores(test_sf, "flow")))
"""

from keras_gated_tsn.fusion.comparators import (
    DEFAULT_WEIGHT_GRID,
    TSN_WEIGHTS,
    Comparator,
    Fused,
    Skipped,
    average,
    registered_comparators,
    gated,
    gating_classifier,
    get_comparator,
    grid_search_curve,
    grid_search_weight,
    register_comparator,
    sci_fusion,
    sci_stream_scores,
    softmax,
    sparsity_concentration_index,
    stream_scores,
    weighted_average,
    weighted_tsn,
)
from keras_gated_tsn.fusion.svm import DEFAULT_C_GRID, SVMFusion, fit_svm, svm_features  # registers "svm"
from keras_gated_tsn.fusion.table import (
    ROW_FIELDS,
    extra_model_scores,
    format_markdown,
    fusion_table,
    tuned_on,
    write_csv,
    write_json,
)

__all__ = [
    "Comparator", "DEFAULT_C_GRID", "DEFAULT_WEIGHT_GRID", "Fused", "ROW_FIELDS", "SVMFusion", "Skipped", "TSN_WEIGHTS",
    "average", "extra_model_scores", "fit_svm", "registered_comparators",
    "format_markdown", "fusion_table", "gated", "gating_classifier", "get_comparator", "grid_search_curve",
    "grid_search_weight", "register_comparator", "sci_fusion", "sci_stream_scores", "softmax",
    "sparsity_concentration_index", "stream_scores", "svm_features", "tuned_on", "weighted_average", "weighted_tsn",
    "write_csv", "write_json",
]
