"""Training that survives being killed: the state of a stage on disk, written atomically.

A stage of Algorithm 1 runs for hours to days; jobs are pre-empted. While it
trains, a *checkpoint folder* beside the output model (``<out>.ckpt/``) holds

* ``state-<step>.weights.h5`` + ``state-<step>.json``: the last two training
  states (model weights, BN statistics, optimizer slots, accumulated gradients,
  learning rate, iteration count; the epoch and batch reached, the dropout
  random state, the data seed, the early-stopping and plateau counters, the
  best validation value so far and the options of the run);
* ``best.npz``: the weights of the best validation epoch (no optimizer state).

Every file is written to a temporary name and renamed, so a kill at any moment
leaves the previous state whole. The JSON names its weights file with its size
and SHA-256, so a truncated or corrupt state is detected on resume, named, and
the one before it used. When the stage ends the folder is removed: the output
``.keras`` model and the CSV log are what stays.

Resuming needs the data to be where it was: :func:`keras_gated_tsn.data.pipeline.make_dataset`
with a seed makes epoch ``e`` a pure function of ``(seed, e)``, and a run
resumed at epoch ``e``, batch ``s`` skips the ``s`` batches it has seen. With
deterministic ops (``tf.config.experimental.enable_op_determinism()``) a
resumed run ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import math
import os
import re
import shutil
import warnings
from typing import Dict, List, Optional, Sequence

import keras
import numpy as np

from keras_gated_tsn.atomic import atomic_path, atomic_write

#: Callback attributes that carry training progress, restored on resume.
_CALLBACK_STATE = {
    keras.callbacks.EarlyStopping: ("wait", "best", "best_epoch", "stopped_epoch"),
    keras.callbacks.ReduceLROnPlateau: ("wait", "best", "cooldown_counter"),
}
_STATE_NAME = re.compile(r"^state-(\d+)\.json$")


class TrainingDiverged(ArithmeticError):
    """The loss became NaN or infinite; the message names the epoch and step."""


class IncompatibleCheckpoint(ValueError):
    """A checkpoint folder written by a run with other options."""


@dataclasses.dataclass
class ResumePoint:
    """Where a resumed run goes on.

    Attributes:
        epoch: the epoch to run next (0-based).
        step: batches of ``epoch`` already trained.
        global_step: batches trained in all.
        path: the state file it came from.
    """

    epoch: int
    step: int
    global_step: int
    path: str


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _plain(value):
    """A JSON-able copy of a callback attribute (NumPy scalars, infinities)."""
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    return value


class TrainingState(keras.callbacks.Callback):
    """Saves and restores the whole state of a ``fit()`` run (see the module doc).

    Put it *last* in the callback list: it restores the other callbacks'
    counters after their own ``on_train_begin`` has reset them, and snapshots
    them after their ``on_epoch_end``.

    Args:
        folder: the checkpoint folder (created when first written).
        options: the run's options (JSON-able dict); a folder written with
            other values for the keys of ``must_match`` is refused on resume.
        monitor: the validation metric of the best epoch (e.g. ``val_accuracy``).
        save_every: also save every this many batches (>= 1), besides every
            epoch end; None: epoch ends only.
        keep: states kept (>= 2 so a corrupt last one has a predecessor).
        tracked: callbacks whose counters are saved (``EarlyStopping``,
            ``ReduceLROnPlateau``; others are ignored).
        write: False on the non-chief workers of a multi-worker run (they
            restore, never write).
        must_match: option keys that must equal the checkpoint's.

    Attributes:
        resumed: the :class:`ResumePoint` restored by :meth:`restore`, or None.
        best, best_epoch: the best ``monitor`` value so far and its epoch.
        diverged: the message when a NaN loss stopped training, else None.

    Raises:
        ValueError: for ``save_every`` < 1 or ``keep`` < 2.
    """

    def __init__(
        self,
        folder: str,
        options: Dict,
        monitor: str,
        *,
        save_every: Optional[int] = None,
        keep: int = 2,
        tracked: Sequence[keras.callbacks.Callback] = (),
        write: bool = True,
        must_match: Sequence[str] = (),
    ):
        super().__init__()
        if save_every is not None and (not isinstance(save_every, int) or save_every < 1):
            raise ValueError(f"save_every must be an int >= 1 or None, got {save_every!r}")
        if keep < 2:
            raise ValueError(f"keep must be >= 2, got {keep!r}")
        self.folder = os.fspath(folder)
        self.options = dict(options)
        self.monitor = monitor
        self.save_every = save_every
        self.keep = keep
        self.tracked = [c for c in tracked if type(c) in _CALLBACK_STATE]
        self.write = write
        self.must_match = tuple(must_match)
        self.resumed: Optional[ResumePoint] = None
        self.best: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self.diverged: Optional[str] = None
        self._callback_states: Optional[List[Dict]] = None
        self._epoch = 0
        self._step = 0
        self._global_step = 0

    # ---- paths --------------------------------------------------------------------

    @property
    def best_weights_path(self) -> str:
        return os.path.join(self.folder, "best.npz")

    def _states(self) -> List[str]:
        """State JSON files, newest first."""
        found = []
        for path in glob.glob(os.path.join(self.folder, "state-*.json")):
            match = _STATE_NAME.match(os.path.basename(path))
            if match:
                found.append((int(match.group(1)), path))
        return [path for _, path in sorted(found, reverse=True)]

    # ---- restore ------------------------------------------------------------------

    def restore(self, model: keras.Model) -> Optional[ResumePoint]:
        """Loads the newest whole state of the folder into ``model`` (compiled).

        A state whose weights file is missing, of the wrong size or checksum,
        or unreadable is skipped with a warning naming it; the one before it
        is used.

        Returns:
            The :class:`ResumePoint`, or None when the folder holds no state
            (a fresh start).

        Raises:
            IncompatibleCheckpoint: the newest readable state was written with
                other options (named with both values).
            ValueError: the folder holds states but none is whole.
        """
        self._remove_partial_writes()
        states = self._states()
        problems = []
        for path in states:
            try:
                with open(path, encoding="utf-8") as handle:
                    state = json.load(handle)
                self._check_options(path, state.get("options", {}))
                self._load(model, state)
            except IncompatibleCheckpoint:
                raise
            except (OSError, ValueError, KeyError, TypeError) as error:
                problems.append(f"{path}: {error}")
                warnings.warn(f"skipping a damaged training state: {path}: {error}", stacklevel=2)
                continue
            self.resumed = ResumePoint(state["epoch"], state["step"], state["global_step"], path)
            self._epoch, self._step, self._global_step = state["epoch"], state["step"], state["global_step"]
            self.best, self.best_epoch = state.get("best"), state.get("best_epoch")
            self._callback_states = state.get("callbacks")
            return self.resumed
        if problems:
            raise ValueError(
                f"no whole training state in {self.folder}: " + "; ".join(problems)
                + " (delete the folder to start the stage again)"
            )
        return None

    def _remove_partial_writes(self) -> None:
        """Deletes the temporary files of writes a kill interrupted (``.state-...``)."""
        if self.write:
            for path in glob.glob(os.path.join(self.folder, ".*")):
                os.unlink(path)

    def _check_options(self, path: str, saved: Dict) -> None:
        for key in self.must_match:
            if key in saved and saved[key] != self.options.get(key):
                raise IncompatibleCheckpoint(
                    f"{path} was written by a run with {key}={saved[key]!r}, this run has "
                    f"{key}={self.options.get(key)!r}: resume with the same options, or delete "
                    f"{self.folder} to start the stage again"
                )

    def _load(self, model: keras.Model, state: Dict) -> None:
        weights = os.path.join(self.folder, state["weights"])
        if not os.path.isfile(weights):
            raise ValueError(f"its weights file {weights} is missing")
        size = os.path.getsize(weights)
        if size != state["size"]:
            raise ValueError(f"{weights} has {size} bytes, the state says {state['size']} (partial write)")
        if _sha256(weights) != state["sha256"]:
            raise ValueError(f"{weights} does not match its checksum (corrupt)")
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(weights)
        generators = state.get("seed_generators", {})
        for variable in _seed_states(model):
            if variable.path in generators:
                variable.assign(np.asarray(generators[variable.path], dtype=variable.dtype))

    # ---- save ---------------------------------------------------------------------

    def _save(self) -> None:
        if not self.write:
            return
        os.makedirs(self.folder, exist_ok=True)
        stem = f"state-{self._global_step:09d}"
        weights = os.path.join(self.folder, stem + ".weights.h5")
        with atomic_path(weights, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp)
        state = {
            "epoch": self._epoch,
            "step": self._step,
            "global_step": self._global_step,
            "weights": os.path.basename(weights),
            "size": os.path.getsize(weights),
            "sha256": _sha256(weights),
            "best": self.best,
            "best_epoch": self.best_epoch,
            "monitor": self.monitor,
            "callbacks": self._snapshot_callbacks(),
            "seed_generators": {v.path: np.asarray(v).tolist() for v in _seed_states(self.model)},
            "options": self.options,
        }
        atomic_write(os.path.join(self.folder, stem + ".json"), lambda f: json.dump(state, f, indent=1))
        for old in self._states()[self.keep:]:
            for path in (old, old[: -len(".json")] + ".weights.h5"):
                if os.path.exists(path):
                    os.unlink(path)

    def _snapshot_callbacks(self) -> List[Dict]:
        return [
            {name: _plain(getattr(callback, name)) for name in _CALLBACK_STATE[type(callback)]}
            for callback in self.tracked
        ]

    def save_best(self) -> None:
        """Writes the model's weights as the best epoch's (``best.npz``)."""
        if not self.write:
            return
        os.makedirs(self.folder, exist_ok=True)
        arrays = {f"w{i:05d}": np.asarray(w) for i, w in enumerate(self.model.get_weights())}
        atomic_write(self.best_weights_path, lambda f: np.savez(f, **arrays), binary=True)

    def load_best(self, model: keras.Model) -> bool:
        """Sets ``model``'s weights to the best epoch's; False when none was saved."""
        if not os.path.isfile(self.best_weights_path):
            return False
        with np.load(self.best_weights_path) as arrays:
            model.set_weights([arrays[name] for name in sorted(arrays.files)])
        return True

    def remove(self) -> None:
        """Deletes the checkpoint folder (the stage is over)."""
        if self.write and os.path.isdir(self.folder):
            shutil.rmtree(self.folder)

    # ---- callback hooks -----------------------------------------------------------

    def on_train_begin(self, logs=None):
        if self._callback_states:
            for callback, values in zip(self.tracked, self._callback_states):
                for name, value in values.items():
                    setattr(callback, name, value)

    def on_epoch_begin(self, epoch, logs=None):
        if epoch != self._epoch:  # a new epoch, not the resumed one
            self._epoch, self._step = epoch, 0

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        self._global_step += 1
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            last = self._states()
            self.diverged = (
                f"the training loss became {float(loss)} at epoch {self._epoch + 1}, batch {self._step} "
                f"(batch {self._global_step} of the run); "
                + (f"the last saved state is {last[0]}" if last else "no state was saved yet")
                + ": try a lower --lr or --clip-gradients"
            )
            self.model.stop_training = True
            return
        if self.save_every and self._global_step % self.save_every == 0:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged:
            return
        value = (logs or {}).get(self.monitor)
        if value is not None and math.isfinite(float(value)) and (self.best is None or float(value) > self.best):
            self.best, self.best_epoch = float(value), epoch
            self.save_best()
        self._epoch, self._step = epoch + 1, 0
        self._save()


def newest_options(folder: str) -> Dict:
    """The options recorded by the newest readable state in ``folder`` ({} if none)."""
    probe = TrainingState(folder, {}, "")
    for path in probe._states():
        try:
            with open(path, encoding="utf-8") as handle:
                return dict(json.load(handle).get("options", {}))
        except (OSError, ValueError):
            continue
    return {}


def _seed_states(model: keras.Model):
    """The state variables of the model's random seed generators (dropout masks)."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def trim_csv_log(path: str, epochs: int) -> None:
    """Keeps the header and the rows of epochs ``< epochs`` of a Keras CSV log
    (rows written after the state a run resumes from), atomically.

    A missing file is left missing.
    """
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8", newline="") as handle:
        lines = handle.read().splitlines(keepends=True)
    if not lines:
        return
    kept = [lines[0]]
    for line in lines[1:]:
        head = line.split(",", 1)[0].strip()
        if head.isdigit() and int(head) < epochs:
            kept.append(line)
    atomic_write(path, lambda f: f.writelines(kept))
