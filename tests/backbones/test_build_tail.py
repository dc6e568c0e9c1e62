"""build_tail: the gating ConvNet's trunk equals the rest of its backbone."""

import keras
import numpy as np
import pytest

from keras_gated_tsn.backbones import get_backbone
from randomize import randomize  # tests/backbones is on sys.path (pytest prepend mode)

CASES = [
    ("caffenet", 107, after) for after in ("conv4", "conv1", "norm1", "pool2", "pool5")
] + [
    ("vgg16", 64, after) for after in ("block5_conv2", "block3_pool", "block1_conv1", "block5_pool")
] + [
    ("bn_inception", 64, after) for after in ("inception_4e_output", "pool2_3x3_s2", "inception_5b_output")
]


@pytest.mark.parametrize("backbone,size,after", CASES)
def test_build_tail_reproduces_the_backbone(backbone, size, after):
    spec = get_backbone(backbone)
    rng = np.random.default_rng(3)
    model = spec.builder(include_top=False, input_shape=(size, size, 3))
    randomize(model, rng)
    features = keras.Model(model.input, [model.get_layer(after).output, model.output])
    feature_in = keras.Input(shape=model.get_layer(after).output.shape[1:])
    tail = keras.Model(feature_in, spec.build_tail(feature_in, after, prefix="gating_", frozen_bn=True))
    for layer in tail.layers:
        if layer.weights:
            assert layer.name.startswith("gating_")
            layer.set_weights(model.get_layer(layer.name[len("gating_"):]).get_weights())
    image = rng.uniform(-128, 128, (2, size, size, 3)).astype("float32")
    fmap, expected = features.predict(image, verbose=0)
    np.testing.assert_allclose(tail.predict(fmap, verbose=0), expected, rtol=1e-5, atol=1e-5)
