"""The spool file: one SQLite file per attempt on the training host, holding the commits the server has yet to get.

A commit is one row, inserted in one transaction (WAL, ``synchronous=FULL``), so the one-transaction rule of
the database holds in the spool too; the replicator deletes a row only after the server committed it. The file
is named ``<run uid>.<attempt id>.sqlite`` under a folder per server (`folder_for`), and is locked (``flock``)
by the process that writes or drains it, so that the lock dies with that process.

Example:
    >>> journal = Journal.create(folder_for("postgresql://db-host/runs"), "ab12", 7, run="cnn", server="db-host")  # doctest: +SKIP
    >>> journal.append("epoch", {"epoch": 3}, newest="epoch 3")                                                      # doctest: +SKIP
    1
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tracker import settings
from tracker.durable import fsync_path
from tracker.errors import StoreError
from tracker.records import SpoolMark

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commits (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    args TEXT NOT NULL,
    newest TEXT,
    created_at REAL NOT NULL
);
"""


def folder_for(server: str) -> Path:
    """The spool folder of one server (its URL without password), under `tracker.settings.spool_dir`."""
    return settings.spool_dir() / hashlib.sha256(server.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Entry:
    """One spooled commit: its sequence number, what it is (``epoch``, ``step``, ``target``, ``monitor``, ``finish``),
    its arguments, and the point of training it reaches (``epoch 3``), if any."""

    seq: int
    op: str
    args: dict[str, Any]
    newest: str | None


class Journal:
    """An attempt's spool file, locked by this process. Create with `Journal.create` or `Journal.take`."""

    def __init__(self, path: Path, lock: int) -> None:
        self.path = path
        self._lock = lock
        # One connection, used by the training thread and the replicator's: sqlite3 wants them to take turns.
        self._mutex = threading.RLock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.executescript(_SCHEMA)
        except BaseException:
            self._db.close()  # the lock is the caller's to release
            raise

    @classmethod
    def create(cls, folder: Path, run_uid: str, attempt_id: int, **meta: str) -> Journal:
        """Make and lock the spool file of a new attempt; ``meta`` (run name, server, host) is stored in it.

        Raises:
            StoreError: The spool folder cannot be written (or the disk is full): nothing was trained yet.
        """
        path = folder / f"{run_uid}.{attempt_id}.sqlite"
        lock = -1
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock = _lock(path, wait=False)
            journal = cls(path, lock)
        except (OSError, sqlite3.Error) as e:
            if lock >= 0:
                os.close(lock)
            raise StoreError(_unwritable(folder, e)) from e
        try:
            with journal._transaction():
                journal._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [("attempt_id", str(attempt_id)), *meta.items()])
            fsync_path(folder)
        except (OSError, sqlite3.Error) as e:
            journal.discard()
            raise StoreError(_unwritable(folder, e)) from e
        return journal

    @classmethod
    def take(cls, path: Path) -> Journal | None:
        """Lock an existing spool file left by another process; None while that process still holds it."""
        try:
            lock = _lock(path, wait=False)
        except BlockingIOError:
            return None
        try:
            return cls(path, lock)
        except BaseException:
            os.close(lock)
            raise

    @property
    def attempt_id(self) -> int:
        return int(self.meta()["attempt_id"])

    def meta(self) -> dict[str, str]:
        with self._mutex:
            return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def append(self, op: str, args: dict[str, Any], *, newest: str | None = None) -> int:
        """Spool one commit durably; return its sequence number.

        Raises:
            StoreError: It could not be written (a full disk, say): this commit did not happen.
        """
        try:
            with self._transaction():
                cur = self._db.execute(
                    "INSERT INTO commits (op, args, newest, created_at) VALUES (?, ?, ?, ?)",
                    (op, json.dumps(args, allow_nan=True), newest, time.time()),
                )
            return int(cur.lastrowid)
        except sqlite3.Error as e:
            raise StoreError(_unwritable(self.path.parent, e)) from e

    def pending(self, limit: int = 64) -> list[Entry]:
        """The oldest ``limit`` commits still waiting, in order."""
        with self._mutex:
            rows = self._db.execute("SELECT seq, op, args, newest FROM commits ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [Entry(seq, op, json.loads(args), newest) for seq, op, args, newest in rows]

    def waiting(self) -> tuple[int, str | None]:
        """How many commits wait, and the point the newest of them reaches."""
        with self._mutex:
            count, = self._db.execute("SELECT count(*) FROM commits").fetchone()
            newest = self._db.execute("SELECT newest FROM commits WHERE newest IS NOT NULL ORDER BY seq DESC LIMIT 1").fetchone()
        return count, newest[0] if newest else None

    def done(self, seq: int) -> None:
        """Forget commits up to ``seq``: the server holds them."""
        with self._transaction():
            self._db.execute("DELETE FROM commits WHERE seq <= ?", (seq,))

    def discard(self) -> None:
        """Delete the file (every commit in it reached the server, or was refused for good), then unlock it."""
        with self._mutex:
            self._db.close()
        for suffix in ("", "-wal", "-shm", ".lock"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self._unlock()

    def close(self) -> None:
        with self._mutex:
            self._db.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock >= 0:
            # A lock file of its own: closing any descriptor of the SQLite file itself would drop SQLite's locks on it.
            os.close(self._lock)  # its flock goes with it
            self._lock = -1

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self._mutex)


class _Transaction:
    def __init__(self, db: sqlite3.Connection, mutex: threading.RLock) -> None:
        self._db, self._mutex = db, mutex

    def __enter__(self) -> None:
        self._mutex.acquire()
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self._mutex.release()


def leftovers(folder: Path, run_uid: str) -> list[Path]:
    """The spool files of run ``run_uid`` in ``folder``, oldest attempt first."""
    found = folder.glob(f"{run_uid}.*.sqlite") if folder.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.split(".")[1]))


