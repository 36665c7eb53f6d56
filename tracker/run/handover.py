"""The training thread's side of the background writer: jobs handed over in order, with per-step metrics in groups.

A job is handed over with the per-step metric rows logged before it, so that they commit in the same
transaction (with the next checkpoint or epoch). Rows that wait longer than `STEP_FLUSH_SECONDS` go
in a transaction of their own, so that fast steps do not cost a transaction each.

Example:
    ```python
    handover = Handover("cnn", commit_rows=lambda rows: run.commit_step(rows[-1], None, None, step_rows=rows))
    handover.log(StepValues(0, 1, 1, {"loss": 0.9}))
    handover.submit(lambda rows: run.commit_epoch(0, {"loss": 0.8}, arrays, header, step_rows=rows))
    handover.close()  # everything handed over is committed
    ```
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tracker.errors import TrackerError
from tracker.records import StepValues
from tracker.run.writer import BackgroundWriter

log = logging.getLogger(__name__)

#: Per-step metrics are committed in groups, at most this often (and with each checkpoint), not one transaction per step.
STEP_FLUSH_SECONDS = 1.0


class Handover:
    """Hands one run's commits to its `BackgroundWriter` (started at the first one), each with the step rows before it.

    ``commit_rows(rows)`` commits per-step rows alone, when they have waited `STEP_FLUSH_SECONDS`.
    """

    def __init__(self, run_name: str, *, commit_rows: Callable[[list[StepValues]], None]) -> None:
        self._run_name = run_name
        self._commit_rows = commit_rows
        self._rows: list[StepValues] = []
        self._since = time.monotonic()
        self._writer: BackgroundWriter[Callable[[], None]] | None = None

    def submit(self, job: Callable[[list[StepValues]], None]) -> None:
        """Hand over ``job(rows)``, ``rows`` being the step rows logged so far. Waits until the previous job is
        committed, and raises here if it failed."""
        rows, self._rows = self._rows, []
        self._hand_over(lambda: job(rows))
        self._since = time.monotonic()

    def log(self, row: StepValues) -> None:
        """Keep a per-step row for the next job; hand the rows over alone once they waited `STEP_FLUSH_SECONDS`."""
        self._rows.append(row)
        if time.monotonic() - self._since >= STEP_FLUSH_SECONDS:
            self._flush_rows()

    def flush(self) -> None:
        """Wait until every job handed over is committed; raise if one could not be."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Hand over the step rows still kept, then commit everything pending and stop the writer.

        A failure of an earlier job only warns here: the attempt's end must still be recorded.
        """
        try:
            if self._rows:
                try:
                    self._flush_rows()
                except TrackerError as e:  # an earlier commit failed
                    log.warning("Run %r: the last per-step metrics were not committed: %s", self._run_name, e)
            if self._writer is not None:
                self._writer.close()
        finally:
            self._writer = None

    def _flush_rows(self) -> None:
        rows, self._rows = self._rows, []
        self._since = time.monotonic()
        self._hand_over(lambda: self._commit_rows(rows))

    def _hand_over(self, job: Callable[[], None]) -> None:
        if self._writer is None:
            self._writer = BackgroundWriter(lambda commit: commit(), name=f"tracker-writer-{self._run_name}")
        self._writer.submit(job)
