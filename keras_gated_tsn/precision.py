"""Numeric precision of the models: Keras dtype policies, chosen by name and checked against the hardware.

A model of the package is built under one of :data:`PRECISIONS`:

* ``"float32"``: everything in float32 (the reference; Caffe-exact layers);
* ``"mixed_float16"``: variables float32, computation float16 (fast on GPUs
  with tensor cores; ``compile()`` then wraps the optimizer in Keras'
  ``LossScaleOptimizer``, whose dynamic loss scale keeps small float16
  gradients from underflowing);
* ``"mixed_bfloat16"``: variables float32, computation bfloat16 (TPUs, recent
  GPUs, and CPUs with AVX512-BF16 or AMX-BF16; no loss scaling needed, the
  range is float32's).

Under both mixed policies the models keep in float32 what must stay exact or
in range: the class scores they output (the last ``Dense`` and the segment
consensus), the fusion weights and eq. (2)'s fused scores, the losses, and
the batch-normalisation statistics (Keras' ``BatchNormalization`` normalises
float16 / bfloat16 input in float32; its variables are float32). See Keras'
mixed precision guide, https://keras.io/api/mixed_precision/.

:class:`~keras_gated_tsn.models.TSN` and :class:`~keras_gated_tsn.models.GatedTSN`
take the policy as their ``dtype`` argument and record it in their config,
so a saved ``.keras`` file reloads under the policy it was built with;
``dtype=None`` takes the global policy, which :func:`precision_scope` and
:func:`set_precision` set.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, Optional

import keras

#: The dtype policies the models support (Keras policy names).
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

#: ``/proc/cpuinfo`` flags of x86 CPUs that compute bfloat16 natively
#: (AVX512-BF16 dot products; AMX tiles, Sapphire Rapids and later).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")

#: Where Linux lists the CPU's flags.
CPUINFO = "/proc/cpuinfo"


def check_precision(name) -> str:
    """The policy name of ``name`` if it is one of :data:`PRECISIONS`.

    Args:
        name: a policy name (``"mixed_float16"``) or a ``keras.DTypePolicy``.

    Returns:
        The name, a ``str``.

    Raises:
        ValueError: for anything else (another policy such as ``"float16"``,
            whose variables would be float16 too), quoting it and listing the
            choices.
    """
    value = name.name if isinstance(name, keras.DTypePolicy) else name
    if not isinstance(value, str) or value not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
    return value


def resolve_precision(dtype=None) -> str:
    """The policy a model is built under: ``dtype``, or the global policy when None.

    Args:
        dtype: None, a name of :data:`PRECISIONS` or a ``keras.DTypePolicy``.

    Returns:
        One of :data:`PRECISIONS`.

    Raises:
        ValueError: for another policy, explicit or global (e.g.
            ``keras.config.set_dtype_policy("float16")``).
    """
    return check_precision(keras.config.dtype_policy() if dtype is None else dtype)


def cpu_has_bfloat16(cpuinfo: str = CPUINFO) -> bool:
    """Whether the CPU computes bfloat16 natively.

    True when the ``flags`` of ``cpuinfo`` name one of :data:`BF16_CPU_FLAGS`
    (``avx512_bf16``, ``amx_bf16``). Elsewhere (no such file: macOS,
    Windows, ARM without those flags) False: TensorFlow then emulates bfloat16
    through float32 conversions, about 16 times slower than float32.

    Args:
        cpuinfo: the file to read (Linux's ``/proc/cpuinfo``).

    Returns:
        bool.
    """
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def has_gpu() -> bool:
    """Whether the backend sees at least one GPU (``keras.distribution.list_devices("gpu")``)."""
    try:
        return bool(keras.distribution.list_devices("gpu"))
    except Exception:  # a backend that cannot list GPUs has none to use
        return False


def hardware_warning(name, *, gpu: Optional[bool] = None, cpu_bf16: Optional[bool] = None) -> Optional[str]:
    """Why ``name`` would run slowly on this machine, or None.

    Args:
        name: one of :data:`PRECISIONS`.
        gpu: whether a GPU is present; default :func:`has_gpu`.
        cpu_bf16: whether the CPU has bfloat16; default :func:`cpu_has_bfloat16`.

    Returns:
        The text of the warning (``"mixed_float16"`` without a GPU;
        ``"mixed_bfloat16"`` without a GPU on a CPU lacking AVX512-BF16 /
        AMX-BF16), or None.

    Raises:
        ValueError: for a name not in :data:`PRECISIONS`.
    """
    name = check_precision(name)
    if name == "float32":
        return None
    if gpu is None:
        gpu = has_gpu()
    if gpu:
        return None
    if name == "mixed_float16":
        return (
            "precision 'mixed_float16' was chosen but no GPU is visible: CPUs have no fast float16 "
            "arithmetic, TensorFlow emulates it there and training runs slower than in float32; "
            "use 'float32' (or 'mixed_bfloat16' on a CPU with AVX512-BF16 or AMX-BF16)"
        )
    if cpu_bf16 is None:
        cpu_bf16 = cpu_has_bfloat16()
    if not cpu_bf16:
        return (
            "precision 'mixed_bfloat16' was chosen on a CPU-only machine whose CPU has neither "
            f"{' nor '.join(BF16_CPU_FLAGS)} (see {CPUINFO}): TensorFlow emulates bfloat16 there, "
            "about 16x slower than float32; use 'float32'"
        )
    return None


def warn_if_slow(name, *, gpu: Optional[bool] = None, cpu_bf16: Optional[bool] = None) -> Optional[str]:
    """``warnings.warn`` (``RuntimeWarning``) the :func:`hardware_warning` of ``name``, if any.

    Args and Raises: as :func:`hardware_warning`.

    Returns:
        The text warned, or None.
    """
    message = hardware_warning(name, gpu=gpu, cpu_bf16=cpu_bf16)
    if message:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    return message


@contextlib.contextmanager
def precision_scope(name, *, warn: bool = True) -> Iterator[keras.DTypePolicy]:
    """Builds the models created inside under the dtype policy ``name``.

    Sets the global Keras policy (``keras.config.set_dtype_policy``) on entry
    and restores the previous one on exit, also when the body raises::

        with precision_scope("mixed_bfloat16"):
            rgb = TSN("bn_inception", "rgb", num_classes=101)   # rgb.dtype == "mixed_bfloat16"

    Args:
        name: one of :data:`PRECISIONS` (or a ``keras.DTypePolicy`` of one).
        warn: call :func:`warn_if_slow` (a ``RuntimeWarning`` when the
            hardware would emulate the compute dtype).

    Yields:
        The policy set, a ``keras.DTypePolicy``.

    Raises:
        ValueError: for a name not in :data:`PRECISIONS`, listing them
            (nothing is changed then).
    """
    name = check_precision(name)
    if warn:
        warn_if_slow(name)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield keras.config.dtype_policy()
    finally:
        keras.config.set_dtype_policy(previous)


def set_precision(name, *, warn: bool = True) -> keras.DTypePolicy:
    """Sets the global Keras dtype policy to ``name`` for the rest of the program.

    For a command line's ``--precision``; :func:`precision_scope` is the
    scoped form.

    Args:
        name: one of :data:`PRECISIONS`.
        warn: call :func:`warn_if_slow`.

    Returns:
        The previous global policy, to restore with
        ``keras.config.set_dtype_policy(previous)``.

    Raises:
        ValueError: for a name not in :data:`PRECISIONS`, listing them.
    """
    name = check_precision(name)
    if warn:
        warn_if_slow(name)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    return previous


__all__ = [
    "BF16_CPU_FLAGS", "PRECISIONS", "check_precision", "cpu_has_bfloat16", "has_gpu", "hardware_warning",
    "precision_scope", "resolve_precision", "set_precision", "warn_if_slow",
]
