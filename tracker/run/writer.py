"""A background thread that makes epochs durable, one at a time, in order.

The training thread hands over an in-memory snapshot and goes on training;
the writer writes the file, fsyncs, hashes and commits. Training is allowed
to run at most one epoch ahead of the newest commit: handing over epoch k+1
first waits until epoch k is committed. A failure in the writer is raised in
the training thread at its next hand-over or flush.

Example:
    >>> writer = BackgroundWriter(lambda job: print("commit", job), name="demo")
    >>> writer.submit(1)
    >>> writer.close()
    commit 1
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from tracker.errors import TrackerError

Job = TypeVar("Job")
_STOP = object()


class WriterFailed(TrackerError):
    """An earlier epoch could not be made durable; the newest committed epoch is still intact."""

    def __init__(self, message: str, error: BaseException) -> None:
        super().__init__(message)
        #: What the commit raised. Also the ``__cause__``, which Keras's traceback filter drops (``raise ... from None``).
        self.error = error


class BackgroundWriter(Generic[Job]):
    """Runs ``commit(job)`` for each submitted job on one daemon thread, in order."""

    def __init__(self, commit: Callable[[Job], None], *, name: str) -> None:
        self._commit = commit
        self._jobs: queue.Queue[object] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Wait until the previous job is committed, then hand over ``job``."""
        self.flush()
        self._jobs.put(job)

    def flush(self) -> None:
        """Wait until every submitted job is committed; raise `WriterFailed` if one failed."""
        self._jobs.join()
        if self._error is not None:
            raise WriterFailed(f"Saving an epoch failed: {self._error}", self._error) from self._error

    def close(self) -> None:
        """Commit what is pending, then stop the thread. Does not raise."""
        self._jobs.put(_STOP)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is _STOP:
                    return
                if self._error is None:  # after a failure, later epochs must not commit past the gap
                    self._commit(job)  # type: ignore[arg-type]
            except BaseException as e:  # noqa: BLE001 - handed to the training thread
                self._error = e
            finally:
                self._jobs.task_done()
