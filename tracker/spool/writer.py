"""`SpooledStore`: what a run's writer sees of a database server in team mode. Its commits land in the local
spool, and the replicator brings them to the server on its own thread; a commit gives a healthy server a moment
(`tracker.spool.replicator.SYNC_SECONDS`) to hold it, so the team's views are as fresh as with direct writes,
and does not wait at all while the server is away.

It stands in for the server's `tracker.store.Store` in `tracker.run.Run` once the run is started: the commits of
training (epochs, steps, target, monitor, the attempt's end) are spooled, the heartbeat is the replicator's,
and everything else (reads, the start's own writes) goes to the server directly. The values it returns are
those the server will compute when the commits replay: the run's summary, and which checkpoints retention
retires (`tracker.store.commits.doomed_by`, the same code). Of those, files the server still points at are
deleted only once the server lets go of them, so a resume elsewhere never finds the server pointing at a
deleted file; the spool thus holds at most what the run keeps, twice.

Example:
    ```python
    store = SpooledStore(server, journal, run, attempt_id, files)
    run, doomed = store.commit_epoch(run, attempt_id, 3, {"loss": 0.2}, info, retention)
    store.close()   # waits up to $TRACKER_SPOOL_WAIT for the server
    ```
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from tracker import settings
from tracker.errors import TrackerError
from tracker.records import FileInfo, Retention, RunRow, StepValues, now
from tracker.spool.journal import Journal
from tracker.spool.replicator import Files, Replicator
from tracker.store import Store
from tracker.store.commits import doomed_by, is_better
from tracker.warn import warn_user


@dataclasses.dataclass(frozen=True)
class _Kept:
    """A kept checkpoint, as `doomed_by` sees it."""

    id: int
    epoch: int
    superseded: bool
    checkpoint_path: str
    step: int = 0


class SpooledStore:
    """The server `Store` of one started attempt, with its training commits spooled first."""

    def __init__(self, server: Store, journal: Journal, run: RunRow, attempt_id: int, files: Files) -> None:
        self._server = server
        self.journal = journal
        self._attempt_id = attempt_id
        self._replicator = Replicator(server, journal, run, attempt_id, files=files)
        kept, kept_steps = server.kept(run.id)
        self._kept = [_Kept(r.id, r.epoch, bool(r.superseded), r.checkpoint_path) for r in kept]
        self._kept_steps = [_Kept(r.id, r.epoch, bool(r.superseded), r.checkpoint_path, r.step) for r in kept_steps]
        self._replicator.server_kept = {r.checkpoint_path for r in (*self._kept, *self._kept_steps)}
        self._ids = itertools.count(2**62)  # after any id the server gave: retention orders ties by id
        self._replicator.start()

    def __getattr__(self, name: str) -> Any:
        # Reads, and the writes of a start (before any commit is spooled), are the server's own.
        return getattr(self._server, name)

    @property
    def display(self) -> str:
        return self._server.display

    def commit_epoch(
        self, run: RunRow, attempt_id: int, epoch: int, values: Mapping[str, float], checkpoint: FileInfo | None,
        retention: Retention | None = None, step_rows: Sequence[StepValues] = (),
    ) -> tuple[RunRow, list[str]]:
        """Spool one epoch (see `tracker.store.Store.commit_epoch`); return the run's summary after it, and the
        checkpoint files that may be deleted now."""
        self._check()
        best_epoch, best_value = run.best_epoch, run.best_value
        if run.monitor in values and is_better(values[run.monitor], best_value, run.mode or "min"):
            best_epoch, best_value = epoch, values[run.monitor]
        seq = self.journal.append("epoch", {
            "epoch": epoch, "values": dict(values), "checkpoint": _info(checkpoint),
            "retention": _retention(retention), "step_rows": [dataclasses.asdict(r) for r in step_rows],
        }, newest=f"epoch {epoch}")
        if checkpoint is not None:
            self._kept = sorted([_Kept(next(self._ids), epoch, False, checkpoint.path), *self._kept], key=lambda k: (k.epoch, k.id), reverse=True)
        doomed = self._retire(retention, best_epoch)
        self._sent(seq)
        return dataclasses.replace(run, last_epoch=epoch, best_epoch=best_epoch, best_value=best_value, updated_at=now()), doomed

    def commit_step(
        self, run: RunRow, attempt_id: int, at: StepValues, checkpoint: FileInfo | None,
        retention: Retention | None = None, step_rows: Sequence[StepValues] = (),
    ) -> tuple[RunRow, list[str]]:
        """Spool a point inside an epoch (see `tracker.store.Store.commit_step`); return as `commit_epoch` does."""
        self._check()
        seq = self.journal.append("step", {
            "at": dataclasses.asdict(at), "checkpoint": _info(checkpoint), "retention": _retention(retention),
            "step_rows": [dataclasses.asdict(r) for r in step_rows],
        }, newest=f"epoch {at.epoch}, batch {at.batch}" if checkpoint is not None else None)
        doomed: list[str] = []
        if checkpoint is not None:
            self._kept_steps = sorted(
                [_Kept(next(self._ids), at.epoch, False, checkpoint.path, at.step), *self._kept_steps], key=lambda k: (k.step, k.id), reverse=True
            )
            doomed = self._retire(retention, run.best_epoch)
        self._sent(seq)
        return dataclasses.replace(run, updated_at=now()), doomed

    def set_target_epochs(self, run_id: int, epochs: int) -> None:
        self._check()
        self._sent(self.journal.append("target", {"epochs": epochs}))

    def set_monitor(self, run: RunRow, monitor: str, mode: str) -> RunRow:
        self._check()
        self._sent(self.journal.append("monitor", {"monitor": monitor, "mode": mode}))
        # The server recomputes the best over earlier epochs when this replays; a new monitor has none here yet.
        same = (run.monitor, run.mode) == (monitor, mode)
        return dataclasses.replace(
            run, monitor=monitor, mode=mode, best_epoch=run.best_epoch if same else None, best_value=run.best_value if same else None,
        )

    def heartbeat(self, attempt_id: int) -> None:
        """The replicator beats for this attempt, so that a hung server never blocks the run's heartbeat thread."""
        self._replicator.beat()

    def finish_attempt(self, run_id: int, attempt_id: int, status: str, *, error: str | None = None) -> None:
        self.journal.append("finish", {"status": str(status), "error": error})
        self._replicator.wake()

    def discard_attempt(self, run_id: int, attempt_id: int, *, only_new_run: bool) -> str:
        # Nothing was committed, or it is kept: what the server decides needs the spool on it first.
        self._replicator.drain(settings.spool_wait_seconds())
        return self._server.discard_attempt(run_id, attempt_id, only_new_run=only_new_run)

    def close(self) -> None:
        """Wait up to ``$TRACKER_SPOOL_WAIT`` for the server to hold every commit, then stop replicating; what is
        left stays in the spool, and the next start of the run on this host (or ``tracker spool push``) sends it."""
        drained = self._replicator.drain(settings.spool_wait_seconds())
        self._replicator.stop()
        waiting, newest = self.journal.waiting()
        if drained:
            self.journal.discard()
        else:
            self.journal.close()
            if self._replicator.failed is None:
                warn_user(
                    f"Run {self._replicator.view.name!r}: database {self._server.display} is still unreachable; {waiting} "
                    f"commits (up to {newest or 'the attempt end'}) wait in the spool {self.journal.path} on this host. "
                    "They are sent by the next start of this run here, or now with: tracker spool push"
                )
        self._server.close()

    def _sent(self, seq: int) -> None:
        """Wake the replicator for commit ``seq`` and give a healthy server a moment to hold it (never during an
        outage); then raise if the server refused it (the run was taken over)."""
        self._replicator.wake()
        self._replicator.wait_for(seq)
        self._check()

    def _check(self) -> None:
        failed = self._replicator.failed
        if failed is not None:
            if isinstance(failed, TrackerError):
                raise failed
            raise TrackerError(f"Replicating the spool {self.journal.path} to {self._server.display} failed: {failed}") from failed

    def _retire(self, retention: Retention | None, best_epoch: int | None) -> list[str]:
        if retention is None:
            return []
        doomed, doomed_steps = doomed_by(retention, best_epoch, self._kept, self._kept_steps)
        gone = {k.id for k in (*doomed, *doomed_steps)}
        self._kept = [k for k in self._kept if k.id not in gone]
        self._kept_steps = [k for k in self._kept_steps if k.id not in gone]
        with self._replicator.lock:
            held = self._replicator.server_kept
            free = [k.checkpoint_path for k in (*doomed, *doomed_steps) if k.checkpoint_path not in held]
            self._replicator.dropped.update(free)
        return free


def _info(info: FileInfo | None) -> dict[str, Any] | None:
    return None if info is None else dataclasses.asdict(info)


def _retention(retention: Retention | None) -> dict[str, Any] | None:
    return None if retention is None else dataclasses.asdict(retention)
