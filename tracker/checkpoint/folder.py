"""Checkpoint folders: where a run's files go (local disk or object storage), their ownership, verification and cleanup.

A checkpoint is an uncompressed ``.npz`` file (readable with plain numpy) of
named arrays plus a JSON header. Its sha256 and size are computed while the
bytes are written, and only once the file is durable may the database point at
it. A file that no committed row points at is an orphan, and `Folder.sweep`
deletes it the next time the run starts.

Where the files go is a `Folder`: a local folder (`LocalFolder`: temporary
name, fsync, rename, fsync of the folder) or, for a URL such as
``s3://bucket/prefix``, an object-store prefix (`tracker.checkpoint.remote`).

Example:
    >>> folder = open_folder("ckpt", "cnn")                                # doctest: +SKIP
    >>> info = folder.write(3, {"w": np.zeros(2)}, {"epoch": 3})            # doctest: +SKIP
    >>> arrays, header = load(info)                                         # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tracker import settings
from tracker.checkpoint.file import (
    FILE_NAME,
    MARKER,
    TEMP_NAME,
    check,
    decode,
    encode,
    new_name,
    reclaimable,
    refuse_foreign,
)
from tracker.durable import fsync_path, write_durably
from tracker.errors import CheckpointError
from tracker.faults import label_of, pause_point
from tracker.records import FileInfo, RunRow


class Folder(Protocol):
    """Where one run's checkpoints live. `open_folder` gives the right kind for a path or URL."""

    #: What the database records: an absolute path, or a URL.
    location: str

    def probe_writable(self) -> bool:
        """Raise `CheckpointError` now, before training, if checkpoints cannot be written here.

        Returns True when the probe made the folder, so that a start that fails can take it away again.
        """

    def claim(self, uid: str, owner: str, referenced: set[str]) -> bool:
        """Mark this folder as run ``uid``'s; refuse one that another run owns.

        ``referenced`` are the run's recorded checkpoint paths: a marker emptied by a power loss
        is taken back only if every checkpoint file beside it is one of them. Returns True when
        the folder had no marker: it is new to the run.
        """

    def owned_by(self, uid: str) -> bool:
        """Whether this folder's ownership marker names run ``uid``; reads only, never writes."""

    def locate(self, info: FileInfo) -> FileInfo:
        """Where the recorded checkpoint ``info`` is now: in this folder under its own name, if it is
        there (the folder was moved, or reached by another path), else at its recorded path."""

    def write(self, epoch: int, arrays: Mapping[str, np.ndarray], header: Mapping[str, object]) -> FileInfo:
        """Write a checkpoint durably and return what the database should record of it."""

    def delete(self, paths: list[str]) -> None:
        """Delete checkpoint files that the database no longer points at."""

    def sweep(self, referenced: set[str], *, dry_run: bool = False) -> list[str]:
        """Delete this folder's checkpoint files that no database row points at; return them.

        Files are matched by name, which is never reused, not by the path recorded: the same
        folder may have been recorded under another path. Call only while holding the run's
        writer claim, or for a run with no live writer: then no other process can be writing
        here. Files that tracker did not name are never touched. ``dry_run=True`` only returns
        them (for ``tracker verify`` and ``tracker gc --dry-run``).
        """

    def release(self) -> None:
        """Remove this run's marker, and the folder if nothing else is in it: for a run that is discarded."""


def run_folder(run: RunRow, storage_options: Mapping[str, Any] | None = None) -> Folder | None:
    """The folder that ``run`` recorded for its checkpoints, or None for a run that has none (an imported one)."""
    if not run.checkpoint_dir:
        return None
    parent, _, name = run.checkpoint_dir.rstrip("/").rpartition("/")
    return open_folder(parent, name, storage_options)


def open_folder(checkpoint_dir: str | os.PathLike[str] | None, name: str, storage_options: Mapping[str, Any] | None = None) -> Folder:
    """The checkpoint folder of run ``name`` under ``checkpoint_dir`` (see `tracker.settings.resolve_checkpoint_root`):
    a local path, or a URL such as ``s3://bucket/prefix``.
    """
    root = settings.resolve_checkpoint_root(checkpoint_dir)
    if settings.is_url(root):
        from tracker.checkpoint.remote import RemoteFolder  # imports fsspec: only for URLs

        return RemoteFolder(f"{root}/{name}", dict(storage_options or {}))
    return LocalFolder(Path(root) / name)


