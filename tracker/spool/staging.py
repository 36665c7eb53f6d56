"""Checkpoints on object storage in team mode: written to a local staging folder first, uploaded by the replicator.

`StagedFolder` stands in for a run's `tracker.checkpoint.remote.RemoteFolder` while the run spools: a checkpoint
is written durably under ``$TRACKER_SPOOL_DIR/staging/`` (temporary name, fsync, rename), and its commit,
spooled, already names its remote URL, size and sha256. Before that commit replays, the replicator uploads the
file, reads it back and checks it (`publish`); only then does the server's row point at it, and only then is the
staged copy removed. A crash in between leaves the staged file, which the next start on this host uploads with
its commit. So an unreachable object store costs training nothing either.

Example:
    ```python
    folder = StagedFolder(RemoteFolder("s3://team/ckpt/cnn", {}))
    info = folder.write(3, arrays, header)     # local, durable; info.path is the s3:// URL
    folder.publish(info)                       # on the replicator's thread: uploaded and verified
    ```
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from tracker import settings
from tracker.checkpoint.folder import LocalFolder
from tracker.checkpoint.remote import RemoteFolder
from tracker.faults import pause_point
from tracker.records import FileInfo


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


class StagedFolder:
    """A remote run folder whose checkpoints are staged locally until the replicator uploads them."""

    def __init__(self, remote: RemoteFolder) -> None:
        self.remote = remote
        self.location = remote.location
        digest = hashlib.sha256(remote.location.encode()).hexdigest()[:16]
        self.staging = LocalFolder(settings.spool_dir() / "staging" / digest)

    def __str__(self) -> str:
        return str(self.remote)

    def __getattr__(self, name: str) -> Any:
        # Ownership, lookups and release are the remote folder's.
        return getattr(self.remote, name)

    def probe_writable(self) -> bool:
        self.staging.probe_writable()
        return self.remote.probe_writable()

    def write(self, epoch: int, arrays: Mapping[str, np.ndarray], header: Mapping[str, object]) -> FileInfo:
        staged = self.staging.write(epoch, arrays, header)
        return FileInfo(f"{self.location}/{_name(staged.path)}", staged.size, staged.sha256)

    def delete(self, paths: list[str]) -> None:
        # What the writer deletes never left this host: the replicator reserves a file before it uploads it, and
        # the writer deletes only files not reserved (`tracker.spool.writer.SpooledStore`). No call to the store,
        # which may be the very thing that is down.
        self.staging.delete(paths)

    def sweep(self, referenced: set[str], *, dry_run: bool = False) -> list[str]:
        # Called at a start, once the leftovers of dead attempts were sent: a staged file no row names is an orphan.
        return self.remote.sweep(referenced, dry_run=dry_run) + self.staging.sweep(referenced, dry_run=dry_run)

    # -- what the replicator does with the files (`tracker.spool.replicator.Files`) --------------------------

    def publish(self, info: FileInfo) -> bool:
        staged = self.staging.path / _name(info.path)
        if staged.is_file():
            pause_point("spool-before-upload", int(_name(info.path).split("-")[1]))  # epoch-000003-….npz
            self.remote.upload(staged, info)
            staged.unlink()  # the verified remote object is the copy from now on
            return True
        # Uploaded before a crash cut the commit short, or retired before it ever left.
        return self.remote.exists(info)

    def retire(self, paths: list[str]) -> None:
        self.staging.delete(paths)
        self.remote.delete(paths)
