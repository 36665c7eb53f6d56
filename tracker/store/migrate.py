"""Bring a database's schema to this version of tracker, safely under concurrency.

Opening a database runs the Alembic migrations in ``migrations/`` (shipped in
the wheel as ``tracker/_migrations``) on the live connection, inside one
transaction that holds an exclusive lock: ``BEGIN IMMEDIATE`` on SQLite, an
advisory lock on PostgreSQL. Many processes opening one new database at once
therefore queue, and exactly one of them creates the schema.

A database that holds tables but not tracker's schema belongs to another
application: it is refused before anything in it changes.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Collection
from pathlib import Path

import sqlalchemy as sa

from tracker.errors import NotADatabaseError, SchemaError

# Any fixed 64-bit number: identifies tracker's migration lock among the server's advisory locks.
_PG_LOCK_KEY = 0x747261636B6572


def _migrations_dir() -> Path:
    # The wheel maps the top-level migrations/ folder to the tracker._migrations package.
    return Path(str(importlib.resources.files("tracker._migrations")))


@functools.cache
def _script():  # -> alembic.script.ScriptDirectory
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(_migrations_dir()))


# The newest revision in migrations/versions; tests/test_store.py checks it against Alembic's
# own answer. Knowing it without loading Alembic keeps opening an up-to-date database fast.
HEAD = "0007"


def _current(conn: sa.Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def refuse_foreign(tables: Collection[str], display: str) -> None:
    """Raise `NotADatabaseError` if the database holds tables but not tracker's schema.

    An empty database is fine: tracker creates its tables in it.
    """
    if not tables or {"alembic_version", "runs"} <= set(tables):
        return
    names = sorted(tables)
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    raise NotADatabaseError(
        f"{display} is not a tracker database: it holds another application's tables ({shown}); it was left "
        "untouched. Give tracker a database of its own: another file path, or an empty database, with db=, --db or TRACKER_DB."
    )


def upgrade(engine: sa.Engine, display: str, *, read_only: bool = False) -> None:
    """Migrate the database to `HEAD`.

    Raises:
        NotADatabaseError: The database holds another application's tables.
        SchemaError: The schema is newer than this code, or older and ``read_only``.
    """
    with engine.connect() as conn:
        with conn.begin():
            refuse_foreign(sa.inspect(conn).get_table_names(), display)
            current = _current(conn)
        if current == HEAD:
            return
        if read_only:
            _check_known(current, display)
            found = "has no tracker tables yet" if current is None else f"has schema revision {current!r}, older than this tracker's ({HEAD!r})"
            raise SchemaError(
                f"Database {display} cannot be written here and {found}. Open it once where it can be written to "
                "upgrade it, or read it with the tracker version that wrote it."
            )
        conn.execution_options(write=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            current = _current(conn)  # another process may have migrated while we waited
            if current == HEAD:
                return
            _check_known(current, display)
            from alembic import command
            from alembic.config import Config

            config = Config()
            config.set_main_option("script_location", str(_migrations_dir()))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")


def _check_known(current: str | None, display: str) -> None:
    if current is None:
        return
    from alembic.util import CommandError

    try:
        _script().get_revision(current)
    except CommandError as e:
        raise SchemaError(
            f"Database {display} has schema revision {current!r}, newer than this tracker "
            f"(newest known: {HEAD!r}). Upgrade tracker (pip install -U tracker) to open it."
        ) from e
