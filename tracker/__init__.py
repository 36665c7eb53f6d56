"""Crash-safe experiment tracking for Keras ``fit``.

Example:
    ```python
    import tracker

    with tracker.track("cnn-baseline", config={"lr": 1e-3}):
        model.fit(x, y, epochs=20, validation_split=0.1)

    tracker.curves("cnn-baseline")   # {"epoch": [...], "loss": [...], "val_loss": [...]}
    ```
"""

from tracker.errors import (
    CheckpointError,
    NotADatabaseError,
    Preempted,
    ResumeError,
    RunLockedError,
    RunNotFoundError,
    SchemaError,
    StoreError,
    TrackerError,
)
from tracker.query import RunInfo, curves, runs
from tracker.run import Run, track, track_tuner
from tracker.search import SweepError, Trial, choice, loguniform, randint, sweep, sweep_trials, uniform
from tracker.search.optuna_study import track_optuna

__all__ = [
    "CheckpointError",
    "NotADatabaseError",
    "Preempted",
    "ResumeError",
    "Run",
    "RunInfo",
    "RunLockedError",
    "RunNotFoundError",
    "SchemaError",
    "StoreError",
    "SweepError",
    "TrackerError",
    "Trial",
    "choice",
    "curves",
    "loguniform",
    "randint",
    "runs",
    "sweep",
    "sweep_trials",
    "track",
    "track_optuna",
    "track_tuner",
    "uniform",
]
