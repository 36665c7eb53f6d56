"""Composes `Store`, tracker's database, from its parts, and opens one with `open_store`.

Each part has one reason to change: `tracker.store.session` (the engine and its transactions),
`tracker.store.reads` (runs, checkpoints, curves), `tracker.store.writers` (attempts and the writer's
lease), `tracker.store.commits` (the fenced commits, superseding, retention) and
`tracker.store.catalogue` (tags, notes, rename, delete, import), `tracker.store.sweeps` (sweeps and their trials)
and `tracker.store.access` (the team view's tokens). Every method is one transaction.

Example:
    >>> store = open_store("tracker.db")                           # doctest: +SKIP
    >>> store.live_curve(store.get_run("cnn").id, ["loss"])        # doctest: +SKIP
"""

from __future__ import annotations

import os

from tracker.store.access import Access
from tracker.store.catalogue import Catalogue
from tracker.store.commits import Commits
from tracker.store.reads import Reads
from tracker.store.session import open_engine
from tracker.store.sweeps import Sweeps


class Store(Reads, Commits, Catalogue, Sweeps, Access):
    """tracker's database. Create with `open_store`."""


def open_store(db: str | os.PathLike[str] | None = None, *, create: bool = True) -> Store:
    """Open (and migrate) the database: ``db``, else ``$TRACKER_DB``, else ``./tracker.db``.

    Args:
        db: A file path or a SQLAlchemy URL. Defaults to None.
        create: Create a missing SQLite file. Commands that only read pass False,
            so a mistyped path is reported instead of creating an empty database,
            and a file they cannot write is opened read-only. Defaults to True.

    Raises:
        StoreError: The database cannot be opened: in memory, missing, not writable, or not tracker's.
        ValueError: ``$TRACKER_LOCK_TIMEOUT`` is not a number of seconds.
    """
    return Store(*open_engine(db, create=create), opener=lambda: open_engine(db, create=False))
