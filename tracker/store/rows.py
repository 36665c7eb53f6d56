"""Rows into records: the row mappers, the NaN/NULL value conversions, and the kept-checkpoint selections.

Shared by `tracker.store.reads`, `tracker.store.writers`, `tracker.store.commits` and
`tracker.store.catalogue`, so that a column is turned into a record, and a kept checkpoint is
selected, in one place only.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from tracker.records import AttemptRow, EpochRow, FileInfo, ProcessInfo, RunRow, SpoolMark, Status
from tracker.store.tables import epochs, steps


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


def insert_for(conn: sa.Connection) -> Any:
    """The dialect's ``insert``, which has ``on_conflict_do_nothing`` on SQLite and PostgreSQL alike."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


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
        spool=None if r.get("spool") is None else SpoolMark(
            r["spool"], r["replicated_seq"] or 0, r["spool_pending"] or 0, r["spool_newest"], _aware(r["spooled_at"]),
        ),
    )


def _epoch_row(r: Mapping) -> EpochRow:
    info = FileInfo(r["checkpoint_path"], r["checkpoint_size"], r["checkpoint_sha256"]) if r["checkpoint_path"] else None
    return EpochRow(id=r["id"], epoch=r["epoch"], superseded=bool(r["superseded"]), checkpoint=info)


def _step_row(r: Mapping) -> EpochRow:
    return dataclasses.replace(_epoch_row(r), batch=r["batch"], step=r["step"])
