"""Exceptions raised by tracker.

Every failure that is not a plain wrong argument derives from `TrackerError`,
so callers can catch them all with one ``except`` clause::

    try:
        tracker.curves("my-run")
    except tracker.TrackerError as e:
        print(e)
"""

from __future__ import annotations

import shlex


class TrackerError(Exception):
    """Base class of every tracker failure."""


class StoreError(TrackerError):
    """The database cannot be opened, read or written."""


class NotADatabaseError(StoreError):
    """The database is not one tracker may use: a file that is not SQLite, or another application's database."""


class DatabaseMovedError(StoreError):
    """The SQLite file was deleted, moved away or replaced while this process was using it.

    ``path`` is where it was. A writer stops; a reader that follows the path (`tracker.serve`) opens it anew.
    """

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class SchemaError(StoreError):
    """The database schema does not match this version of tracker."""


class RunNotFoundError(TrackerError):
    """No run of that name exists in the database."""

    def __init__(self, name: str, db: str, suggestions: list[str]) -> None:
        hint = f" Did you mean: {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        super().__init__(
            f"No run named {name!r} in {db}.{hint} List runs with: python -m tracker --db {shlex.quote(db)}"
        )
        self.name = name
        self.suggestions = suggestions


class RunLockedError(TrackerError):
    """Another live process is already writing this run."""


class RunDeletedError(RunLockedError):
    """The run was deleted (``tracker rm --force``) while this process wrote it: nothing more of it is recorded."""


class CheckpointError(TrackerError):
    """A checkpoint file cannot be written, read or verified."""


class ResumeError(TrackerError):
    """A run cannot be resumed as asked."""


class Preempted(SystemExit):
    """Raised out of ``fit`` after a stop signal (SIGTERM) once its checkpoint is committed.

    A `SystemExit`, so that ``except Exception`` in the training script does not swallow it and the
    process exits with `EXIT_STATUS` (143, as a process killed by SIGTERM reports in a shell). The
    attempt is recorded as ``preempted``; rerunning the script resumes at the next batch.
    """

    EXIT_STATUS = 143

    def __init__(self, message: str) -> None:
        super().__init__(self.EXIT_STATUS)
        self.message = message

    def __str__(self) -> str:
        return self.message
