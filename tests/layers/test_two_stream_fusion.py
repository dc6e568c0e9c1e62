"""Spatial and temporal fusion layers of convolutional two-stream fusion
(Feichtenhofer et al. 2016, Sec. 3.1 eqs. (1)-(5), Sec. 3.3 eq. (6), Sec. 3.5):
hand-computed cases, the identity / Gaussian initialisations, 3D pooling
against a brute-force NumPy max, shapes, errors, mixed precision and
serialization."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import run_model_saving_test, run_serialization_test
from keras_gated_tsn.layers import (
    BilinearFusion,
    ConcatFusion,
    Conv3DFusion,
    ConvFusion,
    MaxFusion,
    Pooling3D,
    SegmentFold,
    StackAcrossTime,
    SumFusion,
)
from keras_gated_tsn.layers.two_stream_fusion import SPATIAL_FUSIONS, gaussian_profile, identity_sum_matrix

# Two (N=1, H=2, W=1, D=2) maps: x^a (spatial network) and x^b (temporal network).
X_A = np.array([[[[1.0, -2.0]], [[3.0, 0.5]]]], np.float32)
X_B = np.array([[[[4.0, 1.0]], [[-1.0, 2.0]]]], np.float32)


# ------------------------------------------------------ spatial fusion, Sec. 3.1
def test_sum_fusion_is_equation_1():
    np.testing.assert_array_equal(SumFusion()([X_A, X_B]), [[[[5.0, -1.0]], [[2.0, 2.5]]]])


def test_max_fusion_is_equation_2():
    np.testing.assert_array_equal(MaxFusion()([X_A, X_B]), [[[[4.0, 1.0]], [[3.0, 2.0]]]])


def test_concat_fusion_interleaves_as_equation_3():
    """y_{2d} = x^a_d, y_{2d-1} = x^b_d (1-based): 0-based [b_0, a_0, b_1, a_1]."""
    y = ConcatFusion()([X_A, X_B])
    assert y.shape == (1, 2, 1, 4)
    np.testing.assert_array_equal(y, [[[[4.0, 1.0, 1.0, -2.0]], [[-1.0, 3.0, 2.0, 0.5]]]])


def test_conv_fusion_starts_as_the_sum_and_is_equation_4():
    layer = ConvFusion()
    y = layer([X_A, X_B])
    assert layer.kernel.shape == (1, 1, 4, 2) and layer.bias.shape == (2,)
    # Two identity matrices, placed for eq. (3)'s interleaved channels.
    np.testing.assert_array_equal(layer.kernel.numpy()[0, 0], [[1, 0], [1, 0], [0, 1], [0, 1]])
    np.testing.assert_array_equal(layer.bias.numpy(), [0, 0])
    np.testing.assert_array_equal(y, X_A + X_B)  # exactly the sum
    # The temporal network's identity scaled (Sec. 3.5's factor, here also on the 2D conv).
    np.testing.assert_array_equal(ConvFusion(identity_scales=(2.0, 3.0))([X_A, X_B]), 2 * X_A + 3 * X_B)
    # Eq. (4) with a hand-set filter bank f (2D x D) and bias b, at pixel (0, 0): y_cat = [4, 1, 1, -2].
    kernel = np.array([[1, 2], [3, 4], [5, 6], [7, 8]], np.float32)
    layer.set_weights([kernel[None, None], np.array([0.5, -1.0], np.float32)])
    y = layer([X_A, X_B]).numpy()
    np.testing.assert_allclose(y[0, 0, 0], [4 + 3 + 5 - 14 + 0.5, 8 + 4 + 6 - 16 - 1.0])
    # ... and at pixel (1, 0): y_cat = [-1, 3, 2, 0.5].
    np.testing.assert_allclose(y[0, 1, 0], [-1 + 9 + 10 + 3.5 + 0.5, -2 + 12 + 12 + 4 - 1.0])


def test_conv_fusion_other_initialisers_and_filters():
    layer = ConvFusion(filters=3, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01, seed=1))
    assert layer([X_A, X_B]).shape == (1, 2, 1, 3)
    assert layer.kernel.shape == (1, 1, 4, 3)
    with pytest.raises(ValueError, match="filters=3"):
        ConvFusion(filters=3)([X_A, X_B])  # the identity maps 2D -> D only
    with pytest.raises(ValueError, match="filters must be"):
        ConvFusion(filters=0)
    with pytest.raises(ValueError, match="identity_scales"):
        ConvFusion(identity_scales=(1.0,))
    with pytest.raises(ValueError):
        ConvFusion(kernel_initializer="no_such_initializer")


def test_bilinear_fusion_is_equation_5_with_signed_sqrt_and_l2():
    """y = sum_ij x^a_ij^T x^b_ij by hand: y00 = 1*4 + 3*(-1) = 1, y01 = 1*1 + 3*2 = 7,
    y10 = -2*4 + 0.5*(-1) = -8.5, y11 = -2*1 + 0.5*2 = -1; signed sqrt; L2."""
    raw = np.array([1.0, 7.0, -8.5, -1.0])
    np.testing.assert_allclose(
        BilinearFusion(signed_sqrt=False, l2_normalize=False)([X_A, X_B]), [raw], rtol=1e-6
    )
    roots = np.array([1.0, math.sqrt(7.0), -math.sqrt(8.5), -1.0])
    np.testing.assert_allclose(BilinearFusion(l2_normalize=False)([X_A, X_B]), [roots], rtol=1e-6)
    expected = roots / math.sqrt(1 + 7 + 8.5 + 1)
    np.testing.assert_allclose(BilinearFusion()([X_A, X_B]), [expected], rtol=1e-6)
    # The same from NumPy's outer products, on random maps with D != D'.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, 4, 5)).astype("float32"), rng.normal(size=(2, 3, 4, 2)).astype("float32")
    y = np.einsum("nhwi,nhwj->nij", a.astype("float64"), b.astype("float64")).reshape(2, 10)
    y = np.sign(y) * np.sqrt(np.abs(y))
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    out = BilinearFusion()([a, b])
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out, y, rtol=1e-5, atol=1e-6)


def test_bilinear_fusion_zeros_have_finite_gradients():
    """ReLU maps have silent channels: y = 0 there, and the gradient stays finite."""
    a = tf.constant(np.array([[[[0.0, 2.0]], [[0.0, 1.0]]]], np.float32))
    b = tf.constant(X_B)
    with tf.GradientTape() as tape:
        tape.watch([a, b])
        y = BilinearFusion()([a, b])
        loss = tf.reduce_sum(y * tf.constant([[1.0, 2.0, 3.0, 4.0]]))
    grads = tape.gradient(loss, [a, b])
    assert np.isfinite(y.numpy()).all() and all(np.isfinite(g.numpy()).all() for g in grads)
    np.testing.assert_array_equal(y.numpy()[0, :2], [0.0, 0.0])
    zero = BilinearFusion()([np.zeros_like(X_A), X_B])
    np.testing.assert_array_equal(zero, np.zeros((1, 4)))


def test_fusions_shapes_and_errors():
    a, b = np.ones((3, 5, 6, 4), "float32"), np.ones((3, 5, 6, 4), "float32")
    expected = {"sum": (3, 5, 6, 4), "max": (3, 5, 6, 4), "concat": (3, 5, 6, 8), "conv": (3, 5, 6, 4),
                "bilinear": (3, 16)}
    for name, cls in SPATIAL_FUSIONS.items():
        layer = cls()
        assert tuple(layer([a, b]).shape) == expected[name], name
        assert tuple(layer.compute_output_shape([a.shape, b.shape])) == expected[name], name
        with pytest.raises(ValueError, match="spatial"):
            cls()([a, np.ones((3, 4, 6, 4), "float32")])  # Sec. 3.2: the same H and W
        with pytest.raises(ValueError, match="two feature maps"):
            cls()([a, b, a])
    with pytest.raises(ValueError, match="same channels"):
        SumFusion()([a, np.ones((3, 5, 6, 2), "float32")])
    assert BilinearFusion()([a, np.ones((3, 5, 6, 2), "float32")]).shape == (3, 8)
    with pytest.raises(ValueError, match="epsilon"):
        BilinearFusion(epsilon=0.0)
    # The element-wise fusions work on maps stacked across time too.
    stacked = np.ones((2, 3, 5, 6, 4), "float32")
    assert ConvFusion()([stacked, stacked]).shape == (2, 3, 5, 6, 4)
    assert ConcatFusion()([stacked, stacked]).shape == (2, 3, 5, 6, 8)


# ----------------------------------------------------- temporal fusion, Sec. 3.3
def test_conv3d_fusion_initialisation_is_section_3_5():
    """f[t, i, j] = g[t, i, j] * [I; 3 I]: a 3x3x3 Gaussian with sigma 1 (sum 1)
    times two stacked identities, the temporal network's 3 times higher."""
    layer = Conv3DFusion()
    maps = np.ones((1, 3, 3, 3, 2), "float32")
    y = layer([maps, 2 * maps])
    kernel = layer.kernel.numpy()
    assert kernel.shape == (3, 3, 3, 4, 2)
    z = (1 + 2 * math.exp(-0.5)) ** 3
    for t in (-1, 0, 1):
        for i in (-1, 0, 1):
            for j in (-1, 0, 1):
                g = math.exp(-(t * t + i * i + j * j) / 2.0) / z
                np.testing.assert_allclose(
                    kernel[t + 1, i + 1, j + 1], [[3 * g, 0], [g, 0], [0, 3 * g], [0, g]], rtol=1e-6
                )
    np.testing.assert_allclose(kernel[1, 1, 1, 1, 0], 1 / z, rtol=1e-6)
    np.testing.assert_array_equal(layer.bias.numpy(), [0, 0])
    # Away from the borders a constant input gives x^a + 3 x^b = 1 + 3 * 2.
    assert y.shape == (1, 3, 3, 3, 2)
    np.testing.assert_allclose(y.numpy()[0, 1, 1, 1], [7.0, 7.0], rtol=1e-6)
    # "same" zero padding: a corner sees 8 of the 27 taps.
    corner = sum(math.exp(-(t * t + i * i + j * j) / 2.0) for t in (0, 1) for i in (0, 1) for j in (0, 1)) / z
    np.testing.assert_allclose(y.numpy()[0, 0, 0, 0], [7.0 * corner] * 2, rtol=1e-5)


