"""What the backbone builders share: argument checks, inputs, pooling, tails."""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import keras
from keras import layers

from keras_gated_tsn.weights import pretrained


def check_arguments(pooling, include_top: bool, classes, weights) -> None:
    """keras.applications-style up-front checks.

    Raises:
        ValueError: quoting a bad ``pooling``, ``classes`` or ``weights``.
    """
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if include_top and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 1):
        raise ValueError(f"classes must be a positive int with include_top=True, got {classes!r}")
    pretrained.check_argument(weights)


def input_shape_of(
    arch: str,
    input_shape,
    input_tensor,
    *,
    default_size: int,
    min_size: int,
    fixed_size_reason: Optional[str] = None,
) -> Tuple[Optional[int], Optional[int], int]:
    """``(height, width, channels)`` of a builder's input, checked.

    Args:
        arch: the backbone's display name, for messages.
        input_shape, input_tensor: the builder's arguments.
        default_size: side used when neither is given (3 channels).
        min_size: smallest side that builds.
        fixed_size_reason: when set, height and width must be known (a
            flattening top); the text says why.

    Raises:
        ValueError: for a shape that is not 3-D, too small, without a
            positive channel count, or not fixed when it must be.
    """
    if input_tensor is not None:
        shape = tuple(input_tensor.shape[1:])
    elif input_shape is not None:
        shape = tuple(input_shape)
    else:
        shape = (default_size, default_size, 3)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {shape}")
    height, width, channels = shape
    for size in (height, width):
        if size is not None and size < min_size:
            raise ValueError(f"{arch} needs inputs of at least {min_size}x{min_size}, got {shape}")
    if channels is None or channels < 1:
        raise ValueError(f"the channel axis must be known and positive, got {shape}")
    if fixed_size_reason and (height is None or width is None):
        raise ValueError(f"{fixed_size_reason} and needs a fixed height and width, got {shape}")
    return height, width, channels


def builder_inputs(input_tensor, shape):
    """``(inputs, x)``: a new ``Input`` named ``input``, or, keras.applications
    style, the source inputs of ``input_tensor`` and the tensor itself."""
    if input_tensor is None:
        inputs = keras.Input(shape=shape, name="input")
        return inputs, inputs
    return keras.utils.get_source_inputs(input_tensor), input_tensor


def global_pooling(x, pooling: Optional[str]):
    """``pooling`` of a builder without top: None, ``"avg"`` (``global_pool``) or ``"max"``."""
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="global_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="global_max_pool")(x)
    return x


def run_tail(
    x,
    after: str,
    *,
    arch: str,
    stages: Sequence[str],
    feature_layers: Dict[str, Tuple[int, int]],
    run_stage: Callable,
):
    """Applies ``run_stage(x, stage)`` for every stage after ``after``.

    Raises:
        ValueError: if ``after`` is not one of ``feature_layers``.
    """
    if after not in feature_layers:
        raise ValueError(f"unknown {arch} feature layer {after!r}; valid: {list(feature_layers)}")
    for stage in stages[list(stages).index(after) + 1 :]:
        x = run_stage(x, stage)
    return x


def finish(inputs, x, *, name: str, arch: str, weights, builder_kwargs: dict) -> keras.Model:
    """The functional model, with ``weights`` loaded
    (:func:`keras_gated_tsn.weights.pretrained.load_into`)."""
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        pretrained.load_into(model, arch, weights, builder_kwargs)
    return model
