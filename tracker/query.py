"""Reading runs back: learning curves and the list of runs. Never imports TensorFlow.

Example:
    >>> import pandas as pd                                   # doctest: +SKIP
    >>> pd.DataFrame(tracker.curves("cnn-baseline"))          # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from tracker.records import AttemptRow, RunRow, Status
from tracker.spool.journal import behind as spool_behind
from tracker.store import Store, open_store


@dataclass(frozen=True)
class RunInfo:
    """One run, as `runs` lists it."""

    name: str
    #: ``running``, ``completed``, ``failed``, ``interrupted``, or ``crashed`` when its process died without saying.
    status: str
    #: Newest committed epoch (0-based), or None before the first commit.
    last_epoch: int | None
    #: Total epochs the newest ``fit`` call asked for.
    target_epochs: int | None
    created_at: datetime
    updated_at: datetime
    monitor: str | None
    best_epoch: int | None
    best_value: float | None
    config: dict[str, Any]
    #: Set with ``tracker tag RUN KEY=VALUE``.
    tags: dict[str, str] = field(default_factory=dict)
    #: Set with ``tracker note RUN TEXT``.
    note: str | None = None
    #: The sweep this run is a trial of (`tracker.sweep`, `tracker.track_tuner`, `tracker.track_optuna`), or None.
    sweep: str | None = None
    #: Its trial number in that sweep, or None.
    trial: int | None = None
    #: For a run whose newest writer spooled (team mode): its commits not yet in this database, as counted in the
    #: spool on this host, or as the writer last said from its own; None for a run written directly.
    behind: int | None = None


def attempt_status(attempt: AttemptRow) -> Status:
    """The attempt's status, with a writer that died without saying shown as ``crashed``.

    It still reads "running" in the database until the next attempt retires it.
    """
    return Status.CRASHED if attempt.status == Status.RUNNING and not attempt.alive() else attempt.status


def effective_status(run: RunRow, attempt: AttemptRow | None) -> str:
    """The run's status, with a writer that died silently shown as ``crashed``."""
    if run.status == Status.RUNNING and (attempt is None or not attempt.alive()):
        return Status.CRASHED
    return run.status


def runs(db: str | os.PathLike[str] | None = None) -> list[RunInfo]:
    """List every run in the database, oldest first.

    Example:
        >>> for r in tracker.runs():                                # doctest: +SKIP
        ...     print(r.name, r.status, r.last_epoch, r.best_value, r.tags.get("dataset"))

    Args:
        db: A SQLite file path or a SQLAlchemy URL. Defaults to ``$TRACKER_DB``, else ``./tracker.db``.
    """
    store = open_store(db, create=False)
    try:
        found = store.list_runs()
        notes = store.annotations()
        trials = store.sweep_of_runs()
        return [
            RunInfo(
                name=r.name, status=effective_status(r, a), last_epoch=r.last_epoch, target_epochs=r.target_epochs,
                created_at=r.created_at, updated_at=r.updated_at, monitor=r.monitor,
                best_epoch=r.best_epoch, best_value=r.best_value, config=r.config,
                # A run created after list_runs read has no annotations yet.
                tags=notes.get(r.id, ({}, None))[0], note=notes.get(r.id, ({}, None))[1],
                sweep=trials.get(r.name, (None, None))[0], trial=trials.get(r.name, (None, None))[1],
                behind=None if a is None or a.spool is None else spool_behind(a.spool, a.process.host).waiting,
            )
            for r, a in found
        ]
    finally:
        store.close()


def curves(
    run_name: str,
    db: str | os.PathLike[str] | None = None,
    *,
    metrics: list[str] | None = None,
    include_superseded: bool = False,
    by: Literal["epoch", "step"] = "epoch",
) -> dict[str, list]:
    """The run's learning curve as columns: ``{"epoch": [0, 1, ...], "loss": [...], ...}``.

    One entry per committed epoch of the run's current history, in epoch order;
    a metric missing at some epoch reads NaN there. With ``by="step"``, the running batch
    metrics that ``log_every_steps`` recorded: ``{"step": [...], "epoch": [...], "loss": [...]}``,
    one entry per logged global step, each step once (steps after a resume point are superseded).

    Example:
        >>> c = tracker.curves("cnn-baseline")                      # doctest: +SKIP
        >>> c["epoch"][-1], c["val_loss"][-1]                       # doctest: +SKIP
        >>> tracker.curves("cnn-baseline", by="step")["step"][:3]   # doctest: +SKIP
        [50, 100, 150]

    Args:
        run_name: The run.
        db: A SQLite file path or a SQLAlchemy URL. Defaults to ``$TRACKER_DB``, else ``./tracker.db``.
        metrics: Only these metrics. Defaults to all.
        include_superseded: Also return epochs replaced by a fallback or a rewind; adds a
            ``superseded`` column and may repeat an epoch number. Defaults to False.
        by: ``"epoch"`` for the epoch curve, ``"step"`` for the per-step one. Defaults to ``"epoch"``.

    Raises:
        RunNotFoundError: No such run; the message suggests close names.
    """
    if by not in ("epoch", "step"):
        raise ValueError(f"Invalid value for argument `by`. Received: by={by!r}. Expected 'epoch' or 'step'.")
    if by == "step" and include_superseded:
        raise ValueError("include_superseded=True is only for by='epoch'; the curve by step holds live steps only.")
    store = open_store(db, create=False)
    try:
        run = store.get_run(run_name)
        if by == "step":
            return store.step_curve(run.id, metrics)
        if include_superseded:
            return _all_rows(store, run, metrics)
        return store.live_curve(run.id, metrics)
    finally:
        store.close()


def _all_rows(store: Store, run: RunRow, metrics: list[str] | None) -> dict[str, list]:
    rows = store.all_epoch_metrics(run.id)
    names = metrics if metrics is not None else sorted({r[3] for r in rows if r[3] is not None})
    order: dict[int, int] = {}
    columns: dict[str, list] = {"epoch": [], "superseded": [], **{n: [] for n in names}}
    for epoch_id, epoch, superseded, name, value in rows:
        if epoch_id not in order:
            order[epoch_id] = len(order)
            columns["epoch"].append(epoch)
            columns["superseded"].append(superseded)
            for n in names:
                columns[n].append(math.nan)
        if name in columns and name not in ("epoch", "superseded"):
            columns[name][order[epoch_id]] = value
    return columns
