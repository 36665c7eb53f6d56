"""A background thread that makes epochs durable, one at a time, in order.

The training thread hands over an in-memory snapshot and goes on training;
the writer writes the file, fsyncs, hashes and commits. Training is allowed
to run at most one epoch ahead of the newest commit: handing over epoch k+1
first waits until epoch k is committed. A failure in the writer is raised in
the training thread at its next hand-over or flush.

The bulk of that work, the checkpoint's bytes, runs through `at_low_priority`, so
that on a busy machine the training's own threads get the CPU first.

Example:
    >>> writer = BackgroundWriter(lambda job: print("commit", job), name="demo")
    >>> writer.submit(1)
    >>> writer.close()
    commit 1
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from tracker.errors import TrackerError

Job = TypeVar("Job")
Result = TypeVar("Result")
_STOP = object()
#: How much `at_low_priority` raises a thread's nice value. At +10 a thread gets about a tenth of
#: a core that a training thread also wants (CFS weights 110 vs 1024): enough to write a checkpoint
#: within an epoch, little enough that a parallel op's shard is seldom held up behind it.
LOWER_PRIORITY_BY = 10


class WriterFailed(TrackerError):
    """An earlier epoch could not be made durable; the newest committed epoch is still intact."""


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
            raise WriterFailed(f"Saving an epoch failed: {self._error}") from self._error

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


def at_low_priority(work: Callable[[], Result], *, name: str) -> Result:
    """Run ``work`` on a new thread of lower CPU priority, wait for it, and return its result or raise its error.

    A thread's nice value can be raised but, without privileges, never lowered again: hence a
    thread of its own, so that what comes after (a database commit that holds a lock other
    processes wait for) runs at the caller's priority. Where priorities are not per thread
    (not Linux), ``work`` simply runs at the caller's.

    Example:
        >>> at_low_priority(lambda: 6 * 7, name="demo")
        42
    """
    outcome: list[tuple[bool, object]] = []

    def run() -> None:
        lower_this_threads_priority()
        try:
            outcome.append((True, work()))
        except BaseException as e:  # noqa: BLE001 - raised again in the caller's thread
            outcome.append((False, e))

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]


def lower_this_threads_priority(by: int | None = None) -> None:
    """Raise the calling thread's nice value by ``by`` (default `LOWER_PRIORITY_BY`, at most up to 19).

    Only on Linux, where a nice value belongs to one thread.
    """
    by = LOWER_PRIORITY_BY if by is None else by
    # Elsewhere PRIO_PROCESS with a thread id would name a process, perhaps someone else's.
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
    except OSError:  # a sandbox that forbids it: run at the same priority, as before
        pass
