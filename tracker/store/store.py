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
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Literal

import sqlalchemy as sa

from tracker import settings
from tracker.errors import (
    ResumeError,
    RunLockedError,
    RunNotFoundError,
    StoreError,
    TrackerError,
)
from tracker.faults import label, pause_point
from tracker.process import is_this_process
from tracker.records import (
    AttemptRow,
    EpochRow,
    FileInfo,
    Position,
    ProcessInfo,
    Retention,
    RunRow,
    Status,
    StepValues,
    now,
)
from tracker.redact import reason, redact
from tracker.store import db as dbmod
from tracker.store import migrate
from tracker.store.tables import attempts, epochs, metrics, runs, step_metrics, steps, tags


def _aware(t: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every time tracker writes is UTC.
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t


def _db_value(v: float) -> float | None:
    return None if math.isnan(v) else v


def _py_value(v: float | None) -> float:
    return math.nan if v is None else v


def _kept(run_id: int) -> sa.Select:
    """The run's epochs whose checkpoint file is recorded and not deleted, newest first.

    Its filter is the one of the partial index ``ix_epochs_kept``: a handful of rows, however long the run.
    """
    return (
        sa.select(epochs)
        .where(epochs.c.run_id == run_id, epochs.c.checkpoint_path.is_not(None), sa.not_(epochs.c.checkpoint_deleted))
        .order_by(epochs.c.epoch.desc(), epochs.c.id.desc())
    )


def _kept_steps(run_id: int) -> sa.Select:
    """The run's step checkpoints whose file is recorded and not deleted, newest first (index ``ix_steps_kept``)."""
    return (
        sa.select(steps)
        .where(steps.c.run_id == run_id, steps.c.checkpoint_path.is_not(None), sa.not_(steps.c.checkpoint_deleted))
        .order_by(steps.c.step.desc(), steps.c.id.desc())
    )


def _retire(conn: sa.Connection, run_id: int, retention: Retention, best_epoch: int | None) -> list[str]:
    """Mark the checkpoints that ``retention`` does not keep as deleted; return their paths.

    A count of None keeps every checkpoint of its kind; otherwise superseded ones go too: no resume reaches them.
    """
    doomed, doomed_steps = [], []
    if retention.keep_last is not None:
        rows = conn.execute(_kept(run_id)).all()
        live = [r for r in rows if not r.superseded]
        keep = {r.id for r in live[: retention.keep_last]}
        if retention.keep_best:
            keep |= {r.id for r in live if r.epoch == best_epoch}
        doomed = [r for r in rows if r.id not in keep]
    if doomed:
        conn.execute(epochs.update().where(epochs.c.id.in_([r.id for r in doomed])).values(checkpoint_deleted=True))
    if retention.keep_last_steps is not None:
        step_rows = conn.execute(_kept_steps(run_id)).all()
        keep_steps = {r.id for r in [r for r in step_rows if not r.superseded][: retention.keep_last_steps]}
        doomed_steps = [r for r in step_rows if r.id not in keep_steps]
    if doomed_steps:
        conn.execute(steps.update().where(steps.c.id.in_([r.id for r in doomed_steps])).values(checkpoint_deleted=True))
    return [r.checkpoint_path for r in doomed] + [r.checkpoint_path for r in doomed_steps]


def _insert_steps(conn: sa.Connection, run_id: int, attempt_id: int, rows: Sequence[StepValues], t: datetime) -> None:
    """Insert the per-step metric rows of ``rows`` (one statement per table, however many steps)."""
    if not rows:
        return
    ids = conn.execute(
        steps.insert().returning(steps.c.id, sort_by_parameter_order=True),
        [{"run_id": run_id, "attempt_id": attempt_id, "epoch": r.epoch, "batch": r.batch, "step": r.step,
          "committed_at": t, "checkpoint_deleted": False, "superseded": False} for r in rows],
    ).scalars().all()
    values = [
        {"step_id": step_id, "name": k, "run_id": run_id, "step": r.step, "value": _db_value(v), "superseded": False}
        for step_id, r in zip(ids, rows)
        for k, v in r.values.items()
    ]
    if values:
        conn.execute(step_metrics.insert(), values)


def _make_writer(conn: sa.Connection, run_id: int, process: ProcessInfo, t: datetime) -> tuple[RunRow, int]:
    """Record a new attempt by ``process`` and make it the run's only writer; return the run and the attempt."""
    attempt_id = conn.execute(
        attempts.insert().values(
            run_id=run_id, status=Status.RUNNING, started_at=t, heartbeat_at=t, initial_epoch=0,
            host=process.host, pid=process.pid, executable=process.executable,
            argv=json.dumps(process.argv), cwd=process.cwd, process_start=process.start,
            versions=json.dumps(process.versions, sort_keys=True),
        )
    ).inserted_primary_key[0]
    conn.execute(runs.update().where(runs.c.id == run_id).values(writer_attempt_id=attempt_id))
    return _run_row(conn.execute(sa.select(runs).where(runs.c.id == run_id)).mappings().one()), attempt_id


def _refuse_to_continue(name: str, status: str) -> None:
    """Raise `ResumeError` for a run that training must not continue: an imported one, or one half deleted."""
    if status == Status.IMPORTED:
        raise ResumeError(
            f"Run {name!r} was imported from another tool's log and has no checkpoint to continue from. "
            f"Train under another name, or remove it first with: tracker rm {name}"
        )
    if status == Status.DELETING:
        raise ResumeError(
            f"Run {name!r} is being deleted (an interrupted tracker rm). Finish with: tracker gc "
            "(or tracker rm again), then train it anew."
        )


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
            so a mistyped path is reported instead of creating an empty database,
            and a file they cannot write is opened read-only. Defaults to True.

    Raises:
        StoreError: The database cannot be opened: in memory, missing, not writable, or not tracker's.
        ValueError: ``$TRACKER_LOCK_TIMEOUT`` is not a number of seconds.
    """
    lock_timeout = settings.lock_timeout()
    database = dbmod.locate(settings.resolve_db(db))
    read_only_uri = None
    if database.path is not None:
        dbmod.check_sqlite_file(database.path, create=create)
        if database.path.exists():
            found = dbmod.peek(database.path)
            # Here, before the engine's first connection switches the file to WAL.
            migrate.refuse_foreign(found.tables, database.display)
            if not create and not dbmod.writable(database.path):  # reading needs no write access
                read_only_uri = found.read_only_uri
    engine = dbmod.create_engine(database, read_only_uri=read_only_uri, lock_timeout=lock_timeout)
    try:
        migrate.upgrade(engine, database.display, read_only=read_only_uri is not None)
    except TrackerError:
        engine.dispose()
        raise
    except sa.exc.DBAPIError as e:
        engine.dispose()
        raise StoreError(f"Cannot open database {database.display}: {reason(e)}") from e
    return Store(engine, database.display)



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
            raise StoreError(f"Cannot read database {self.display}: {reason(e)}") from e

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect() as conn:
                conn.execution_options(write=True)
                with conn.begin():
                    yield conn
        except sa.exc.DBAPIError as e:
            raise StoreError(f"Cannot write database {self.display}: {reason(e)}") from e

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
                        name=name, uid=uuid.uuid4().hex, status=Status.RUNNING, created_at=t, updated_at=t,
                        config=json.dumps(dict(config), sort_keys=True), checkpoint_dir=checkpoint_dir,
                    )
                ).inserted_primary_key[0]
            else:
                run_id = row["id"]
                _refuse_to_continue(name, row["status"])
                self._retire_writer(conn, run_id, row["writer_attempt_id"], name, force, t)
                values: dict[str, object] = {"status": Status.RUNNING, "updated_at": t, "checkpoint_dir": checkpoint_dir}
                if config:
                    values["config"] = json.dumps(dict(config), sort_keys=True)
                conn.execute(runs.update().where(runs.c.id == run_id).values(**values))
            return _make_writer(conn, run_id, process, t)

    def _retire_writer(
        self, conn: sa.Connection, run_id: int, attempt_id: int | None, name: str, force: bool, t: datetime
    ) -> None:
        if attempt_id is None:
            return
        row = conn.execute(sa.select(attempts).where(attempts.c.id == attempt_id)).mappings().first()
        if row is None:
            return
        writer = _attempt_row(row)
        if writer.alive(t) and not force and is_this_process(writer.process.host, writer.process.pid, writer.process.start):
            raise RunLockedError(
                f"Run {name!r} is already being written by this process (pid {writer.process.pid}): tracker.track "
                "blocks for the same run are nested. End the outer block before opening another one for this run "
                "(or pass force=True to take the run over from it)."
            )
        if writer.alive(t) and not force:
            age = (t - writer.heartbeat_at).total_seconds()
            raise RunLockedError(
                f"Run {name!r} is being written by pid {writer.process.pid} on host {writer.process.host} "
                f"(heartbeat {age:.0f}s ago). Stop that process first, or take over with "
                f"python -m tracker.resume {name} --force."
            )
        if writer.status == Status.RUNNING:
            status = Status.TAKEN_OVER if writer.alive(t) else Status.CRASHED
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
            # An attempt that was taken over keeps saying so: its own late exit does not rewrite that.
            conn.execute(
                attempts.update()
                .where(attempts.c.id == attempt_id, attempts.c.status == Status.RUNNING)
                .values(status=status, ended_at=t, heartbeat_at=t, error=None if error is None else redact(error))
            )
            # Only the current writer speaks for the run.
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id, runs.c.writer_attempt_id == attempt_id)
                .values(status=status, updated_at=t)
            )

    def discard_attempt(self, run_id: int, attempt_id: int, *, only_new_run: bool) -> Literal["run", "attempt", "kept"]:
        """Remove an attempt that committed nothing, as if it had never started.

        The run goes with it when it has no other attempt (``"run"``); otherwise the run's status
        and writer are again those of its newest other attempt (``"attempt"``). With
        ``only_new_run``, an attempt of a run that has others is kept (``"kept"``), and so is one
        that committed an epoch or was taken over.
        """
        with self._write() as conn:
            writer = conn.scalar(sa.select(runs.c.writer_attempt_id).where(runs.c.id == run_id))
            committed = conn.scalar(sa.select(sa.func.count()).select_from(epochs).where(epochs.c.attempt_id == attempt_id))
            committed = committed or conn.scalar(sa.select(sa.func.count()).select_from(steps).where(steps.c.attempt_id == attempt_id))
            if writer != attempt_id or committed:
                return "kept"
            previous = conn.execute(
                sa.select(attempts.c.id, attempts.c.status)
                .where(attempts.c.run_id == run_id, attempts.c.id != attempt_id)
                .order_by(attempts.c.id.desc()).limit(1)
            ).first()
            if previous is not None and only_new_run:
                return "kept"
            conn.execute(runs.update().where(runs.c.id == run_id).values(writer_attempt_id=None))
            conn.execute(attempts.delete().where(attempts.c.id == attempt_id))
            if previous is None:
                conn.execute(runs.delete().where(runs.c.id == run_id))
                return "run"
            conn.execute(runs.update().where(runs.c.id == run_id).values(status=previous.status, writer_attempt_id=previous.id))
            return "attempt"

    def rewind(self, run: RunRow, to_epoch: int, *, force: bool) -> int:
        """Make ``to_epoch`` the run's resume point: later live epochs are superseded. Returns how many.

        The writer is retired in the same transaction (refused with `RunLockedError` while it is
        alive, unless ``force``), so a live writer cannot commit past the rewind.
        """
        with self._write() as conn:
            writer = conn.scalar(sa.select(runs.c.writer_attempt_id).where(runs.c.id == run.id))
            self._retire_writer(conn, run.id, writer, run.name, force, now())
            conn.execute(runs.update().where(runs.c.id == run.id).values(writer_attempt_id=None))
            n = self._supersede(conn, run, Position(to_epoch + 1))
            pause_point("during-rewind", to_epoch)
        return n

    # -- epochs ------------------------------------------------------------

    def checkpoints(self, run_id: int, *, live_only: bool = True) -> list[EpochRow]:
        """Checkpoints whose file is recorded and not deleted, at epoch ends and inside epochs, newest `position` first."""
        with self._read() as conn:
            rows = [_epoch_row(r) for r in conn.execute(_kept(run_id)).mappings()]
            rows += [_step_row(r) for r in conn.execute(_kept_steps(run_id)).mappings()]
        rows.sort(key=lambda r: r.position, reverse=True)
        # Filtered here, not in SQL, so that the read stays on the small index of kept checkpoints.
        return [r for r in rows if not r.superseded] if live_only else rows

    def referenced_paths(self, run_id: int) -> set[str]:
        """Checkpoint files that some row still points at."""
        with self._read() as conn:
            paths = set(conn.scalars(_kept(run_id).with_only_columns(epochs.c.checkpoint_path)))
            return paths | set(conn.scalars(_kept_steps(run_id).with_only_columns(steps.c.checkpoint_path)))

    def commit_epoch(
        self,
        run: RunRow,
        attempt_id: int,
        epoch: int,
        values: Mapping[str, float],
        checkpoint: FileInfo | None,
        retention: Retention | None = None,
        step_rows: Sequence[StepValues] = (),
    ) -> tuple[RunRow, list[str]]:
        """Commit one epoch: its metrics, its checkpoint pointer and the run's summary, in ONE transaction.

        ``run`` must be the writer's current view of the run (its best so far). The same transaction
        marks the checkpoints that ``retention`` no longer keeps as deleted, and adds the per-step
        metrics of ``step_rows``. Returns the view after this epoch, and the paths of those checkpoints:
        the caller deletes the files once this returns.
        Refused with `RunLockedError` if ``attempt_id`` is no longer the run's writer.
        """
        t = now()
        best_epoch, best_value = run.best_epoch, run.best_value
        if run.monitor in values and _is_better(values[run.monitor], best_value, run.mode or "min"):
            best_epoch, best_value = epoch, values[run.monitor]
        with self._write() as conn:
            self._fence(conn, run, attempt_id, t, last_epoch=epoch, best_epoch=best_epoch, best_value=best_value)
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
            _insert_steps(conn, run.id, attempt_id, step_rows, t)
            doomed = _retire(conn, run.id, retention, best_epoch) if retention else []
            pause_point("during-commit", epoch)
        return dataclasses.replace(run, last_epoch=epoch, best_epoch=best_epoch, best_value=best_value, updated_at=t), doomed

    def commit_step(
        self,
        run: RunRow,
        attempt_id: int,
        at: StepValues,
        checkpoint: FileInfo | None,
        retention: Retention | None = None,
        step_rows: Sequence[StepValues] = (),
    ) -> tuple[RunRow, list[str]]:
        """Commit a point inside an epoch, in ONE transaction: the per-step metrics of ``step_rows``, and
        ``checkpoint`` (when given) as the step checkpoint at ``at``.

        Fenced, and retires checkpoints, like `commit_epoch`; returns the same. ``at``'s own values are
        logged with the checkpoint unless its step already has a row (in ``step_rows``, or committed before).
        """
        t = now()
        with self._write() as conn:
            self._fence(conn, run, attempt_id, t)
            _insert_steps(conn, run.id, attempt_id, step_rows, t)
            doomed: list[str] = []
            if checkpoint is not None:
                attach = (
                    steps.update()
                    .where(steps.c.run_id == run.id, steps.c.step == at.step, sa.not_(steps.c.superseded))
                    .values(checkpoint_path=checkpoint.path, checkpoint_size=checkpoint.size, checkpoint_sha256=checkpoint.sha256)
                )
                # The step's row may exist already: logged with these rows, or in an earlier group.
                if conn.execute(attach).rowcount == 0:
                    _insert_steps(conn, run.id, attempt_id, [at], t)
                    conn.execute(attach)
                doomed = _retire(conn, run.id, retention, run.best_epoch) if retention else []
                pause_point("during-commit", label(at.epoch, at.batch))
        return dataclasses.replace(run, updated_at=t), doomed

    @staticmethod
    def _fence(conn: sa.Connection, run: RunRow, attempt_id: int, t: datetime, **summary: object) -> None:
        """Update the run's summary (``updated_at=t`` and ``summary``), refused with `RunLockedError` unless
        ``attempt_id`` is still its writer.

        The summary update doubles as the fence: it matches no row once another attempt took over.
        """
        fenced = conn.execute(
            runs.update().where(runs.c.id == run.id, runs.c.writer_attempt_id == attempt_id).values(updated_at=t, **summary)
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
            self._fence(conn, run, attempt_id, t, last_epoch=last, best_epoch=best_epoch, best_value=best_value)
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

    def supersede(self, run: RunRow, attempt_id: int | None, at: Position) -> int:
        """Mark what was trained after ``at`` superseded (kept, left out of curves) and recompute the run summary:
        the epochs from ``at.epoch`` on, and the steps after ``at``.

        Returns how many epochs were superseded.
        """
        with self._write() as conn:
            if attempt_id is not None:
                writer = conn.scalar(sa.select(runs.c.writer_attempt_id).where(runs.c.id == run.id))
                if writer != attempt_id:
                    raise RunLockedError(f"Run {run.name!r} was taken over by another process.")
            return self._supersede(conn, run, at)

    def _supersede(self, conn: sa.Connection, run: RunRow, at: Position) -> int:
        n = conn.execute(
            epochs.update()
            .where(epochs.c.run_id == run.id, epochs.c.epoch >= at.epoch, epochs.c.superseded == sa.false())
            .values(superseded=True)
        ).rowcount
        conn.execute(
            metrics.update()
            .where(metrics.c.run_id == run.id, metrics.c.epoch >= at.epoch, metrics.c.superseded == sa.false())
            .values(superseded=True)
        )
        later = sa.or_(steps.c.epoch > at.epoch, sa.and_(steps.c.epoch == at.epoch, steps.c.batch > at.batch))
        conn.execute(
            steps.update().where(steps.c.run_id == run.id, steps.c.superseded == sa.false(), later).values(superseded=True)
        )
        conn.execute(
            step_metrics.update()
            .where(
                step_metrics.c.run_id == run.id, step_metrics.c.superseded == sa.false(),
                step_metrics.c.step_id.in_(sa.select(steps.c.id).where(steps.c.run_id == run.id, steps.c.superseded == sa.true())),
            )
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

    def step_curve(self, run_id: int, names: Sequence[str] | None = None) -> dict[str, list]:
        """The live per-step metrics as columns ``{"step", "epoch", <metric>...}``, in step order, in one read.

        A metric missing at some logged step reads NaN there.
        """
        query = (
            sa.select(step_metrics.c.step, steps.c.epoch, step_metrics.c.name, step_metrics.c.value)
            .select_from(step_metrics.join(steps, steps.c.id == step_metrics.c.step_id))
            .where(step_metrics.c.run_id == run_id, step_metrics.c.superseded == sa.false())
            .order_by(step_metrics.c.step)
        )
        if names is not None:
            query = query.where(step_metrics.c.name.in_(list(names)))
        with self._read() as conn:
            rows = conn.execute(query).all()
        wanted = list(names) if names is not None else sorted({r[2] for r in rows})
        columns: dict[str, list] = {"step": [], "epoch": [], **{n: [] for n in wanted}}
        for step, epoch, name, value in rows:
            if not columns["step"] or columns["step"][-1] != step:
                columns["step"].append(step)
                columns["epoch"].append(epoch)
                for n in wanted:
                    columns[n].append(math.nan)
            columns[name][-1] = _py_value(value)
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

    # -- run management: tags, notes, rename, delete, import ------------------

    def annotations(self) -> dict[int, tuple[dict[str, str], str | None]]:
        """Every run's ``(tags, note)`` by run id."""
        with self._read() as conn:
            found: dict[int, tuple[dict[str, str], str | None]] = {
                run_id: ({}, note) for run_id, note in conn.execute(sa.select(runs.c.id, runs.c.note))
            }
            for run_id, key, value in conn.execute(sa.select(tags.c.run_id, tags.c.key, tags.c.value).order_by(tags.c.key)):
                found[run_id][0][key] = value
        return found

    def set_tags(self, run: RunRow, values: Mapping[str, str], remove: Sequence[str] = ()) -> dict[str, str]:
        """Set the tags ``values`` (replacing a key's old value) and remove the keys ``remove``; return all tags."""
        with self._write() as conn:
            keys = list(values) + list(remove)
            if keys:
                conn.execute(tags.delete().where(tags.c.run_id == run.id, tags.c.key.in_(keys)))
            if values:
                conn.execute(tags.insert(), [{"run_id": run.id, "key": k, "value": v} for k, v in values.items()])
            return dict(conn.execute(sa.select(tags.c.key, tags.c.value).where(tags.c.run_id == run.id).order_by(tags.c.key)).all())

    def set_note(self, run: RunRow, text: str | None) -> None:
        """Replace the run's note; None removes it."""
        with self._write() as conn:
            conn.execute(runs.update().where(runs.c.id == run.id).values(note=text))

    def rename_run(self, run: RunRow, new_name: str, moved: tuple[str, str] | None = None) -> None:
        """Rename the run in ONE transaction, refused with `RunLockedError` while its writer is alive.

        ``moved=(old_folder, new_folder)`` also points the run's checkpoint folder and every recorded
        checkpoint path under ``old_folder`` at ``new_folder``: call it only once the files exist there.
        """
        t = now()
        with self._write() as conn:
            self._refuse_live(conn, run, "Rename it once it has stopped.")
            taken = conn.scalar(sa.select(runs.c.id).where(runs.c.name == new_name))
            if taken is not None:
                raise ValueError(f"A run named {new_name!r} already exists in {self.display}. Choose another name, or remove that run first.")
            values: dict[str, object] = {"name": new_name, "updated_at": t}
            if moved is not None:
                old, new = moved
                values["checkpoint_dir"] = new
                prefix = old.rstrip("/") + "/"
                for table in (epochs, steps):
                    rows = conn.execute(
                        sa.select(table.c.id, table.c.checkpoint_path).where(table.c.run_id == run.id, table.c.checkpoint_path.is_not(None))
                    ).all()
                    for row_id, path in rows:
                        if path.startswith(prefix):
                            conn.execute(table.update().where(table.c.id == row_id).values(checkpoint_path=new.rstrip("/") + "/" + path[len(prefix):]))
            conn.execute(runs.update().where(runs.c.id == run.id).values(**values))

    def begin_delete(self, run: RunRow, *, force: bool) -> RunRow:
        """First step of deleting a run: mark it ``deleting`` and no longer pointing at any file, in ONE transaction.

        After this commit every checkpoint of the run is an orphan (that `tracker.admin.runs` deletes next) and
        the old writer, if any, is fenced out. Refused with `RunLockedError` while the writer is alive, unless ``force``.
        """
        with self._write() as conn:
            if not force:
                self._refuse_live(conn, run, "Stop it first, or pass --force.")
            conn.execute(epochs.update().where(epochs.c.run_id == run.id).values(checkpoint_deleted=True))
            conn.execute(steps.update().where(steps.c.run_id == run.id).values(checkpoint_deleted=True))
            conn.execute(runs.update().where(runs.c.id == run.id).values(status=Status.DELETING, writer_attempt_id=None, updated_at=now()))
            return _run_row(conn.execute(sa.select(runs).where(runs.c.id == run.id)).mappings().one())

    def finish_delete(self, run: RunRow) -> None:
        """Last step of deleting a run: remove all its rows in ONE transaction (its files must be gone already)."""
        with self._write() as conn:
            conn.execute(metrics.delete().where(metrics.c.run_id == run.id))
            conn.execute(step_metrics.delete().where(step_metrics.c.run_id == run.id))
            conn.execute(steps.delete().where(steps.c.run_id == run.id))
            conn.execute(epochs.delete().where(epochs.c.run_id == run.id))
            conn.execute(attempts.delete().where(attempts.c.run_id == run.id))
            conn.execute(tags.delete().where(tags.c.run_id == run.id))
            conn.execute(runs.delete().where(runs.c.id == run.id, runs.c.status == Status.DELETING))

    def apply_retention(self, run: RunRow, retention: Retention, *, dry_run: bool = False) -> list[FileInfo]:
        """Mark the checkpoints of a stopped run that ``retention`` does not keep as deleted; return them.

        One transaction; a run whose writer is alive is left alone (returns nothing). The caller deletes
        the files after. ``dry_run=True`` rolls the marking back and only returns what it would mark.
        """
        with self._write() as conn:
            current = conn.execute(sa.select(runs).where(runs.c.id == run.id)).mappings().first()
            if current is None or self._writer_alive(conn, current["writer_attempt_id"]):
                return []
            kept = {r.checkpoint_path: r for query in (_kept(run.id), _kept_steps(run.id)) for r in conn.execute(query)}
            # A savepoint, so that a dry run computes exactly what the real one would, with the same code.
            savepoint = conn.begin_nested()
            doomed = _retire(conn, run.id, retention, current["best_epoch"])
            if dry_run:
                savepoint.rollback()
            else:
                savepoint.commit()
        return [FileInfo(p, kept[p].checkpoint_size, kept[p].checkpoint_sha256) for p in doomed]

    def begin_import(self, name: str, *, process: ProcessInfo, config: Mapping[str, object], monitor: str | None, mode: str) -> tuple[RunRow, int]:
        """Create a run for an imported history, with one attempt as its writer. Refused if the name exists.

        The run has no checkpoint folder (``checkpoint_dir`` is empty). `finish_attempt` with status
        ``imported`` marks the run and the attempt as imported once `commit_history` has written the curve.
        """
        t = now()
        with self._write() as conn:
            if conn.scalar(sa.select(runs.c.id).where(runs.c.name == name)) is not None:
                raise ValueError(f"A run named {name!r} already exists in {self.display}. Pass --replace to replace it, or choose another --name.")
            run_id = conn.execute(
                runs.insert().values(
                    name=name, uid=uuid.uuid4().hex, status=Status.RUNNING, created_at=t, updated_at=t,
                    config=json.dumps(dict(config), sort_keys=True), checkpoint_dir="", monitor=monitor, mode=mode,
                )
            ).inserted_primary_key[0]
            return _make_writer(conn, run_id, process, t)

    def _writer_alive(self, conn: sa.Connection, attempt_id: int | None) -> AttemptRow | None:
        """The run's writer attempt if it still holds its lease, else None."""
        if attempt_id is None:
            return None
        row = conn.execute(sa.select(attempts).where(attempts.c.id == attempt_id)).mappings().first()
        writer = _attempt_row(row) if row is not None else None
        return writer if writer is not None and writer.alive() else None

    def refuse_live(self, run: RunRow, what_to_do: str) -> None:
        """Raise `RunLockedError`, ending with ``what_to_do``, if the run's writer still holds its lease."""
        with self._read() as conn:
            self._refuse_live(conn, run, what_to_do)

    def live_writer(self, run: RunRow) -> AttemptRow | None:
        """The run's writer attempt as the database says now, if it still holds its lease; else None."""
        with self._read() as conn:
            return self._writer_alive(conn, conn.scalar(sa.select(runs.c.writer_attempt_id).where(runs.c.id == run.id)))

    def _refuse_live(self, conn: sa.Connection, run: RunRow, what_to_do: str) -> None:
        current = conn.scalar(sa.select(runs.c.writer_attempt_id).where(runs.c.id == run.id))
        writer = self._writer_alive(conn, current)
        if writer is not None:
            raise RunLockedError(
                f"Run {run.name!r} is being written by pid {writer.process.pid} on host {writer.process.host}. {what_to_do}"
            )

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
        id=r["id"], name=r["name"], uid=r["uid"], status=Status(r["status"]), created_at=_aware(r["created_at"]),
        updated_at=_aware(r["updated_at"]), config=json.loads(r["config"]), monitor=r["monitor"],
        mode=r["mode"], target_epochs=r["target_epochs"], checkpoint_dir=r["checkpoint_dir"],
        last_epoch=r["last_epoch"], best_epoch=r["best_epoch"], best_value=r["best_value"],
        writer_attempt_id=r["writer_attempt_id"],
    )


def _attempt_row(r: Mapping) -> AttemptRow:
    return AttemptRow(
        id=r["id"], status=Status(r["status"]), started_at=_aware(r["started_at"]), ended_at=_aware(r["ended_at"]),
        heartbeat_at=_aware(r["heartbeat_at"]), initial_epoch=r["initial_epoch"],
        process=ProcessInfo(
            executable=r["executable"], argv=json.loads(r["argv"]), cwd=r["cwd"], host=r["host"],
            pid=r["pid"], versions=json.loads(r["versions"]), start=r["process_start"],
        ),
        error=r["error"],
    )


def _epoch_row(r: Mapping) -> EpochRow:
    info = FileInfo(r["checkpoint_path"], r["checkpoint_size"], r["checkpoint_sha256"]) if r["checkpoint_path"] else None
    return EpochRow(id=r["id"], epoch=r["epoch"], superseded=bool(r["superseded"]), checkpoint=info)


def _step_row(r: Mapping) -> EpochRow:
    return dataclasses.replace(_epoch_row(r), batch=r["batch"], step=r["step"])
