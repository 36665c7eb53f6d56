"""One checkpoint file, whichever kind of folder holds it: its name, its bytes, its verification.

A checkpoint is an uncompressed ``.npz`` file (readable with plain numpy) of named
arrays plus a JSON header, streamed front to back so that its sha256 and size are
computed while the bytes are written. Also here: the ownership marker's rules, which
local and remote folders share. Imports neither the database nor any storage client.

Example:
    >>> sink = encode(io.BytesIO(), 3, {"w": np.zeros(2)}, {"epoch": 3})
    >>> sink.size > 0
    True
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import uuid
import zipfile
from collections.abc import Mapping
from typing import BinaryIO

import numpy as np

from tracker.errors import CheckpointError
from tracker.faults import label_of, pause_point
from tracker.records import FileInfo

HEADER_KEY = "__tracker__"
#: The file that marks a folder as one run's own: its uid, then the database that holds it.
MARKER = ".tracker-run"
FILE_NAME = re.compile(r"epoch-\d{6,}-[0-9a-f]{12}\.npz")
TEMP_NAME = re.compile(r"\.epoch-\d{6,}-[0-9a-f]{12}\.npz\.tmp")


class HashingSink:
    """Write-only, unseekable view of a file that hashes and counts what passes through.

    Being unseekable makes zipfile stream the archive front to back, so the hash
    covers exactly the bytes written without reading them back.
    """

    def __init__(self, raw: BinaryIO, epoch: int | str) -> None:
        self._raw = raw
        self._epoch = epoch
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        # One chunk at a time, while it is still in the CPU's cache: zipfile's CRC has just
        # read it, the file write copies it, the hash reads it. All three release the GIL.
        self._raw.write(data)
        self.sha256.update(data)
        n = memoryview(data).nbytes
        self.size += n
        if self.size > 0:
            pause_point("during-write", self._epoch)
        return n

    def flush(self) -> None:
        self._raw.flush()


#: Bytes of an array handed to the archive at once: small enough to stay in a core's cache
#: between the CRC, the write and the hash, large enough that the Python around them costs nothing.
CHUNK = 1 << 20


def encode(raw: BinaryIO, epoch: int, arrays: Mapping[str, np.ndarray], header: Mapping[str, object]) -> HashingSink:
    """Stream the checkpoint of ``epoch`` into ``raw``; the returned sink holds its size and sha256."""
    payload = dict(arrays)
    payload[HEADER_KEY] = np.frombuffer(json.dumps(dict(header)).encode(), dtype=np.uint8)
    sink = HashingSink(raw, label_of(epoch, header))
    # The .npz layout np.savez writes, streamed so the hash sees every byte once.
    with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:
        for key, value in payload.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                write_npy(member, np.asanyarray(value))
    return sink


def write_npy(out: BinaryIO, array: np.ndarray) -> None:
    """Write ``array`` in the ``.npy`` format, the same bytes as ``np.save``, without copying its data.

    ``np.lib.format.write_array`` copies a non-file's data twice, 16 MiB at a time, while
    holding the GIL; here a C-contiguous array's memory is handed over in `CHUNK` views.
    """
    header = io.BytesIO()
    try:
        if array.dtype.hasobject or not array.flags.c_contiguous:
            raise ValueError("not a flat block of memory")
        np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
        flat = np.asarray(array).reshape(-1).view(np.uint8)
    except ValueError:  # a Fortran-ordered or strided array, a header over 64 KiB: numpy's own way
        np.lib.format.write_array(out, array, allow_pickle=False)
        return
    out.write(header.getvalue())
    for start in range(0, flat.size, CHUNK):
        out.write(flat[start : start + CHUNK])


def new_name(epoch: int) -> str:
    """A fresh file name for ``epoch``'s checkpoint: never reused, so no write can clobber a committed file."""
    return f"epoch-{epoch:06d}-{uuid.uuid4().hex[:12]}.npz"


def decode(data: bytes, path: str) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and the header of a checkpoint's bytes (already verified)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        header = json.loads(arrays.pop(HEADER_KEY).tobytes())
    except (ValueError, KeyError, OSError) as e:
        raise CheckpointError(f"checkpoint file {path} verifies but cannot be parsed: {e}") from e
    return arrays, header


def check(info: FileInfo, size: int, sha256: str) -> None:
    """Raise `CheckpointError` unless ``size`` and ``sha256`` are what the database recorded for the file."""
    if size != info.size:
        raise CheckpointError(f"checkpoint file {info.path} has {size} bytes, the database recorded {info.size}")
    if sha256 != info.sha256:
        raise CheckpointError(f"checkpoint file {info.path} has sha256 {sha256[:12]}…, the database recorded {info.sha256[:12]}…")


def reclaimable(marker: str, names: list[str], referenced: set[str]) -> bool:
    """Whether an empty ownership marker may be written again: every checkpoint beside it is the run's.

    A power loss while the marker was first written can leave it empty; the run's own
    files prove the folder is the run's. Anything else is refused rather than guessed.
    """
    foreign = sorted(set(names) - {p.rsplit("/", 1)[-1] for p in referenced})
    if foreign:
        raise CheckpointError(
            f"The ownership marker {marker} is empty (a power loss while it was written?), and its folder holds "
            f"checkpoint files that this run never recorded ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}). "
            "tracker leaves them alone: if they are not another run's, delete them or the folder; else pass another checkpoint_dir=."
        )
    return True


def refuse_foreign(location: str, recorded: list[str], uid: str) -> None:
    """Raise unless the ownership marker's lines ``recorded`` name run ``uid``."""
    if not recorded or recorded[0] != uid:
        other = recorded[1] if len(recorded) > 1 else "an unknown database"
        raise CheckpointError(
            f"Checkpoint folder {location} belongs to another run of the same name (recorded in {other}). "
            "tracker leaves its files alone: pass a different checkpoint_dir= or run name."
        )
