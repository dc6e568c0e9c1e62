"""Argument checks the model constructors share."""

from __future__ import annotations

import keras
import numpy as np


def compile_from_config(model, config) -> None:
    """``keras.Model.compile_from_config`` for models with their own ``compile``:
    the saved optimizer, losses, loss weights and metrics, deserialized and
    given to that ``compile`` (explicit values win over its ``"auto"``
    defaults), and the optimizer built so its saved state can be loaded."""
    model.compile(**keras.saving.deserialize_keras_object(config))
    if model.built:
        model.optimizer.build(model.trainable_variables)


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int if it is an int >= ``minimum``.

    Raises:
        ValueError: quoting ``name`` and ``value`` otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_ratio(name: str, value) -> float:
    """``value`` as a float if it is a ratio in [0, 1) (dropout).

    Raises:
        ValueError: quoting ``name`` and ``value`` otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def check_choice(name: str, value, choices) -> str:
    """``value`` if it is one of ``choices``.

    Raises:
        ValueError: quoting ``name``, ``value`` and the choices otherwise.
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value
