"""Spatial and temporal fusion of two ConvNet towers (Feichtenhofer, Pinz, Zisserman,
"Convolutional Two-Stream Network Fusion for Video Action Recognition", CVPR 2016).

Spatial fusion (Sec. 3.1) puts the channel responses of the spatial (appearance,
``x^a``) and the temporal (motion, ``x^b``) network at the same pixel position in
correspondence; every function takes two maps of equal height and width:

* :class:`SumFusion`, eq. (1): ``y = x^a + x^b``;
* :class:`MaxFusion`, eq. (2): ``y = max(x^a, x^b)``;
* :class:`ConcatFusion`, eq. (3): the two maps stacked along the channels,
  interleaved as the paper writes it (``y_2d = x^a_d``, ``y_2d-1 = x^b_d``);
* :class:`ConvFusion`, eq. (4): concatenation, then a 1x1 convolution 2D -> D,
  initialised with two stacked identity matrices (the fused map starts as
  the sum);
* :class:`BilinearFusion`, eq. (5): the outer product of the two channel
  vectors at each location summed over the locations, then signed square
  root and L2 normalisation.

Temporal fusion (Sec. 3.3, Fig. 3) works on maps stacked across time,
``(B, T, H, W, D)`` (:class:`StackAcrossTime` unfolds the segment-folded
batch):

* :class:`Pooling3D`: max pooling over ``T' x H' x W'`` cubes (Fig. 3(b));
* :class:`Conv3DFusion`: eq. (6), concatenation of the two stacked maps and a
  3x3x3 convolution 2D -> D, initialised as in Sec. 3.5 (stacked identity
  matrices, the temporal network's scaled by 3, times a 3x3x3 Gaussian with
  sigma 1), to be followed by 3D pooling (Fig. 3(c)).

Every layer is registered under ``keras_gated_tsn``, keeps its constructor
arguments as attributes and returns them from ``get_config()``, and computes
with ``keras.ops``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import keras
import numpy as np
from keras import ops

#: Spatial padding of :class:`Pooling3D` (time is never padded).
SPATIAL_PADDINGS = ("same", "valid")
#: x, y, t profiles of the :class:`Conv3DFusion` initialisation.
CONV3D_PROFILES = ("gaussian", "temporal_gaussian")
#: The initialiser name that means "the paper's identity initialisation".
IDENTITY = "identity"


def _check_pair(layer: str, input_shape) -> Tuple[tuple, tuple]:
    """The two shapes of a two-map fusion input.

    Raises:
        ValueError: unless there are exactly two inputs.
    """
    shapes = list(input_shape) if isinstance(input_shape, (list, tuple)) else None
    if not shapes or len(shapes) != 2 or not all(isinstance(s, (list, tuple)) for s in shapes):
        raise ValueError(f"{layer} is called on [x_a, x_b], two feature maps; got input shape {input_shape}")
    return tuple(shapes[0]), tuple(shapes[1])


def _check_same_map(layer: str, shape_a, shape_b, same_channels: bool) -> None:
    """Raises a ``ValueError`` unless the maps agree in rank, height and width
    (and channels, when ``same_channels``): Sec. 3.2's only constraint."""
    if len(shape_a) != len(shape_b):
        raise ValueError(f"{layer}: the two maps must have the same rank, got {shape_a} and {shape_b}")
    for axis in range(1, len(shape_a) - 1):
        if shape_a[axis] is not None and shape_b[axis] is not None and shape_a[axis] != shape_b[axis]:
            raise ValueError(
                f"{layer}: the two maps must have the same spatial (and temporal) size, got {shape_a} and {shape_b}"
            )
    if same_channels and shape_a[-1] != shape_b[-1]:
        raise ValueError(f"{layer}: the two maps must have the same channels D, got {shape_a} and {shape_b}")


def _check_scales(identity_scales) -> Tuple[float, float]:
    try:
        scales = tuple(float(s) for s in identity_scales)
    except (TypeError, ValueError):
        scales = ()
    if len(scales) != 2 or not all(math.isfinite(s) for s in scales):
        raise ValueError(f"identity_scales must be two finite numbers (spatial, temporal), got {identity_scales!r}")
    return scales


