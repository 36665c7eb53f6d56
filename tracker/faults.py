"""Test hook: named instants of an epoch's write at which a test can stop the process and kill it.

Set ``TRACKER_TEST_PAUSE_AT=<boundary>:<epoch>``; when the process reaches that
boundary of that epoch it prints ``TRACKER-PAUSED <boundary>:<epoch>`` to stderr and
sleeps forever, so the test's SIGKILL lands exactly there. Unset, it costs one
environment lookup per boundary. A checkpoint inside an epoch names its boundaries
``<boundary>:<epoch>.<batch>`` (`label`), e.g. ``after-commit:2.3``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping

from tracker.settings import ENV_PAUSE_AT

#: The instants inside ``tracker rm``, ``gc`` and ``rename`` (see `tracker.admin.runs` and `tracker.admin.maintenance`);
#: their epoch is always 0, e.g. ``TRACKER_TEST_PAUSE_AT=rm-after-mark:0``.
CLI_BOUNDARIES = ("rm-after-mark", "rm-after-files", "gc-after-retention", "rename-after-link", "rename-after-commit")
#: The write boundaries of one epoch, in order. On object storage, which has no rename,
#: "before-rename" is the instant after the upload and before its read-back check.
BOUNDARIES = ("during-write", "before-rename", "before-commit", "during-commit", "after-commit", "during-retention")
#: The instants of a spooled commit on its way to the server (team mode, `tracker.spool`): before its checkpoint's
#: upload from the staging folder, and after the server committed it but before the spool forgot it. Only the
#: replicator's thread stops there; training goes on spooling.
SPOOL_BOUNDARIES = ("spool-before-upload", "spool-after-replay")
#: The instants of ``python -m tracker.resume --from-epoch K``: inside its one transaction, and after it before the re-launch.
REWIND_BOUNDARIES = ("during-rewind", "after-rewind")


def label(epoch: int, batch: int | None = None) -> str:
    """How a pause point names a checkpoint: ``3`` at the end of epoch 3, ``3.40`` 40 batches into it."""
    return str(epoch) if batch is None else f"{epoch}.{batch}"


def label_of(epoch: int, header: Mapping[str, object]) -> str:
    """`label` of the checkpoint whose header is ``header``: a step checkpoint's header holds its batch."""
    batch = header.get("batch")
    return label(epoch, batch if isinstance(batch, int) else None)


def pause_point(boundary: str, epoch: int | str) -> None:
    """Stop here forever if the test asked for ``boundary`` of ``epoch`` (an epoch, or a `label`)."""
    wanted = os.environ.get(ENV_PAUSE_AT)
    if wanted and wanted == f"{boundary}:{epoch}":
        sys.stderr.write(f"TRACKER-PAUSED {wanted}\n")
        sys.stderr.flush()
        while True:
            time.sleep(60)
