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
from dataclasses import dataclass
from pathlib import Path

from tracker import settings
from tracker.checkpoint import Folder
from tracker.errors import RunLockedError
from tracker.records import FileInfo, RunRow, Status
from tracker.spool.journal import Journal, folder_for, leftovers, waiting_in
from tracker.spool.replicator import Files, Replicator
from tracker.spool.writer import SpooledStore
from tracker.store import Store
from tracker.warn import warn_user

__all__ = ["FolderFiles", "SpooledStore", "applies", "files_of", "Spooled", "open_spooled", "push", "send_leftovers", "spools", "staged", "warn_other_host"]


def applies(server: Store, folder: Folder) -> bool:
    """Whether a writer of ``server`` with checkpoints in ``folder`` spools: with a database server (not a SQLite
    file) or checkpoints on object storage, unless ``$TRACKER_SPOOL=off``."""
    remote = server.engine.url.get_backend_name() != "sqlite" or settings.is_url(folder.location)
    return remote and settings.spool_enabled()


def staged(folder: Folder) -> Folder:
    """``folder`` as a spooled writer uses it: on object storage, staged locally first (`tracker.spool.staging`)."""
    if not settings.is_url(folder.location):
        return folder
    from tracker.spool.staging import StagedFolder  # imports fsspec: only for object storage

    staging = StagedFolder(folder)  # type: ignore[arg-type]
    staging.staging.probe_writable()
    return staging


def files_of(folder: Folder) -> Files:
    """What the replicator does with ``folder``'s files: a staged folder uploads them, any other is read in place."""
    return folder if hasattr(folder, "publish") else FolderFiles(folder)  # type: ignore[return-value]


class FolderFiles:
    """The checkpoint files of a run whose rows point into its folder directly (local, shared or object storage):
    written and verified there before their commit is spooled."""

    def __init__(self, folder: Folder) -> None:
        self._folder = folder

    def publish(self, info: FileInfo) -> bool:
        # After a crash, what a dead attempt's retention deleted is known only by the file's absence.
        return settings.is_url(info.path) or Path(self._folder.locate(info).path).is_file()

    def retire(self, paths: list[str]) -> None:
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
    if run is not None:
        for path in leftovers(folder_for(server.display), run.uid):
            _send(server, path, run, files)


@dataclass(frozen=True)
class Spooled:
    """A spool file on this host: whose it is, and what waits in it."""

    path: Path
    run: str
    attempt_id: int
    waiting: int
    newest: str | None
    #: Whether a live process holds it (it is training, or sending it now).
    live: bool


def spools(server: Store) -> list[Spooled]:
    """The spool files on this host of runs written to ``server``, oldest attempt first (``tracker spool``)."""
    found = []
    for path in sorted(folder_for(server.display).glob("*.sqlite"), key=lambda p: int(p.name.split(".")[1])):
        journal = Journal.take(path)
        if journal is None:
            waiting, newest = waiting_in(path)
            found.append(Spooled(path, path.name.split(".")[0], int(path.name.split(".")[1]), waiting, newest, True))
            continue
        try:
            waiting, newest = journal.waiting()
            found.append(Spooled(path, journal.meta().get("run", "?"), journal.attempt_id, waiting, newest, False))
        finally:
            journal.close()
    return found


def push(server: Store, storage_options: dict[str, object] | None = None) -> list[tuple[Spooled, bool]]:
    """Send every spool on this host that no live process holds to ``server``: what ``tracker spool push`` does
    once the server is back, for runs that will not start here again. Returns each spool, and whether the server
    took it (False: refused, the run was taken over since).

    Raises:
        StoreError: The server cannot be reached; what was sent before stays sent.
    """
    from tracker.checkpoint import run_folder

    sent = []
    for spooled in spools(server):
        if spooled.live:
            continue
        run = next((r for r, _ in server.list_runs() if r.uid == spooled.path.name.split(".")[0]), None)
        if run is None:
            continue
        folder = run_folder(run, storage_options)
        if folder is None:
            continue
        sent.append((spooled, _send(server, spooled.path, run, files_of(staged(folder)))))
    return sent


def _send(server: Store, path: Path, run: RunRow, files: Files) -> bool:
    """Replay the spool file at ``path`` (if no live process holds it) and delete it; False if it was refused."""
    journal = Journal.take(path)
    if journal is None:
        return False
    waiting, newest = journal.waiting()
    replicator = Replicator(server, journal, run, journal.attempt_id, files=files)
    try:
        replicator.replay_all()
    except RunLockedError:
        warnings.warn(
            f"Run {run.name!r}: the spool {path} held {waiting} commits (up to {newest}) of attempt {journal.attempt_id}, "
            "which the database refused: the run was taken over by another process since. They are dropped; the "
            "run continues from what the database holds.",
            stacklevel=3,
        )
        journal.discard()
        return False
    except BaseException:
        journal.close()
        raise
    journal.discard()
    return True


def warn_other_host(server: Store, run: RunRow, *, force: bool) -> None:
    """Warn when the run's current writer spooled on another host and never finished: that host may hold newer
    commits than the server. Call before taking the run over; a writer that still holds its lease is refused
    by the takeover itself, unless ``force``."""
    writer = server.writer_of(run)
    if writer is None or writer.spool is None or writer.status != Status.RUNNING or writer.process.host == socket.gethostname():
        return
    if writer.alive() and not force:
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
