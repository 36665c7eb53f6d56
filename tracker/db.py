"""Connecting to the database: a file path or a SQLAlchemy URL.

SQLite files get WAL, ``synchronous=FULL``, a busy timeout and foreign keys;
write transactions start with ``BEGIN IMMEDIATE`` so that two writers queue on
the busy timeout instead of failing when one upgrades a read lock.
Every other backend gets plain SQLAlchemy transactions.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

from tracker.errors import NotADatabaseError, StoreError
from tracker.redact import redact

SQLITE_BUSY_TIMEOUT_S = 60.0
_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class Database:
    """Where the database is: a SQLAlchemy URL, and how to name it in messages."""

    url: sa.URL
    #: The file for SQLite, or the URL with its password masked.
    display: str
    #: The SQLite file, or None for a server or an in-memory database.
    path: Path | None


def locate(db: str) -> Database:
    """Parse ``db``, a file path or a SQLAlchemy URL.

    Example:
        >>> locate("runs/tracker.db").url.drivername
        'sqlite'
    """
    if "://" in db:
        try:
            url = sa.make_url(db)
        except (sa.exc.ArgumentError, ValueError) as e:
            raise ValueError(f"Invalid database URL {redact(db)!r}: {e}") from e
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            path = Path(url.database).expanduser().absolute()
            return Database(url.set(database=str(path)), str(path), path)
        return Database(url, redact(url.render_as_string(hide_password=False)), None)
    if not db:
        raise ValueError("Database path is empty. Pass a file path or a SQLAlchemy URL.")
    path = Path(db).expanduser().absolute()
    return Database(sa.URL.create("sqlite", database=str(path)), str(path), path)


def check_sqlite_file(path: Path, *, create: bool) -> None:
    """Fail early, with a clear message, on a SQLite path that cannot work.

    A file that exists but is not SQLite is never touched.
    """
    if path.is_dir():
        raise StoreError(f"Database path {path} is a folder. Pass the path of a database file inside it.")
    if path.exists():
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
        if head and head != _SQLITE_MAGIC:
            raise NotADatabaseError(
                f"{path} exists but is not a SQLite database; it was left untouched. "
                "Pass another path with --db or TRACKER_DB."
            )
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


def create_engine(database: Database) -> sa.Engine:
    """A SQLAlchemy engine with tracker's connection settings."""
    if database.url.get_backend_name() != "sqlite":
        try:
            return sa.create_engine(database.url, pool_pre_ping=True)
        except (ImportError, sa.exc.ArgumentError) as e:
            raise StoreError(
                f"Cannot open database {database.display}: {e}. Install the driver the URL names "
                f"({database.url.drivername}), e.g. pip install 'psycopg[binary]' for postgresql+psycopg."
            ) from e
    engine = sa.create_engine(database.url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN, instead of the
        # sqlite3 module's own implicit transaction handling.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA synchronous = FULL")
        _enable_wal(cur)
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return engine


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
