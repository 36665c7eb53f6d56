"""The replicator: replays an attempt's spooled commits onto the server, in order, on a thread of its own.

Each commit is applied in one server transaction that also marks it replicated on the attempt
(`tracker.records.Replicated`), then deleted from the spool; a replay of a commit the server already holds
(a crash between the two) is skipped. While the server is unreachable or does not answer, commits wait and
are retried with backoff; training never waits for it. A commit the server fences out (the run was taken over)
stops the replicator for good: nothing this attempt spooled after the takeover reaches the server.

Example:
    ```python
    replicator = Replicator(server, journal, run, attempt_id, files=files)
    replicator.start()
    ...  # training appends to the journal and calls replicator.wake()
    replicator.drain(timeout=30)
    replicator.stop()
    ```
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, Protocol

from tracker.errors import CheckpointError, RunLockedError, StoreError
from tracker.faults import label, pause_point
from tracker.records import FileInfo, Replicated, Retention, RunRow, StepValues, heartbeat_interval
from tracker.spool.journal import Entry, Journal
from tracker.store import Store
from tracker.store.commits import AlreadyReplicated

log = logging.getLogger(__name__)

#: A server call that has not answered after this many seconds counts as an outage (a hung server).
STALL_SECONDS = 3.0
#: How long a commit waits for the server to hold it while the server is not known to be away: the moment
#: that keeps a healthy server's copy as fresh as a direct write, for the team's views and the run's next reads.
SYNC_SECONDS = 1.0
_BACKOFF = (0.5, 1.0, 2.0, 4.0)


class Files(Protocol):
    """What the replicator does with checkpoint files (`tracker.spool.staging`): make one reach the server's
    storage before its commit does, and delete the ones the server's retention retired."""

    def publish(self, info: FileInfo) -> bool:
        """Make ``info`` readable where the server's rows point; False if its file was retired before it got there."""

    def retire(self, paths: list[str]) -> None:
        """Delete files that the server's retention let go of, wherever they are."""