def test_conv3d_fusion_temporal_gaussian_is_identity_in_space():
    """init_profile="temporal_gaussian": the Gaussian over t at the spatial
    centre only, so an impulse spreads over time and not over space."""
    layer = Conv3DFusion(init_profile="temporal_gaussian", identity_scales=(1.0, 3.0))
    impulse = np.zeros((1, 3, 3, 3, 1), "float32")
    impulse[0, 1, 1, 1, 0] = 1.0
    g = np.array([math.exp(-0.5), 1.0, math.exp(-0.5)]) / (1 + 2 * math.exp(-0.5))
    from_rgb = layer([impulse, np.zeros_like(impulse)]).numpy()
    expected = np.zeros((1, 3, 3, 3, 1))
    expected[0, :, 1, 1, 0] = g
    np.testing.assert_allclose(from_rgb, expected, rtol=1e-6, atol=1e-7)
    from_flow = layer([np.zeros_like(impulse), impulse]).numpy()
    np.testing.assert_allclose(from_flow, 3 * expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gaussian_profile((3, 3, 3), 1.0, spatial=False)[:, 1, 1], g, rtol=1e-6)
    assert gaussian_profile((3, 3, 3), 1.0).sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(identity_sum_matrix(2, (1.0, 3.0)), [[3, 0], [1, 0], [0, 3], [0, 1]])


