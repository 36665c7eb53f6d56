"""A tracked run: the consistency protocol between checkpoint files and the database.

The core of tracker: it knows no ML framework. A framework's adapter (`tracker.keras`,
wired in by `tracker.track`) captures and restores the training state as named
arrays, hands each epoch to `Run.submit_epoch`, and says which metric direction is
better; the run only sees an `Integration`.

The protocol, per checkpoint (each epoch end by default; also inside epochs with
``checkpoint_every_steps``/``checkpoint_every_seconds``, and on SIGTERM):
  1. write the state to a new file durably (`tracker.checkpoint.Folder.write`);
  2. commit the metrics and the file's path, size and sha256 in one transaction;
  3. only then delete the files of checkpoints that retention no longer keeps
     (that same transaction marked their rows deleted).
A crash anywhere leaves the newest committed checkpoint pointing at a complete file.

Under multi-worker training (``TF_CONFIG``), only the chief writes; every other
worker reads the same resume point and records nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from tracker import checkpoint, settings
from tracker.checkpoint import newest_verified
from tracker.errors import Preempted, ResumeError, TrackerError
from tracker.faults import label, pause_point
from tracker.process import this_process
from tracker.records import (
    HEARTBEAT_INTERVAL,
    STOPPED_KEY,
    Position,
    ResumePoint,
    Retention,
    RunRow,
    Status,
    StepValues,
)
from tracker.run.metric_values import MetricFilter
from tracker.run.schedule import CheckpointSchedule
from tracker.run.writer import BackgroundWriter
from tracker.store import Store, open_store
from tracker.store import db as dbmod
from tracker.warn import warn_user

log = logging.getLogger(__name__)


#: Per-step metrics are committed in groups, at most this often (and with each checkpoint), not one transaction per step.
STEP_FLUSH_SECONDS = 1.0


class Integration(Protocol):
    """What a framework adapter gives a `Run`: a hook into its training call, and its callback."""

    #: Distributions whose versions each attempt records, besides tracker's own.
    versions: tuple[str, ...]

    def environment(self) -> dict[str, str]:
        """What else each attempt records beside the versions, such as the framework's backend."""

    def attach(self, run: Run) -> Callable[[], None]:
        """Make the framework's next training call in this thread record into ``run``; return the undo."""

    def callback(self, run: Run) -> object:
        """The framework's callback object that records into ``run``, for explicit use."""


