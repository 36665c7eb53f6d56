"""Every read and write of tracker's database, as plain SQLAlchemy Core.

The store knows runs, attempts, epochs and metrics; it knows nothing of Keras
or of checkpoint file formats. Each method is one transaction.

Example:
    >>> store = open_store("tracker.db")            # doctest: +SKIP
    >>> store.curve_rows("cnn", ["loss"])           # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import socket
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from tracker import db as dbmod
from tracker import migrate, settings
from tracker.errors import RunLockedError, RunNotFoundError, StoreError, TrackerError
from tracker.faults import pause_point
from tracker.redact import redact
from tracker.tables import attempts, epochs, metrics, runs

#: How often a live writer refreshes its heartbeat, and how stale one may get before the writer counts as dead.
HEARTBEAT_INTERVAL = timedelta(seconds=15)
LEASE = timedelta(seconds=120)


def now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(t: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every time tracker writes is UTC.
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t


def _db_value(v: float) -> float | None:
    return None if math.isnan(v) else v


def _py_value(v: float | None) -> float:
    return math.nan if v is None else v


@dataclass(frozen=True)
class FileInfo:
    """A checkpoint file as the database records it."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class EpochRow:
    id: int
    epoch: int
    superseded: bool
    checkpoint: FileInfo | None


@dataclass(frozen=True)
class Retention:
    """Which checkpoints a run keeps: the ``keep_last`` newest live ones, and the best epoch's if ``keep_best``."""

    keep_last: int
    keep_best: bool


@dataclass(frozen=True)
class ProcessInfo:
    """How to launch the training process again."""

    executable: str
    argv: list[str]
    cwd: str
    host: str
    pid: int
    versions: dict[str, str]


@dataclass(frozen=True)
class AttemptRow:
    id: int
    status: str
    started_at: datetime
    ended_at: datetime | None
    heartbeat_at: datetime
    initial_epoch: int
    process: ProcessInfo
    error: str | None

    def alive(self, at: datetime | None = None) -> bool:
        """Whether the process of this attempt still holds its lease."""
        if self.status != "running" or (at or now()) - self.heartbeat_at > LEASE:
            return False
        return self.process.host != socket.gethostname() or _pid_exists(self.process.pid)


@dataclass(frozen=True)
class RunRow:
    id: int
    name: str
    #: Unique across databases: marks the run's checkpoint folder as its own.
    uid: str
    status: str
    created_at: datetime
    updated_at: datetime
    config: dict
    monitor: str | None
    mode: str | None
    target_epochs: int | None
    checkpoint_dir: str
    last_epoch: int | None
    best_epoch: int | None
    best_value: float | None
    writer_attempt_id: int | None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed process whose parent has not reaped it still answers kill(0); in
    # containers without an init that reaps, such zombies linger.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _kept(run_id: int) -> sa.Select:
    """The run's epochs whose checkpoint file is recorded and not deleted, newest first.

    Its filter is the one of the partial index ``ix_epochs_kept``: a handful of rows, however long the run.
    """
    return (
        sa.select(epochs)
        .where(epochs.c.run_id == run_id, epochs.c.checkpoint_path.is_not(None), sa.not_(epochs.c.checkpoint_deleted))
        .order_by(epochs.c.epoch.desc(), epochs.c.id.desc())
    )


def _retire(conn: sa.Connection, run_id: int, retention: Retention, best_epoch: int | None) -> list[str]:
    """Mark the checkpoints that ``retention`` does not keep as deleted; return their paths."""
    rows = conn.execute(_kept(run_id)).all()
    live = [r for r in rows if not r.superseded]
    keep = {r.id for r in live[: retention.keep_last]}
    if retention.keep_best:
        keep |= {r.id for r in live if r.epoch == best_epoch}
    doomed = [r for r in rows if r.id not in keep]
    if doomed:
        conn.execute(epochs.update().where(epochs.c.id.in_([r.id for r in doomed])).values(checkpoint_deleted=True))
    return [r.checkpoint_path for r in doomed]


def _is_better(value: float, best: float | None, mode: str) -> bool:
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best if mode == "min" else value > best


