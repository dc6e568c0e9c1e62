"""Weight transfer between Keras models by layer name: the one place that copies weights.

* :func:`cross_modality_kernel`: TSN's cross-modality initialisation of a flow
  network's first convolution from an RGB one;
* :func:`stacked_input_kernel`: a kernel for a layer whose input is two
  feature maps stacked along the channels (the gating ConvNet after
  concatenation fusion);
* :func:`copy_weights_by_name`: every layer of a target model that has a
  namesake in a source model (optionally behind a prefix, e.g. ``gating_``)
  receives its weights, with one of the two rules above where only the input
  channels of a kernel differ.
"""

from __future__ import annotations

from typing import Iterable, List

import numpy as np

#: How a kernel whose input channels differ from the source's is filled.
CHANNEL_RULES = ("cross_modality", "stacked")


def cross_modality_kernel(rgb_kernel: np.ndarray, channels: int) -> np.ndarray:
    """TSN's cross-modality initialisation of the first convolution.

    Averages an RGB kernel over its colour channels and replicates the mean
    to ``channels`` input channels (TSN, Wang et al. 2016, Sec. 3.2).

    Args:
        rgb_kernel: ``(kh, kw, 3, filters)`` float kernel (Keras layout).
        channels: input channels of the new kernel (flow: 2L).

    Returns:
        ``(kh, kw, channels, filters)`` array of the same dtype.

    Raises:
        ValueError: if ``rgb_kernel`` is not 4-D.
    """
    rgb_kernel = np.asarray(rgb_kernel)
    if rgb_kernel.ndim != 4:
        raise ValueError(f"expected a (kh, kw, in, out) kernel, got shape {rgb_kernel.shape}")
    mean = rgb_kernel.mean(axis=2, keepdims=True)
    return np.repeat(mean, channels, axis=2).astype(rgb_kernel.dtype)


def stacked_input_kernel(kernel: np.ndarray, copies: int) -> np.ndarray:
    """A kernel for ``copies`` stacked copies of the source's input channels.

    The source kernel is repeated along the input axis and divided by
    ``copies``: on ``copies`` identical maps it computes what the source
    computes on one; on the concatenated maps of two streams it starts from
    the average of what it sees in each. For a grouped convolution (CaffeNet's
    ``conv5``) the groups then see different streams, so this is a starting
    point only.

    Args:
        kernel: ``(kh, kw, in, out)`` float kernel.
        copies: how many stacked inputs (concatenation fusion: 2).

    Returns:
        ``(kh, kw, copies * in, out)`` array of the same dtype.
    """
    kernel = np.asarray(kernel)
    return (np.concatenate([kernel] * copies, axis=2) / copies).astype(kernel.dtype)


def _fill(mine: np.ndarray, theirs: np.ndarray, rule: str, where: str) -> np.ndarray:
    if mine.shape == theirs.shape:
        return theirs
    if mine.ndim == 4 and mine.shape[:2] == theirs.shape[:2] and mine.shape[3] == theirs.shape[3]:
        have, want = theirs.shape[2], mine.shape[2]
        if rule == "cross_modality" and have == 3:
            return cross_modality_kernel(theirs, want)
        if rule == "stacked" and want % have == 0:
            return stacked_input_kernel(theirs, want // have)
    raise ValueError(f"{where}: cannot initialise a weight of shape {mine.shape} from shape {theirs.shape}")


def copy_weights_by_name(
    source,
    target,
    *,
    prefix: str = "",
    skip: Iterable[str] = (),
    channel_rule: str = "cross_modality",
) -> List[str]:
    """Copies weights into every layer of ``target`` named ``prefix + name``
    where ``source`` has a layer ``name`` with weights.

    Same-shaped weights are copied as they are. A 4-D kernel that differs only
    in its input channels is filled by ``channel_rule``:

    * ``"cross_modality"``: a 3-channel (RGB) source kernel becomes
      :func:`cross_modality_kernel` (an RGB network into a flow network);
    * ``"stacked"``: ``target`` takes k times the source's channels (k stacked
      inputs): :func:`stacked_input_kernel`.

    Layers of ``target`` without a namesake in ``source``, or named in
    ``skip`` (without the prefix), keep their weights.

    Args:
        source, target: Keras models (functional; nested models are not searched).
        prefix: prepended to a source name to find the target layer (the
            gating ConvNet's ``gating_``).
        skip: source layer names to leave out.
        channel_rule: one of :data:`CHANNEL_RULES`.

    Returns:
        The target layer names that received weights.

    Raises:
        ValueError: naming the layer and both shapes when a weight cannot be
            filled (the target is then partly updated: layers before it were
            copied), or for an unknown ``channel_rule``.
    """
    if channel_rule not in CHANNEL_RULES:
        raise ValueError(f"channel_rule must be one of {CHANNEL_RULES}, got {channel_rule!r}")
    skip = set(skip)
    sources = {layer.name: layer for layer in source.layers if layer.weights}
    copied = []
    for layer in target.layers:
        if not layer.weights or not layer.name.startswith(prefix):
            continue
        name = layer.name[len(prefix):]
        if name in skip or name not in sources:
            continue
        theirs = sources[name].get_weights()
        mine = layer.get_weights()
        if len(theirs) != len(mine):
            raise ValueError(
                f"layer {layer.name!r}: {len(mine)} weights, but {name!r} of {source.name!r} has {len(theirs)}"
            )
        where = f"layer {layer.name!r} from {name!r} of {source.name!r}"
        layer.set_weights([_fill(m, t, channel_rule, where) for m, t in zip(mine, theirs)])
        copied.append(layer.name)
    return copied
