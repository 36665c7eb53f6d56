"""Team mode's local-first writes: a run that writes to a database server keeps training while the server is away.

Every commit of training lands first in a spool on the training host (`tracker.spool.journal`: an SQLite file
per attempt under ``$TRACKER_SPOOL_DIR``, one transaction per commit), and a replicator thread replays the
commits onto the server in order, each in one server transaction, exactly once
(`tracker.spool.replicator`). The run's writer sees a `SpooledStore` in place of the server's store.

A start still needs the server, which holds the run's lease: it first sends what a dead earlier attempt on this
host left in its spool (`send_leftovers`), so that a resume here continues from its own newest commit, and says
so when the previous writer was spooled on another host (`warn_other_host`). A SQLite database with local
checkpoints has no spool: it is local already.

Example:
    ```python
    send_leftovers(server, "cnn", files)
    run, attempt_id = server.start_attempt("cnn", ...)
    store = open_spooled(server, run, attempt_id, files)
    ```
"""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

from tracker import settings
from tracker.checkpoint import Folder
from tracker.errors import RunLockedError
from tracker.records import FileInfo, RunRow, Status
from tracker.spool.journal import Journal, folder_for, leftovers
from tracker.spool.replicator import Files, Replicator
from tracker.spool.writer import SpooledStore
from tracker.store import Store
from tracker.warn import warn_user

__all__ = ["FolderFiles", "SpooledStore", "applies", "open_spooled", "send_leftovers", "warn_other_host"]


def applies(server: Store) -> bool:
    """Whether a writer of ``server`` spools: a database server (not a SQLite file), unless ``$TRACKER_SPOOL=off``."""
    return server.engine.url.get_backend_name() != "sqlite" and settings.spool_enabled()


class FolderFiles:
    """The checkpoint files of a run whose rows point into its folder directly (local, shared or object storage).

    Files are written and verified there before their commit is spooled; a file that retention retired before
    its commit reached the server is remembered (`dropped`), so that the commit replays without it.
    """

    def __init__(self, folder: Folder) -> None:
        self._folder = folder
        self._dropped: set[str] = set()

    def publish(self, info: FileInfo) -> bool:
        if info.path in self._dropped:
            return False
        # After a crash, what a dead attempt's retention deleted is known only by the file's absence.
        return settings.is_url(info.path) or Path(self._folder.locate(info).path).is_file()

    def dropped(self, paths: list[str]) -> None:
        self._dropped.update(paths)

    def delete(self, paths: list[str]) -> None:
        self._folder.delete(paths)


def open_spooled(server: Store, run: RunRow, attempt_id: int, files: Files) -> SpooledStore:
    """The store the started attempt writes through: a new spool file of its own, and its replicator.

    Raises:
        StoreError: The spool folder cannot be written: before any training.
    """
    journal = Journal.create(folder_for(server.display), run.uid, attempt_id, run=run.name, server=server.display, host=socket.gethostname())
    return SpooledStore(server, journal, run, attempt_id, files)


def send_leftovers(server: Store, name: str, files: Files) -> None:
    """Replay onto ``server`` what earlier attempts of run ``name`` on this host left in their spools.

    Called before a new attempt takes the run over, while those attempts are still its writer: afterwards the
    server would refuse their commits. A spool that the server refuses (the run was taken over elsewhere) is
    deleted with a warning that names what it held; one still locked belongs to a live process and is left alone.

    Raises:
        StoreError: The server cannot be reached: the start fails before training, and the spool stays.
    """
    run = server.find_run(name)
    if run is None:
        return
    for path in leftovers(folder_for(server.display), run.uid):
        journal = Journal.take(path)
        if journal is None:
            continue
        waiting, newest = journal.waiting()
        replicator = Replicator(server, journal, run, journal.attempt_id, files=files)
        try:
            replicator.replay_all()
        except RunLockedError:
            warnings.warn(
                f"Run {name!r}: the spool {path} held {waiting} commits (up to {newest}) of attempt {journal.attempt_id}, "
                "which the database refused: the run was taken over by another process since. They are dropped; the "
                "run continues from what the database holds.",
                stacklevel=2,
            )
        except BaseException:
            journal.close()
            raise
        journal.discard()
        run = server.get_run(name)


def warn_other_host(server: Store, run: RunRow) -> None:
    """Warn when the run's current writer spooled on another host and never finished: that host may hold newer
    commits than the server. Call before taking the run over."""
    writer = server.writer_of(run)
    if writer is None or writer.spool is None or writer.status != Status.RUNNING or writer.process.host == socket.gethostname():
        return
    mark = writer.spool
    behind = f"{mark.pending} commits waited there (newest: {mark.newest})" if mark.pending else "none waited there"
    heard = mark.at.strftime("%Y-%m-%d %H:%M:%S UTC") if mark.at else "unknown"
    warn_user(
        f"Run {run.name!r}: its last writer (pid {writer.process.pid} on host {writer.process.host}) wrote through a "
        f"local spool there ({mark.path}) and never finished. When last heard from ({heard}), {behind}; it may hold "
        f"newer epochs than this database, which ends at epoch {run.last_epoch}. This start continues from the "
        f"database, and once it has taken over, that spool can no longer reach it. To keep them, stop this process "
        f"and resume on {writer.process.host} instead."
    )