class LocalFolder:
    """A run's checkpoints in a local (or mounted) folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)

    def __str__(self) -> str:
        return self.location

    def probe_writable(self) -> bool:
        made = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".probe-{uuid.uuid4().hex}"
            with probe.open("wb") as f:
                f.write(b"ok")
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
        except OSError as e:
            raise CheckpointError(
                f"Checkpoint folder {self.path} is not writable: {e.strerror or e}. "
                "Pass a writable checkpoint_dir= or set TRACKER_CHECKPOINT_DIR."
            ) from e
        return made

    def claim(self, uid: str, owner: str, referenced: set[str]) -> bool:
        # Two databases can hold runs of the same name with the same default folder;
        # without this, one run's orphan sweep would delete the other's checkpoints.
        marker = self.path / MARKER
        try:
            recorded = marker.read_text().splitlines()
        except FileNotFoundError:
            recorded = None
        if recorded is None or (not recorded and reclaimable(str(marker), self._checkpoint_names(), referenced)):
            write_durably(marker, f"{uid}\n{owner}\n".encode())
            return recorded is None
        refuse_foreign(self.location, recorded, uid)
        return False

    def owned_by(self, uid: str) -> bool:
        try:
            recorded = (self.path / MARKER).read_text().splitlines()
        except OSError:
            return False
        return bool(recorded) and recorded[0] == uid

    def locate(self, info: FileInfo) -> FileInfo:
        here = self.path / Path(info.path).name
        if str(here) != info.path and here.is_file():
            return dataclasses.replace(info, path=str(here))
        return info

    def _checkpoint_names(self) -> list[str]:
        return [e.name for e in self.path.iterdir() if FILE_NAME.fullmatch(e.name)] if self.path.is_dir() else []

    def write(self, epoch: int, arrays: Mapping[str, np.ndarray], header: Mapping[str, object]) -> FileInfo:
        name = new_name(epoch)
        final, temp = self.path / name, self.path / f".{name}.tmp"
        try:
            with temp.open("wb") as raw:
                sink = encode(raw, epoch, arrays, header)
                raw.flush()
                os.fsync(raw.fileno())
            pause_point("before-rename", label_of(epoch, header))
            os.replace(temp, final)
            fsync_path(self.path)
        except OSError as e:
            # The cleanup fails too on a folder gone read-only: the error to report is the write's.
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
            raise CheckpointError(f"Cannot write checkpoint {final}: {e.strerror or e}.") from e
        return FileInfo(str(final), sink.size, sink.sha256.hexdigest())

    def delete(self, paths: list[str]) -> None:
        for p in paths:
            here = self.path / Path(p).name
            (here if here.is_file() else Path(p)).unlink(missing_ok=True)

    def sweep(self, referenced: set[str], *, dry_run: bool = False) -> list[str]:
        if not self.path.is_dir():
            return []
        names = {Path(p).name for p in referenced}
        removed = []
        for entry in self.path.iterdir():
            orphan = TEMP_NAME.fullmatch(entry.name) or (FILE_NAME.fullmatch(entry.name) and entry.name not in names)
            if orphan and entry.is_file():
                if not dry_run:
                    entry.unlink(missing_ok=True)
                removed.append(str(entry))
        return removed

    def release(self) -> None:
        with contextlib.suppress(OSError):
            (self.path / MARKER).unlink(missing_ok=True)
            self.path.rmdir()  # only if empty: never anything else's files




def read_verified(info: FileInfo, storage_options: Mapping[str, Any] | None = None) -> bytes:
    """The file's bytes, after checking its size and sha256 against the database; `CheckpointError` if they differ."""
    if settings.is_url(info.path):
        from tracker.checkpoint.remote import read_bytes

        data = read_bytes(info.path, dict(storage_options or {}))
    else:
        try:
            data = Path(info.path).read_bytes()
        except FileNotFoundError as e:
            raise CheckpointError(f"checkpoint file {info.path} is missing") from e
        except OSError as e:
            raise CheckpointError(f"checkpoint file {info.path} cannot be read: {e.strerror or e}") from e
    check(info, len(data), hashlib.sha256(data).hexdigest())
    return data


def load(info: FileInfo, storage_options: Mapping[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Verify and read a checkpoint: its arrays and its header."""
    return decode(read_verified(info, storage_options), info.path)
