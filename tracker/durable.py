"""Durable writes: a file replaced all at once or not at all, and the fsyncs that make a rename stick.

A temporary name in the same folder, flushed and fsynced, then renamed over the target, then the
folder fsynced. A full disk, a quota or a kill halfway through never leaves a truncated CSV, an
empty image or a half-written ownership marker under the name asked for, and never damages the file
that was there before. A checkpoint file is streamed to its temporary name by `tracker.checkpoint.folder`,
which ends with `fsync_path` the same way.

Example:
    >>> with replace_atomically("curve.csv") as f:       # doctest: +SKIP
    ...     f.write(b"epoch,loss\\n0,1.0\\n")
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def replace_atomically(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` when the block ends without error.

    The bytes go to ``.<name>.<random>.tmp`` beside ``path``; they are flushed and
    fsynced, then renamed over ``path`` and the folder is fsynced. On any error the
    temporary file is removed and ``path`` is left as it was.

    Raises:
        OSError: The file cannot be written (for example ENOSPC); ``path`` is unchanged.
    """
    final = Path(path)
    temp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with temp.open("wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_path(final.parent)


def write_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old file or the whole new one."""
    with replace_atomically(path) as f:
        f.write(data)


def fsync_path(path: Path) -> None:
    """fsync a file or a folder by path (a folder's fsync makes a rename in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
