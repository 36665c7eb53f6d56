"""The one resume search: the newest committed checkpoint whose file verifies, and why each newer one does not.

Training (`tracker.Run` at start), ``tracker resume --check`` and ``tracker gc`` all ask it, so
they agree on where a resume continues. It takes the rows, newest first, rather than the store,
so that the file layer never imports the database layer.

Example:
    >>> found = newest_verified(store.checkpoints(run.id), run_folder(run))   # doctest: +SKIP
    >>> found.row.position, [row.epoch for row, _ in found.failures]          # doctest: +SKIP
    (Position(epoch=7, batch=0), [8])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tracker.checkpoint.folder import Folder, load
from tracker.errors import CheckpointError
from tracker.records import EpochRow


@dataclass(frozen=True)
class Verified:
    """What `newest_verified` found: the row to resume from (None if none verifies), its file's contents, and the newer failures."""

    row: EpochRow | None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    header: dict[str, Any] = field(default_factory=dict)
    #: Each newer row whose file is missing, truncated or altered, newest first, with the reason.
    failures: list[tuple[EpochRow, CheckpointError]] = field(default_factory=list)

    def problems(self) -> list[str]:
        """One line per failed row, for messages: ``"epoch 8: checkpoint file ... does not match"``."""
        return [f"{row.describe()}: {e}" for row, e in self.failures]


def newest_verified(
    rows: Iterable[EpochRow], folder: Folder, storage_options: Mapping[str, Any] | None = None,
) -> Verified:
    """The first of ``rows`` (newest first) whose checkpoint file loads and matches its recorded size and sha256.

    Args:
        rows: Committed checkpoint rows, newest first, as `tracker.store.Store.checkpoints` returns them.
        folder: The run's checkpoint folder, which finds a file that was moved with it.
        storage_options: fsspec options for a folder on object storage. Defaults to none.
    """
    failures: list[tuple[EpochRow, CheckpointError]] = []
    for row in rows:
        try:
            arrays, header = load(folder.locate(row.checkpoint), storage_options)
        except CheckpointError as e:
            failures.append((row, e))
            continue
        return Verified(row, arrays, header, failures)
    return Verified(None, failures=failures)
