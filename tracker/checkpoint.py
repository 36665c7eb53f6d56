"""Checkpoint files: durable writes, verification, cleanup. Knows nothing of Keras.

A checkpoint is an uncompressed ``.npz`` file (readable with plain numpy) of
named arrays plus a JSON header. It is written under a temporary name,
flushed, fsynced, renamed into place, and its folder fsynced; its sha256 and
size are computed while the bytes are written. Only then may the database
point at it. A file no committed row points at is an orphan, and `sweep`
deletes it the next time the run starts.

Example:
    >>> info = write(Path("ckpt/run"), 3, {"w": np.zeros(2)}, {"epoch": 3})  # doctest: +SKIP
    >>> arrays, header = load(info)                                          # doctest: +SKIP
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
from typing import BinaryIO

import numpy as np

from tracker.errors import CheckpointError
from tracker.faults import pause_point
from tracker.store import FileInfo

HEADER_KEY = "__tracker__"
_FILE = re.compile(r"epoch-\d{6,}-[0-9a-f]{12}\.npz")
_TEMP = re.compile(r"\.epoch-\d{6,}-[0-9a-f]{12}\.npz\.tmp")

class _HashingFile:
    """Write-only, unseekable view of a file that hashes and counts what passes through.

    Being unseekable makes zipfile stream the archive front to back, so the hash
    covers exactly the bytes on disk without reading them back.
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


_MARKER = ".tracker-run"


def claim(folder: Path, uid: str, owner: str) -> None:
    """Mark ``folder`` as the checkpoint folder of run ``uid``; refuse one that another run owns.

    Two databases can hold runs of the same name with the same default folder;
    without this, one run's orphan sweep would delete the other's checkpoints.
    """
    marker = folder / _MARKER
    try:
        recorded = marker.read_text().splitlines()
    except FileNotFoundError:
        temp = folder / f".{_MARKER}.{uuid.uuid4().hex}.tmp"
        temp.write_text(f"{uid}\n{owner}\n")
        os.replace(temp, marker)
        return
    if not recorded or recorded[0] != uid:
        other = recorded[1] if len(recorded) > 1 else "an unknown database"
        raise CheckpointError(
            f"Checkpoint folder {folder} belongs to another run of the same name (recorded in {other}). "
            "tracker leaves its files alone: pass a different checkpoint_dir= or run name."
        )


def probe_writable(folder: Path) -> None:
    """Raise `CheckpointError` now, before training, if ``folder`` cannot hold checkpoints."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{uuid.uuid4().hex}"
        with probe.open("wb") as f:
            f.write(b"ok")
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as e:
        raise CheckpointError(
            f"Checkpoint folder {folder} is not writable: {e.strerror or e}. "
            "Pass a writable checkpoint_dir= or set TRACKER_CHECKPOINT_DIR."
        ) from e


def write(folder: Path, epoch: int, arrays: Mapping[str, np.ndarray], header: Mapping[str, object]) -> FileInfo:
    """Write a checkpoint durably and return what the database should record of it."""
    name = f"epoch-{epoch:06d}-{uuid.uuid4().hex[:12]}.npz"
    final, temp = folder / name, folder / f".{name}.tmp"
    payload = dict(arrays)
    payload[HEADER_KEY] = np.frombuffer(json.dumps(dict(header)).encode(), dtype=np.uint8)
    try:
        with temp.open("wb") as raw:
            sink = _HashingFile(raw, epoch)
            # The .npz layout np.savez writes, streamed so the hash sees every byte once.
            with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:
                for key, value in payload.items():
                    with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
            raw.flush()
            os.fsync(raw.fileno())
        pause_point("before-rename", epoch)
        os.replace(temp, final)
        fsync_path(folder)
    except OSError as e:
        temp.unlink(missing_ok=True)
        raise CheckpointError(f"Cannot write checkpoint {final}: {e.strerror or e}.") from e
    return FileInfo(str(final), sink.size, sink.sha256.hexdigest())


def fsync_path(path: Path) -> None:
    """fsync a file or a folder by path (a folder's fsync makes a rename in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_verified(info: FileInfo) -> bytes:
    """The file's bytes, after checking its size and sha256 against the database; `CheckpointError` if they differ."""
    try:
        data = Path(info.path).read_bytes()
    except FileNotFoundError as e:
        raise CheckpointError(f"checkpoint file {info.path} is missing") from e
    except OSError as e:
        raise CheckpointError(f"checkpoint file {info.path} cannot be read: {e.strerror or e}") from e
    if len(data) != info.size:
        raise CheckpointError(f"checkpoint file {info.path} has {len(data)} bytes, the database recorded {info.size}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != info.sha256:
        raise CheckpointError(f"checkpoint file {info.path} has sha256 {digest[:12]}…, the database recorded {info.sha256[:12]}…")
    return data


def load(info: FileInfo) -> tuple[dict[str, np.ndarray], dict]:
    """Verify and read a checkpoint: its arrays and its header."""
    data = read_verified(info)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        header = json.loads(arrays.pop(HEADER_KEY).tobytes())
    except (ValueError, KeyError, OSError) as e:
        raise CheckpointError(f"checkpoint file {info.path} verifies but cannot be parsed: {e}") from e
    return arrays, header


def delete(paths: list[str]) -> None:
    for p in paths:
        Path(p).unlink(missing_ok=True)


def sweep(folder: Path, referenced: set[str]) -> list[Path]:
    """Delete checkpoint files and temporaries in ``folder`` that no database row points at.

    Call only while holding the run's writer claim: then no other process can be
    writing a file here. Files that tracker did not name are never touched.
    """
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        orphan = _TEMP.fullmatch(entry.name) or (_FILE.fullmatch(entry.name) and str(entry) not in referenced)
        if orphan and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
