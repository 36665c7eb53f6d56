"""Connecting to the database: a file path or a SQLAlchemy URL.

SQLite files get WAL, ``synchronous=FULL``, a busy timeout and foreign keys;
write transactions start with ``BEGIN IMMEDIATE`` so that two writers queue on
the busy timeout instead of failing when one upgrades a read lock. A write that
finds the lock held longer than the busy timeout warns and waits again, up to
``TRACKER_LOCK_TIMEOUT``. Before each connection and each transaction the file
at the path must still be the one first opened, so that a deleted or replaced
file is noticed before SQLite writes into it or replays a stale WAL onto it.
A reader of a file it cannot write opens it read-only.
Every other backend gets plain SQLAlchemy transactions.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import time
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from tracker.errors import DatabaseMovedError, NotADatabaseError, StoreError
from tracker.redact import redact

log = logging.getLogger(__name__)

#: How long SQLite waits for a lock before tracker warns, then waits that long again.
SQLITE_BUSY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Database:
    """Where the database is: a SQLAlchemy URL, and how to name it in messages."""

    url: sa.URL
    #: The file for SQLite, or the URL with its password masked.
    display: str
    #: The SQLite file, or None for a server.
    path: Path | None


def locate(db: str) -> Database:
    """Parse ``db``, a file path or a SQLAlchemy URL.

    Example:
        >>> locate("runs/tracker.db").url.drivername
        'sqlite'

    Raises:
        ValueError: ``db`` is empty or not a valid URL.
        StoreError: ``db`` names an in-memory SQLite database.
    """
    if "://" in db:
        try:
            url = sa.make_url(db)
        except (sa.exc.ArgumentError, ValueError) as e:
            raise ValueError(f"Invalid database URL {redact(db)!r}: {e}") from e
        if "@" in (url.host or ""):
            # SQLAlchemy ended the password at its first '@' and took the rest for the host: connecting
            # would fail, and the host it names would show the tail of the password.
            raise ValueError(
                f"Invalid database URL {redact(db)!r}: its user name or password holds an '@', which must be "
                "percent-encoded as %40 (other reserved characters too: ':' as %3A, '/' as %2F; "
                "urllib.parse.quote(password, safe='') gives the whole encoding)."
            )
        if url.get_backend_name() != "sqlite":
            return Database(url, redact(url.render_as_string(hide_password=False)), None)
        if _in_memory(url):
            raise _in_memory_error(db)
        path = Path(url.database).expanduser().absolute()
        return Database(url.set(database=str(path)), str(path), path)
    if not db:
        raise ValueError("Database path is empty. Pass a file path or a SQLAlchemy URL.")
    if db == ":memory:":
        raise _in_memory_error(db)
    path = Path(db).expanduser().absolute()
    return Database(sa.URL.create("sqlite", database=str(path)), str(path), path)


def _in_memory(url: sa.URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or database.startswith("file::memory:") or url.query.get("mode") == "memory"


def _in_memory_error(db: str) -> StoreError:
    return StoreError(
        f"Database {db!r} is in memory: nothing in it survives a crash, and surviving one is what tracker is for. "
        "Pass a file path (e.g. db='tracker.db') or a database server URL."
    )


def check_sqlite_file(path: Path, *, create: bool) -> None:
    """Fail early, with a clear message, on a SQLite path that cannot work.

    A file that exists but is not SQLite is never touched.
    """
    if path.is_dir():
        raise StoreError(f"Database path {path} is a folder. Pass the path of a database file inside it.")
    if path.exists():
        # Whether it is SQLite at all is for `peek` to find out, through SQLite: reading the file here with a
        # descriptor of our own would release, when closed, every lock SQLite holds on it in this process
        # (POSIX locks belong to the process), and another process could then checkpoint under our readers.
        if create and not os.access(path, os.W_OK):
            raise StoreError(f"Database {path} is not writable. Fix its permissions or pass another path.")
        return
    if not create:
        raise StoreError(f"No database at {path}. Train a run first, or pass the right path with --db or TRACKER_DB.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"Cannot create the folder for database {path}: {e.strerror or e}.") from e
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StoreError(f"Cannot create database {path}: folder {path.parent} is not writable.")


def writable(path: Path) -> bool:
    """Whether this process may write the SQLite file at ``path`` and create its -wal and -shm next to it."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


