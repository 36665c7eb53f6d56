"""Who may write a run: attempts, the one writer each run has, and the lease that says whether that writer is alive.

A run has at most one writer, the attempt that `runs.writer_attempt_id` names. `Writers` starts
attempts (taking the run over from a dead or, with ``force``, a live writer), keeps their
heartbeat, ends or discards them, and answers whether a run's writer still holds its lease. What
a writer commits, fenced by that lease, is `tracker.store.commits`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

import sqlalchemy as sa

from tracker.errors import ResumeError, RunDeletedError, RunLockedError
from tracker.process import is_this_process
from tracker.records import AttemptRow, ProcessInfo, Replicated, RunRow, Status, now
from tracker.redact import redact
from tracker.store.rows import _attempt_row, _run_row, insert_for
from tracker.store.session import Session
from tracker.store.tables import attempts, epochs, runs, steps


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




def lost_writer(conn: sa.Connection, run: RunRow, attempt_id: int) -> RunLockedError | None:
    """Why ``attempt_id`` no longer writes ``run`` (the error its next commit must raise), or None if it still does."""
    row = conn.execute(sa.select(runs.c.status, runs.c.writer_attempt_id).where(runs.c.id == run.id)).one_or_none()
    if row is None or row.status == Status.DELETING:
        return RunDeletedError(
            f"Run {run.name!r} was deleted (tracker rm --force) while this process (attempt {attempt_id}) trained it, "
            "so nothing more of it can be recorded, and this process stops. Running the script again starts a new "
            "run of that name from epoch 0."
        )
    if row.writer_attempt_id != attempt_id:
        return RunLockedError(f"Run {run.name!r} was taken over by another process; this process (attempt {attempt_id}) stops writing to it.")
    return None


class Writers(Session):
    """The attempts of a run and its single writer's lease: one part of `tracker.store.Store`."""

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
            # On PostgreSQL, FOR UPDATE makes two processes claiming the same run at once (workers of one sweep)
            # take turns: the second sees the first's writer and is refused. SQLite's BEGIN IMMEDIATE already does.
            claim = sa.select(runs).where(runs.c.name == name).with_for_update()
            row = conn.execute(claim).mappings().first()
            uid = None
            if row is None:
                uid = uuid.uuid4().hex
                conn.execute(
                    insert_for(conn)(runs).values(
                        name=name, uid=uid, status=Status.RUNNING, created_at=t, updated_at=t,
                        config=json.dumps(dict(config), sort_keys=True), checkpoint_dir=checkpoint_dir,
                    ).on_conflict_do_nothing(index_elements=["name"])
                )
                row = conn.execute(claim).mappings().one()
            run_id = row["id"]
            if row["uid"] != uid:  # the run existed, or another process created it a moment ago
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

    def set_target_epochs(self, run_id: int, epochs: int) -> None:
        with self._write() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(target_epochs=epochs, updated_at=now()))

    def set_initial_epoch(self, attempt_id: int, epoch: int) -> None:
        with self._write() as conn:
            conn.execute(attempts.update().where(attempts.c.id == attempt_id).values(initial_epoch=epoch))

    def heartbeat(self, attempt_id: int, *, spool: Replicated | None = None) -> None:
        """Refresh the attempt's lease; a spooled writer also says how many commits wait in its ``spool``."""
        t = now()
        values: dict[str, object] = {"heartbeat_at": t}
        if spool is not None:
            values |= {k: v for k, v in spool.values(t).items() if k != "replicated_seq"}
        with self._write() as conn:
            conn.execute(attempts.update().where(attempts.c.id == attempt_id).values(**values))

    def writer_lost(self, run: RunRow, attempt_id: int) -> RunLockedError | None:
        """Whether ``attempt_id`` lost ``run`` (deleted, or taken over): the error to stop with, or None.

        Example:
            ```python
            if (lost := store.writer_lost(run, attempt_id)) is not None:
                raise lost
            ```
        """
        with self._read() as conn:
            return lost_writer(conn, run, attempt_id)

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

    def writer_of(self, run: RunRow) -> AttemptRow | None:
        """The attempt the database names as the run's writer now, alive or not; None if none."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(attempts).where(attempts.c.id == sa.select(runs.c.writer_attempt_id).where(runs.c.id == run.id).scalar_subquery())
            ).mappings().first()
        return _attempt_row(row) if row is not None else None

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
