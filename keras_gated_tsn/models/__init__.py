"""Stream (TSN) and gated two-stream models: registered Keras models whose
config is their constructor arguments, so a loaded ``.keras`` file says what
it is."""

from keras_gated_tsn.models.common import with_precision
from keras_gated_tsn.models.gated_tsn import GatedTSN
from keras_gated_tsn.models.tsn import TSN, init_from_rgb

__all__ = ["GatedTSN", "TSN", "init_from_rgb", "with_precision"]

# Convolutional two-stream fusion (Feichtenhofer et al. 2016).
from keras_gated_tsn.models.conv_fusion import ConvTwoStreamFusion  # noqa: E402

__all__ += ["ConvTwoStreamFusion"]

# The two-stream ConvNets' multi-task stream (Simonyan & Zisserman 2014, Sec. 4).
from keras_gated_tsn.models.multitask import MultiTaskTSN  # noqa: E402

__all__ += ["MultiTaskTSN"]

from keras_gated_tsn.models.gcf_net import AttentionSparsity, GCFNet  # noqa: E402

__all__ += ["AttentionSparsity", "GCFNet"]
