"""Non-trivial random weights for backbone tests, so that every weight matters."""

import numpy as np


def randomize(model, rng):
    """He-scaled kernels, non-zero biases and, for BN, random scale, shift and
    statistics (Keras starts biases at 0 and BN at the identity)."""
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if len(weights) == 4:  # BN: gamma, beta, moving mean, moving variance
            c = weights[0].shape
            weights = [
                rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c),
                rng.normal(0, 0.2, c), rng.uniform(0.5, 2.0, c),
            ]
        else:
            kernel, bias = weights
            fan_in = np.prod(kernel.shape[:-1])
            weights = [rng.normal(0, np.sqrt(2.0 / fan_in), kernel.shape), rng.normal(0, 0.1, bias.shape)]
        layer.set_weights([w.astype("float32") for w in weights])
