"""Checks that must hold after any crash: used by the crash tests, on SQLite or PostgreSQL, local or S3 checkpoints."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa

from tracker import checkpoint
from tracker.records import FileInfo


def check(db: str, run: str, checkpoint_dir: str | None = None) -> list[int]:
    """Assert the crash-safety invariants of ``run``; return its live committed epochs.

    ``checkpoint_dir`` is where the run's checkpoint folder is now, if it was moved since the files were recorded.
    """
    if "://" not in db:
        if not Path(db).exists():
            return []  # killed before the database was created: nothing was committed
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
    engine = sa.create_engine(db if "://" in db else f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("epochs"):
                return []  # killed before the schema was created: nothing was committed
            rows = conn.execute(
                sa.text(
                    "SELECT e.epoch, e.checkpoint_path, e.checkpoint_size, e.checkpoint_sha256 FROM epochs e "
                    "JOIN runs r ON r.id = e.run_id WHERE r.name = :run AND NOT e.superseded ORDER BY e.epoch"
                ),
                {"run": run},
            ).all()
    finally:
        engine.dispose()
    epochs = [r[0] for r in rows]
    assert epochs == list(range(len(epochs))), f"live epochs are not exactly 0..N-1: {epochs}"
    with_file = [r for r in rows if r[1] is not None]  # under checkpoint_every_seconds, some epochs have none
    if with_file:
        # Raises if the newest committed checkpoint is missing or differs from what its row recorded.
        newest = FileInfo(*with_file[-1][1:])
        if checkpoint_dir is not None:
            newest = checkpoint.open_folder(checkpoint_dir, run).locate(newest)
        checkpoint.read_verified(newest)
    return epochs