class Replicator:
    """Replays ``journal`` onto ``server`` for the attempt ``attempt_id`` of ``run``."""

    def __init__(self, server: Store, journal: Journal, run: RunRow, attempt_id: int, *, files: Files) -> None:
        self.server = server
        self.journal = journal
        #: The run as the server holds it, after the commits replayed so far.
        self.view = run
        self.attempt_id = attempt_id
        self._files = files
        #: Checkpoint files the server's rows point at, or are about to: the writer never deletes these before the
        #: server lets go of them. With `dropped` (files the writer deleted before their commit reached the server),
        #: guarded by `lock`, so that a file is either reserved for the server or dropped, never both.
        self.server_kept: set[str] = set()
        self.dropped: set[str] = set()
        self.lock = threading.Lock()
        #: Set once the server refused a commit for good: the run was taken over, or a commit cannot be applied.
        self.failed: BaseException | None = None
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._idle = threading.Event()
        self._away_since: float | None = None
        self._away = ""
        self._applied = 0
        self._progress = threading.Condition()
        self._call_started: float | None = None
        self._next_beat = time.monotonic() + heartbeat_interval().total_seconds()
        self._beat = False
        self._thread = threading.Thread(target=self._loop, name=f"tracker-spool-{run.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """A commit was spooled, or a heartbeat is due: replay without waiting for the next retry."""
        self._idle.clear()
        self._wake.set()
        self.check_stalled()

    def beat(self) -> None:
        """Refresh the attempt's lease on the server at the next chance (from the run's heartbeat thread)."""
        self._beat = True
        self.wake()

    def wait_for(self, seq: int) -> None:
        """Wait up to `SYNC_SECONDS` until the server holds commit ``seq``; not at all while it is away."""
        deadline = time.monotonic() + SYNC_SECONDS
        with self._progress:
            while self._applied < seq and self._away_since is None and self.failed is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._progress.wait(min(remaining, 0.1))
                self.check_stalled()

    def check_stalled(self) -> None:
        """Count a server call that has hung for `STALL_SECONDS` as an outage, and say so once."""
        started = self._call_started
        if started is not None and self._away_since is None and time.monotonic() - started > STALL_SECONDS:
            self._went_away(f"Database {self.server.display}", f"no answer for {STALL_SECONDS:.0f} s")

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until every spooled commit is on the server; return whether they are."""
        self.wake()
        deadline = time.monotonic() + timeout
        while self.failed is None:
            if not self.journal.waiting()[0]:
                return True
            if not self._thread.is_alive():
                self.replay_all()  # the thread is gone (a process that never started it): replay here
                return not self.journal.waiting()[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._idle.wait(min(remaining, 0.5))
            self.check_stalled()
        return False

    def stop(self) -> None:
        """Stop the thread; a server call in progress is left to finish or to die with the process."""
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout=1.0)

    # -- the thread ----------------------------------------------------------

    def _loop(self) -> None:
        tries = 0
        while not self._stopped.is_set() and self.failed is None:
            try:
                self.replay_all()
                self._heartbeat_if_due()
                tries = 0
                self._back()
                self._idle.set()
                wait = max(0.05, self._next_beat - time.monotonic())
            except StoreError as e:
                self._went_away(f"Database {self.server.display}", str(e))
                wait = _BACKOFF[min(tries, len(_BACKOFF) - 1)]
                tries += 1
            except CheckpointError as e:
                self._went_away("Checkpoint storage", str(e))
                wait = _BACKOFF[min(tries, len(_BACKOFF) - 1)]
                tries += 1
            except BaseException as e:  # noqa: BLE001 - a commit that can never be applied ends replication, and training with it
                self.failed = e
                log.error("Run %r: replicating the spool stopped: %s", self.view.name, e)
                break
            finally:
                with self._progress:
                    self._progress.notify_all()  # a waiting commit learns of an outage or a failure at once
            self._wake.wait(wait)
            self._wake.clear()
        self._idle.set()

    def replay_all(self) -> int:
        """Replay every waiting commit, in order; return how many. Raises what the server raised."""
        done = 0
        while entries := self.journal.pending():
            for entry in entries:
                if self._stopped.is_set() and threading.current_thread() is self._thread:
                    return done
                self._replay(entry)
                pause_point("spool-after-replay", _label(entry))
                self.journal.done(entry.seq)
                with self._progress:
                    self._applied = entry.seq
                    self._progress.notify_all()
                done += 1
        return done

    def _replay(self, entry: Entry) -> None:
        a = entry.args
        waiting, newest = self.journal.waiting()
        mark = Replicated(str(self.journal.path), entry.seq, max(0, waiting - 1), newest)
        try:
            if entry.op == "epoch":
                info = self._published(a["checkpoint"])
                self.view, doomed = self._call(
                    self.server.commit_epoch, self.view, self.attempt_id, a["epoch"], a["values"], info,
                    _retention(a["retention"]), _steps(a["step_rows"]), replicated=mark,
                )
                self._kept_changed(info, doomed)
            elif entry.op == "step":
                info = self._published(a["checkpoint"])
                self.view, doomed = self._call(
                    self.server.commit_step, self.view, self.attempt_id, StepValues(**a["at"]), info,
                    _retention(a["retention"]), _steps(a["step_rows"]), replicated=mark,
                )
                self._kept_changed(info, doomed)
            elif entry.op == "target":
                self._call(self.server.set_target_epochs, self.view.id, a["epochs"])
                self.view = dataclasses.replace(self.view, target_epochs=a["epochs"])
            elif entry.op == "monitor":
                self.view = self._call(self.server.set_monitor, self.view, a["monitor"], a["mode"])
            elif entry.op == "finish":
                self._call(self.server.finish_attempt, self.view.id, self.attempt_id, a["status"], error=a["error"])
                # Nothing waits behind the attempt's end: say so, or the server would show it behind forever.
                self._call(self.server.heartbeat, self.attempt_id, spool=Replicated(str(self.journal.path), 0, 0, None))
            else:
                raise StoreError(f"Spool {self.journal.path} holds a commit of unknown kind {entry.op!r}: written by a newer tracker?")
        except AlreadyReplicated:
            # Applied before a crash cut the spool's delete short: the server's view is the one to go on from.
            self.view = self._call(self.server.get_run, self.view.name)
        except RunLockedError as e:
            self.failed = e
            raise

    def _published(self, recorded: dict[str, Any] | None) -> FileInfo | None:
        if recorded is None:
            return None
        info = FileInfo(**recorded)
        # A checkpoint that retention retired before it reached the server is committed without it: its row
        # must not point at a file that is not there. Reserved first, so the writer cannot delete it meanwhile.
        with self.lock:
            if info.path in self.dropped:
                return None
            self.server_kept.add(info.path)
        if self._files.publish(info):
            return info
        with self.lock:
            self.server_kept.discard(info.path)
        return None

    def _kept_changed(self, info: FileInfo | None, doomed: list[str]) -> None:
        with self.lock:
            self.server_kept.difference_update(doomed)
        if doomed:
            self._files.retire(doomed)

    def _heartbeat_if_due(self) -> None:
        if not self._beat and time.monotonic() < self._next_beat:
            return
        waiting, newest = self.journal.waiting()
        self._call(self.server.heartbeat, self.attempt_id, spool=Replicated(str(self.journal.path), 0, waiting, newest))
        self._beat = False
        self._next_beat = time.monotonic() + heartbeat_interval().total_seconds()

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self._call_started = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            self._call_started = None

    # -- saying so ------------------------------------------------------------

    def _went_away(self, what: str, why: str) -> None:
        if self._away_since is not None:
            return
        self._away_since = time.monotonic()
        self._away = what
        waiting, _ = self.journal.waiting()
        warnings.warn(
            f"{what} is unreachable ({why}); run {self.view.name!r} trains on. Its commits "
            f"wait in the spool on this host ({self.journal.path}): {waiting} so far. They reach the server, in order, "
            "once it is back.",
            stacklevel=1,
        )

    def _back(self) -> None:
        if self._away_since is None:
            return
        away = time.monotonic() - self._away_since
        self._away_since = None
        warnings.warn(
            f"{self._away} is reachable again after {away:.0f} s: run {self.view.name!r}'s spooled commits are on the server.",
            stacklevel=1,
        )


def _label(entry: Entry) -> str:
    """The entry's point of training as `tracker.faults.label` names it (``3``, ``3.40``), or its kind."""
    if entry.op == "epoch":
        return label(entry.args["epoch"])
    if entry.op == "step":
        return label(entry.args["at"]["epoch"], entry.args["at"]["batch"])
    return entry.op


def _retention(recorded: dict[str, Any] | None) -> Retention | None:
    return None if recorded is None else Retention(**recorded)


def _steps(recorded: list[dict[str, Any]]) -> list[StepValues]:
    return [StepValues(**r) for r in recorded]