class Run:
    """One tracked training run. Create it with `tracker.track`, which wires it to Keras.

    Used directly, without an integration, it is the protocol alone: `start`, then
    `commit_epoch` (or `submit_epoch`) for each epoch, then `finish`.

    Example:
        ```python
        run = Run("sim", monitor="loss")
        run.start()
        for epoch in range(run.initial_epoch, 10):
            run.commit_epoch(epoch, {"loss": 1.0 / (epoch + 1)}, {"w": weights}, {})
        run.finish("completed")
        ```
    """

    def __init__(
        self,
        name: str,
        *,
        db: str | os.PathLike[str] | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        config: Mapping[str, Any] | None = None,
        monitor: str | None = None,
        mode: str = "auto",
        keep_last: int | None = 3,
        keep_best: bool = True,
        force: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        integration: Integration | None = None,
        checkpoint_every_steps: int | None = None,
        checkpoint_every_seconds: float | None = None,
        keep_last_steps: int | None = 2,
        log_every_steps: int | None = None,
        save_on_signal: int | Sequence[int] | None = signal.SIGTERM,
    ) -> None:
        self.name = settings.validate_run_name(name)
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"Invalid value for argument `mode`. Received: mode={mode!r}. Expected 'auto', 'min' or 'max'.")
        for arg, value in (("keep_last", keep_last), ("keep_last_steps", keep_last_steps)):
            _check_count(arg, value, "or None to keep every checkpoint")
        _check_count("checkpoint_every_steps", checkpoint_every_steps, "or None for no checkpoint inside epochs")
        _check_count("log_every_steps", log_every_steps, "or None to log epochs only")
        if checkpoint_every_seconds is not None and (
            isinstance(checkpoint_every_seconds, bool) or not isinstance(checkpoint_every_seconds, (int, float)) or not checkpoint_every_seconds > 0
        ):
            raise ValueError(
                f"Invalid value for argument `checkpoint_every_seconds`. Received: checkpoint_every_seconds={checkpoint_every_seconds!r}. "
                "Expected a number of seconds > 0, or None."
            )
        #: The signals that make the run save a checkpoint at the next batch boundary and stop.
        self.stop_signals = _signals(save_on_signal)
        self._config = _json_config(config)
        self._db = db
        self._storage_options = dict(storage_options or {})
        self.folder = checkpoint.open_folder(checkpoint_dir, self.name, self._storage_options)
        #: False on a non-chief worker of a multi-worker cluster: it resumes like the chief but writes nothing.
        self.is_writer = settings.is_chief()
        self._integration = integration
        self._monitor_given = monitor
        #: The metric that defines the best epoch, and whether "min" or "max" of it is best; None until known.
        self._monitor: str | None = monitor
        self._mode: str | None = None if mode == "auto" else mode
        #: Whether the integration could not say which direction of the monitor is better.
        self._mode_guessed = False
        self._retention = Retention(keep_last, keep_best, keep_last_steps)
        self.schedule = CheckpointSchedule(every_steps=checkpoint_every_steps, every_seconds=checkpoint_every_seconds)
        #: Record the running metrics every this many batches (`log_step`); None: epochs only.
        self.log_every_steps = log_every_steps
        self._step_rows: list[StepValues] = []
        self._step_flushed_at = time.monotonic()
        #: Set once a stop signal arrived: the adapter saves at the next batch boundary, then raises `Preempted`.
        self.preempt_requested: str | None = None
        self._on_preempt: Callable[[], None] | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._force = force or os.environ.get(settings.ENV_FORCE) == "1"
        self._store: Store | None = None
        self._run: RunRow | None = None
        self._attempt_id: int | None = None
        self._first_commit = True
        self._stop_heartbeat = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._unpatch: Callable[[], None] | None = None
        self._callback: object | None = None
        self._writer: BackgroundWriter | None = None
        self._clean = MetricFilter(self.name)
        #: The run as it was before this attempt started; None for a new run.
        self._before: RunRow | None = None
        self._claimed = False
        #: Whether this start found no ownership marker: the folder is new to the run.
        self._new_folder = False
        #: Whether a fit call began inside the block, and whether it began training epochs.
        self._fit_seen = False
        self._training_began = False
        #: The first epoch ``fit`` must run: one past the newest committed epoch that verifies,
        #: or the epoch of a newer step checkpoint.
        self.initial_epoch = 0
        #: How many batches of ``initial_epoch`` the resume point already trained (a step checkpoint's).
        self.initial_batch = 0
        #: The checkpoint to resume from, until the adapter restores it (`take_resume_point`).
        self.resume_point: ResumePoint | None = None
        #: True when training stopped itself (e.g. EarlyStopping) at the resume point: nothing is left to train.
        self.stopped_early = False

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> Run:
        self.start()
        try:
            if self._integration is not None:
                self._unpatch = self._integration.attach(self)
            self._catch_stop_signals()
        except BaseException as e:
            self.finish(Status.FAILED, error=f"{type(e).__name__}: {e}")
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._unpatch is not None:
            self._unpatch()
        if exc_type is None and not self._fit_seen and self.is_writer:
            warn_user(
                f"no fit call ran inside tracker.track({self.name!r}) in the thread that opened it, so nothing was "
                "recorded for this block. Call model.fit inside the with block, in the same thread."
            )
            self.finish(Status.COMPLETED, discard=True)
        elif exc_type is None:
            self.finish(Status.COMPLETED)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish(Status.INTERRUPTED)
        elif issubclass(exc_type, Preempted):
            self.finish(Status.PREEMPTED, error=str(exc))
        else:
            self.finish(Status.FAILED, error=f"{exc_type.__name__}: {exc}")

    def start(self) -> None:
        """Open the database, claim the run, and find the resume point: all before any training."""
        if not self.is_writer:
            self._start_reader()
            return
        dbmod.locate(settings.resolve_db(self._db))  # a database that cannot work (in memory, say) fails before any folder is made
        made_folder = self.folder.probe_writable()
        self._store = open_store(self._db)
        try:
            self._before = self._store.find_run(self.name)
            self._run, self._attempt_id = self._store.start_attempt(
                self.name, config=self._config, checkpoint_dir=self.folder.location, force=self._force,
                process=this_process(self._integration.versions, self._integration.environment()) if self._integration else this_process(),
            )
        except BaseException:
            self._store.close()
            self._store = None
            if made_folder:
                self.folder.release()  # refused before anything was written: leave no empty folder behind
            raise
        try:
            referenced = self._store.referenced_paths(self._run.id)
            self._new_folder = self.folder.claim(self._run.uid, self._store.display, referenced)
            self._claimed = True
            if self._monitor_given is None and self._run.monitor:
                self._monitor, self._mode = self._run.monitor, self._run.mode or self._mode
            self.folder.sweep(referenced)
            self._find_resume_point()
            self._store.set_initial_epoch(self._attempt_id, self.initial_epoch)
        except BaseException as e:
            self.finish(Status.FAILED, error=f"{type(e).__name__}: {e}")
            if self._new_folder or made_folder:
                self.folder.release()  # nothing was written there: leave no empty folder behind
            raise
        self._heartbeat = threading.Thread(target=self._beat, name=f"tracker-heartbeat-{self.name}", daemon=True)
        self._heartbeat.start()

    def _start_reader(self) -> None:
        # The chief may be creating the run at this moment; until it has committed an
        # epoch there is nothing to resume, and no epoch commits without every worker.
        database = dbmod.locate(settings.resolve_db(self._db))
        if database.path is not None and not database.path.exists():
            return
        self._store = open_store(self._db, create=False)
        try:
            self._run = self._store.find_run(self.name)
            if self._run is not None:
                self._find_resume_point()
        except BaseException:
            self.finish(Status.FAILED)
            raise

    def _find_resume_point(self) -> None:
        store, run = self._require()
        found = newest_verified(store.checkpoints(run.id), self.folder, self._storage_options)
        row, failures = found.row, found.failures
        if row is not None:
            self.resume_point = ResumePoint(row.epoch, found.arrays, found.header, batch=row.batch)
            self.initial_epoch, self.initial_batch = row.position.epoch, row.position.batch
            self.stopped_early = self.resume_point.stopped
        missing = [bad.checkpoint.path for bad, e in failures if isinstance(e.__cause__, FileNotFoundError)]
        if row is None and failures and len(missing) == len(failures) and self._new_folder:
            # Every file is gone and the folder is new to the run: it was moved or deleted, not corrupted.
            # Starting over here would quietly supersede every epoch, so say where the files were instead.
            raise ResumeError(
                f"Run {self.name!r} has committed checkpoints, but none is at its recorded path (newest: {missing[0]}) "
                f"or in {self.folder}, which holds no "
                "checkpoint of this run. If you moved the checkpoint folder, pass checkpoint_dir= (or TRACKER_CHECKPOINT_DIR) "
                "pointing at the folder that now holds it; to train this run from scratch, give it a new name."
            )
        if failures and self.is_writer:
            reason = "; ".join(found.problems())
            if self.resume_point is None:
                msg = f"Run {self.name!r}: no checkpoint verifies ({reason}). Starting over from epoch 0; the old epochs are kept as superseded."
            else:
                msg = (f"Run {self.name!r}: falling back to {row.describe()} because newer checkpoints "
                       f"do not verify ({reason}). What was trained after it is kept as superseded.")
            warn_user(msg)
        if self.is_writer and self._before is not None:
            # Epochs after the resume point, and steps after it (logged, or checkpoints that did not verify).
            store.supersede(run, self._attempt_id, Position(self.initial_epoch, self.initial_batch))
            self._run = store.get_run(self.name)
        if self.initial_epoch or self.initial_batch:
            log.info("Run %r resumes at epoch %d, batch %d, from %s", self.name, self.initial_epoch, self.initial_batch, self.folder)

    def _beat(self) -> None:
        while not self._stop_heartbeat.wait(HEARTBEAT_INTERVAL.total_seconds()):
            try:
                self._require()[0].heartbeat(self._attempt_id)
            except TrackerError as e:
                log.warning("Run %r: heartbeat failed: %s", self.name, e)

    def finish(self, status: Status, *, error: str | None = None, discard: bool = False) -> None:
        """Record how this attempt ended and release the run.

        An attempt that trained nothing is discarded instead of recorded when ``discard`` is
        set, or when it failed before training a run that has no other attempt: a failed
        start leaves no empty run behind.
        """
        self._release_stop_signals()
        if self._store is None:
            return
        if not self.is_writer:
            self._store.close()
            self._store = None
            return
        interrupted = False
        try:
            if self._step_rows:
                try:
                    self._flush_steps()
                except TrackerError as e:  # an earlier commit failed; the attempt's end must still be recorded
                    log.warning("Run %r: the last per-step metrics were not committed: %s", self.name, e)
            if self._writer is not None:
                self._writer.close()  # what was handed over is committed before the attempt ends
        except KeyboardInterrupt:
            # A second Ctrl-C: stop waiting for the pending epoch, but still say how the attempt ended.
            status, interrupted = Status.INTERRUPTED, True
        self._writer = None
        self._stop_heartbeat.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        try:
            with _sigint_deferred():
                self._record_end(status, error, discard or (status == Status.FAILED and not self._training_began))
        finally:
            self._store.close()
            self._store = None
        if interrupted:
            raise KeyboardInterrupt

    def _record_end(self, status: Status, error: str | None, discard: bool) -> None:
        store = self._store
        if self._run is None or self._attempt_id is None:
            return
        if discard:
            removed = store.discard_attempt(self._run.id, self._attempt_id, only_new_run=status == Status.FAILED)
            if removed == "run" and self._claimed:
                self.folder.release()
            if removed != "kept":
                return
        store.finish_attempt(self._run.id, self._attempt_id, status, error=error)

    def _require(self) -> tuple[Store, RunRow]:
        if self._store is None or (self._run is None and self.is_writer):
            raise TrackerError(f"Run {self.name!r} is not started: use it as `with tracker.track(...) as run:`.")
        return self._store, self._run

    # -- what fit needs ----------------------------------------------------

    @property
    def force(self) -> bool:
        """Whether this run was opened with ``force=True`` or ``TRACKER_FORCE=1``: an adapter may then
        also accept a resume that it would refuse (the Keras adapter: another backend)."""
        return self._force

    @property
    def callback(self) -> Any:
        """The framework's callback that records this run, for ``callbacks=[run.callback]``."""
        if self._integration is None:
            raise TrackerError(f"Run {self.name!r} has no framework integration: create it with tracker.track(...).")
        if self._callback is None:
            self._callback = self._integration.callback(self)
        return self._callback

    def resolve_monitor(self, default: str, direction: Callable[[str], str | None]) -> None:
        """Settle the metric that defines the best epoch, before the first epoch is handed over.

        The adapter knows its framework's conventions: ``default`` is the monitor when the user
        named none (and the run recorded none), and ``direction(name)`` says whether ``"min"`` or
        ``"max"`` of a metric is better, or None when the framework cannot tell.
        """
        if self._monitor is None:
            self._monitor = default
        if self._mode is None:
            self._mode = direction(self._monitor)
            self._mode_guessed = self._mode is None

    def fit_started(self) -> None:
        """Note that a training call began inside the block (even one with nothing left to train)."""
        self._fit_seen = True

    def set_target_epochs(self, epochs: int) -> None:
        """Record how many epochs in all the training call asked for, once it starts its first epoch.

        Warns when a resume asks for another total than the run was started with.
        """
        self._fit_seen = self._training_began = True
        if not self.is_writer:
            return
        store, run = self._require()
        before = self._before
        extends = before is not None and before.status == Status.COMPLETED and epochs > (before.target_epochs or 0)
        if self.initial_epoch and before is not None and before.target_epochs not in (None, epochs) and not extends:
            warn_user(
                f"Run {self.name!r} was started with epochs={before.target_epochs}; this fit asks for epochs={epochs}, "
                f"so the run's target is now {epochs}. If that is not what you meant, check the arguments and "
                "environment variables that set epochs."
            )
        store.set_target_epochs(run.id, epochs)
        self._run = dataclasses.replace(run, target_epochs=epochs)

    def on_preempt(self, stop: Callable[[], None] | None) -> None:
        """While training runs, ``stop()`` is what a stop signal calls: it must make the training loop end
        at the next batch boundary (where the adapter saves, then raises `Preempted`). None when training ends."""
        self._on_preempt = stop

    def take_resume_point(self) -> ResumePoint | None:
        """Hand over the checkpoint to restore, once; later calls get None."""
        point, self.resume_point = self.resume_point, None
        return point

    def submit_epoch(
        self, epoch: int, logs: Mapping[str, object], arrays: Mapping[str, np.ndarray] | None, header: Mapping[str, object] | None,
        *, stopped: bool = False,
    ) -> None:
        """Hand ``epoch`` to the background writer and return; it is committed by `commit_epoch` on that thread.
        With ``arrays`` None (not due under ``checkpoint_every_seconds``), only its metrics are committed.

        Waits first until the previous epoch is committed, so training is never more than one
        epoch ahead of the database, and raises here if that previous epoch failed.
        ``arrays`` must be a snapshot that training will not change. ``stopped`` says that training
        stopped itself at this epoch (early stopping): a resume from it has nothing left to train.
        """
        # On the caller's thread, so that warnings name the user's line and bad names fail here.
        values = self._clean(logs)
        if not self.is_writer:
            return
        if self._first_commit:
            self._settle_monitor(values)
        full = None if arrays is None else {**header, STOPPED_KEY: stopped}
        rows, self._step_rows = self._step_rows, []
        self._hand_over(lambda: self.commit_epoch(epoch, values, arrays, full, step_rows=rows))
        self._step_flushed_at = time.monotonic()

    def submit_step(self, at: StepValues, arrays: Mapping[str, np.ndarray], header: Mapping[str, object]) -> None:
        """Hand a step checkpoint, ``at.batch`` batches into ``at.epoch``, to the background writer, like `submit_epoch`."""
        if not self.is_writer:
            return
        rows, self._step_rows = self._step_rows, []
        self._hand_over(lambda: self.commit_step(at, arrays, header, step_rows=rows))
        self._step_flushed_at = time.monotonic()

    def log_step(self, at: StepValues) -> None:
        """Record the running metrics ``at`` one global step. Buffered, and committed in groups: with the next
        checkpoint or epoch, or after `STEP_FLUSH_SECONDS`, so that fast steps do not cost a transaction each."""
        values = self._clean(at.values)
        if not self.is_writer:
            return
        self._step_rows.append(dataclasses.replace(at, values=values))
        if time.monotonic() - self._step_flushed_at >= STEP_FLUSH_SECONDS:
            self._flush_steps()

    def _flush_steps(self) -> None:
        rows, self._step_rows = self._step_rows, []
        self._step_flushed_at = time.monotonic()
        last = rows[-1]
        self._hand_over(lambda: self.commit_step(last, None, None, step_rows=rows))

    def _hand_over(self, job: Callable[[], None]) -> None:
        if self._writer is None:
            self._writer = BackgroundWriter(lambda commit: commit(), name=f"tracker-writer-{self.name}")
        self._writer.submit(job)

    def flush(self) -> None:
        """Wait until every handed-over epoch is committed; raise if one could not be."""
        if self._writer is not None:
            self._writer.flush()

    def commit_epoch(
        self, epoch: int, logs: Mapping[str, object], arrays: Mapping[str, np.ndarray] | None, header: Mapping[str, object] | None,
        *, step_rows: Sequence[StepValues] = (),
    ) -> None:
        """Make ``epoch`` durable now: the checkpoint file first, then its row and metrics in one transaction.

        With ``arrays`` None (``checkpoint_every_seconds`` between checkpoints) only the metrics are committed.
        """
        if not self.is_writer:
            return
        values = self._clean(logs)
        if self._first_commit:
            self._settle_monitor(values)
        store, run = self._require()
        info = None
        if arrays is not None:
            info = self.folder.write(epoch, arrays, {**(header or {}), "run": self.name, "epoch": epoch})
        pause_point("before-commit", epoch)
        self._run, doomed = store.commit_epoch(run, self._attempt_id, epoch, values, info, self._retention, step_rows)
        pause_point("after-commit", epoch)
        self._delete(doomed, epoch)

    def commit_step(
        self, at: StepValues, arrays: Mapping[str, np.ndarray] | None, header: Mapping[str, object] | None,
        *, step_rows: Sequence[StepValues] = (),
    ) -> None:
        """Make a step checkpoint durable now (file first, then its row), with the per-step metrics of ``step_rows``
        in the same transaction. With ``arrays`` None, only ``step_rows`` are committed."""
        if not self.is_writer:
            return
        store, run = self._require()
        info = None
        if arrays is not None:
            info = self.folder.write(
                at.epoch, arrays, {**(header or {}), "run": self.name, "epoch": at.epoch, "batch": at.batch, "step": at.step}
            )
            pause_point("before-commit", label(at.epoch, at.batch))
        self._run, doomed = store.commit_step(run, self._attempt_id, at, info, self._retention, step_rows)
        if arrays is not None:
            pause_point("after-commit", label(at.epoch, at.batch))
        self._delete(doomed, label(at.epoch, at.batch))

    def _delete(self, doomed: list[str], epoch: int | str) -> None:
        if doomed:
            # The rows were marked in the commit; a crash before these deletes leaves orphans that `sweep` removes.
            pause_point("during-retention", epoch)
            self.folder.delete(doomed)

    # -- stop signals ------------------------------------------------------

    def _catch_stop_signals(self) -> None:
        if not self.stop_signals or not self.is_writer or threading.current_thread() is not threading.main_thread():
            return
        for signum in self.stop_signals:
            self._previous_handlers[signum] = signal.signal(signum, self._stop_requested)

    def _release_stop_signals(self) -> None:
        handlers, self._previous_handlers = self._previous_handlers, {}
        for signum, previous in handlers.items():
            # None: the handler was not set from Python; the default is the best that can be put back.
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)

    def _stop_requested(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if self.preempt_requested:
            log.warning("Run %r: %s again; already saving a checkpoint before stopping.", self.name, name)
            return
        self.preempt_requested = name
        if self._on_preempt is None:
            # Not training: the last checkpoint is all there is to save.
            raise Preempted(f"Run {self.name!r} stopped by {name} outside training; its newest checkpoint is its resume point.")
        log.warning("Run %r: %s received; saving a checkpoint at the next batch boundary, then stopping.", self.name, name)
        self._on_preempt()

    def _settle_monitor(self, values: Mapping[str, float]) -> None:
        store, run = self._require()
        self._first_commit = False
        if self._monitor is None:
            return  # no monitor named, and no integration to choose one: no best epoch
        mode = self._mode or "min"  # without an integration to ask, lower is better
        if self._monitor not in values:
            warn_user(
                f"Run {self.name!r}: monitor {self._monitor!r} is not among the metrics "
                f"({', '.join(sorted(values))}); the best epoch will not be tracked."
            )
        elif self._mode_guessed:
            warn_user(
                f"Run {self.name!r}: cannot tell whether a higher or a lower {self._monitor!r} is better; "
                "taking lower as better. Pass mode='max' or mode='min' to tracker.track to say which."
            )
        if (run.monitor, run.mode) != (self._monitor, mode):
            self._run = store.set_monitor(run, self._monitor, mode)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold off Ctrl-C while the end of an attempt is recorded; raise it afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _check_count(arg: str, value: object, otherwise: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"Invalid value for argument `{arg}`. Received: {arg}={value!r}. Expected an integer >= 1, {otherwise}.")


def _signals(save_on_signal: int | Sequence[int] | None) -> tuple[int, ...]:
    if save_on_signal is None or save_on_signal is False:
        return ()
    wanted = [save_on_signal] if isinstance(save_on_signal, int) else list(save_on_signal)
    valid = set(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}
    for s in wanted:
        if isinstance(s, bool) or not isinstance(s, int) or s not in valid:
            raise ValueError(
                f"Invalid value for argument `save_on_signal`. Received: save_on_signal={save_on_signal!r}. "
                "Expected a signal such as signal.SIGTERM, a list of them, or None to not handle any."
            )
    return tuple(signal.Signals(s) for s in wanted)


def _json_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    import json

    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TypeError(f"Invalid value for argument `config`. Received: {type(config).__name__}. Expected a dict of JSON-able hyperparameters.")
    try:
        return json.loads(json.dumps(dict(config), allow_nan=True))
    except (TypeError, ValueError) as e:
        raise TypeError(f"Invalid value for argument `config`: it must be JSON-able ({e}).") from e
