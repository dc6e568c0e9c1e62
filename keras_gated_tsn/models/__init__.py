"""Stream (TSN) and gated two-stream models."""

from keras_gated_tsn.models.gated_tsn import GatedTSN
from keras_gated_tsn.models.tsn import TSN, cross_modality_kernel, init_from_rgb, set_partial_bn

__all__ = ["TSN", "GatedTSN", "cross_modality_kernel", "init_from_rgb", "set_partial_bn"]
