"""keras_gated_tsn: gated two-stream action recognition in Keras 3.

Implements Zhu, Zou and Zhu, "Learning Gating ConvNet for Two-Stream based
Methods in Action Recognition": TSN spatial (RGB) and temporal (optical flow)
streams over BN-Inception, CaffeNet and VGG16, the gating ConvNet that fuses
their pre-softmax scores with sample-specific weights, the data path from
video files to tf.data pipelines, staged training with ``fit()``, the
25-frame x 10-crop test protocol and the fusion comparators (fixed weights,
SCI, gated).

Importing the package registers every layer and model with Keras, so
``keras.saving.load_model`` reads any ``.keras`` file the package wrote.
"""

__version__ = "0.2.0"

from keras_gated_tsn._startup import import_tensorflow as _import_tensorflow

_import_tensorflow()  # before Keras: TensorFlow's start-up notices held back (see _startup)

# Importing these registers every Keras object the package saves: layers, models
# and the optimizer a compiled model carries (training.recipes.CaffeSGD).
from keras_gated_tsn import layers, models  # noqa: E402,F401
from keras_gated_tsn.training import recipes as _recipes  # noqa: E402,F401
from keras_gated_tsn.models import TSN, GatedTSN  # noqa: E402

__all__ = ["GatedTSN", "TSN", "__version__", "layers", "models"]