def _interleave(x_a, x_b):
    """Eq. (3): ``y_{2d} = x^a_d``, ``y_{2d-1} = x^b_d`` (1-based), i.e. 0-based
    channels ``[b_0, a_0, b_1, a_1, ...]``."""
    stacked = ops.stack([x_b, x_a], axis=-1)
    shape = ops.shape(x_a)
    return ops.reshape(stacked, tuple(shape[:-1]) + (2 * x_a.shape[-1],))


def identity_sum_matrix(channels: int, scales: Sequence[float] = (1.0, 1.0)) -> np.ndarray:
    """The ``(2D, D)`` channel part of the fusion filter: two identity matrices,
    one per network, placed for eq. (3)'s interleaved order.

    ``y_cat @ M`` is ``scales[0] * x^a + scales[1] * x^b``: the sum of the two
    maps for ``scales = (1, 1)`` (Sec. 3.1, conv fusion "initialised by
    identity matrices that perform summation", Sec. 4.2-4.3), the temporal
    network's identity 3 times higher for ``(1, 3)`` (Sec. 3.5).

    Args:
        channels: D >= 1.
        scales: (spatial ``x^a``, temporal ``x^b``) factors.

    Returns:
        float32 array of shape ``(2 * channels, channels)``.
    """
    matrix = np.zeros((2 * channels, channels), np.float32)
    index = np.arange(channels)
    matrix[2 * index, index] = scales[1]  # x^b at the odd 1-based channels 2d-1
    matrix[2 * index + 1, index] = scales[0]  # x^a at the even 1-based channels 2d
    return matrix


