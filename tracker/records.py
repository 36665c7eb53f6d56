"""The records tracker's layers hand each other, and the statuses of runs and attempts.

A leaf module: it imports nothing of tracker's but `tracker.process` and `tracker.settings` (leaves themselves), so
the file layer can use `FileInfo` without loading the database layer.

Example:
    >>> FileInfo("ckpt/cnn/epoch-000003-0123456789ab.npz", 1024, "ab" * 32).size
    1024
    >>> Status.CRASHED == "crashed"
    True
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from tracker.process import ProcessInfo, is_running
from tracker.settings import lease_seconds


def lease() -> timedelta:
    """How stale a writer's heartbeat may get before the writer counts as dead (``$TRACKER_LEASE_SECONDS``)."""
    return timedelta(seconds=lease_seconds())


def heartbeat_interval() -> timedelta:
    """How often a live writer refreshes its heartbeat: eight beats per lease, so a few slow ones do not lose it."""
    return lease() / 8


def now() -> datetime:
    return datetime.now(timezone.utc)


class Status(str, enum.Enum):
    """How a run or an attempt stands. Stored as its value; compares equal to it."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    #: Its process died without saying: a lapsed lease, or a process that is gone.
    CRASHED = "crashed"
    #: Another process took the run over (``--force``) while this attempt's process lived.
    TAKEN_OVER = "taken-over"
    #: A run made by ``tracker import`` from another tool's history: it has no checkpoint.
    IMPORTED = "imported"
    #: ``tracker rm`` began deleting the run; ``tracker gc`` finishes it.
    DELETING = "deleting"
    #: Asked to stop by a signal (SIGTERM from a scheduler), it saved a checkpoint and stopped.
    PREEMPTED = "preempted"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class FileInfo:
    """A checkpoint file as the database records it."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class EpochRow:
    """A committed checkpoint (or epoch): at the end of ``epoch``, or inside it after ``batch`` batches.

    Epoch ends and step checkpoints come in one list, newest `position` first, so that a resume
    takes whichever is newer.
    """

    id: int
    epoch: int
    superseded: bool
    checkpoint: FileInfo | None
    #: For a step checkpoint, the batches of ``epoch`` trained before it; None at an epoch end.
    batch: int | None = None
    #: For a step checkpoint, the global step (batches trained in the run).
    step: int | None = None

    @property
    def position(self) -> Position:
        """Where training continues from this row."""
        return Position(self.epoch + 1, 0) if self.batch is None else Position(self.epoch, self.batch)

    def describe(self) -> str:
        """``epoch 3``, or ``epoch 3, batch 120`` for a step checkpoint."""
        return f"epoch {self.epoch}" if self.batch is None else f"epoch {self.epoch}, batch {self.batch}"


@dataclass(frozen=True, order=True)
class Position:
    """A point of training: ``batch`` batches into ``epoch`` (0 is its start). Ordered as training goes."""

    epoch: int
    batch: int = 0


@dataclass(frozen=True)
class StepValues:
    """The metrics Keras reports ``batch`` batches into ``epoch``, at global ``step``: one point of the curve by step."""

    epoch: int
    batch: int
    step: int
    values: dict[str, float]


@dataclass(frozen=True)
class Retention:
    """Which checkpoints a run keeps: the ``keep_last`` newest live ones, and the best epoch's if ``keep_best``;
    of step checkpoints (inside epochs), the ``keep_last_steps`` newest live ones. None keeps all."""

    keep_last: int | None
    keep_best: bool
    keep_last_steps: int | None = 2


@dataclass(frozen=True)
class SpoolMark:
    """How far a spooled writer's commits had reached the server when it last heard from the writer.

    ``seq`` is the newest of the spool's commits the server holds: a replay at or below it is skipped, so that
    a commit replicated just before a crash is not applied twice.
    """

    #: The spool file, on the attempt's host.
    path: str
    seq: int
    #: Commits still waiting in the spool then, and the newest point they reach (``epoch 7``), if any.
    pending: int = 0
    newest: str | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class Replicated:
    """The mark a commit replayed from a spool leaves on its attempt, in the commit's own transaction: its
    sequence number ``seq`` in the spool file ``spool``, and what still waits there behind it."""

    spool: str
    seq: int
    pending: int
    newest: str | None

    def values(self, at: datetime) -> dict[str, object]:
        """The attempt's columns to set."""
        return {"spool": self.spool, "replicated_seq": self.seq, "spool_pending": self.pending,
                "spool_newest": self.newest, "spooled_at": at}


@dataclass(frozen=True)
class AttemptRow:
    """One process's go at a run: how it was launched, and how it ended."""

    id: int
    status: Status
    started_at: datetime
    ended_at: datetime | None
    heartbeat_at: datetime
    initial_epoch: int
    process: ProcessInfo
    error: str | None
    #: For a writer whose commits went through a local spool (team mode): how far they had reached the server.
    spool: SpoolMark | None = None

    def alive(self, at: datetime | None = None) -> bool:
        """Whether the process of this attempt still holds its lease."""
        if self.status != Status.RUNNING or (at or now()) - self.heartbeat_at > lease():
            return False
        return is_running(self.process.host, self.process.pid, self.process.start)


@dataclass(frozen=True)
class RunRow:
    """A run as the database records it, with its summary (newest and best epoch)."""

    id: int
    name: str
    #: Unique across databases: marks the run's checkpoint folder as its own.
    uid: str
    status: Status
    created_at: datetime
    updated_at: datetime
    config: dict
    monitor: str | None
    mode: str | None
    target_epochs: int | None
    checkpoint_dir: str
    last_epoch: int | None
    best_epoch: int | None
    best_value: float | None
    writer_attempt_id: int | None


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run continues from: its epoch, its arrays and its header.

    At an epoch end ``batch`` is None; a step checkpoint was taken ``batch`` batches into ``epoch``.
    """

    epoch: int
    arrays: dict[str, Any]
    header: dict[str, Any]
    batch: int | None = None

    @property
    def position(self) -> Position:
        """Where training continues: the next epoch's start, or the next batch of a step checkpoint's epoch."""
        return Position(self.epoch + 1, 0) if self.batch is None else Position(self.epoch, self.batch)

    @property
    def stopped(self) -> bool:
        """Whether training stopped itself at this epoch (early stopping): nothing is left to train."""
        # Checkpoints of tracker 0.1 said it under Keras's name for it.
        return bool(self.header.get(STOPPED_KEY, self.header.get("stop_training")))


#: The checkpoint header key that says training stopped itself at that epoch.
STOPPED_KEY = "stopped"


class TrialState(str, enum.Enum):
    """Where a trial of a sweep stands, as the sweep records it; while ``pending``, its run says more."""

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class SweepRow:
    """A hyperparameter search as the database records it: ``kind`` is ``grid``, ``random``, ``keras-tuner`` or ``optuna``."""

    id: int
    name: str
    kind: str
    #: What it searches, as JSON (e.g. ``{"grid": [["units", [4, 8]]]}``).
    spec: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class TrialRow:
    """One trial of a sweep, with its run's summary once the run exists."""

    sweep: str
    number: int
    run_name: str
    params: dict[str, Any]
    state: TrialState
    #: What the objective returned, if it returned a number.
    value: float | None
    error: str | None
    #: How many times its objective raised.
    failures: int
    updated_at: datetime
    #: The trial's run and its newest attempt, once the run exists.
    run: RunRow | None = None
    attempt: AttemptRow | None = None
