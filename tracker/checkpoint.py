"""Checkpoint files: durable writes, verification, cleanup. Knows nothing of Keras.

A checkpoint is an uncompressed ``.npz`` file (readable with plain numpy) of
named arrays plus a JSON header. Its sha256 and size are computed while the
bytes are written, and only once the file is durable may the database point at
it. A file that no committed row points at is an orphan, and `Folder.sweep`
deletes it the next time the run starts.

Where the files go is a `Folder`: a local folder (`LocalFolder`: temporary
name, fsync, rename, fsync of the folder) or, for a URL such as
``s3://bucket/prefix``, an object-store prefix (`tracker.remote`).

Example:
    >>> folder = open_folder("ckpt", "cnn")                                # doctest: +SKIP
    >>> info = folder.write(3, {"w": np.zeros(2)}, {"epoch": 3})            # doctest: +SKIP
    >>> arrays, header = load(info)                                         # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from tracker import settings
from tracker.errors import CheckpointError
from tracker.faults import pause_point
from tracker.store import FileInfo

HEADER_KEY = "__tracker__"
MARKER = ".tracker-run"
FILE_NAME = re.compile(r"epoch-\d{6,}-[0-9a-f]{12}\.npz")
_TEMP = re.compile(r"\.epoch-\d{6,}-[0-9a-f]{12}\.npz\.tmp")


class Folder(Protocol):
    """Where one run's checkpoints live. `open_folder` gives the right kind for a path or URL."""

    #: What the database records: an absolute path, or a URL.
    location: str

    def probe_writable(self) -> None:
        """Raise `CheckpointError` now, before training, if checkpoints cannot be written here."""

    def claim(self, uid: str, owner: str) -> None:
        """Mark this folder as run ``uid``'s; refuse one that another run owns."""

    def write(self, epoch: int, arrays: Mapping[str, np.ndarray], header: Mapping[str, object]) -> FileInfo:
        """Write a checkpoint durably and return what the database should record of it."""

    def delete(self, paths: list[str]) -> None:
        """Delete checkpoint files that the database no longer points at."""

    def sweep(self, referenced: set[str], *, dry_run: bool = False) -> list[str]:
        """Delete this folder's checkpoint files that no database row points at; return them.

        Call only while holding the run's writer claim, or for a run with no live writer: then no
        other process can be writing here. Files that tracker did not name are never touched.
        ``dry_run=True`` only returns them (for ``tracker verify`` and ``tracker gc --dry-run``).
        """


def open_folder(checkpoint_dir: str | os.PathLike[str] | None, name: str, storage_options: Mapping[str, Any] | None = None) -> Folder:
    """The checkpoint folder of run ``name`` under ``checkpoint_dir`` (see `tracker.settings.resolve_checkpoint_root`):
    a local path, or a URL such as ``s3://bucket/prefix``.
    """
    root = settings.resolve_checkpoint_root(checkpoint_dir)
    if settings.is_url(root):
        from tracker.remote import RemoteFolder  # imports fsspec: only for URLs

        return RemoteFolder(f"{root}/{name}", dict(storage_options or {}))
    return LocalFolder(Path(root) / name)


class HashingSink:
    """Write-only, unseekable view of a file that hashes and counts what passes through.

    Being unseekable makes zipfile stream the archive front to back, so the hash
    covers exactly the bytes written without reading them back.
    """

    def __init__(self, raw: BinaryIO, epoch: int) -> None:
        self._raw = raw
        self._epoch = epoch
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._raw.write(data)
        self.sha256.update(data)
        self.size += len(data)
        if self.size > 0:
            pause_point("during-write", self._epoch)
        return len(data)

    def flush(self) -> None:
        self._raw.flush()


def encode(raw: BinaryIO, epoch: int, arrays: Mapping[str, np.ndarray], header: Mapping[str, object]) -> HashingSink:
    """Stream the checkpoint of ``epoch`` into ``raw``; the returned sink holds its size and sha256."""
    payload = dict(arrays)
    payload[HEADER_KEY] = np.frombuffer(json.dumps(dict(header)).encode(), dtype=np.uint8)
    sink = HashingSink(raw, epoch)
    # The .npz layout np.savez writes, streamed so the hash sees every byte once.
    with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:
        for key, value in payload.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    return sink


