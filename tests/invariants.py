"""Checks that must hold after any crash: used by the crash tests."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path


def check(db: str, run: str) -> list[int]:
    """Assert the crash-safety invariants of ``run``; return its live committed epochs."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        if conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'epochs'").fetchone()[0] == 0:
            return []  # killed before the schema was created: nothing was committed
        rows = conn.execute(
            "SELECT e.epoch, e.checkpoint_path, e.checkpoint_size, e.checkpoint_sha256 FROM epochs e "
            "JOIN runs r ON r.id = e.run_id WHERE r.name = ? AND NOT e.superseded ORDER BY e.epoch",
            (run,),
        ).fetchall()
    finally:
        conn.close()
    epochs = [r[0] for r in rows]
    assert epochs == list(range(len(epochs))), f"live epochs are not exactly 0..N-1: {epochs}"
    if rows:
        _, path, size, sha = rows[-1]
        data = Path(path).read_bytes()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha, f"newest committed checkpoint {path} does not verify"
    return epochs
