"""keras_gated_tsn: gated two-stream action recognition in Keras 3.

Implements Zhu, Zou and Zhu, "Learning Gating ConvNet for Two-Stream based
Methods in Action Recognition": TSN spatial (RGB) and temporal (optical flow)
streams over BN-Inception, the gating ConvNet that fuses their pre-softmax
scores with sample-specific weights, the data path from video files to
tf.data pipelines, staged training with ``fit()``, the 25-frame x 10-crop test
protocol and the fusion comparators (fixed weights, SCI, gated).
"""

__version__ = "0.1.0"
