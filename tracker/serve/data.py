"""What the web view shows of runs, as JSON-able dicts: the run list, one run, its curves, and what changed.

Sweeps have their own module, `tracker.serve.sweeps`.

Every function takes an open `Store` and reads through its methods, each of which is
one short transaction: nothing here keeps a transaction open between two reads, so
a page left open never holds back SQLite's WAL checkpoints.

JSON has no NaN or infinity: a NaN metric value is sent as ``null``, ±infinity as
the strings ``"Infinity"`` and ``"-Infinity"``.

Example:
    >>> store = open_store("runs.db", create=False)                         # doctest: +SKIP
    >>> run_curves(store, "cnn", metrics=["loss"], max_points=2000)        # doctest: +SKIP
    {'epoch': [0, 1, ...], 'loss': [...], 'resumed_at': [4], 'points': 12, 'superseded': None}
"""

from __future__ import annotations

import itertools
import math
import shlex
from collections.abc import Sequence
from datetime import datetime

import numpy as np

from tracker.query import attempt_status, effective_status
from tracker.records import AttemptRow, RunRow
from tracker.redact import redact
from tracker.serve.downsample import reduce_points
from tracker.spool.journal import behind as spool_behind
from tracker.store import Store

#: Keys of a curves answer that are not metric columns.
CURVE_EXTRAS = ("resumed_at", "points", "superseded")

JSONValue = float | str | None


def number(value: float | None) -> JSONValue:
    """A float as JSON can carry it: NaN as None, ±infinity as ``"Infinity"``/``"-Infinity"``."""
    if value is None or math.isnan(value):
        return None
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def strict(value: object) -> object:
    """``value`` with every float made JSON-safe by `number` (a config may hold NaN)."""
    if isinstance(value, float):
        return number(value)
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict(v) for v in value]
    return value


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def resume_epochs(attempts: Sequence[AttemptRow]) -> list[int]:
    """The epochs at which a later attempt picked the run up again, as `tracker.plot` marks them."""
    return sorted({a.initial_epoch for a in attempts if a.initial_epoch > 0})


def run_summary(run: RunRow, newest: AttemptRow | None, trial: tuple[str, int] | None = None) -> dict:
    """One run as `GET /api/runs` lists it; ``status`` is `effective_status` (``crashed`` by lease).

    ``trial`` is ``(sweep, number)`` for a trial of a sweep (`Store.sweep_of_runs`): they become ``sweep``
    and ``trial``, both null for a run of no sweep.
    """
    return {
        "name": run.name,
        "sweep": None if trial is None else trial[0],
        "trial": None if trial is None else trial[1],
        "status": effective_status(run, newest),
        "last_epoch": run.last_epoch,
        "epochs_done": 0 if run.last_epoch is None else run.last_epoch + 1,
        "target_epochs": run.target_epochs,
        "best_epoch": run.best_epoch,
        "best_value": number(run.best_value),
        "monitor": run.monitor,
        "mode": run.mode,
        "config": strict(run.config),
        "created_at": _iso(run.created_at),
        "updated_at": _iso(run.updated_at),
        # Team mode: commits of the newest writer's spool not in this database yet; null for a run written directly.
        "behind": None if newest is None or newest.spool is None else spool_behind(newest.spool, newest.process.host).waiting,
    }


def list_runs(store: Store) -> list[dict]:
    """Every run, oldest first, as `run_summary` dicts: two short transactions (the runs, then which are trials)."""
    found = store.list_runs()
    trials = store.sweep_of_runs()
    return [run_summary(run, newest, trials.get(run.name)) for run, newest in found]


def run_detail(store: Store, name: str) -> dict:
    """One run: its summary, metric names, resume epochs, attempts (commands masked) and kept checkpoints.

    Raises:
        RunNotFoundError: No such run.
    """
    run = store.get_run(name)
    attempts = store.attempts(run.id)
    detail = run_summary(run, attempts[-1] if attempts else None, store.sweep_of_runs().get(run.name))
    detail.update(
        metrics=store.metric_names(run.id),
        resumed_at=resume_epochs(attempts),
        attempts=[_attempt(a) for a in attempts],
        # live_only=False: a superseded epoch's file stays on disk until retention removes it.
        checkpoints=[
            {"epoch": e.epoch, "batch": e.batch, "path": redact(e.checkpoint.path), "size": e.checkpoint.size, "superseded": e.superseded}
            for e in store.checkpoints(run.id, live_only=False)
        ],
        checkpoint_dir=redact(run.checkpoint_dir),
    )
    return detail


def _attempt(a: AttemptRow) -> dict:
    p = a.process
    return {
        "id": a.id,
        "status": attempt_status(a),
        "started_at": _iso(a.started_at),
        "ended_at": _iso(a.ended_at),
        "heartbeat_at": _iso(a.heartbeat_at),
        "initial_epoch": a.initial_epoch,
        "host": p.host,
        "pid": p.pid,
        # The store masks passwords when it records a command; masked again in case an older tracker did not.
        "command": redact(shlex.join([p.executable, *p.argv])),
        "cwd": p.cwd,
        "error": None if a.error is None else redact(a.error),
        "spool": None if a.spool is None else _spool(a),
    }


