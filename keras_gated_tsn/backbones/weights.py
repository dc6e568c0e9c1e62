"""Backbone weights: ``None``, a registered name (``"imagenet"``) or a file.

Registered names resolve to a local file. Where a public Keras-format file
with a known hash exists (VGG16's ImageNet weights, from keras.applications)
it is fetched with ``keras.utils.get_file`` and verified; where the public
checkpoint is a Caffe or PyTorch file (BN-Inception, CaffeNet), the user
converts it once with ``gated-tsn convert-weights`` and puts the result where
this module looks (``$KGT_WEIGHTS_DIR``, default ``~/.keras/models``). Nothing
is fetched by the tests.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import keras
import numpy as np

#: Registered weight names, per backbone.
REGISTERED = ("imagenet",)


@dataclasses.dataclass(frozen=True)
class WeightsEntry:
    """A registered weights file.

    Attributes:
        backbone: backbone name.
        name: the registered name (``"imagenet"``).
        file_name: its local file name, in the weights folder.
        how_to_get: what the user does when the file is missing.
        keras_fetch: for files keras.applications publishes: the attribute
            names of the URL and md5 hash in ``keras.src.applications.<module>``
            (no URL or hash is repeated here), else None.
    """

    backbone: str
    name: str
    file_name: str
    how_to_get: str
    keras_fetch: Optional[tuple] = None


ENTRIES = {
    ("bn_inception", "imagenet"): WeightsEntry(
        "bn_inception", "imagenet", "bn_inception_imagenet.weights.h5",
        "convert the BN-Inception ImageNet checkpoint that TSN starts from (Caffe "
        "bn_inception_rgb_init.caffemodel or the PyTorch bn_inception state dict) with "
        "`gated-tsn convert-weights SRC bn_inception_imagenet.weights.h5 --arch bn_inception` "
        "(see weights/README.md)",
    ),
    ("caffenet", "imagenet"): WeightsEntry(
        "caffenet", "imagenet", "caffenet_imagenet.weights.h5",
        "convert BVLC's bvlc_reference_caffenet.caffemodel with "
        "`gated-tsn convert-weights bvlc_reference_caffenet.caffemodel caffenet_imagenet.weights.h5 "
        "--arch caffenet` (see weights/README.md)",
    ),
    ("vgg16", "imagenet"): WeightsEntry(
        "vgg16", "imagenet", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "it is keras.applications' VGG16 ImageNet file without the top; fetch it on a machine "
        "with network access (`keras.applications.VGG16(weights='imagenet', include_top=False)` "
        "downloads it to ~/.keras/models)",
        keras_fetch=("vgg16", "WEIGHTS_PATH_NO_TOP", "6d6bbae143d832006294945121d1f1fc"),
    ),
}


def check_argument(weights) -> None:
    """Up-front check of a builder's ``weights`` argument.

    Raises:
        ValueError: if ``weights`` is neither None, a name nor a path.
    """
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights must be None, 'imagenet' or a file path, got {weights!r}")


def weights_dir() -> str:
    """Where registered weights files live: ``$KGT_WEIGHTS_DIR`` or ``~/.keras/models``."""
    return os.environ.get("KGT_WEIGHTS_DIR") or os.path.join(os.path.expanduser("~"), ".keras", "models")


def resolve(backbone: str, weights: str) -> str:
    """The local path of ``weights`` (a registered name or a file) for ``backbone``.

    Raises:
        ValueError: for a name that is neither registered for this backbone
            nor an existing file.
        FileNotFoundError: for a registered file that is not on disk and
            cannot be fetched; the message names the file, the folder to put
            it in and how to make it.
    """
    if os.path.isfile(os.fspath(weights)):
        return os.fspath(weights)
    entry = ENTRIES.get((backbone, weights))
    if entry is None:
        known = [name for (b, name) in ENTRIES if b == backbone]
        raise ValueError(
            f"weights must be None, one of {known} or the path of an existing weights file, "
            f"got {weights!r}"
        )
    path = os.path.join(weights_dir(), entry.file_name)
    if os.path.isfile(path):
        return path
    if entry.keras_fetch is not None:
        module_name, url_attribute, md5 = entry.keras_fetch
        import importlib

        origin = getattr(importlib.import_module(f"keras.src.applications.{module_name}"), url_attribute)
        try:
            return keras.utils.get_file(
                entry.file_name, origin, cache_dir=os.path.dirname(os.path.dirname(path)) or None,
                cache_subdir=os.path.basename(os.path.dirname(path)), file_hash=md5,
            )
        except Exception as error:  # no network, or a bad download
            raise FileNotFoundError(
                f"{backbone} {weights!r} weights: {entry.file_name} is not in {weights_dir()} and could "
                f"not be downloaded ({error}); {entry.how_to_get}, and put it at {path}"
            ) from None
    raise FileNotFoundError(
        f"{backbone} {weights!r} weights: {path} does not exist; {entry.how_to_get}, and put the "
        f"result at {path} (or set KGT_WEIGHTS_DIR)"
    )


def load_into(model: keras.Model, backbone: str, weights, builder_kwargs: dict) -> None:
    """Loads ``weights`` into a freshly built backbone ``model``.

    A file made for 3-channel (RGB) input fills a model with another channel
    count (a flow backbone) through TSN's cross-modality initialisation: the
    first convolution's kernel is averaged over colour and replicated.

    Args:
        model: the backbone, as its builder made it.
        backbone: its name.
        weights: a registered name or a path.
        builder_kwargs: the builder's arguments, to build an RGB twin if needed.

    Raises:
        ValueError: if the file does not fit the model; the message names the
            file, and Keras' message names a layer and both shapes.
        FileNotFoundError: see :func:`resolve`.
    """
    path = resolve(backbone, weights)
    channels = model.inputs[0].shape[-1]
    try:
        model.load_weights(path)
        return
    except ValueError as error:
        first_error = error
    if channels != 3:
        from keras_gated_tsn.backbones import get_backbone_module

        kwargs = {k: v for k, v in builder_kwargs.items() if k not in ("input_tensor", "weights")}
        shape = tuple(model.inputs[0].shape[1:-1]) + (3,)
        twin = get_backbone_module(backbone).BUILDER(**{**kwargs, "input_shape": shape, "weights": None})
        try:
            twin.load_weights(path)
        except ValueError:
            pass
        else:
            copy_weights_by_name(twin, model)
            return
    raise ValueError(f"weights file {path} does not fit {model.name}: {first_error}") from None


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


def copy_weights_by_name(source: keras.Model, target: keras.Model, skip=()) -> None:
    """Copies weights layer by layer, matching layer names, into ``target``.

    A kernel that differs only in its input channels (an RGB first conv into a
    flow model) gets :func:`cross_modality_kernel`. Layers named in ``skip``,
    or absent from ``source``, keep their weights.

    Raises:
        ValueError: naming the layer and both shapes when a weight cannot be
            matched.
    """
    names = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if not layer.weights or layer.name not in names or layer.name in skip:
            continue
        new = []
        for mine, theirs in zip(layer.get_weights(), names[layer.name].get_weights()):
            if mine.shape == theirs.shape:
                new.append(theirs)
            elif mine.ndim == 4 and mine.shape[:2] == theirs.shape[:2] and mine.shape[3] == theirs.shape[3]:
                new.append(cross_modality_kernel(theirs, mine.shape[2]))
            else:
                raise ValueError(
                    f"layer {layer.name!r}: cannot initialise weight of shape {mine.shape} "
                    f"from shape {theirs.shape}"
                )
        layer.set_weights(new)
