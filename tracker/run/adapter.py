"""What a framework adapter and a run see of each other: `Integration` (the adapter, to the run) and
`TrainingRun` (the run, to the adapter).

These two protocols are the whole contract between the framework-free core and an adapter such as
`tracker.keras`: the adapter annotates with `TrainingRun` and never needs `tracker.run.Run` itself.

Example:
    ```python
    class MyIntegration:
        versions = ("myframework",)

        def environment(self) -> dict[str, str]:
            return {}

        def attach(self, run: TrainingRun) -> Callable[[], None]:
            return myframework.on_train(MyCallback(run))  # the undo

        def callback(self, run: TrainingRun) -> object:
            return MyCallback(run)
    ```
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from tracker.records import ResumePoint, StepValues
from tracker.run.schedule import CheckpointSchedule


class Integration(Protocol):
    """What a framework adapter gives a `Run`: a hook into its training call, and its callback."""

    #: Distributions whose versions each attempt records, besides tracker's own.
    versions: tuple[str, ...]

    def environment(self) -> dict[str, str]:
        """What else each attempt records beside the versions, such as the framework's backend."""

    def attach(self, run: TrainingRun) -> Callable[[], None]:
        """Make the framework's next training call in this thread record into ``run``; return the undo."""

    def callback(self, run: TrainingRun) -> object:
        """The framework's callback object that records into ``run``, for explicit use."""


@runtime_checkable
class TrainingRun(Protocol):
    """The members of a started `tracker.run.Run` that an adapter uses while a training call runs.

    The adapter hands each epoch (and, inside epochs, each due checkpoint and logged step) to the run,
    and restores the run's resume point once, at the first epoch.
    """

    @property
    def name(self) -> str:
        """The run's name, for messages."""

    @property
    def is_writer(self) -> bool:
        """False on a non-chief worker of a multi-worker cluster: it restores like the chief but records nothing."""

    @property
    def force(self) -> bool:
        """Whether the run was opened with ``force=True`` or ``TRACKER_FORCE=1``: the adapter may then accept
        a resume it would refuse (the Keras adapter: one under another backend)."""

    @property
    def initial_epoch(self) -> int:
        """The first epoch the training call must run: one past the newest verified epoch, or a step checkpoint's epoch."""

    @property
    def resume_point(self) -> ResumePoint | None:
        """The checkpoint to restore, until `take_resume_point` hands it over; None for a fresh run."""

    @property
    def stopped_early(self) -> bool:
        """True when training stopped itself (early stopping) at the resume point: nothing is left to train."""

    @property
    def preempt_requested(self) -> str | None:
        """The name of the stop signal that arrived (``"SIGTERM"``); then save at the next batch boundary and
        raise `tracker.errors.Preempted`. None until one arrives."""

    @property
    def schedule(self) -> CheckpointSchedule:
        """When a checkpoint is due: ask it at each batch boundary and epoch end, and tell it when one was saved."""

    @property
    def log_every_steps(self) -> int | None:
        """Hand the running batch metrics to `log_step` every this many batches; None: epochs only."""

    def fit_started(self) -> None:
        """Note that a training call began inside the block, even one with nothing left to train."""

    def on_preempt(self, stop: Callable[[], None] | None) -> None:
        """While training runs, ``stop()`` is what a stop signal calls to end the loop at the next batch
        boundary; None once training ends."""

    def take_resume_point(self) -> ResumePoint | None:
        """Hand over the checkpoint to restore, once; later calls get None."""

    def resolve_monitor(self, default: str, direction: Callable[[str], str | None]) -> None:
        """Settle the metric that defines the best epoch before the first epoch is handed over: ``default`` when
        none was named or recorded; ``direction(name)`` says ``"min"`` or ``"max"``, or None when it cannot tell."""

    def set_target_epochs(self, epochs: int) -> None:
        """Record how many epochs in all the training call asked for, once it starts its first epoch."""

    def submit_epoch(
        self, epoch: int, logs: Mapping[str, object], arrays: Mapping[str, np.ndarray] | None, header: Mapping[str, object] | None,
        *, stopped: bool = False,
    ) -> None:
        """Hand ``epoch``'s metrics, and its state as a snapshot unless ``arrays`` is None, to the background writer.
        ``stopped``: training stopped itself at this epoch."""

    def submit_step(self, at: StepValues, arrays: Mapping[str, np.ndarray], header: Mapping[str, object]) -> None:
        """Hand a checkpoint taken ``at.batch`` batches into ``at.epoch`` to the background writer."""

    def log_step(self, at: StepValues) -> None:
        """Record the running batch metrics at one global step (buffered, committed in groups)."""

    def flush(self) -> None:
        """Wait until everything handed over is committed; raise if something could not be."""
