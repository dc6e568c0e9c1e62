"""Atomic file writes: a temporary file beside the destination, then a rename.

Every file this package writes for a user (list files, score files, tables,
models, converted weights) goes through :func:`atomic_write` or
:func:`atomic_path`, so an interrupted run never leaves a
half-written file where a complete one is expected.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from typing import IO, Callable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yields a temporary path beside ``path``; renames it over ``path`` on success.

    For writers that want a file name (``model.save``, ``save_weights``):
    ``suffix`` keeps the extension they insist on. The temporary file is in
    the destination folder (same file system, so ``os.replace`` is atomic),
    gets the permissions a plain ``open`` would give, and is removed if the
    block raises.

    Raises:
        OSError: the folder does not exist or is not writable; anything the
            block raises is re-raised after the temporary file is removed.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_process_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[IO], object], binary: bool = False) -> None:
    """Calls ``write(handle)`` on a temporary file beside ``path``, then renames it over ``path``.

    Args:
        path: the destination; its folder must exist.
        write: called once with the open handle (text mode, UTF-8, no newline
            translation, unless ``binary``).
        binary: open the handle in binary mode.

    Raises:
        OSError: the folder does not exist or is not writable; anything
            ``write`` raises is re-raised after the temporary file is removed.
    """
    with atomic_path(path) as tmp:
        if binary:
            handle = open(tmp, "wb")
        else:
            handle = open(tmp, "w", encoding="utf-8", newline="")
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())


@functools.lru_cache(maxsize=1)
def _process_umask() -> int:
    """The process umask (read once: setting it is process-wide, so do it only once)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def save_atomically(model, path: str | os.PathLike) -> str:
    """Saves a Keras model atomically: the whole model for ``.keras``, its
    weights for ``.weights.h5`` (a temporary file beside ``path``, then a rename:
    a crash leaves the previous file, never a half-written one).

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: for another file ending.
    """
    path = os.fspath(path)
    for suffix, save in ((".keras", model.save), (".weights.h5", model.save_weights)):
        if path.endswith(suffix):
            with atomic_path(path, suffix=suffix) as tmp:
                save(tmp)
            return path
    raise ValueError(f"a model file must end in .keras or .weights.h5, got {path!r}")
