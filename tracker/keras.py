"""The Keras adapter: a callback, and the patch of ``Model.fit`` that `track` installs.

Model and optimizer state travel as named numpy arrays; everything about
files and the database lives in `tracker.run`. Import this module only when
Keras is wanted: it imports Keras.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from tracker.errors import CheckpointError, TrackerError
from tracker.run import Run

_FORMAT = 1


def capture(model: keras.Model) -> tuple[dict[str, np.ndarray], dict]:
    """Copy the model's weights and its optimizer's variables (moments, iteration count) into arrays."""
    model_vars = list(model.weights)
    opt_vars = list(model.optimizer.variables) if model.optimizer is not None else []
    # Reading a TensorFlow variable yields an immutable tensor (later updates copy on write),
    # so these arrays are a snapshot that the background writer can use while training goes on.
    arrays = {f"model.{i:05d}": v.numpy() for i, v in enumerate(model_vars)}
    arrays.update({f"optimizer.{i:05d}": v.numpy() for i, v in enumerate(opt_vars)})
    header = {
        "format": _FORMAT,
        "model": [v.path for v in model_vars],
        "optimizer": [v.path for v in opt_vars],
    }
    return arrays, header


def restore(model: keras.Model, arrays: dict[str, np.ndarray], header: dict) -> None:
    """Assign a checkpoint's arrays back to the model and its optimizer, checking that they fit."""
    if header.get("format") != _FORMAT:
        raise CheckpointError(f"Checkpoint format {header.get('format')!r} is not supported by this tracker (expects {_FORMAT}).")
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    pairs = _pairs("model", list(model.weights), arrays, header)
    if model.optimizer is not None:
        pairs += _pairs("optimizer", list(model.optimizer.variables), arrays, header)
    for variable, value in pairs:
        variable.assign(value)


def _pairs(kind: str, variables: list, arrays: dict[str, np.ndarray], header: dict) -> list[tuple[Any, np.ndarray]]:
    saved_paths = header.get(kind, [])
    if len(saved_paths) != len(variables):
        raise CheckpointError(
            f"The checkpoint holds {len(saved_paths)} {kind} variables but the {kind} has {len(variables)}. "
            "The model or optimizer changed since this run started: restore the original code, or start a new run name."
        )
    pairs = []
    for i, (variable, saved_path) in enumerate(zip(variables, saved_paths)):
        value = arrays[f"{kind}.{i:05d}"]
        if tuple(variable.shape) != value.shape:
            raise CheckpointError(
                f"{kind} variable {i} ({variable.path}) has shape {tuple(variable.shape)} but the checkpoint's "
                f"({saved_path}) has {value.shape}. The model changed since this run started: restore the "
                "original code, or start a new run name."
            )
        pairs.append((variable, value))
    return pairs


class TrackerCallback(keras.callbacks.Callback):
    """Records each epoch of ``fit`` into a run, and restores the run's resume point at the start.

    Use it through `tracker.track`, which adds it to ``fit`` for you, or explicitly:

    Example:
        ```python
        with tracker.track("cnn") as run:
            model.fit(x, y, epochs=10, callbacks=[run.callback], initial_epoch=run.initial_epoch)
        ```
    """

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.run = run
        self._checked_first_epoch = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.run.set_target_epochs(self.params.get("epochs"))
        state = self.run.take_resume_state()
        if state is not None:
            if not self.model.built:
                raise TrackerError(
                    f"Run {self.run.name!r} cannot resume into a model that is not built yet. Build it before fit "
                    "(start it with keras.Input(...), or call model.build(input_shape)), or use tracker.track's patched fit, which builds it."
                )
            restore(self.model, *state)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self._checked_first_epoch:
            return
        self._checked_first_epoch = True
        if epoch != self.run.initial_epoch:
            raise ValueError(
                f"fit started at epoch {epoch} but run {self.run.name!r} resumes at epoch {self.run.initial_epoch}: "
                f"pass initial_epoch=run.initial_epoch (= {self.run.initial_epoch}) to fit, or let tracker.track set it."
            )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        arrays, header = capture(self.model)
        self.run.submit_epoch(epoch, logs or {}, arrays, header)

    def on_train_end(self, logs: dict | None = None) -> None:
        self.run.flush()


def patch_fit(run: Run) -> Callable[[], None]:
    """Make the next ``keras.Model.fit`` call in this thread record into ``run``; returns the undo."""
    original = keras.Model.fit
    owner = threading.get_ident()
    used = False

    @functools.wraps(original)
    def fit(model: keras.Model, *args: Any, **kwargs: Any) -> Any:
        nonlocal used
        if threading.get_ident() != owner:
            return original(model, *args, **kwargs)
        if used:
            raise TrackerError(f"Run {run.name!r} already tracked one fit call; start a new tracker.track(...) block for each fit.")
        used = True
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if any(isinstance(c, TrackerCallback) for c in callbacks):
            return original(model, *args, callbacks=callbacks, **kwargs)
        requested = kwargs.pop("initial_epoch", 0)
        if requested not in (0, run.initial_epoch):
            raise ValueError(
                f"fit(initial_epoch={requested}) conflicts with run {run.name!r}, which resumes at epoch "
                f"{run.initial_epoch}. Drop initial_epoch: tracker.track sets it from the newest committed epoch."
            )
        epochs = kwargs.get("epochs", args[3] if len(args) > 3 else 1)
        if run.initial_epoch >= epochs:
            warnings.warn(
                f"Run {run.name!r} already has all {epochs} epochs; nothing to train. "
                "The model gets the newest checkpoint. Pass a larger epochs= to extend the run.",
                stacklevel=2,
            )
        if run.resume_state is not None and not model.built:
            _build_from(model, kwargs.get("x", args[0] if args else None))
        return original(model, *args, callbacks=[*callbacks, run.callback], initial_epoch=run.initial_epoch, **kwargs)

    keras.Model.fit = fit

    def undo() -> None:
        keras.Model.fit = original

    return undo


def _build_from(model: keras.Model, x: Any) -> None:
    """Build an unbuilt (subclassed) model symbolically from its input's shape, without drawing data."""
    import tensorflow as tf

    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        spec = spec[0] if isinstance(spec, tuple) else spec
    else:
        spec = keras.tree.map_structure(lambda a: tf.TensorSpec((None, *np.shape(a)[1:]), getattr(a, "dtype", "float32")), x)
    symbolic = keras.tree.map_structure(lambda s: keras.KerasTensor(tuple(s.shape), s.dtype.name), spec)
    model(symbolic)