def open_store(db: str | os.PathLike[str] | None = None, *, create: bool = True) -> Store:
    """Open (and migrate) the database: ``db``, else ``$TRACKER_DB``, else ``./tracker.db``.

    Args:
        db: A file path or a SQLAlchemy URL. Defaults to None.
        create: Create a missing SQLite file. Commands that only read pass False,
            so a mistyped path is reported instead of creating an empty database.
            Defaults to True.
    """
    database = dbmod.locate(settings.resolve_db(db))
    if database.path is not None:
        dbmod.check_sqlite_file(database.path, create=create)
    engine = dbmod.create_engine(database)
    try:
        migrate.upgrade(engine, database.display)
    except TrackerError:
        engine.dispose()
        raise
    except sa.exc.DBAPIError as e:
        engine.dispose()
        raise StoreError(f"Cannot open database {database.display}: {_reason(e)}") from e
    return Store(engine, database.display)


def _reason(e: sa.exc.DBAPIError) -> str:
    return redact(str(e.orig).splitlines()[0] if e.orig is not None else str(e))


class Store:
    """tracker's database. Create with `open_store`."""

    def __init__(self, engine: sa.Engine, display: str) -> None:
        self.engine = engine
        self.display = display

    @property
    def url(self) -> str:
        """The full URL, password included: for handing to a child process, never for printing."""
        return self.engine.url.render_as_string(hide_password=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except sa.exc.DBAPIError as e:
            raise StoreError(f"Cannot read database {self.display}: {_reason(e)}") from e

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect() as conn:
                conn.execution_options(write=True)
                with conn.begin():
                    yield conn
        except sa.exc.DBAPIError as e:
            raise StoreError(f"Cannot write database {self.display}: {_reason(e)}") from e

    # -- runs -------------------------------------------------------------

    def run_names(self) -> list[str]:
        with self._read() as conn:
            return list(conn.scalars(sa.select(runs.c.name).order_by(runs.c.name)))

    def find_run(self, name: str) -> RunRow | None:
        with self._read() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.name == name)).mappings().first()
        return _run_row(row) if row else None

    def get_run(self, name: str) -> RunRow:
        """The run called ``name``; `RunNotFoundError`, with close names, if there is none."""
        found = self.find_run(name)
        if found is None:
            suggestions = difflib.get_close_matches(name, self.run_names(), n=3, cutoff=0.5)
            raise RunNotFoundError(name, self.display, suggestions)
        return found

    def list_runs(self) -> list[tuple[RunRow, AttemptRow | None]]:
        """Every run, oldest first, with its newest attempt."""
        with self._read() as conn:
            run_rows = [_run_row(r) for r in conn.execute(sa.select(runs).order_by(runs.c.created_at, runs.c.id)).mappings()]
            newest = (
                sa.select(sa.func.max(attempts.c.id)).group_by(attempts.c.run_id).scalar_subquery()
            )
            latest = {
                r["run_id"]: _attempt_row(r)
                for r in conn.execute(sa.select(attempts).where(attempts.c.id.in_(newest))).mappings()
            }
        return [(r, latest.get(r.id)) for r in run_rows]

    def attempts(self, run_id: int) -> list[AttemptRow]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(attempts).where(attempts.c.run_id == run_id).order_by(attempts.c.id)
            ).mappings()
            return [_attempt_row(r) for r in rows]

    def start_attempt(
        self,
        name: str,
        *,
        config: Mapping[str, object],
        checkpoint_dir: str,
        process: ProcessInfo,
        force: bool,
    ) -> tuple[RunRow, int]:
        """Create the run if new, and make a new attempt its only writer.

        Raises `RunLockedError` if the current writer is alive, unless ``force``.
        A dead writer's attempt is recorded as crashed.
        """
        t = now()
        with self._write() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.name == name)).mappings().first()
            if row is None:
                run_id = conn.execute(
                    runs.insert().values(
                        name=name, uid=uuid.uuid4().hex, status="running", created_at=t, updated_at=t,
                        config=json.dumps(dict(config), sort_keys=True), checkpoint_dir=checkpoint_dir,
                    )
                ).inserted_primary_key[0]
            else:
                run_id = row["id"]
                self._retire_writer(conn, run_id, row["writer_attempt_id"], name, force, t)
                values: dict[str, object] = {"status": "running", "updated_at": t, "checkpoint_dir": checkpoint_dir}
                if config:
                    values["config"] = json.dumps(dict(config), sort_keys=True)
                conn.execute(runs.update().where(runs.c.id == run_id).values(**values))
            attempt_id = conn.execute(
                attempts.insert().values(
                    run_id=run_id, status="running", started_at=t, heartbeat_at=t, initial_epoch=0,
                    host=process.host, pid=process.pid, executable=process.executable,
                    argv=json.dumps(process.argv), cwd=process.cwd,
                    versions=json.dumps(process.versions, sort_keys=True),
                )
            ).inserted_primary_key[0]
            conn.execute(runs.update().where(runs.c.id == run_id).values(writer_attempt_id=attempt_id))
            run = _run_row(conn.execute(sa.select(runs).where(runs.c.id == run_id)).mappings().one())
        return run, attempt_id

    def _retire_writer(
        self, conn: sa.Connection, run_id: int, attempt_id: int | None, name: str, force: bool, t: datetime
    ) -> None:
        if attempt_id is None:
            return
        row = conn.execute(sa.select(attempts).where(attempts.c.id == attempt_id)).mappings().first()
        if row is None:
            return
        writer = _attempt_row(row)
        if writer.alive(t) and not force:
            age = (t - writer.heartbeat_at).total_seconds()
            raise RunLockedError(
                f"Run {name!r} is being written by pid {writer.process.pid} on host {writer.process.host} "
                f"(heartbeat {age:.0f}s ago). Stop that process first, or take over with "
                f"python -m tracker.resume {name} --force."
            )
        if writer.status == "running":
            status = "taken-over" if writer.alive(t) else "crashed"
            conn.execute(attempts.update().where(attempts.c.id == attempt_id).values(status=status, ended_at=t))

    def set_monitor(self, run: RunRow, monitor: str, mode: str) -> RunRow:
        with self._write() as conn:
            conn.execute(runs.update().where(runs.c.id == run.id).values(monitor=monitor, mode=mode))
            self._resummarize(conn, dataclasses.replace(run, monitor=monitor, mode=mode))
            return _run_row(conn.execute(sa.select(runs).where(runs.c.id == run.id)).mappings().one())

    def set_target_epochs(self, run_id: int, epochs: int) -> None:
        with self._write() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(target_epochs=epochs, updated_at=now()))

    def set_initial_epoch(self, attempt_id: int, epoch: int) -> None:
        with self._write() as conn:
            conn.execute(attempts.update().where(attempts.c.id == attempt_id).values(initial_epoch=epoch))

    def heartbeat(self, attempt_id: int) -> None:
        with self._write() as conn:
            conn.execute(attempts.update().where(attempts.c.id == attempt_id).values(heartbeat_at=now()))

    def finish_attempt(self, run_id: int, attempt_id: int, status: str, *, error: str | None = None) -> None:
        t = now()
        with self._write() as conn:
            conn.execute(
                attempts.update().where(attempts.c.id == attempt_id).values(status=status, ended_at=t, heartbeat_at=t, error=None if error is None else redact(error))
            )
            # Only the current writer speaks for the run.
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id, runs.c.writer_attempt_id == attempt_id)
                .values(status=status, updated_at=t)
            )

    # -- epochs ------------------------------------------------------------

    def checkpoints(self, run_id: int, *, live_only: bool = True) -> list[EpochRow]:
        """Epochs whose checkpoint file is recorded and not deleted, newest first."""
        with self._read() as conn:
            rows = [_epoch_row(r) for r in conn.execute(_kept(run_id)).mappings()]
        # Filtered here, not in SQL, so that the read stays on the small index of kept checkpoints.
        return [r for r in rows if not r.superseded] if live_only else rows

    def referenced_paths(self, run_id: int) -> set[str]:
        """Checkpoint files that some epoch row still points at."""
        with self._read() as conn:
            return set(conn.scalars(_kept(run_id).with_only_columns(epochs.c.checkpoint_path)))

    def commit_epoch(
        self,
        run: RunRow,
        attempt_id: int,
        epoch: int,
        values: Mapping[str, float],
        checkpoint: FileInfo | None,
        retention: Retention | None = None,
    ) -> tuple[RunRow, list[str]]:
        """Commit one epoch: its metrics, its checkpoint pointer and the run's summary, in ONE transaction.

        ``run`` must be the writer's current view of the run (its best so far). The same transaction
        marks the checkpoints that ``retention`` no longer keeps as deleted. Returns the view after this
        epoch, and the paths of those checkpoints: the caller deletes the files once this returns.
        Refused with `RunLockedError` if ``attempt_id`` is no longer the run's writer.
        """
        t = now()
        best_epoch, best_value = run.best_epoch, run.best_value
        if run.monitor in values and _is_better(values[run.monitor], best_value, run.mode or "min"):
            best_epoch, best_value = epoch, values[run.monitor]
        with self._write() as conn:
            self._fence(conn, run, attempt_id, epoch, best_epoch, best_value, t)
            epoch_id = conn.execute(
                epochs.insert().values(
                    run_id=run.id, attempt_id=attempt_id, epoch=epoch, committed_at=t,
                    checkpoint_path=checkpoint.path if checkpoint else None,
                    checkpoint_size=checkpoint.size if checkpoint else None,
                    checkpoint_sha256=checkpoint.sha256 if checkpoint else None,
                    checkpoint_deleted=False, superseded=False,
                )
            ).inserted_primary_key[0]
            if values:
                conn.execute(
                    metrics.insert(),
                    [
                        {"epoch_id": epoch_id, "name": k, "run_id": run.id, "epoch": epoch, "value": _db_value(v), "superseded": False}
                        for k, v in values.items()
                    ],
                )
            doomed = _retire(conn, run.id, retention, best_epoch) if retention else []
            pause_point("during-commit", epoch)
        return dataclasses.replace(run, last_epoch=epoch, best_epoch=best_epoch, best_value=best_value, updated_at=t), doomed

    @staticmethod
    def _fence(
        conn: sa.Connection, run: RunRow, attempt_id: int, last_epoch: int, best_epoch: int | None, best_value: float | None, t: datetime
    ) -> None:
        """Update the run's summary, refused with `RunLockedError` unless ``attempt_id`` is still its writer.

        The summary update doubles as the fence: it matches no row once another attempt took over.
        """
        fenced = conn.execute(
            runs.update()
            .where(runs.c.id == run.id, runs.c.writer_attempt_id == attempt_id)
            .values(last_epoch=last_epoch, best_epoch=best_epoch, best_value=best_value, updated_at=t)
        ).rowcount
        if fenced != 1:
            raise RunLockedError(
                f"Run {run.name!r} was taken over by another process; this process (attempt {attempt_id}) stops writing to it."
            )

    def commit_history(self, run: RunRow, attempt_id: int, rows: Sequence[tuple[int, Mapping[str, float]]]) -> RunRow:
        """Commit many epochs that have no checkpoint, such as an imported history, in ONE transaction.

        ``rows`` are ``(epoch, metrics)`` pairs in increasing epoch order, all after the run's last epoch.
        Fenced like `commit_epoch`. Returns the run's view after them.
        """
        if not rows:
            return run
        t = now()
        best_epoch, best_value = run.best_epoch, run.best_value
        for epoch, values in rows:
            if run.monitor in values and _is_better(values[run.monitor], best_value, run.mode or "min"):
                best_epoch, best_value = epoch, values[run.monitor]
        last = rows[-1][0]
        with self._write() as conn:
            self._fence(conn, run, attempt_id, last, best_epoch, best_value, t)
            ids = conn.execute(
                epochs.insert().returning(epochs.c.id, sort_by_parameter_order=True),
                [
                    {"run_id": run.id, "attempt_id": attempt_id, "epoch": epoch, "committed_at": t,
                     "checkpoint_deleted": False, "superseded": False}
                    for epoch, _ in rows
                ],
            ).scalars().all()
            metric_rows = [
                {"epoch_id": epoch_id, "name": k, "run_id": run.id, "epoch": epoch, "value": _db_value(v), "superseded": False}
                for epoch_id, (epoch, values) in zip(ids, rows)
                for k, v in values.items()
            ]
            if metric_rows:
                conn.execute(metrics.insert(), metric_rows)
        return dataclasses.replace(run, last_epoch=last, best_epoch=best_epoch, best_value=best_value, updated_at=t)

    def supersede(self, run: RunRow, attempt_id: int | None, from_epoch: int) -> int:
        """Mark live epochs ``>= from_epoch`` superseded (kept, left out of curves) and recompute the run summary.

        Returns how many epochs were superseded.
        """
        with self._write() as conn:
            if attempt_id is not None:
                writer = conn.scalar(sa.select(runs.c.writer_attempt_id).where(runs.c.id == run.id))
                if writer != attempt_id:
                    raise RunLockedError(f"Run {run.name!r} was taken over by another process.")
            n = conn.execute(
                epochs.update()
                .where(epochs.c.run_id == run.id, epochs.c.epoch >= from_epoch, epochs.c.superseded == sa.false())
                .values(superseded=True)
            ).rowcount
            conn.execute(
                metrics.update()
                .where(metrics.c.run_id == run.id, metrics.c.epoch >= from_epoch, metrics.c.superseded == sa.false())
                .values(superseded=True)
            )
            self._resummarize(conn, run)
        return n

    def _resummarize(self, conn: sa.Connection, run: RunRow) -> None:
        last = conn.scalar(
            sa.select(sa.func.max(epochs.c.epoch)).where(epochs.c.run_id == run.id, epochs.c.superseded == sa.false())
        )
        best_epoch = best_value = None
        if run.monitor:
            order = metrics.c.value.asc() if (run.mode or "min") == "min" else metrics.c.value.desc()
            best = conn.execute(
                sa.select(metrics.c.epoch, metrics.c.value)
                .where(
                    metrics.c.run_id == run.id, metrics.c.name == run.monitor,
                    metrics.c.superseded == sa.false(), metrics.c.value.is_not(None),
                )
                .order_by(order, metrics.c.epoch)
                .limit(1)
            ).first()
            if best is not None:
                best_epoch, best_value = best.epoch, best.value
        conn.execute(
            runs.update().where(runs.c.id == run.id).values(last_epoch=last, best_epoch=best_epoch, best_value=best_value, updated_at=now())
        )

    # -- curves ------------------------------------------------------------

    def live_curve(self, run_id: int, names: Sequence[str] | None = None) -> dict[str, list]:
        """The run's live curve as columns, read in one transaction.

        Each metric is one range scan of the covering index ``ix_metrics_curve``; a metric
        missing at some epoch reads NaN there.
        """
        with self._read() as conn:
            epoch_list = [r[0] for r in _tuples(conn, sa.select(epochs.c.epoch).where(
                epochs.c.run_id == run_id, epochs.c.superseded == sa.false()).order_by(epochs.c.epoch))]
            discovered = names is None
            if discovered:
                names = self._metric_names(conn, run_id)
            columns: dict[str, list] = {"epoch": epoch_list}
            position = None
            for name in names:
                rows = _tuples(conn, self._curve_query(run_id, name))
                if not rows and discovered:
                    continue  # logged only in superseded epochs
                at = [r[0] for r in rows]
                values = [math.nan if r[1] is None else r[1] for r in rows]
                if at != epoch_list:
                    position = position or {e: i for i, e in enumerate(epoch_list)}
                    column = [math.nan] * len(epoch_list)
                    for e, v in zip(at, values):
                        column[position[e]] = v
                    values = column
                columns[name] = values
        return columns

    @staticmethod
    def _curve_query(run_id: int, name: str) -> sa.Select:
        return (
            sa.select(metrics.c.epoch, metrics.c.value)
            .where(metrics.c.run_id == run_id, metrics.c.name == name, metrics.c.superseded == sa.false())
            .order_by(metrics.c.epoch)
        )

    @staticmethod
    def _metric_names(conn: sa.Connection, run_id: int) -> list[str]:
        """Every metric name the run ever logged, superseded rows included.

        A recursive skip scan over the index: one probe per distinct name instead of
        reading every metric row of the run.
        """
        names = sa.select(sa.func.min(metrics.c.name).label("name")).where(metrics.c.run_id == run_id).cte("names", recursive=True)
        following = sa.select(
            sa.select(sa.func.min(metrics.c.name)).where(metrics.c.run_id == run_id, metrics.c.name > names.c.name).scalar_subquery()
        ).where(names.c.name.is_not(None))
        names = names.union_all(following)
        return list(conn.scalars(sa.select(names.c.name).where(names.c.name.is_not(None))).all())

    def metric_curve(self, run_id: int, name: str) -> tuple[list[int], list[float]]:
        """One live metric's (epochs, values): a single range scan of ``ix_metrics_curve``."""
        with self._read() as conn:
            rows = conn.execute(self._curve_query(run_id, name)).all()
        return [r[0] for r in rows], [_py_value(r[1]) for r in rows]

    def all_epoch_metrics(self, run_id: int) -> list[tuple[int, int, bool, str, float]]:
        """Every (epoch row id, epoch, superseded, name, value) of the run, superseded rows included."""
        q = (
            sa.select(epochs.c.id, epochs.c.epoch, epochs.c.superseded, metrics.c.name, metrics.c.value)
            .select_from(epochs.outerjoin(metrics, metrics.c.epoch_id == epochs.c.id))
            .where(epochs.c.run_id == run_id)
            .order_by(epochs.c.epoch, epochs.c.id)
        )
        with self._read() as conn:
            return [(r[0], r[1], bool(r[2]), r[3], _py_value(r[4])) for r in conn.execute(q)]

    # -- reads for the web view (tracker.serve) ----------------------------

    def metric_series(
        self, run_id: int, names: Sequence[str] | None = None, *, after: int | None = None
    ) -> dict[str, list[tuple[int, float | None]]]:
        """Each live metric's ``(epoch, value)`` rows in epoch order, NaN as None, in ONE short transaction.

        One range scan of ``ix_metrics_curve`` per metric, read as plain tuples: the web view's
        curve API downsamples these itself, so it reads no epoch column it would throw away.

        Args:
            run_id: The run's id.
            names: Only these metrics. Defaults to every metric the run logged.
            after: Only epochs after this one (the rows a live page has not seen yet). Defaults to None.
        """
        with self._read() as conn:
            names = self._metric_names(conn, run_id) if names is None else names
            series = {}
            for name in names:
                query = self._curve_query(run_id, name)
                if after is not None:
                    query = query.where(metrics.c.epoch > after)
                series[name] = _tuples(conn, query)
            return series

    def metric_names(self, run_id: int) -> list[str]:
        """Every metric name the run ever logged, superseded rows included, in name order."""
        with self._read() as conn:
            return self._metric_names(conn, run_id)

    def run_stamps(self) -> dict[str, tuple[tuple, AttemptRow | None]]:
        """For each run, a tuple that changes whenever its summary does, and, if its row says running, its
        newest attempt (whose liveness decides whether it is really running), in ONE short transaction.

        Far cheaper than `list_runs` (no config, no attempt of a finished run): what a poller reads
        every half second to learn which runs changed.
        """
        summary = (runs.c.status, runs.c.last_epoch, runs.c.best_epoch, runs.c.best_value, runs.c.target_epochs,
                   runs.c.updated_at, runs.c.writer_attempt_id, runs.c.monitor)
        with self._read() as conn:
            rows = conn.execute(sa.select(runs.c.id, runs.c.name, *summary)).all()
            running = [r.id for r in rows if r.status == "running"]
            newest: dict[int, AttemptRow] = {}
            if running:
                ids = sa.select(sa.func.max(attempts.c.id)).where(attempts.c.run_id.in_(running)).group_by(attempts.c.run_id)
                newest = {a["run_id"]: _attempt_row(a) for a in conn.execute(sa.select(attempts).where(attempts.c.id.in_(ids))).mappings()}
        return {r.name: (tuple(r[2:]), newest.get(r.id)) for r in rows}


