"""The numbers tracker records from the logs a training loop hands over at each epoch.

A log value that is not a single real number (a string, an array, None, a complex)
is left out with one warning naming it, and training goes on: a bad extra log must
not end a long run. Names the curves use for their own columns are left out the same
way. A name too long for the database, or holding a NUL, is refused on every backend alike
(`refused_name`, which ``tracker import`` shares), before anything of that epoch is written.

Example:
    >>> clean = MetricFilter("cnn")
    >>> clean({"loss": np.float32(0.5), "lr_name": "adam"})       # doctest: +SKIP
    UserWarning: Run 'cnn': log 'lr_name' is not recorded: ...
    {'loss': 0.5}
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tracker.warn import warn_user

#: Column names of what `tracker.curves` returns besides the metrics.
RESERVED = ("epoch", "superseded", "step")
#: The longest metric name the database holds (the ``metrics.name`` column), on every backend.
MAX_NAME_LENGTH = 255


def refused_name(name: str) -> str | None:
    """Why the database cannot hold ``name`` as a metric's name on every backend, or None if it can.

    Training and ``tracker import`` refuse such a name the same way: too long, or holding a NUL (which
    PostgreSQL cannot store in text, so that a file on SQLite would not copy to a team server).
    """
    if len(name) > MAX_NAME_LENGTH:
        return (f"Metric name {name[:40]!r}... is {len(name)} characters long; tracker records names of at most "
                f"{MAX_NAME_LENGTH} characters on every database. Give the metric a shorter name.")
    if "\0" in name:
        return f"Metric name {name!r} holds a NUL character, which not every database can store. Give the metric a name without it."
    return None


class MetricFilter:
    """Turns one run's logs into ``{name: float}``, warning once per run about each key it leaves out."""

    def __init__(self, run_name: str) -> None:
        self._run_name = run_name
        self._warned: set[str] = set()

    def __call__(self, logs: Mapping[object, object]) -> dict[str, float]:
        values = {}
        for key, raw in logs.items():
            name = str(key)
            refused = refused_name(name)
            if refused is not None:
                raise ValueError(refused)
            if name in RESERVED:
                self._skip(name, f"the name is reserved for the curve's own {name!r} column. Rename the metric to record it")
                continue
            value = _number(raw)
            if value is None:
                self._skip(name, f"it is {_describe(raw)}, not a single real number. Reduce it to a scalar to record it")
                continue
            values[name] = value
        return values

    def _skip(self, name: str, why: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            warn_user(f"Run {self._run_name!r}: log {name!r} is not recorded: {why}. Training goes on.")


def _number(value: object) -> float | None:
    if hasattr(value, "numpy"):
        value = value.numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if arr.shape != () or arr.dtype.kind not in "biuf":
        return None
    return float(arr)


def _describe(value: object) -> str:
    shape = getattr(value, "shape", None)
    return f"a {type(value).__name__}" + (f" of shape {tuple(shape)}" if shape not in (None, ()) else "")
