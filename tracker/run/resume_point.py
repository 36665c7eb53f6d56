"""Where a run resumes: its newest committed checkpoint whose file verifies, and what is said about newer ones.

The search itself is `tracker.checkpoint.newest_verified`; this adds the run's rules around it: a run
whose files are all gone from a folder new to it was moved, and is refused rather than quietly started
over; a fall back past checkpoints that do not verify is announced.

Example:
    ```python
    found = search("cnn", store.checkpoints(run.id), folder, new_folder=False)
    warn_fallback("cnn", found)
    ```
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tracker.checkpoint import Folder, Verified, newest_verified
from tracker.errors import ResumeError
from tracker.records import EpochRow
from tracker.warn import warn_user


def search(
    run_name: str, rows: Iterable[EpochRow], folder: Folder, storage_options: Mapping[str, Any] | None = None, *, new_folder: bool,
) -> Verified:
    """The newest of the committed checkpoint ``rows`` that verifies, and the newer ones that fail.

    Raises:
        ResumeError: No file is where it was recorded and ``new_folder`` (the folder holds no marker of this run):
            the checkpoint folder was moved, and starting over would supersede every epoch.
    """
    found = newest_verified(rows, folder, storage_options)
    missing = [bad.checkpoint.path for bad, e in found.failures if isinstance(e.__cause__, FileNotFoundError)]
    if found.row is None and found.failures and len(missing) == len(found.failures) and new_folder:
        # Every file is gone and the folder is new to the run: it was moved or deleted, not corrupted.
        # Starting over here would quietly supersede every epoch, so say where the files were instead.
        raise ResumeError(
            f"Run {run_name!r} has committed checkpoints, but none is at its recorded path (newest: {missing[0]}) "
            f"or in {folder}, which holds no "
            "checkpoint of this run. If you moved the checkpoint folder, pass checkpoint_dir= (or TRACKER_CHECKPOINT_DIR) "
            "pointing at the folder that now holds it; to train this run from scratch, give it a new name."
        )
    return found


def warn_fallback(run_name: str, found: Verified) -> None:
    """Warn when newer checkpoints than the resume point did not verify: what was trained after it is superseded."""
    if not found.failures:
        return
    reason = "; ".join(found.problems())
    if found.row is None:
        msg = f"Run {run_name!r}: no checkpoint verifies ({reason}). Starting over from epoch 0; the old epochs are kept as superseded."
    else:
        msg = (f"Run {run_name!r}: falling back to {found.row.describe()} because newer checkpoints "
               f"do not verify ({reason}). What was trained after it is kept as superseded.")
    warn_user(msg)
