"""What a run's writer commits, each in ONE transaction fenced by its lease; and what rewrites that history.

Epochs, steps and imported histories (`commit_epoch`, `commit_step`, `commit_history`), each
refused once another attempt has taken the run over; superseding what came after a resume point
(`supersede`, `rewind`) and the run summary it recomputes; and checkpoint retention, in the
commit's own transaction or for a stopped run (`apply_retention`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa

from tracker.errors import RunLockedError, TrackerError
from tracker.faults import label, pause_point
from tracker.records import FileInfo, Position, Replicated, Retention, RunRow, StepValues, now
from tracker.store.rows import _db_value, _kept, _kept_steps, _run_row
from tracker.store.tables import attempts, epochs, metrics, runs, step_metrics, steps
from tracker.store.writers import Writers, lost_writer


class Kept(Protocol):
    """A kept checkpoint as retention sees it: a row of ``_kept`` or ``_kept_steps``, or the spool's copy of one."""

    id: int
    epoch: int
    superseded: bool
    checkpoint_path: str


def doomed_by(
    retention: Retention, best_epoch: int | None, kept: Sequence[Kept], kept_steps: Sequence[Kept]
) -> tuple[list[Kept], list[Kept]]:
    """The epoch and step checkpoints, of the kept ones (newest first), that ``retention`` no longer keeps.

    A count of None keeps every checkpoint of its kind; otherwise superseded ones go too: no resume reaches them.
    Pure, so that a spooled writer decides exactly as the database would (`tracker.spool`).
    """
    doomed: list[Kept] = []
    doomed_steps: list[Kept] = []
    if retention.keep_last is not None:
        live = [r for r in kept if not r.superseded]
        keep = {r.id for r in live[: retention.keep_last]}
        if retention.keep_best:
            keep |= {r.id for r in live if r.epoch == best_epoch}
        doomed = [r for r in kept if r.id not in keep]
    if retention.keep_last_steps is not None:
        keep_steps = {r.id for r in [r for r in kept_steps if not r.superseded][: retention.keep_last_steps]}
        doomed_steps = [r for r in kept_steps if r.id not in keep_steps]
    return doomed, doomed_steps


def _retire(conn: sa.Connection, run_id: int, retention: Retention, best_epoch: int | None) -> list[str]:
    """Mark the checkpoints that ``retention`` does not keep as deleted; return their paths."""
    kept = conn.execute(_kept(run_id)).all() if retention.keep_last is not None else []
    kept_steps = conn.execute(_kept_steps(run_id)).all() if retention.keep_last_steps is not None else []
    doomed, doomed_steps = doomed_by(retention, best_epoch, kept, kept_steps)
    if doomed:
        conn.execute(epochs.update().where(epochs.c.id.in_([r.id for r in doomed])).values(checkpoint_deleted=True))
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