def gaussian_profile(kernel_size: Sequence[int], sigma: float, spatial: bool = True) -> np.ndarray:
    """The ``(T'', H'', W'')`` weights of the 3D conv fusion initialisation.

    ``spatial=True``: a Gaussian over x, y and t, ``exp(-(t^2 + i^2 + j^2) /
    (2 sigma^2))`` at the offsets ``t, i, j`` from the kernel centre (the
    paper's "Gaussian of size 3x3x3 and sigma = 1", Sec. 3.5).
    ``spatial=False``: the Gaussian over t only, at the spatial centre (zero
    elsewhere: identity in space). Normalised to sum 1, so that the fused
    map of a constant input is the input's (weighted) channel sum.

    Args:
        kernel_size: ``(T'', H'', W'')`` positive odd ints.
        sigma: > 0.
        spatial: Gaussian over x and y too.

    Returns:
        float32 array of shape ``kernel_size``.
    """
    grids = np.meshgrid(*[np.arange(k) - (k - 1) / 2.0 for k in kernel_size], indexing="ij")
    if spatial:
        squared = sum(g**2 for g in grids)
    else:
        squared = grids[0] ** 2
    profile = np.exp(-squared / (2.0 * sigma**2))
    if not spatial:
        centre = tuple(slice(None) if axis == 0 else (k - 1) // 2 for axis, k in enumerate(kernel_size))
        mask = np.zeros(kernel_size, bool)
        mask[centre] = True
        profile = np.where(mask, profile, 0.0)
    return (profile / profile.sum()).astype(np.float32)


def _initializer_config(value):
    return value if isinstance(value, str) else keras.initializers.serialize(keras.initializers.get(value))


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class SumFusion(keras.layers.Layer):
    """Sum fusion, eq. (1): ``y_{i,j,d} = x^a_{i,j,d} + x^b_{i,j,d}``.

    Called on ``[x_a, x_b]``: two float maps of the same shape ``(N, H, W, D)``
    (any rank >= 2, channels last; e.g. two streams' ReLU5 outputs). Returns
    the same shape and the layer's compute dtype. The channel correspondence
    is arbitrary; learning after the fusion makes use of it (Sec. 3.1).

    Raises:
        ValueError: when built on anything but two maps of one shape.
    """

    def build(self, input_shape):
        shape_a, shape_b = _check_pair(type(self).__name__, input_shape)
        _check_same_map(type(self).__name__, shape_a, shape_b, same_channels=True)
        self.built = True

    def call(self, inputs):
        x_a, x_b = inputs
        return x_a + x_b

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class MaxFusion(SumFusion):
    """Max fusion, eq. (2): ``y_{i,j,d} = max(x^a_{i,j,d}, x^b_{i,j,d})``.

    Called on ``[x_a, x_b]`` of one shape ``(N, H, W, D)``; returns that shape
    (Sec. 3.1).

    Raises:
        ValueError: when built on anything but two maps of one shape.
    """

    def call(self, inputs):
        x_a, x_b = inputs
        return ops.maximum(x_a, x_b)


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class ConcatFusion(keras.layers.Layer):
    """Concatenation fusion, eq. (3): ``y_{i,j,2d} = x^a_{i,j,d}``,
    ``y_{i,j,2d-1} = x^b_{i,j,d}``.

    Called on ``[x_a, x_b]``, two float maps ``(N, H, W, D)`` (same height and
    width; any rank >= 2, channels last); returns ``(N, H, W, 2D)`` with the
    channels interleaved as eq. (3) numbers them: 0-based channel ``2k`` is
    ``x^b_k`` and ``2k + 1`` is ``x^a_k``. No correspondence is defined: the
    following layers learn it (Sec. 3.1). A layer initialised from one
    stream's D-channel kernel sees the mean of the two maps when its kernel
    is repeated channel by channel and halved.

    Raises:
        ValueError: when built on anything but two maps of the same size and
            channels.
    """

    def build(self, input_shape):
        shape_a, shape_b = _check_pair(type(self).__name__, input_shape)
        _check_same_map(type(self).__name__, shape_a, shape_b, same_channels=True)
        if shape_a[-1] is None:
            raise ValueError(f"{type(self).__name__} needs a known channel axis, got {shape_a}")
        self.built = True

    def call(self, inputs):
        x_a, x_b = inputs
        return _interleave(x_a, x_b)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape[0])
        return shape[:-1] + (None if shape[-1] is None else 2 * shape[-1],)


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class ConvFusion(keras.layers.Layer):
    """Conv fusion, eq. (4): ``y = y^cat * f + b`` with a ``1 x 1 x 2D x D`` filter bank.

    The two maps are concatenated as eq. (3) (:class:`ConcatFusion`) and
    convolved with ``f`` of shape ``(1, 1, 2D, filters)`` (Keras layout) plus
    a bias ``b`` of shape ``(filters,)``: weighted combinations of the two
    maps at the same pixel, halving the channels. With the default
    ``kernel_initializer="identity"`` ``f`` is two stacked identity matrices
    (:func:`identity_sum_matrix`) and ``b = 0``, so the layer starts as sum
    fusion, ``identity_scales[0] * x^a + identity_scales[1] * x^b`` — the
    paper's initialisation (Sec. 4.2: "initialised by identity matrices that
    perform summation"; random Gaussian noise ends at a similar accuracy after
    a longer training).

    Called on ``[x_a, x_b]``, float maps ``(N, H, W, D)`` of the same shape
    (any rank >= 2, channels last); returns ``(N, H, W, filters)`` in the
    layer's compute dtype.

    Args:
        filters: output channels; default D (the paper's 2D -> D).
        kernel_initializer: ``"identity"`` (the paper's) or any Keras
            initializer (name, config or object), e.g. ``"glorot_uniform"``
            or ``keras.initializers.RandomNormal(stddev=0.01)``.
        bias_initializer: a Keras initializer for ``b``; default zeros.
        identity_scales: ``(spatial, temporal)`` factors of the two identity
            matrices (``"identity"`` only); default ``(1, 1)``, the sum.

    Raises:
        ValueError: for a non-positive ``filters`` or bad ``identity_scales``
            (quoting it); when built on maps that differ in shape, or with
            ``"identity"`` and ``filters`` other than D.
    """

    def __init__(
        self,
        filters: Optional[int] = None,
        kernel_initializer=IDENTITY,
        bias_initializer="zeros",
        identity_scales: Sequence[float] = (1.0, 1.0),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if filters is not None and (isinstance(filters, bool) or not isinstance(filters, int) or filters < 1):
            raise ValueError(f"filters must be None or a positive int, got {filters!r}")
        self.filters = filters
        self.kernel_initializer = _initializer_config(kernel_initializer)
        self.bias_initializer = _initializer_config(bias_initializer)
        self.identity_scales = _check_scales(identity_scales)
        if kernel_initializer != IDENTITY:
            keras.initializers.get(self.kernel_initializer)  # unknown names fail here, not at build

    def _kernel_shape(self, channels: int, filters: int) -> tuple:
        return (1, 1, 2 * channels, filters)

    def _identity_kernel(self, channels: int, filters: int) -> np.ndarray:
        return identity_sum_matrix(channels, self.identity_scales)[None, None]

    def build(self, input_shape):
        shape_a, shape_b = _check_pair(type(self).__name__, input_shape)
        _check_same_map(type(self).__name__, shape_a, shape_b, same_channels=True)
        channels = shape_a[-1]
        if channels is None:
            raise ValueError(f"{type(self).__name__} needs a known channel axis, got {shape_a}")
        filters = self.filters or channels
        if self.kernel_initializer == IDENTITY:
            if filters != channels:
                raise ValueError(
                    f"{type(self).__name__}: the identity initialisation maps 2D -> D channels, "
                    f"got D={channels} and filters={filters}"
                )
            kernel = self._identity_kernel(channels, filters)
            initializer = keras.initializers.Constant(kernel)
        else:
            initializer = keras.initializers.get(self.kernel_initializer)
        self.kernel = self.add_weight(
            name="kernel", shape=self._kernel_shape(channels, filters), initializer=initializer
        )
        self.bias = self.add_weight(
            name="bias", shape=(filters,), initializer=keras.initializers.get(self.bias_initializer)
        )
        self.built = True

    def call(self, inputs):
        x_a, x_b = inputs
        stacked = _interleave(x_a, x_b)
        return ops.matmul(stacked, self.kernel[0, 0]) + self.bias

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape[0])
        return shape[:-1] + (self.filters or shape[-1],)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_initializer": self.kernel_initializer,
            "bias_initializer": self.bias_initializer,
            "identity_scales": list(self.identity_scales),
        }


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class Conv3DFusion(ConvFusion):
    """3D conv fusion, eq. (6): ``y = x * f + b`` with ``f`` of size ``T'' x H'' x W'' x 2D x D``.

    The two maps stacked across time, ``(B, T, H, W, D)`` each (see
    :class:`StackAcrossTime`), are concatenated along the channels as eq. (3)
    and convolved with ``f`` (Keras layout ``(T'', H'', W'', 2D, filters)``,
    ``"same"`` padding: zeros beyond the first and last snippet and the map's
    border) plus a bias: a learned local weighted combination of both
    networks' features in x, y and t (Sec. 3.3, Fig. 3(c); the paper's
    spatiotemporal architecture uses a 3x3x3x1024x512 ``f`` on two VGG-16
    ReLU5 maps, Sec. 3.5). Follow it with :class:`Pooling3D`.

    The paper's initialisation (``kernel_initializer="identity"``, Sec. 3.5):
    ``f[t, i, j, :, :] = g[t, i, j] * M`` where ``M`` stacks two identity
    matrices (:func:`identity_sum_matrix`), the temporal network's scaled by
    ``identity_scales[1]`` (3: "the activations of the temporal ConvNet at
    the last convolutional layer are roughly 3 times lower"), and ``g`` is
    :func:`gaussian_profile` (sum 1): with ``init_profile="gaussian"`` a
    3x3x3 Gaussian over x, y, t with ``sigma`` (the paper's), with
    ``"temporal_gaussian"`` a Gaussian over t only, identity in space. The
    bias starts at 0. On constant maps the layer then starts as
    ``x^a + 3 x^b`` away from the borders.

    Called on ``[x_a, x_b]``, float ``(B, T, H, W, D)`` of the same shape;
    returns ``(B, T, H, W, filters)`` in the layer's compute dtype.

    Args:
        filters: output channels D'; default D.
        kernel_size: ``(T'', H'', W'')`` positive odd ints; default 3x3x3.
        kernel_initializer: ``"identity"`` (the paper's, above) or any Keras
            initializer.
        bias_initializer: a Keras initializer; default zeros.
        identity_scales: ``(spatial, temporal)`` identity factors; default
            ``(1, 3)`` (Sec. 3.5).
        sigma: the Gaussian's standard deviation in kernel taps, > 0; default 1.
        init_profile: ``"gaussian"`` or ``"temporal_gaussian"`` (above).

    Raises:
        ValueError: for a bad ``filters``, ``kernel_size``, ``sigma``,
            ``init_profile`` or ``identity_scales`` (quoting it); when built on
            maps that are not 5-D, differ in shape, or (``"identity"``) with
            ``filters`` other than D.
    """

    def __init__(
        self,
        filters: Optional[int] = None,
        kernel_size: Sequence[int] = (3, 3, 3),
        kernel_initializer=IDENTITY,
        bias_initializer="zeros",
        identity_scales: Sequence[float] = (1.0, 3.0),
        sigma: float = 1.0,
        init_profile: str = "gaussian",
        **kwargs,
    ):
        super().__init__(
            filters=filters, kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
            identity_scales=identity_scales, **kwargs,
        )
        sizes = tuple(kernel_size) if isinstance(kernel_size, (list, tuple)) else ()
        if len(sizes) != 3 or not all(
            isinstance(k, int) and not isinstance(k, bool) and k >= 1 and k % 2 == 1 for k in sizes
        ):
            raise ValueError(f"kernel_size must be three positive odd ints (T'', H'', W''), got {kernel_size!r}")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma!r}")
        if init_profile not in CONV3D_PROFILES:
            raise ValueError(f"init_profile must be one of {CONV3D_PROFILES}, got {init_profile!r}")
        self.kernel_size = sizes
        self.sigma = float(sigma)
        self.init_profile = init_profile

    def _kernel_shape(self, channels: int, filters: int) -> tuple:
        return self.kernel_size + (2 * channels, filters)

    def _identity_kernel(self, channels: int, filters: int) -> np.ndarray:
        profile = gaussian_profile(self.kernel_size, self.sigma, spatial=self.init_profile == "gaussian")
        return profile[..., None, None] * identity_sum_matrix(channels, self.identity_scales)

    def build(self, input_shape):
        shape_a, _ = _check_pair(type(self).__name__, input_shape)
        if len(shape_a) != 5:
            raise ValueError(f"{type(self).__name__} takes maps stacked across time (B, T, H, W, D), got {shape_a}")
        super().build(input_shape)

    def call(self, inputs):
        x_a, x_b = inputs
        stacked = _interleave(x_a, x_b)
        return ops.conv(stacked, self.kernel, strides=1, padding="same") + self.bias

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": list(self.kernel_size),
            "sigma": self.sigma,
            "init_profile": self.init_profile,
        }


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class BilinearFusion(keras.layers.Layer):
    """Bilinear fusion, eq. (5): ``y = sum_{i,j} x^a_{i,j}^T x^b_{i,j}``, then
    signed square root and L2 normalisation.

    At every location the outer product of the two channel vectors
    (``D x D'``) is taken and summed over the H x W locations: every channel
    of one network multiplies every channel of the other, and the spatial
    layout is marginalised out (Sec. 3.1). The paper applies it at ReLU5 and
    follows Lin et al. (bilinear CNN, ICCV 2015): the fully connected layers
    are removed and the feature is power- and L2-normalised,
    ``y <- sign(y) sqrt(|y|)``, ``y <- y / ||y||_2``.

    Called on ``[x_a, x_b]``, float maps ``(N, H, W, D)`` and ``(N, H, W, D')``
    (same H and W); returns ``(N, D * D')``, row-major in ``(d, d')``
    (``y[n, d * D' + d'] = sum_{i,j} x^a[n, i, j, d] x^b[n, i, j, d']``), in
    the layer's compute dtype; with the normalisation each row has unit L2
    norm (or is 0) and values in [-1, 1]. The sums are computed in float32
    under every policy (products of activations summed over the locations
    overflow float16).

    The gradient of the signed square root is infinite at 0; there (where
    the map's channels do not respond) it is taken as 0 instead.

    Args:
        signed_sqrt: apply ``sign(y) sqrt(|y|)``.
        l2_normalize: divide each row by its L2 norm.
        epsilon: floor of the squared norm, > 0.

    Raises:
        ValueError: for a non-positive ``epsilon`` (quoting it); when built on
            maps that are not 4-D or differ in height or width.
    """

    def __init__(self, signed_sqrt: bool = True, l2_normalize: bool = True, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
        self.signed_sqrt = bool(signed_sqrt)
        self.l2_normalize = bool(l2_normalize)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        shape_a, shape_b = _check_pair(type(self).__name__, input_shape)
        if len(shape_a) != 4 or len(shape_b) != 4:
            raise ValueError(f"{type(self).__name__} takes two (N, H, W, D) maps, got {shape_a} and {shape_b}")
        _check_same_map(type(self).__name__, shape_a, shape_b, same_channels=False)
        if shape_a[-1] is None or shape_b[-1] is None:
            raise ValueError(f"{type(self).__name__} needs known channel axes, got {shape_a} and {shape_b}")
        self.built = True

    def call(self, inputs):
        x_a, x_b = (ops.cast(x, "float32") for x in inputs)
        channels_a, channels_b = x_a.shape[-1], x_b.shape[-1]
        batch = ops.shape(x_a)[0]
        a = ops.reshape(x_a, (batch, -1, channels_a))
        b = ops.reshape(x_b, (batch, -1, channels_b))
        y = ops.reshape(ops.matmul(ops.transpose(a, (0, 2, 1)), b), (batch, channels_a * channels_b))
        if self.signed_sqrt:
            magnitude = ops.abs(y)
            positive = magnitude > 0
            root = ops.sqrt(ops.where(positive, magnitude, ops.ones_like(magnitude)))
            y = ops.sign(y) * ops.where(positive, root, ops.zeros_like(root))
        if self.l2_normalize:
            squared = ops.sum(ops.square(y), axis=-1, keepdims=True)
            y = y / ops.sqrt(ops.maximum(squared, self.epsilon))
        return ops.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        shape_a, shape_b = input_shape
        return (shape_a[0], shape_a[-1] * shape_b[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "signed_sqrt": self.signed_sqrt,
            "l2_normalize": self.l2_normalize,
            "epsilon": self.epsilon,
        }


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class StackAcrossTime(keras.layers.Layer):
    """Stacks the T snippets' maps of each video across time:
    ``(B·T, H, W, D)`` -> ``(B, T, H, W, D)``.

    The inverse of :class:`~keras_gated_tsn.layers.SegmentFold`: the input of
    a temporal fusion layer, "feature maps x in R^{H x W x T x D} generated by
    stacking spatial maps across time t = 1 ... T" (Sec. 3.3; here the time
    axis comes first, channels last).

    Called on ``[maps, clip]``: ``maps`` of shape ``(B·T, ...)`` (the rows of
    a video consecutive, as :class:`~keras_gated_tsn.layers.SegmentFold`
    folds them) and the model input ``clip`` of shape ``(B, T, ...)``, used
    only for B (and T, when it is static). Returns ``(B, T, ...)``, the
    dtype of ``maps``.
    """

    def call(self, inputs):
        maps, clip = inputs
        batch = ops.shape(clip)[0]
        frames = -1 if clip.shape[1] is None else clip.shape[1]
        return ops.reshape(maps, (batch, frames) + tuple(ops.shape(maps)[1:]))

    def compute_output_shape(self, input_shape):
        maps_shape, clip_shape = input_shape
        return (clip_shape[0], clip_shape[1]) + tuple(maps_shape[1:])


@keras.saving.register_keras_serializable(package="keras_gated_tsn")
class Pooling3D(keras.layers.Layer):
    """3D pooling: max pooling over ``T' x H' x W'`` spatiotemporal cubes (Sec. 3.3, Fig. 3(b)).

    The straightforward extension of 2D pooling to time: each channel of the
    maps stacked across time (``(B, T, H, W, D)``, :class:`StackAcrossTime`)
    is max-pooled within cubes of ``pool_size = (T', H', W')``; there is no
    pooling across channels. E.g. three temporal samples pooled with a 3x3x3
    cube. It gives invariance to small changes of a feature's position over
    time (Sec. 3.3 "Discussion").

    Time is never padded: ``T_out = (T - T') // strides[0] + 1`` (``T' = T``
    with the default stride: one output per video). Space is padded as
    ``spatial_padding`` says: ``"same"`` (``H_out = ceil(H / strides[1])``;
    with stride 1 the map keeps its size, so layers after it keep their
    shapes) or ``"valid"``. Padded positions never win the max.

    Input: float ``(B, T, H, W, D)`` (H, W and D known). Output:
    ``(B, T_out, H_out, W_out, D)``, the input's dtype.

    Args:
        pool_size: ``(T', H', W')`` positive ints.
        strides: ``(t, h, w)`` positive ints; default ``(T', 1, 1)``.
        spatial_padding: one of :data:`SPATIAL_PADDINGS`.

    Raises:
        ValueError: for a bad ``pool_size``, ``strides`` or
            ``spatial_padding`` (quoting it); when built on input that is not
            5-D, has an unknown height, width or channel count, or fewer than
            T' snippets.
    """

    def __init__(
        self,
        pool_size: Sequence[int] = (3, 3, 3),
        strides: Optional[Sequence[int]] = None,
        spatial_padding: str = "same",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.pool_size = self._triple("pool_size", pool_size)
        self.strides = (
            (self.pool_size[0], 1, 1) if strides is None else self._triple("strides", strides)
        )
        if spatial_padding not in SPATIAL_PADDINGS:
            raise ValueError(f"spatial_padding must be one of {SPATIAL_PADDINGS}, got {spatial_padding!r}")
        self.spatial_padding = spatial_padding

    @staticmethod
    def _triple(name, value) -> Tuple[int, int, int]:
        sizes = tuple(value) if isinstance(value, (list, tuple)) else ()
        if len(sizes) != 3 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
                                      for v in sizes):
            raise ValueError(f"{name} must be three positive ints (t, h, w), got {value!r}")
        return tuple(int(v) for v in sizes)

    def build(self, input_shape):
        if len(input_shape) != 5:
            raise ValueError(f"Pooling3D takes maps stacked across time (B, T, H, W, D), got {input_shape}")
        if None in tuple(input_shape[2:]):
            raise ValueError(f"Pooling3D needs a known height, width and channels, got {input_shape}")
        if input_shape[1] is not None and input_shape[1] < self.pool_size[0]:
            raise ValueError(
                f"Pooling3D: {input_shape[1]} snippets are fewer than the cube's T'={self.pool_size[0]}"
            )
        self.built = True

    def call(self, inputs):
        # A max over a cube is a max over time of maxima over space: two 2D
        # poolings, which every backend has for float16 and bfloat16 on a CPU
        # too (TensorFlow's 3D max pooling has no float16 CPU kernel).
        x = inputs
        (t, h, w), (st, sh, sw) = self.pool_size, self.strides
        batch = ops.shape(x)[0]
        _, frames, height, width, channels = x.shape
        if (t, st) != (1, 1):
            x = ops.reshape(x, (batch, -1 if frames is None else frames, height * width, channels))
            x = ops.max_pool(x, (t, 1), strides=(st, 1), padding="valid")
            frames = x.shape[1]
            x = ops.reshape(x, (batch, -1 if frames is None else frames, height, width, channels))
        if (h, w, sh, sw) != (1, 1, 1, 1):
            folded = ops.reshape(x, (-1, height, width, channels))
            folded = ops.max_pool(folded, (h, w), strides=(sh, sw), padding=self.spatial_padding)
            x = ops.reshape(folded, (batch, -1 if frames is None else frames) + tuple(folded.shape[1:]))
        return x

    def compute_output_shape(self, input_shape):
        batch, frames, height, width, channels = input_shape
        (t, h, w), (st, sh, sw) = self.pool_size, self.strides

        def spatial(n, k, s):
            if n is None:
                return None
            return -(-n // s) if self.spatial_padding == "same" else (n - k) // s + 1

        frames = None if frames is None else (frames - t) // st + 1
        return (batch, frames, spatial(height, h, sh), spatial(width, w, sw), channels)

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": list(self.pool_size),
            "strides": list(self.strides),
            "spatial_padding": self.spatial_padding,
        }


#: Spatial fusion functions by the paper's names (Sec. 3.1).
SPATIAL_FUSIONS = {
    "sum": SumFusion,
    "max": MaxFusion,
    "concat": ConcatFusion,
    "conv": ConvFusion,
    "bilinear": BilinearFusion,
}

__all__ = [
    "BilinearFusion", "ConcatFusion", "Conv3DFusion", "ConvFusion", "MaxFusion", "Pooling3D",
    "SPATIAL_FUSIONS", "StackAcrossTime", "SumFusion", "gaussian_profile", "identity_sum_matrix",
]