def new_name(epoch: int) -> str:
    """A fresh file name for ``epoch``'s checkpoint: never reused, so no write can clobber a committed file."""
    return f"epoch-{epoch:06d}-{uuid.uuid4().hex[:12]}.npz"


class LocalFolder:
    """A run's checkpoints in a local (or mounted) folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)

    def __str__(self) -> str:
        return self.location

    def probe_writable(self) -> None:
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

    def claim(self, uid: str, owner: str) -> None:
        # Two databases can hold runs of the same name with the same default folder;
        # without this, one run's orphan sweep would delete the other's checkpoints.
        marker = self.path / MARKER
        try:
            recorded = marker.read_text().splitlines()
        except FileNotFoundError:
            temp = self.path / f".{MARKER}.{uuid.uuid4().hex}.tmp"
            temp.write_text(f"{uid}\n{owner}\n")
            os.replace(temp, marker)
            return
        refuse_foreign(self.location, recorded, uid)

    def write(self, epoch: int, arrays: Mapping[str, np.ndarray], header: Mapping[str, object]) -> FileInfo:
        name = new_name(epoch)
        final, temp = self.path / name, self.path / f".{name}.tmp"
        try:
            with temp.open("wb") as raw:
                sink = encode(raw, epoch, arrays, header)
                raw.flush()
                os.fsync(raw.fileno())
            pause_point("before-rename", epoch)
            os.replace(temp, final)
            fsync_path(self.path)
        except OSError as e:
            temp.unlink(missing_ok=True)
            raise CheckpointError(f"Cannot write checkpoint {final}: {e.strerror or e}.") from e
        return FileInfo(str(final), sink.size, sink.sha256.hexdigest())

    def delete(self, paths: list[str]) -> None:
        for p in paths:
            Path(p).unlink(missing_ok=True)

    def sweep(self, referenced: set[str], *, dry_run: bool = False) -> list[str]:
        if not self.path.is_dir():
            return []
        removed = []
        for entry in self.path.iterdir():
            orphan = _TEMP.fullmatch(entry.name) or (FILE_NAME.fullmatch(entry.name) and str(entry) not in referenced)
            if orphan and entry.is_file():
                if not dry_run:
                    entry.unlink(missing_ok=True)
                removed.append(str(entry))
        return removed


def refuse_foreign(location: str, recorded: list[str], uid: str) -> None:
    """Raise unless the ownership marker's lines ``recorded`` name run ``uid``."""
    if not recorded or recorded[0] != uid:
        other = recorded[1] if len(recorded) > 1 else "an unknown database"
        raise CheckpointError(
            f"Checkpoint folder {location} belongs to another run of the same name (recorded in {other}). "
            "tracker leaves its files alone: pass a different checkpoint_dir= or run name."
        )


def fsync_path(path: Path) -> None:
    """fsync a file or a folder by path (a folder's fsync makes a rename in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_verified(info: FileInfo, storage_options: Mapping[str, Any] | None = None) -> bytes:
    """The file's bytes, after checking its size and sha256 against the database; `CheckpointError` if they differ."""
    if settings.is_url(info.path):
        from tracker.remote import read_bytes

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


def check(info: FileInfo, size: int, sha256: str) -> None:
    """Raise `CheckpointError` unless ``size`` and ``sha256`` are what the database recorded for the file."""
    if size != info.size:
        raise CheckpointError(f"checkpoint file {info.path} has {size} bytes, the database recorded {info.size}")
    if sha256 != info.sha256:
        raise CheckpointError(f"checkpoint file {info.path} has sha256 {sha256[:12]}…, the database recorded {info.sha256[:12]}…")


def load(info: FileInfo, storage_options: Mapping[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Verify and read a checkpoint: its arrays and its header."""
    data = read_verified(info, storage_options)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        header = json.loads(arrays.pop(HEADER_KEY).tobytes())
    except (ValueError, KeyError, OSError) as e:
        raise CheckpointError(f"checkpoint file {info.path} verifies but cannot be parsed: {e}") from e
    return arrays, header
