"""Sweeps for the views' tests: a sweep and its trials written through the store, as `tracker.sweep` writes them.

The trial runs themselves are recorded by the caller through the real protocol (the ``record`` fixture,
or a child process); `finish_trial` then records the trial's outcome, fenced to the run's writer as
`tracker.sweep`'s worker records it. No Keras: the tests that use it stay fast.

Example:
    ```python
    sweep_id, params = plan_sweep(db, "mlp", grid={"units": [4, 8]})
    run = record("mlp-0", 3, config=params[0])
    finish_trial(db, sweep_id, 0, run)
    ```
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tracker import Run
from tracker.records import TrialState
from tracker.search import space
from tracker.store import open_store


def plan_sweep(db: str, name: str, **searched: Any) -> tuple[int, list[dict[str, Any]]]:
    """Create sweep ``name`` from ``grid=`` or ``space=``/``n_trials=``/``seed=`` with all its trials pending: its id and each trial's params."""
    plan = space.plan(**searched)
    store = open_store(db)
    try:
        recorded = store.ensure_sweep(name, plan.kind, plan.spec)
        store.add_trials(recorded.id, [(n, f"{name}-{n}", params) for n, params in enumerate(plan.params)])
    finally:
        store.close()
    return recorded.id, plan.params


def finish_trial(db: str, sweep_id: int, number: int, run: Run, *, value: float | None = None, error: str | None = None) -> None:
    """Record trial ``number`` completed (``value``: what its objective returned), or failed with ``error``."""
    store = open_store(db)
    try:
        state = TrialState.FAILED if error is not None else TrialState.COMPLETED
        assert store.record_trial(sweep_id, number, run.attempt_id, state, value=value, error=error), "not the run's writer"
    finally:
        store.close()


#: The grid of `mixed_sweep`: 6 trials, ``units`` varying slowest.
GRID = {"units": [4, 8, 16], "act": ["relu", "tanh"]}
#: A failed trial's error, with a password that every view must mask.
ERROR = "OperationalError: cannot reach postgresql://me:hunter2@db.lan/runs"
#: `mixed_sweep`'s trial numbers best first, as `tracker.sweep` ranks them: completed by value (trial 1's
#: objective returned 0.1; trials 2 and 0 rank by their best val_loss, 0.45 and 0.6), running, pending, failed.
RANKED = [1, 2, 0, 4, 5, 3]


def scaled(scale: float) -> Callable[[int], dict[str, float]]:
    """Metrics whose best val_loss, after 3 epochs, is ``scale / 2``."""
    return lambda epoch: {"loss": scale / (epoch + 1), "val_loss": 1.5 * scale / (epoch + 1)}


def mixed_sweep(record: Callable[..., Run], db: str, name: str = "mlp") -> int:
    """Sweep ``name`` over `GRID` with a trial at each status: three completed (one whose objective returned
    its value), one running (this process is its live writer), one pending and one failed. Its id."""
    sweep_id, params = plan_sweep(db, name, grid=GRID)
    for number, scale, value in [(0, 1.2, None), (1, 1.0, 0.1), (2, 0.9, None)]:
        run = record(f"{name}-{number}", 3, config=params[number], metrics=scaled(scale))
        finish_trial(db, sweep_id, number, run, value=value)
    run = record(f"{name}-3", 2, config=params[3], metrics=scaled(1.0), finish="failed")
    finish_trial(db, sweep_id, 3, run, error=ERROR)
    record(f"{name}-4", 1, config=params[4], metrics=scaled(1.1), finish=None)
    return sweep_id
