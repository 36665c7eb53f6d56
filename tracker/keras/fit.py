"""The patch of ``keras.Model.fit`` that `tracker.track` installs for the next ``fit`` call of its block.

The patched ``fit`` resumes the run: it sets ``initial_epoch``, builds what the resume point needs
built before training (the model, its compiled metrics), puts each ``tf.data`` input back at its
position, and adds the run's callback to the user's.
"""

from __future__ import annotations

import functools
import inspect
import threading
import warnings
from collections.abc import Callable
from typing import Any

import keras

from tracker.errors import TrackerError
from tracker.keras.callback import TrackerCallback, callback_for
from tracker.keras.inputs import _build_from, _build_metrics, _datasets, _IteratorCount, _warn_if_inexact
from tracker.run.adapter import TrainingRun

_FIT_PARAMS = list(inspect.signature(keras.Model.fit).parameters)[1:]  # without self


def patch_fit(run: TrainingRun) -> Callable[[], None]:
    """Make the next ``keras.Model.fit`` call in this thread record into ``run``; returns the undo.

    Example:
        ```python
        undo = patch_fit(run)  # what tracker.track does as its block opens
        try:
            model.fit(x, y, epochs=10)
        finally:
            undo()
        ```
    """
    original = keras.Model.fit
    owner = threading.get_ident()
    used = False

    @functools.wraps(original)
    def fit(model: keras.Model, *args: Any, **kwargs: Any) -> Any:
        nonlocal used
        if threading.get_ident() != owner:
            warnings.warn(
                f"fit was called from another thread than the one that opened tracker.track({run.name!r}); that fit "
                "is not tracked. Call fit in the thread that opened the block.", stacklevel=2,
            )
            return original(model, *args, **kwargs)
        if used:
            raise TrackerError(f"Run {run.name!r} already tracked one fit call; start a new tracker.track(...) block for each fit.")
        used = True
        bound = dict(zip(_FIT_PARAMS, args)) | kwargs
        callbacks = list(bound.pop("callbacks", None) or [])
        if any(isinstance(c, TrackerCallback) for c in callbacks):
            return original(model, callbacks=callbacks, **bound)
        requested = bound.pop("initial_epoch", 0)
        if requested not in (0, run.initial_epoch):
            raise ValueError(
                f"fit(initial_epoch={requested}) conflicts with run {run.name!r}, which resumes at epoch "
                f"{run.initial_epoch}. Drop initial_epoch: tracker.track sets it from the newest committed epoch."
            )
        epochs = bound.get("epochs", 1)
        start = run.initial_epoch
        if run.stopped_early:
            warnings.warn(f"Run {run.name!r} was stopped early by a callback at epoch {start - 1}; nothing to train. "
                          "The model gets the final checkpoint. Rewind with python -m tracker.resume --from-epoch to train more.", stacklevel=2)
            start = epochs
        elif start > epochs:
            warnings.warn(f"Run {run.name!r} already has {start} epochs, more than the epochs={epochs} that fit asks for; "
                          f"nothing to train, and the run keeps its {start} epochs. The model gets the newest checkpoint "
                          f"(epoch {start - 1}). To train from an earlier epoch, rewind with "
                          f"python -m tracker.resume {run.name} --from-epoch K.", stacklevel=2)
        elif start == epochs:
            warnings.warn(f"Run {run.name!r} already has all {epochs} epochs; nothing to train. "
                          "The model gets the newest checkpoint. Pass a larger epochs= to extend the run.", stacklevel=2)
        exact = _warn_if_inexact(run, bound)
        data = _IteratorCount(_datasets(bound), run.resume_point.header.get("data", {}) if run.resume_point else {})
        if run.resume_point is not None:
            if not model.built:
                _build_from(model, bound.get("x"))
            if run.resume_point.batch:
                _build_metrics(model, bound)
            data.fast_forward()
        tracking = callback_for(run, peers=callbacks, data=data, inside=exact)
        with data.counting():
            return original(model, callbacks=[*callbacks, tracking], initial_epoch=start, **bound)

    keras.Model.fit = fit

    def undo() -> None:
        keras.Model.fit = original

    return undo