def _spool(a: AttemptRow) -> dict:
    assert a.spool is not None
    late = spool_behind(a.spool, a.process.host)
    return {"host": late.host, "waiting": late.waiting, "newest": late.newest, "as_of": _iso(late.as_of) if late.as_of else None}


def run_curves(
    store: Store,
    name: str,
    *,
    metrics: Sequence[str] | None = None,
    max_points: int | None = None,
    after: int | None = None,
    superseded: bool = False,
) -> dict:
    """The run's live curve as columns, like `tracker.curves`, reduced to ``max_points`` if given.

    The ``epoch`` column holds the epochs at which at least one of the chosen metrics was
    logged; a metric missing at one of them reads null there. Besides the columns, the answer
    has ``resumed_at`` (resume epochs), ``points`` (how many epochs there were before any
    reduction) and ``superseded`` (with ``superseded=True``: the superseded rows as columns of
    their own, else None).

    Args:
        store: The open store.
        name: The run.
        metrics: Only these metrics, each one name (a comma may be part of it). A single name that the run did not
            log is read as names between commas, the query's older form (``metrics=loss,val_loss``). Defaults to
            every metric the run logged.
        max_points: Reduce to at most this many points with `reduce_points`: each bucket's min and
            max per metric, the first and last points and every resume point are kept. Defaults to
            None (every point).
        after: Only epochs after this one, for a page that already has the rest. Defaults to None.
        superseded: Also return the superseded epochs. Defaults to False.

    Raises:
        RunNotFoundError: No such run.
        ValueError: An unknown metric, or a ``max_points`` too small to keep the points that must stay.
    """
    run = store.get_run(name)
    resumed = resume_epochs(store.attempts(run.id))
    known = store.metric_names(run.id)
    if metrics is not None and len(metrics) == 1 and metrics[0] not in known and "," in metrics[0]:
        metrics = metrics[0].split(",")
        if not all(metrics):
            raise ValueError(
                f"Invalid value for metrics. Received: {','.join(metrics)!r}. Expected comma-separated names, e.g. "
                "loss,val_loss, or one name per metrics= parameter."
            )
    if metrics is not None:
        unknown = [m for m in metrics if m not in known]
        if unknown:
            # Quoted: a name may hold a comma.
            raise ValueError(
                f"Invalid value for metrics. Received: {', '.join(map(repr, unknown))}. Expected names that run "
                f"{name!r} logged: {', '.join(map(repr, known)) or '(none yet)'}."
            )
    names = list(metrics) if metrics is not None else known
    series = store.metric_series(run.id, names, after=after)
    epochs, columns = _align({n: _arrays(rows) for n, rows in series.items()})
    answer: dict = {"epoch": epochs, **columns}
    answer = _reduced(answer, names, max_points, resumed)
    answer.update(resumed_at=resumed, points=len(epochs), superseded=None)
    if superseded:
        answer["superseded"] = _superseded(store, run.id, names, max_points)
    return _jsonable(answer, names)


def _arrays(rows: list[tuple[int, float | None]]) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of one metric's rows; None (NaN) becomes NaN."""
    try:
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64, count=2 * len(rows))
    except TypeError:  # a None value: the slower path that converts it to NaN
        flat = np.array(rows, dtype=np.float64).ravel()
    pairs = flat.reshape(-1, 2)
    return pairs[:, 0].astype(np.int64), pairs[:, 1]


def _align(series: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One epoch axis for all metrics (the union of their epochs), each metric NaN where it was not logged."""
    if not series:
        return np.array([], dtype=np.int64), {}
    axes = [e for e, _ in series.values()]
    if all(np.array_equal(axes[0], e) for e in axes[1:]):
        return axes[0], {n: v for n, (_, v) in series.items()}
    epochs = np.unique(np.concatenate(axes))
    columns = {}
    for n, (e, v) in series.items():
        column = np.full(len(epochs), np.nan)
        column[np.searchsorted(epochs, e)] = v
        columns[n] = column
    return epochs, columns


def _reduced(columns: dict, names: Sequence[str], max_points: int | None, pinned: Sequence[int]) -> dict:
    if max_points is None:
        return columns
    keep = reduce_points(columns["epoch"], {n: columns[n] for n in names}, max_points, pinned)
    return {k: v[keep] for k, v in columns.items()}


def _superseded(store: Store, run_id: int, names: Sequence[str], max_points: int | None) -> dict:
    """The superseded rows of the chosen metrics as columns; one epoch may repeat (one row per attempt)."""
    rows: dict[int, dict] = {}
    for epoch_id, epoch, is_superseded, metric, value in store.all_epoch_metrics(run_id):
        if is_superseded and metric in names:
            rows.setdefault(epoch_id, {"epoch": epoch})[metric] = value
    ordered = sorted(rows.values(), key=lambda r: r["epoch"])
    columns = {"epoch": np.array([r["epoch"] for r in ordered], dtype=np.int64)}
    columns.update({n: np.array([r.get(n, math.nan) for r in ordered], dtype=np.float64) for n in names})
    return _jsonable(_reduced(columns, names, max_points, ()), names)


def _jsonable(columns: dict, names: Sequence[str]) -> dict:
    out = dict(columns)
    out["epoch"] = columns["epoch"].tolist()
    for n in names:
        values = columns[n]
        if np.isfinite(values).all():
            out[n] = values.tolist()
        else:
            out[n] = [number(v) for v in values.tolist()]
    return out