def is_better(value: float, best: float | None, mode: str) -> bool:
    """Whether ``value`` of the monitor beats ``best`` in direction ``mode`` (``min`` or ``max``); NaN never does."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best if mode == "min" else value > best


class AlreadyReplicated(TrackerError):
    """A commit replayed from a spool that the database holds already: skipped, as if applied."""


class Commits(Writers):
    """The fenced commits of a run's writer, superseding, rewinding and retention: one part of `tracker.store.Store`.

    Built on `Writers`, whose lease fences every commit here and whose writer `rewind` retires.
    """

    def commit_epoch(
        self,
        run: RunRow,
        attempt_id: int,
        epoch: int,
        values: Mapping[str, float],
        checkpoint: FileInfo | None,
        retention: Retention | None = None,
        step_rows: Sequence[StepValues] = (),
        replicated: Replicated | None = None,
    ) -> tuple[RunRow, list[str]]:
        """Commit one epoch: its metrics, its checkpoint pointer and the run's summary, in ONE transaction.

        ``run`` must be the writer's current view of the run (its best so far). The same transaction
        marks the checkpoints that ``retention`` no longer keeps as deleted, and adds the per-step
        metrics of ``step_rows``. Returns the view after this epoch, and the paths of those checkpoints:
        the caller deletes the files once this returns.
        Refused with `RunLockedError` if ``attempt_id`` is no longer the run's writer. A commit replayed from a
        spool carries its ``replicated`` mark, and is refused with `AlreadyReplicated` if it was applied before.
        """
        t = now()
        best_epoch, best_value = run.best_epoch, run.best_value
        if run.monitor in values and is_better(values[run.monitor], best_value, run.mode or "min"):
            best_epoch, best_value = epoch, values[run.monitor]
        with self._write() as conn:
            self._fence(conn, run, attempt_id, t, replicated, last_epoch=epoch, best_epoch=best_epoch, best_value=best_value)
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
        replicated: Replicated | None = None,
    ) -> tuple[RunRow, list[str]]:
        """Commit a point inside an epoch, in ONE transaction: the per-step metrics of ``step_rows``, and
        ``checkpoint`` (when given) as the step checkpoint at ``at``.

        Fenced, and retires checkpoints, like `commit_epoch`; returns the same. ``at``'s own values are
        logged with the checkpoint unless its step already has a row (in ``step_rows``, or committed before).
        """
        t = now()
        with self._write() as conn:
            self._fence(conn, run, attempt_id, t, replicated)
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
    def _fence(
        conn: sa.Connection, run: RunRow, attempt_id: int, t: datetime, replicated: Replicated | None = None, **summary: object
    ) -> None:
        """Update the run's summary (``updated_at=t`` and ``summary``), refused with `RunLockedError` unless
        ``attempt_id`` is still its writer, and with `AlreadyReplicated` if ``replicated`` was applied before.

        The summary update doubles as the fence: it matches no row once another attempt took over.
        """
        if replicated is not None:
            # In the commit's own transaction: a replay after a crash between the server's commit and the
            # spool's delete matches no row here, and rolls back whole.
            marked = conn.execute(
                attempts.update()
                .where(attempts.c.id == attempt_id, sa.or_(attempts.c.replicated_seq.is_(None), attempts.c.replicated_seq < replicated.seq))
                .values(**replicated.values(t))
            ).rowcount
            if marked != 1:
                raise AlreadyReplicated(f"Commit {replicated.seq} of spool {replicated.spool} is in the database already.")
        fenced = conn.execute(
            runs.update().where(runs.c.id == run.id, runs.c.writer_attempt_id == attempt_id).values(updated_at=t, **summary)
        ).rowcount
        if fenced != 1:
            raise lost_writer(conn, run, attempt_id) or RunLockedError(f"Run {run.name!r}: attempt {attempt_id} is not its writer.")

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
            if run.monitor in values and is_better(values[run.monitor], best_value, run.mode or "min"):
                best_epoch, best_value = epoch, values[run.monitor]
        last = rows[-1][0]
        with self._write() as conn:
            self._fence(conn, run, attempt_id, t, last_epoch=last, best_epoch=best_epoch, best_value=best_value)
            _insert_many(conn, epochs, ("run_id", "attempt_id", "epoch", "committed_at", "checkpoint_deleted", "superseded"),
                         [(run.id, attempt_id, epoch, t, False, False) for epoch, _ in rows])
            # Read the ids back rather than RETURNING them row by row: the new rows are this attempt's from the first epoch on.
            ids = [i for (i,) in conn.execute(
                sa.select(epochs.c.id)
                .where(epochs.c.run_id == run.id, epochs.c.attempt_id == attempt_id, epochs.c.epoch >= rows[0][0])
                .order_by(epochs.c.epoch)
            )]
            assert len(ids) == len(rows), (len(ids), len(rows))
            _insert_many(conn, metrics, ("epoch_id", "name", "run_id", "epoch", "value", "superseded"), [
                (epoch_id, k, run.id, epoch, _db_value(v), False)
                for epoch_id, (epoch, values) in zip(ids, rows)
                for k, v in values.items()
            ])
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
    def set_monitor(self, run: RunRow, monitor: str, mode: str) -> RunRow:
        with self._write() as conn:
            conn.execute(runs.update().where(runs.c.id == run.id).values(monitor=monitor, mode=mode))
            self._resummarize(conn, dataclasses.replace(run, monitor=monitor, mode=mode))
            return _run_row(conn.execute(sa.select(runs).where(runs.c.id == run.id)).mappings().one())

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

    def kept(self, run_id: int) -> tuple[list[Kept], list[Kept]]:
        """The run's kept epoch and step checkpoints, newest first, as retention sees them (see `doomed_by`)."""
        with self._read() as conn:
            return list(conn.execute(_kept(run_id)).all()), list(conn.execute(_kept_steps(run_id)).all())

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


def _insert_many(conn: sa.Connection, table: sa.Table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Insert ``rows`` (values in the order of ``columns``) in the connection's transaction.

    On a driver with positional parameters (SQLite) the rows go straight to its cursor's ``executemany``: for an
    import's million rows, SQLAlchemy's handling of each row's parameters is most of the time. A column whose type
    converts its values for the driver (a datetime, a bool) converts each distinct value once: here they are constants.
    Elsewhere, as usual.
    """
    if not rows:
        return
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=list(columns))
    if not compiled.positional or tuple(compiled.positiontup or ()) != columns:
        conn.execute(table.insert(), [dict(zip(columns, row)) for row in rows])
        return
    processors = {i: p for i, c in enumerate(columns) if (p := table.c[c].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)) is not None}
    if processors:
        memo: dict[tuple[int, object], object] = {}

        def driver_row(row: tuple) -> tuple:
            return tuple(
                v if i not in processors else memo[i, v] if (i, v) in memo else memo.setdefault((i, v), processors[i](v))
                for i, v in enumerate(row)
            )

        rows = [driver_row(row) for row in rows]
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.executemany(compiled.string, rows)
    finally:
        cursor.close()
