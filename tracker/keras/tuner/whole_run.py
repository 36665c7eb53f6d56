"""What a resumed trial hands KerasTuner: the whole run's curve, not only the epochs this process trained.

KerasTuner scores a trial from the ``History`` that ``fit`` returns (the best epoch of its objective),
and its ``SaveBestEpoch`` callback keeps the best value seen so far to decide when to save the trial's
weights. After a resume, that History holds only the epochs trained since the resume point, and the
callback starts again from ``inf``. Inside `whole_run`, the trial's ``fit``:

- seeds each ``SaveBestEpoch`` with the best objective value of the run's earlier epochs, so that it
  saves a resumed epoch's weights only if that epoch beats every earlier one, as it would have;
- returns its History with the run's earlier epochs (from tracker's database) put in front, so that
  the score, the best step and the metrics KerasTuner records are those of the whole run.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import keras
import keras_tuner

from tracker.keras.tuner import internals
from tracker.query import curves
from tracker.run.protocol import Run

_FIT_PARAMS = list(inspect.signature(keras.Model.fit).parameters)[1:]  # without self


def earlier_epochs(run: Run) -> dict[str, list]:
    """The run's committed epochs before its resume point, as columns: ``{"epoch": [...], metric: [...]}``."""
    if not run.initial_epoch:
        return {"epoch": []}
    curve = curves(run.name, run.options.db)
    keep = [i for i, epoch in enumerate(curve["epoch"]) if epoch < run.initial_epoch]
    return {key: [values[i] for i in keep] for key, values in curve.items()}


def best_before(objective: keras_tuner.Objective, earlier: dict[str, list], start: float) -> float:
    """The best of ``start`` and the objective's value at each earlier epoch, by the objective's own comparison."""
    best = start
    for i in range(len(earlier["epoch"])):
        logs = {k: v[i] for k, v in earlier.items() if k != "epoch" and not math.isnan(v[i])}
        if objective.has_value(logs):
            value = objective.get_value(logs)
            if objective.better_than(value, best):
                best = value
    return best


def with_earlier(history: keras.callbacks.History, earlier: dict[str, list]) -> keras.callbacks.History:
    """``history`` with the earlier epochs put in front of each metric (in place; it is also ``model.history``)."""
    epochs = earlier["epoch"]
    if not epochs:
        return history
    n_new = len(history.epoch)
    for key in set(earlier) - {"epoch"} | set(history.history):
        before = earlier.get(key, [math.nan] * len(epochs))
        history.history[key] = list(before) + list(history.history.get(key, [math.nan] * n_new))
    history.epoch = list(epochs) + list(history.epoch)
    return history


@contextmanager
def whole_run(run: Run) -> Iterator[None]:
    """While open, the trial's ``fit`` (tracked into ``run`` by `tracker.track`) hands KerasTuner the whole run.

    Example:
        ```python
        with tracker.track(run_name, config=hps) as run, whole_run(run):
            history = model.fit(x, y, epochs=5, callbacks=[save_best_epoch])  # every epoch of the run
        ```
    """
    earlier = earlier_epochs(run)
    tracked_fit = keras.Model.fit  # tracker.track's patch, installed as the block opened

    @functools.wraps(tracked_fit)
    def fit(model: keras.Model, *args: Any, **kwargs: Any) -> Any:
        bound = dict(zip(_FIT_PARAMS, args)) | kwargs
        for callback in bound.get("callbacks") or []:
            if isinstance(callback, internals.SaveBestEpoch):
                callback.best_value = best_before(callback.objective, earlier, callback.best_value)
        history = tracked_fit(model, *args, **kwargs)
        return with_earlier(history, earlier) if isinstance(history, keras.callbacks.History) else history

    keras.Model.fit = fit
    try:
        yield
    finally:
        keras.Model.fit = tracked_fit
