"""Small registered, serializable layers used by the stream and gated models.

Every layer here is registered under the package name ``keras_gated_tsn``,
returns all constructor arguments from ``get_config()`` and computes with
``keras.ops`` (the fused batch normalisation adds TensorFlow's kernel for
float16 / bfloat16 maps), so models that use them save and load as ``.keras``.
"""

from keras_gated_tsn.layers.frozen_bn import FrozenBatchNormalization
from keras_gated_tsn.layers.fused_bn import FusedBatchNormalization
from keras_gated_tsn.layers.fusion import GatedFusion
from keras_gated_tsn.layers.lrn import LocalResponseNormalization
from keras_gated_tsn.layers.preprocessing import ModalityPreprocessing
from keras_gated_tsn.layers.segments import SegmentConsensus, SegmentFold

__all__ = [
    "FrozenBatchNormalization", "FusedBatchNormalization", "GatedFusion", "LocalResponseNormalization", "ModalityPreprocessing", "SegmentConsensus", "SegmentFold",
]

# Convolutional two-stream fusion (Feichtenhofer et al. 2016): spatial and temporal fusion layers.
from keras_gated_tsn.layers.two_stream_fusion import (  # noqa: E402
    BilinearFusion, ConcatFusion, Conv3DFusion, ConvFusion, MaxFusion, Pooling3D, StackAcrossTime, SumFusion,
)

__all__ += [
    "BilinearFusion", "ConcatFusion", "Conv3DFusion", "ConvFusion", "MaxFusion", "Pooling3D", "StackAcrossTime",
    "SumFusion",
]

# GCF-Net's head (Hsiao et al. 2020, Sec. 3.1): eqs. (1)-(6) and the central clip of C-Clip.
from keras_gated_tsn.layers.clip_fusion import (  # noqa: E402
    CentralClip,
    ClipUnfold,
    ClipWiseAttention,
    GatedClipResidual,
    InterClipFusion,
)

__all__ += ["CentralClip", "ClipUnfold", "ClipWiseAttention", "GatedClipResidual", "InterClipFusion"]
