"""The read-only variant of a run, for a non-chief worker of a multi-worker cluster (``TF_CONFIG``).

Every worker must start training from the same state, so each one restores the resume point the chief
restores; only the chief writes: checkpoint files, epochs, steps, the attempt and its end. A `Reader` is
a `tracker.run.Run` that finds the resume point read-only and records nothing; it never creates the
database or the run (until the chief has committed an epoch there is nothing to resume).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType

import numpy as np

from tracker import settings
from tracker.checkpoint import Verified
from tracker.records import Status, StepValues
from tracker.run.protocol import Run
from tracker.store import db as dbmod
from tracker.store import open_store


class Reader(Run):
    """A `Run` on a non-chief worker of a multi-worker cluster: it restores the resume point the chief
    restores, so that every worker trains from the same state, and writes nothing (the chief records the run).

    A `Run` becomes one when it is made and ``TF_CONFIG`` names this process a non-chief task.

    Example:
        ```python
        # TF_CONFIG={"cluster": {"worker": [...]}, "task": {"type": "worker", "index": 1}}
        with tracker.track("cnn") as run:  # a Reader: run.is_writer is False
            model.fit(x, y, epochs=10)
        ```
    """

    is_writer = False

    def _catch_stop_signals(self) -> None:
        pass  # only the chief saves on a stop signal: here a signal keeps its usual effect

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._unpatch is not None:
            self._unpatch()
        self.finish(Status.COMPLETED)  # whatever the outcome: a reader records no end

    def start(self) -> None:
        """Open the database read-only and find the resume point, if the run exists yet."""
        # The chief may be creating the run at this moment; until it has committed an
        # epoch there is nothing to resume, and no epoch commits without every worker.
        database = dbmod.locate(settings.resolve_db(self.options.db))
        if database.path is not None and not database.path.exists():
            return
        self._store = open_store(self.options.db, create=False)
        try:
            self._run = self._store.find_run(self.name)
            if self._run is not None:
                self._find_resume_point()
        except BaseException:
            self.finish(Status.FAILED)
            raise

    def _settle_resume(self, found: Verified) -> None:
        pass  # the chief says what did not verify, and supersedes

    def finish(self, status: Status, *, error: str | None = None, discard: bool = False) -> None:
        """Close the database: the chief records how the attempt ended."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def set_target_epochs(self, epochs: int) -> None:
        """Nothing to record: the chief records the target."""

    def submit_epoch(
        self, epoch: int, logs: Mapping[str, object], arrays: Mapping[str, np.ndarray] | None, header: Mapping[str, object] | None,
        *, stopped: bool = False,
    ) -> None:
        """Check the logs as the chief does (the same warnings, the same errors), and record nothing."""
        self._clean(logs)

    def submit_step(self, at: StepValues, arrays: Mapping[str, np.ndarray], header: Mapping[str, object]) -> None:
        """Nothing to record: the chief checkpoints."""

    def log_step(self, at: StepValues) -> None:
        """Check the logs as the chief does, and record nothing."""
        self._clean(at.values)

    def commit_epoch(
        self, epoch: int, logs: Mapping[str, object], arrays: Mapping[str, np.ndarray] | None, header: Mapping[str, object] | None,
        *, step_rows: Sequence[StepValues] = (),
    ) -> None:
        """Nothing to commit: the chief commits."""

    def commit_step(
        self, at: StepValues, arrays: Mapping[str, np.ndarray] | None, header: Mapping[str, object] | None,
        *, step_rows: Sequence[StepValues] = (),
    ) -> None:
        """Nothing to commit: the chief commits."""
