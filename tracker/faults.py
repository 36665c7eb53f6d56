"""Test hook: named instants of an epoch's write at which a test can stop the process and kill it.

Set ``TRACKER_TEST_PAUSE_AT=<boundary>:<epoch>``; when the process reaches that
boundary of that epoch it prints ``TRACKER-PAUSED <boundary>:<epoch>`` to stderr and
sleeps forever, so the test's SIGKILL lands exactly there. Unset, it costs one
environment lookup per boundary.
"""

from __future__ import annotations

import os
import sys
import time

from tracker.settings import ENV_PAUSE_AT

#: The write boundaries of one epoch, in order. On object storage, which has no rename,
#: "before-rename" is the instant after the upload and before its read-back check.
BOUNDARIES = ("during-write", "before-rename", "before-commit", "during-commit", "after-commit", "during-retention")
#: The instants of ``python -m tracker.resume --from-epoch K``: inside its one transaction, and after it before the re-launch.
REWIND_BOUNDARIES = ("during-rewind", "after-rewind")


def pause_point(boundary: str, epoch: int) -> None:
    """Stop here forever if the test asked for ``boundary`` of ``epoch``."""
    wanted = os.environ.get(ENV_PAUSE_AT)
    if wanted and wanted == f"{boundary}:{epoch}":
        sys.stderr.write(f"TRACKER-PAUSED {wanted}\n")
        sys.stderr.flush()
        while True:
            time.sleep(60)