def test_conv3d_fusion_options_and_errors():
    layer = Conv3DFusion(filters=3, kernel_size=(1, 3, 3), kernel_initializer="glorot_uniform")
    maps = np.ones((2, 4, 5, 5, 2), "float32")
    assert layer([maps, maps]).shape == (2, 4, 5, 5, 3) and layer.kernel.shape == (1, 3, 3, 4, 3)
    for bad in (dict(kernel_size=(2, 3, 3)), dict(kernel_size=(3, 3)), dict(sigma=0.0),
                dict(init_profile="box"), dict(filters=-1)):
        with pytest.raises(ValueError, match=f"{list(bad)[0]} must be"):
            Conv3DFusion(**bad)
    with pytest.raises(ValueError, match=r"\(B, T, H, W, D\)"):
        Conv3DFusion()([X_A, X_B])


def _brute_force_pool3d(x, pool, strides, same):
    """Max over every T' x H' x W' cube, time never padded, space clipped to the map
    (TensorFlow's "same": centred windows, padding never wins)."""
    b, t, h, w, d = x.shape
    (pt, ph, pw), (st, sh, sw) = pool, strides
    out_t = (t - pt) // st + 1
    if same:
        out_h, out_w = -(-h // sh), -(-w // sw)
        pad_h, pad_w = max((out_h - 1) * sh + ph - h, 0) // 2, max((out_w - 1) * sw + pw - w, 0) // 2
    else:
        out_h, out_w, pad_h, pad_w = (h - ph) // sh + 1, (w - pw) // sw + 1, 0, 0
    out = np.empty((b, out_t, out_h, out_w, d), x.dtype)
    for i in range(out_t):
        for j in range(out_h):
            for k in range(out_w):
                h0, w0 = j * sh - pad_h, k * sw - pad_w
                cube = x[:, i * st:i * st + pt, max(h0, 0):h0 + ph, max(w0, 0):w0 + pw]
                out[:, i, j, k] = cube.max(axis=(1, 2, 3))
    return out


def test_pooling3d_hand_case():
    x = np.arange(12, dtype="float32").reshape(1, 3, 2, 2, 1)  # x[t, h, w] = 4t + 2h + w
    y = Pooling3D((2, 2, 2), strides=(1, 1, 1), spatial_padding="valid")(x)
    np.testing.assert_array_equal(y, np.array([7.0, 11.0]).reshape(1, 2, 1, 1, 1))
    # The default strides (T', 1, 1) and "same": one output over all snippets, the map's size kept.
    y = Pooling3D((3, 1, 1))(x)
    np.testing.assert_array_equal(y, x[:, 2:3])
    # No pooling across channels.
    two = np.concatenate([x, -x], axis=-1)
    np.testing.assert_array_equal(Pooling3D((3, 1, 1))(two).numpy()[..., 1], -x[:, 0, ..., 0][:, None])


@pytest.mark.parametrize(
    "pool,strides,padding",
    [((3, 3, 3), None, "same"), ((2, 3, 3), (1, 1, 1), "same"), ((2, 2, 2), (2, 2, 2), "valid"),
     ((1, 3, 3), (1, 2, 2), "same")],
)
def test_pooling3d_against_brute_force(pool, strides, padding):
    x = np.random.default_rng(1).normal(size=(2, 4, 5, 6, 3)).astype("float32")  # negative values too
    layer = Pooling3D(pool, strides=strides, spatial_padding=padding)
    expected = _brute_force_pool3d(x, layer.pool_size, layer.strides, padding == "same")
    y = layer(x)
    assert tuple(y.shape) == expected.shape == tuple(layer.compute_output_shape(x.shape))
    np.testing.assert_array_equal(y, expected)


def test_pooling3d_errors():
    for bad in (dict(pool_size=(0, 3, 3)), dict(pool_size=(3, 3)), dict(strides=(1, 0, 1)),
                dict(spatial_padding="causal")):
        with pytest.raises(ValueError, match=list(bad)[0]):
            Pooling3D(**bad)
    with pytest.raises(ValueError, match="fewer than"):
        Pooling3D((3, 3, 3))(np.ones((1, 2, 4, 4, 1), "float32"))
    with pytest.raises(ValueError, match=r"\(B, T, H, W, D\)"):
        Pooling3D()(np.ones((1, 4, 4, 1), "float32"))


def test_stack_across_time_undoes_segment_fold():
    clip = np.zeros((2, 3, 8, 8, 3), "uint8")
    maps = np.arange(2 * 3 * 2 * 2 * 4, dtype="float32").reshape(6, 2, 2, 4)
    stacked = StackAcrossTime()([maps, clip])
    np.testing.assert_array_equal(stacked, maps.reshape(2, 3, 2, 2, 4))
    np.testing.assert_array_equal(SegmentFold()(stacked), maps)
    assert StackAcrossTime().compute_output_shape([(None, 2, 2, 4), (None, 3, 8, 8, 3)]) == (None, 3, 2, 2, 4)


# ----------------------------------------------- precision and serialization
def test_mixed_precision():
    conv = ConvFusion(dtype="mixed_float16")
    y = conv([X_A, X_B])
    assert y.dtype == "float16" and conv.kernel.dtype == "float32"
    np.testing.assert_array_equal(y.numpy().astype("float32"), X_A + X_B)
    assert Conv3DFusion(dtype="mixed_bfloat16")([np.ones((1, 2, 3, 3, 2))] * 2).dtype == "bfloat16"
    assert Pooling3D((2, 3, 3), dtype="mixed_float16")(np.ones((1, 2, 3, 3, 2), "float16")).dtype == "float16"
    # Bilinear sums overflow float16 (4 * 300^2 > 65504): they are computed in float32.
    big = np.full((1, 2, 2, 2), 300.0, "float32")
    y = BilinearFusion(dtype="mixed_float16")([big, big])
    assert y.dtype == "float16"
    np.testing.assert_allclose(y.numpy().astype("float32"), np.full((1, 4), 0.5), rtol=1e-3)


@pytest.mark.parametrize(
    "layer",
    [
        SumFusion(name="s"), MaxFusion(), ConcatFusion(),
        ConvFusion(filters=4, kernel_initializer="he_normal", bias_initializer="ones", identity_scales=(1, 2)),
        ConvFusion(kernel_initializer=keras.initializers.RandomNormal(stddev=0.01)),
        Conv3DFusion(kernel_size=(3, 1, 1), identity_scales=(1.0, 2.0), sigma=0.5, init_profile="temporal_gaussian"),
        BilinearFusion(signed_sqrt=False, l2_normalize=True, epsilon=1e-6),
        Pooling3D((2, 3, 3), strides=(1, 2, 2), spatial_padding="valid"), StackAcrossTime(),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_serialization(layer):
    clone = run_serialization_test(layer)
    for key, value in layer.get_config().items():  # constructor arguments kept as attributes
        if key not in ("name", "dtype", "trainable"):
            mine = getattr(clone, key)
            assert (list(mine) if isinstance(mine, tuple) else mine) == value, key


def test_keras_round_trip(tmp_path):
    """A model with every layer saves as .keras and loads with the same outputs."""
    a = keras.Input((3, 4, 4, 2), name="a")
    b = keras.Input((3, 4, 4, 2), name="b")
    fold_a, fold_b = SegmentFold()(a), SegmentFold()(b)
    outputs = {
        "sum": SumFusion()([fold_a, fold_b]), "max": MaxFusion()([fold_a, fold_b]),
        "concat": ConcatFusion()([fold_a, fold_b]),
        "conv": ConvFusion(kernel_initializer="glorot_uniform")([fold_a, fold_b]),
        "bilinear": BilinearFusion()([fold_a, fold_b]),
        "pool3d": Pooling3D((3, 3, 3))(StackAcrossTime()([fold_a, a])),
        "conv3d": Pooling3D((2, 2, 2), strides=(1, 1, 1))(Conv3DFusion()([a, b])),
    }
    model = keras.Model({"a": a, "b": b}, outputs, name="two_stream_fusion_layers")
    rng = np.random.default_rng(2)
    inputs = {k: rng.normal(size=(2, 3, 4, 4, 2)).astype("float32") for k in ("a", "b")}
    loaded = run_model_saving_test(model, inputs, tmp_path)
    kinds = {type(layer) for layer in loaded.layers}
    assert {SumFusion, MaxFusion, ConcatFusion, ConvFusion, Conv3DFusion, BilinearFusion, Pooling3D,
            StackAcrossTime} <= kinds
