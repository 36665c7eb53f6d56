"""Write an output file all at once or not at all: a temporary name in the same folder, then a rename.

A full disk, a quota or a kill halfway through never leaves a truncated CSV or an
empty image under the name the user asked for, and never damages the file that was
there before.

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

from tracker.checkpoint import fsync_path


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