@dataclass(frozen=True)
class SqliteFile:
    """An existing SQLite file as read without changing it."""

    #: How to open it read-only: ``mode=ro``, or ``immutable=1`` where that cannot work (see `peek`).
    read_only_uri: str
    #: Its tables, SQLite's own left out.
    tables: frozenset[str]


def peek(path: Path) -> SqliteFile:
    """Open the existing SQLite file at ``path`` read-only, as it is (no switch to WAL), and list its tables.

    A reader of a WAL database needs its -shm, which a read-only folder may not let
    SQLite create. With no write-ahead log content, the main file holds every commit
    and is read as immutable instead; with some, that would hide the newest commits,
    so the file is refused.
    """
    quoted = urllib.parse.quote(str(path))
    try:
        return _peek(f"file:{quoted}?mode=ro")
    except sqlite3.OperationalError as e:
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise StoreError(
                f"Cannot open database {path} read-only: {e}. Its write-ahead log {wal.name} cannot be read without "
                f"{path.name}-shm, which cannot be created here. Copy the database with its -wal file to a writable folder."
            ) from e
        try:
            return _peek(f"file:{quoted}?immutable=1")
        except sqlite3.Error as e2:
            raise StoreError(f"Cannot open database {path}: {e2}") from e2
    except sqlite3.Error as e:
        if getattr(e, "sqlite_errorname", None) == "SQLITE_NOTADB":
            raise NotADatabaseError(
                f"{path} exists but is not a SQLite database; it was left untouched. Pass another path with --db or TRACKER_DB."
            ) from e
        raise StoreError(f"Cannot open database {path}: {e}") from e


def _peek(uri: str) -> SqliteFile:
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        return SqliteFile(uri, frozenset(name for (name,) in rows))


class _SameFile:
    """The identity (st_dev, st_ino) of the SQLite file an engine opened first, checked before each use.

    A process that keeps a connection open to a deleted file writes into a file nobody can
    read; one that opens a file moved over the old one may replay the old WAL onto it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._identity: tuple[int, int] | None = None

    def remember(self) -> None:
        if self._identity is None:
            st = os.stat(self.path)
            self._identity = (st.st_dev, st.st_ino)

    def problem(self) -> str | None:
        """What happened to the file, or None while it is the one first opened (or none was opened yet)."""
        if self._identity is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return (
                f"Database {self.path} was deleted or moved away while this process was using it; stopped, since nobody "
                "could read what it wrote next. Put the file back (its epochs are in it) and resume the run, or start over with a new database."
            )
        if (st.st_dev, st.st_ino) != self._identity:
            return (
                f"Database {self.path} was replaced by another file (moved or copied over it) while this process was "
                "using it; stopped without touching the new file. Put the original back and resume the run, or start over."
            )
        return None

    def check(self) -> None:
        problem = self.problem()
        if problem is not None:
            raise DatabaseMovedError(problem, str(self.path))

    def replaced(self) -> bool:
        """Whether another file than the one first opened is at the path now."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return self._identity is not None and (st.st_dev, st.st_ino) != self._identity


