"""When a run writes a checkpoint: at every epoch end (the default), every N batches, or every T seconds.

Framework-free: an adapter asks at each batch boundary and epoch end, and says when it saved.

Example:
    >>> s = CheckpointSchedule(every_steps=100)
    >>> s.start(step=0)
    >>> s.due_at_batch(99), s.due_at_batch(100)
    (False, True)
    >>> s.due_at_epoch_end(step=130)  # with every_steps alone, every epoch end still checkpoints
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CheckpointSchedule:
    """Decides, from the global step and the clock, whether a checkpoint is due.

    ``every_steps`` counts the run's global step, so checkpoints fall on multiples of it
    (100, 200, ...) and stay there across a resume. ``every_seconds`` counts from the previous
    checkpoint; with it, an epoch end checkpoints only once that much time has passed, and commits
    its metrics alone otherwise.
    """

    def __init__(
        self, *, every_steps: int | None = None, every_seconds: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self._clock = clock
        self._last_step = 0
        self._last_time = clock()

    @property
    def inside_epochs(self) -> bool:
        """Whether checkpoints may fall inside an epoch, so that the adapter must watch batch boundaries."""
        return self.every_steps is not None or self.every_seconds is not None

    def start(self, step: int) -> None:
        """Training begins (or resumes) at global ``step``: count from here."""
        self.saved(step)

    def saved(self, step: int | None) -> None:
        """A checkpoint was just taken, at global ``step`` when known."""
        if step is not None:
            self._last_step = step
        self._last_time = self._clock()

    def due_at_batch(self, step: int) -> bool:
        """Whether to checkpoint at the batch boundary reached at global ``step``."""
        if self.every_steps is not None and step // self.every_steps > self._last_step // self.every_steps:
            return True
        return self.every_seconds is not None and self._clock() - self._last_time >= self.every_seconds

    def due_at_epoch_end(self, step: int) -> bool:
        """Whether to checkpoint at this epoch end, reached at global ``step``; if not, the epoch's
        metrics are committed without a file."""
        return self.every_seconds is None or self.due_at_batch(step)
