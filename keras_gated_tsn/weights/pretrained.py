"""Backbone weights by name or file: ``None``, a registered name (``"imagenet"``) or a path.

Registered names are :class:`~keras_gated_tsn.backbones.registry.PretrainedFile`
entries of a backbone's spec and resolve to a local file. Where a public
Keras-format file with a known hash exists (VGG16's ImageNet weights, published
with keras.applications) it is fetched with ``keras.utils.get_file`` and
verified; where the public checkpoint is a Caffe or PyTorch file (BN-Inception,
CaffeNet), the user converts it once with ``gated-tsn convert-weights`` and
puts the result where this module looks (``$KGT_WEIGHTS_DIR``, default
``~/.keras/models``). Nothing is fetched by the tests.
"""

from __future__ import annotations

import os
import warnings


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


def resolve(backbone: str, weights) -> str:
    """The local path of ``weights`` (a registered name or a file) for ``backbone``.

    Raises:
        ValueError: for a name that is neither registered for this backbone
            nor an existing file.
        FileNotFoundError: for a registered file that is not on disk and
            cannot be fetched; the message names the file, the folder to put
            it in and how to make it.
    """
    import keras

    from keras_gated_tsn.backbones import get_backbone

    if os.path.isfile(os.fspath(weights)):
        return os.fspath(weights)
    spec = get_backbone(backbone)
    entry = spec.pretrained.get(weights)
    if entry is None:
        raise ValueError(
            f"weights must be None, one of {sorted(spec.pretrained)} or the path of an existing weights "
            f"file, got {weights!r}"
        )
    path = os.path.join(weights_dir(), entry.file_name)
    if os.path.isfile(path):
        return path
    if entry.url is not None:
        try:
            return keras.utils.get_file(
                entry.file_name, entry.url, cache_dir=os.path.dirname(weights_dir()) or None,
                cache_subdir=os.path.basename(weights_dir()), file_hash=entry.md5,
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


def load_into(model, backbone: str, weights, builder_kwargs: dict) -> None:
    """Loads ``weights`` into the backbone ``model`` its builder just made.

    A file made for 3-channel (RGB) input fills a model with another channel
    count (a flow backbone) through TSN's cross-modality initialisation: an
    RGB twin of the backbone reads the file, and
    :func:`~keras_gated_tsn.weights.transfer.copy_weights_by_name` fills
    ``model`` from it.

    Args:
        model: the backbone, as its builder made it (possibly on an
            ``input_tensor``).
        backbone: its registry name.
        weights: a registered name or a path.
        builder_kwargs: the builder's arguments, to build the RGB twin.

    Raises:
        ValueError: if the file does not fit the model; the message names the
            file, and Keras' message names a layer and both shapes.
        FileNotFoundError: see :func:`resolve`.
    """
    from keras_gated_tsn.backbones import get_backbone
    from keras_gated_tsn.weights.transfer import copy_weights_by_name

    path = resolve(backbone, weights)
    channels = model.inputs[0].shape[-1]
    first_error = _load_whole(model, path)
    if first_error is None:
        return
    if channels != 3:
        kwargs = {k: v for k, v in builder_kwargs.items() if k not in ("input_tensor", "weights", "input_shape")}
        size = tuple(model.inputs[0].shape[-3:-1])
        twin = get_backbone(backbone).builder(**kwargs, input_shape=size + (3,), weights=None)
        if _load_whole(twin, path) is None:
            copy_weights_by_name(twin, model)
            return
    raise ValueError(f"weights file {path} does not fit {model.name}: {first_error}") from None


def _load_whole(model, path: str):
    """Loads ``path`` into ``model``; returns None, or what went wrong.

    Keras warns ("Skipping ...") and loads the rest when part of a file does
    not match the model: here that is a failed load, never a partial one.
    Other warnings are passed on.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.load_weights(path)
    except ValueError as error:
        return error
    skipped = [str(w.message) for w in caught if str(w.message).startswith("Skipping")]
    for w in caught:
        if not str(w.message).startswith("Skipping"):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return skipped[0] if skipped else None
