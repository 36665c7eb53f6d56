"""The store's connection to its database: opening (and migrating) it, the engine, and one transaction per call.

`Session` is the base of every part of `tracker.store.Store`: it holds the engine, and its
`_read` and `_write` context managers are the only way the parts reach the database, so that
every driver error leaves the store as one `StoreError` that names the database.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from tracker import settings
from tracker.errors import StoreError, TrackerError
from tracker.redact import reason
from tracker.store import db as dbmod
from tracker.store import migrate


def open_engine(db: str | os.PathLike[str] | None, *, create: bool) -> tuple[sa.Engine, str]:
    """Open (and migrate) the database as `tracker.store.open_store` describes; return its engine and display name.

    Example:
        >>> engine, display = open_engine("tracker.db", create=True)   # doctest: +SKIP
        >>> Session(engine, display).close()                           # doctest: +SKIP
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
    return engine, database.display


class Session:
    """An open database: its engine, the name to show for it, and its read and write transactions.

    ``opener`` opens the same database anew (``open_engine`` with ``create=False``: a reopen never creates a
    database), for `reopen`; without it a store cannot reopen.
    """

    def __init__(self, engine: sa.Engine, display: str, opener: Callable[[], tuple[sa.Engine, str]] | None = None) -> None:
        self.engine = engine
        self.display = display
        self._opener = opener
        self._reopening = threading.Lock()

    def reopen(self, stale: sa.Engine | None = None) -> None:
        """Open the database again, whatever file is at its path now, and close the engine that was open.

        For a reader that follows the path (`tracker.serve`): after a `DatabaseMovedError` it shows what is
        there now. A writer never does this: it would write on into another file than the one it began.
        ``stale`` is the engine that failed: if another thread has reopened since, nothing is done.

        Raises:
            StoreError: The database cannot be opened (missing, not tracker's), as `open_store` says; the old
                engine stays, and fails as before.
        """
        with self._reopening:
            if stale is not None and self.engine is not stale:
                return
            if self._opener is None:
                raise StoreError(f"Cannot reopen database {self.display}: this store was not opened with open_store.")
            # The old engine's connections close first: one to a replaced file empties its WAL into that file
            # (`tracker.store.db`), or SQLite would read the stale WAL's pages as the new file's. Disposed, the
            # old engine still works, by new connections, if the new file cannot be opened.
            self.engine.dispose()
            self.engine, _ = self._opener()

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