def waiting_in(path: Path) -> tuple[int, str | None]:
    """How many commits wait in the spool file at ``path``, read without locking it (for ``tracker list``)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            count, = db.execute("SELECT count(*) FROM commits").fetchone()
            newest = db.execute("SELECT newest FROM commits WHERE newest IS NOT NULL ORDER BY seq DESC LIMIT 1").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return 0, None
    return count, newest[0] if newest else None


@dataclass(frozen=True)
class Behind:
    """How far the database's copy of an attempt is behind the spool on its host."""

    host: str
    waiting: int
    #: The newest point the waiting commits reach (``epoch 7``), if any.
    newest: str | None
    #: When the writer last said so; None when counted just now, in the spool file on this host.
    as_of: datetime | None


def behind(mark: SpoolMark, host: str) -> Behind:
    """How far an attempt whose writer spooled (its ``mark``, on ``host``) is behind: counted in its spool file when
    that is on this host, else as the writer last told the database."""
    path = Path(mark.path)
    if host == socket.gethostname() and path.is_file():
        waiting, newest = waiting_in(path)
        return Behind(host, waiting, newest, None)
    if host == socket.gethostname():
        return Behind(host, 0, None, None)  # sent and deleted since
    return Behind(host, mark.pending, mark.newest, mark.at)


def _lock(path: Path, *, wait: bool) -> int:
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unwritable(folder: Path, e: BaseException) -> str:
    detail = getattr(e, "strerror", None) or str(e)
    full = "full" in str(e).lower() or getattr(e, "errno", None) == 28
    what = "The disk is full" if full else "It cannot be written"
    return (
        f"Spool folder {folder}: {what} ({detail}). A run that writes to a database server or remote checkpoints "
        f"keeps each commit there first. Free space or fix its permissions, or point {settings.ENV_SPOOL_DIR} at "
        f"another folder (or set {settings.ENV_SPOOL}=off to write to the server directly)."
    )

