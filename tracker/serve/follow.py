"""Following the database at its path: a file deleted, moved or replaced while serving is opened anew once it is back.

A writer that finds its file gone stops (`tracker.errors.DatabaseMovedError`), so that it never writes
into a file nobody reads. The web view only reads: it shows whatever tracker database is at the path
now, a backup put back or another database copied there. Until there is one, every read is a
`StoreError` whose message speaks to the person looking at the page.

Example:
    ```python
    runs = follow(store, data.list_runs)   # data.list_runs(store), through a reopen if the file changed
    ```
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from tracker.errors import DatabaseMovedError, StoreError
from tracker.store import Store

T = TypeVar("T")


def follow(store: Store, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(store, *args, **kwargs)``; if the file at the store's path changed, reopen it and call ``fn`` again.

    Raises:
        StoreError: No tracker database is at the path now (the message is for a viewer of the page), or
            ``fn``'s own.
    """
    for tries in (1, 2):
        engine = store.engine
        try:
            return fn(store, *args, **kwargs)
        except DatabaseMovedError as e:
            if tries == 2:
                raise StoreError(viewer_message(e)) from e
            try:
                store.reopen(stale=engine)
            except StoreError as reopen_failed:
                raise StoreError(viewer_message(e)) from reopen_failed
    raise AssertionError("unreachable")


def viewer_message(e: DatabaseMovedError) -> str:
    """What happened to the file, and what brings the page back, said to the person looking at it."""
    back = ("This page recovers by itself, within a second, once a tracker database is at that path again: "
            "put the file back or copy a backup there. The server needs no restart.")
    if not os.path.exists(e.path):
        return f"Database {e.path} was deleted or moved away while this server was showing it. {back}"
    return f"Database {e.path} was replaced while this server was showing it, by a file that is not a tracker database it can open. {back}"