def _tuples(conn: sa.Connection, query: sa.Select) -> list[tuple]:
    """Run ``query`` on the driver's own cursor: plain tuples, without a Row object per row.

    For the long, simple reads of a curve (ints and floats only) this halves the time.
    """
    compiled = query.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    args = tuple(params[k] for k in compiled.positiontup) if compiled.positional else params
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(compiled.string, args)
        return cursor.fetchall()
    finally:
        cursor.close()


def _run_row(r: Mapping) -> RunRow:
    return RunRow(
        id=r["id"], name=r["name"], uid=r["uid"], status=r["status"], created_at=_aware(r["created_at"]),
        updated_at=_aware(r["updated_at"]), config=json.loads(r["config"]), monitor=r["monitor"],
        mode=r["mode"], target_epochs=r["target_epochs"], checkpoint_dir=r["checkpoint_dir"],
        last_epoch=r["last_epoch"], best_epoch=r["best_epoch"], best_value=r["best_value"],
        writer_attempt_id=r["writer_attempt_id"],
    )


def _attempt_row(r: Mapping) -> AttemptRow:
    return AttemptRow(
        id=r["id"], status=r["status"], started_at=_aware(r["started_at"]), ended_at=_aware(r["ended_at"]),
        heartbeat_at=_aware(r["heartbeat_at"]), initial_epoch=r["initial_epoch"],
        process=ProcessInfo(
            executable=r["executable"], argv=json.loads(r["argv"]), cwd=r["cwd"], host=r["host"],
            pid=r["pid"], versions=json.loads(r["versions"]),
        ),
        error=r["error"],
    )


def _epoch_row(r: Mapping) -> EpochRow:
    info = FileInfo(r["checkpoint_path"], r["checkpoint_size"], r["checkpoint_sha256"]) if r["checkpoint_path"] else None
    return EpochRow(id=r["id"], epoch=r["epoch"], superseded=bool(r["superseded"]), checkpoint=info)