def create_engine(database: Database, *, read_only_uri: str | None = None, lock_timeout: float = math.inf) -> sa.Engine:
    """A SQLAlchemy engine with tracker's connection settings.

    Args:
        database: Where the database is.
        read_only_uri: Open the SQLite file with this read-only URI (`SqliteFile.read_only_uri`):
            for readers of a file they cannot write. Defaults to None (read-write).
        lock_timeout: How many seconds a SQLite write waits for a lock another program holds;
            it warns every `SQLITE_BUSY_TIMEOUT_S` while it waits. Defaults to no limit.
    """
    if database.url.get_backend_name() != "sqlite":
        # A server that does not answer (stopped, or a lost network) fails a connection after 10 s instead of
        # hanging it for minutes; a URL may set its own connect_timeout.
        connect_args = {"connect_timeout": 10} if database.url.get_backend_name() == "postgresql" and "connect_timeout" not in database.url.query else {}
        try:
            return sa.create_engine(database.url, pool_pre_ping=True, connect_args=connect_args)
        except (ImportError, sa.exc.ArgumentError) as e:
            raise StoreError(
                f"Cannot open database {database.display}: {e}. Install the driver the URL names "
                f"({database.url.drivername}), e.g. pip install 'psycopg[binary]' for postgresql+psycopg."
            ) from e
    assert database.path is not None
    path = database.path
    read_only = read_only_uri is not None
    busy_timeout = min(SQLITE_BUSY_TIMEOUT_S, lock_timeout)
    engine = sa.create_engine(database.url, connect_args={"timeout": busy_timeout})
    same_file = _SameFile(path)

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: object, _record: object, cargs: list[Any], cparams: dict[str, Any]) -> None:
        same_file.check()  # before SQLite opens whatever is at the path now
        if read_only_uri is not None:
            cargs[0] = read_only_uri
            cparams["uri"] = True

    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        same_file.remember()
        # Let SQLAlchemy's "begin" event below issue BEGIN, instead of the
        # sqlite3 module's own implicit transaction handling.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {_ms(busy_timeout)}")
        cur.execute("PRAGMA foreign_keys = ON")
        if not read_only:
            cur.execute("PRAGMA synchronous = FULL")
            _enable_wal(cur)
        cur.close()

    @event.listens_for(engine, "close")
    def _close(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        if read_only or not same_file.replaced():
            return
        # On close SQLite leaves the WAL of a moved file where it is, and the next opener of the
        # file now at the path would replay it onto that file. Move its frames into this
        # connection's own file (through its open descriptor) and empty it first. (A file merely
        # deleted or moved away needs nothing: put back, it finds its WAL; a new empty file at
        # the path discards a stale WAL itself.)
        try:
            dbapi_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            log.warning("Could not empty the WAL of %s, which was replaced by another file: %s", path, e)

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        same_file.check()
        if conn.get_execution_options().get("write"):
            _begin_write(conn, database.display, busy_timeout, lock_timeout)
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _begin_write(conn: sa.Connection, display: str, busy_timeout: float, lock_timeout: float) -> None:
    # SQLite's busy handler waits up to busy_timeout for the write lock. A lock held longer is
    # another program's (a database browser with unsaved changes): warn, and wait again.
    started = time.monotonic()
    shortened = False
    try:
        while True:
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except sa.exc.OperationalError as e:
                if "locked" not in str(e.orig):
                    raise
            waited = time.monotonic() - started
            if waited >= lock_timeout:
                raise StoreError(
                    f"Database {display} stayed locked by another program for {lock_timeout:g} s (TRACKER_LOCK_TIMEOUT); "
                    "this write was abandoned. Close the program that holds the lock and resume the run, "
                    "or raise or unset TRACKER_LOCK_TIMEOUT to wait longer."
                )
            limit = "no limit" if math.isinf(lock_timeout) else f"up to {lock_timeout:g} s"
            warnings.warn(
                f"Database {display}: another program holds its write lock (a database browser with unsaved "
                f"changes?). Waited {waited:.0f} s; still waiting ({limit}, set by TRACKER_LOCK_TIMEOUT). "
                "Commit or close that program's transaction to continue.",
                stacklevel=2,
            )
            if lock_timeout - waited < busy_timeout:  # the last wait ends at the limit, not past it
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {_ms(lock_timeout - waited)}")
                shortened = True
    finally:
        if shortened:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {_ms(busy_timeout)}")


def _enable_wal(cur: sqlite3.Cursor) -> None:
    # Switching a fresh file to WAL needs an exclusive lock, and SQLite may
    # answer "locked" at once instead of waiting when many processes try together.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        if mode.lower() == "wal" or time.monotonic() > deadline:
            return
        time.sleep(0.01)
