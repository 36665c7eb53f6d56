"""A tracked run: the consistency protocol between checkpoint files and the database.

The core of tracker: it knows no ML framework. A framework's adapter (`tracker.keras`,
wired in by `tracker.track`) captures and restores the training state as named
arrays, hands each epoch to `Run.submit_epoch`, and says which metric direction is
better; the run only sees an `Integration`, and the adapter only a `TrainingRun`.

The protocol, per checkpoint (each epoch end by default; also inside epochs with
``checkpoint_every_steps``/``checkpoint_every_seconds``, and on SIGTERM):
  1. write the state to a new file durably (`tracker.checkpoint.Folder.write`);
  2. commit the metrics and the file's path, size and sha256 in one transaction;
  3. only then delete the files of checkpoints that retention no longer keeps
     (that same transaction marked their rows deleted).
A crash anywhere leaves the newest committed checkpoint pointing at a complete file.

Under multi-worker training (``TF_CONFIG``), only the chief writes; every other
worker is a `tracker.run.reader.Reader`: it reads the same resume point and records nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar

import numpy as np

from tracker import checkpoint, settings, spool
from tracker.checkpoint import Verified
from tracker.errors import Preempted, RunLockedError, TrackerError
from tracker.faults import label, pause_point
from tracker.process import this_process
from tracker.records import STOPPED_KEY, FileInfo, Position, ResumePoint, RunRow, Status, StepValues
from tracker.run import resume_point
from tracker.run.adapter import Integration
from tracker.run.handover import Handover
from tracker.run.heartbeat import Heartbeat
from tracker.run.metric_values import MetricFilter
from tracker.run.monitor import Monitor
from tracker.run.options import RunOptions
from tracker.run.signals import StopSignals, sigint_deferred
from tracker.store import Store, open_store
from tracker.store import db as dbmod
from tracker.warn import warn_user

log = logging.getLogger(__name__)


class Run:
    """One tracked training run. Create it with `tracker.track`, which wires it to Keras.

    Used directly, without an integration, it is the protocol alone: `start`, then
    `commit_epoch` (or `submit_epoch`) for each epoch, then `finish`. The arguments are
    those of `tracker.track` (see `RunOptions`), plus the framework ``integration``.

    Example:
        ```python
        run = Run("sim", monitor="loss")
        run.start()
        for epoch in range(run.initial_epoch, 10):
            run.commit_epoch(epoch, {"loss": 1.0 / (epoch + 1)}, {"w": weights}, {})
        run.finish("completed")
        ```
    """

    #: False on a non-chief worker of a multi-worker cluster (a `tracker.run.reader.Reader`): it resumes like the
    #: chief but writes nothing.
    is_writer = True
    #: The class a run made on a non-chief worker takes: the subclass that does not write, which names itself here
    #: when it is defined (``import tracker.run`` defines it), as this module cannot import its own subclass.
    _read_only: ClassVar[type[Run]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.is_writer:
            Run._read_only = cls

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
        options = RunOptions(
            name, db=db, checkpoint_dir=checkpoint_dir, config=config, monitor=monitor, mode=mode, keep_last=keep_last,
            keep_best=keep_best, force=force, storage_options=storage_options, checkpoint_every_steps=checkpoint_every_steps,
            checkpoint_every_seconds=checkpoint_every_seconds, keep_last_steps=keep_last_steps, log_every_steps=log_every_steps,
            save_on_signal=save_on_signal,
        )
        self._setup(options, integration)

    @classmethod
    def from_options(cls, options: RunOptions, integration: Integration | None = None) -> Run:
        """A run of ``options``, validated already, recorded through ``integration``: how `tracker.track` makes one.

        Example:
            ```python
            run = Run.from_options(RunOptions("sim", monitor="loss", keep_last=5))
            ```
        """
        run = cls.__new__(cls)
        run._setup(options, integration)
        return run

    def _setup(self, options: RunOptions, integration: Integration | None) -> None:
        #: The validated options this run was made with.
        self.options = options
        self.name = options.name
        #: The signals that make the run save a checkpoint at the next batch boundary and stop.
        self.stop_signals = options.stop_signals
        self.folder = checkpoint.open_folder(options.checkpoint_dir, self.name, options.storage_options)
        self._integration = integration
        self._monitor = Monitor(self.name, options.monitor, options.mode)
        self.schedule = options.schedule()
        #: Record the running metrics every this many batches (`log_step`); None: epochs only.
        self.log_every_steps = options.log_every_steps
        self._stops = StopSignals(self.name, self.stop_signals)
        self._force = options.force or os.environ.get(settings.ENV_FORCE) == "1"
        self._store: Store | spool.SpooledStore | None = None
        self._run: RunRow | None = None
        self._attempt_id: int | None = None
        self._heartbeat: Heartbeat | None = None
        self._first_commit = True
        #: Why this process lost the run (deleted, or taken over), once its heartbeat noticed; training stops with it.
        self._lost: RunLockedError | None = None
        self._unpatch: Callable[[], None] | None = None
        self._callback: object | None = None
        self._handover = Handover(self.name, commit_rows=lambda rows: self.commit_step(rows[-1], None, None, step_rows=rows))
        self._clean = MetricFilter(self.name)
        #: The run as it was before this attempt started; None for a new run.
        self._before: RunRow | None = None
        self._claimed = False
        self._new_folder = False  # this start found no ownership marker: the folder is new to the run
        self._fit_seen = self._training_began = False  # a fit call began inside the block; it began training epochs
        #: The first epoch ``fit`` must run: one past the newest committed epoch that verifies,
        #: or the epoch of a newer step checkpoint.
        self.initial_epoch = 0
        #: How many batches of ``initial_epoch`` the resume point already trained (a step checkpoint's).
        self.initial_batch = 0
        #: The checkpoint to resume from, until the adapter restores it (`take_resume_point`).
        self.resume_point: ResumePoint | None = None
        #: True when training stopped itself (e.g. EarlyStopping) at the resume point: nothing is left to train.
        self.stopped_early = False
        if not settings.is_chief():
            # A non-chief worker of a cluster is the read-only variant, chosen where TF_CONFIG was always read (once
            # the options are checked). It adds no state of its own, so this object can simply take its class.
            self.__class__ = Run._read_only

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
        if exc_type is None and not self._fit_seen:
            warn_user(
                f"no fit call ran inside tracker.track({self.name!r}) in the thread that opened it, so nothing was "
                "recorded for this block. Call model.fit inside the with block, in the same thread."
            )
            self.finish(Status.COMPLETED, discard=True)
        else:
            status, error = _outcome(exc_type, exc)
            self.finish(status, error=error)

    def _catch_stop_signals(self) -> None:
        self._stops.catch()

    def start(self) -> None:
        """Open the database, claim the run, and find the resume point: all before any training."""
        dbmod.locate(settings.resolve_db(self.options.db))  # a database that cannot work (in memory, say) fails before any folder is made
        made_folder = self.folder.probe_writable()
        self._store = open_store(self.options.db)
        spooled = spool.applies(self._store, self.folder)
        try:
            if spooled:
                self.folder = spool.staged(self.folder)
            self._before = self._store.find_run(self.name)
            if spooled:
                # While the dead attempts that left them are still the run's writer: after this start, the
                # server would refuse their commits.
                spool.send_leftovers(self._store, self.name, spool.files_of(self.folder))
                self._before = self._store.find_run(self.name)
                if self._before is not None:
                    spool.warn_other_host(self._store, self._before, force=self._force)
            self._run, self._attempt_id = self._store.start_attempt(
                self.name, config=self.options.config, checkpoint_dir=self.folder.location, force=self._force,
                process=this_process(self._integration.versions, self._integration.environment()) if self._integration else this_process(),
            )
        except BaseException as e:
            self._store.close()
            self._store = None
            # Refused before anything was written: leave no empty folder behind, unless the refusal is that another
            # process holds the run, as it may have claimed the folder since (workers of a sweep starting together).
            if made_folder and not isinstance(e, RunLockedError):
                self.folder.release()
            raise
        try:
            referenced = self._store.referenced_paths(self._run.id)
            self._new_folder = self.folder.claim(self._run.uid, self._store.display, referenced)
            self._claimed = True
            self._monitor.recorded(self._run.monitor, self._run.mode)
            self.folder.sweep(referenced)
            self._find_resume_point()
            self._store.set_initial_epoch(self._attempt_id, self.initial_epoch)
            if spooled:
                self._store = spool.open_spooled(self._store, self._run, self._attempt_id, spool.files_of(self.folder))
        except BaseException as e:
            self.finish(Status.FAILED, error=f"{type(e).__name__}: {e}")
            if self._new_folder or made_folder:
                self.folder.release()  # nothing was written there: leave no empty folder behind
            raise
        self._heartbeat = Heartbeat(lambda: self._beat(watch=not spooled), run_name=self.name)
        self._heartbeat.start()

    def _beat(self, *, watch: bool) -> None:
        """Refresh the lease; and, when ``watch``, notice a run deleted or taken over, and end training soon.

        Not for a spooled store: there the replicator beats, and the server it would ask may be away or hung.
        """
        store, run = self._require()
        store.heartbeat(self._attempt_id)
        if watch and self._lost is None:
            self._lost = store.writer_lost(run, self._attempt_id)
            stop = self._stops.on_stop
            if self._lost is not None and stop is not None:
                log.warning("%s", self._lost)
                stop()  # training ends at the next batch boundary, where `flush` raises the loss

    def _raise_if_lost(self) -> None:
        if self._lost is not None:
            raise self._lost

    def _find_resume_point(self) -> None:
        store, run = self._require()
        found = resume_point.search(self.name, store.checkpoints(run.id), self.folder, self.options.storage_options, new_folder=self._new_folder)
        if found.row is not None:
            self.resume_point = ResumePoint(found.row.epoch, found.arrays, found.header, batch=found.row.batch)
            self.initial_epoch, self.initial_batch = found.row.position.epoch, found.row.position.batch
            self.stopped_early = self.resume_point.stopped
        self._settle_resume(found)
        if self.initial_epoch or self.initial_batch:
            log.info("Run %r resumes at epoch %d, batch %d, from %s", self.name, self.initial_epoch, self.initial_batch, self.folder)

    def _settle_resume(self, found: Verified) -> None:
        store, run = self._require()
        resume_point.warn_fallback(self.name, found)
        if self._before is not None:
            # Epochs after the resume point, and steps after it (logged, or checkpoints that did not verify).
            store.supersede(run, self._attempt_id, Position(self.initial_epoch, self.initial_batch))
            self._run = store.get_run(self.name)

    def finish(self, status: Status, *, error: str | None = None, discard: bool = False) -> None:
        """Record how this attempt ended and release the run.

        An attempt that trained nothing is discarded instead of recorded when ``discard`` is
        set, or when it failed before training a run that has no other attempt: a failed
        start leaves no empty run behind.
        """
        self._stops.release()
        if self._store is None:
            return
        interrupted = False
        try:
            self._handover.close()  # what was handed over is committed before the attempt ends
        except KeyboardInterrupt:
            # A second Ctrl-C: stop waiting for the pending epoch, but still say how the attempt ended.
            status, interrupted = Status.INTERRUPTED, True
        if self._heartbeat is not None:
            self._heartbeat.stop()
        try:
            with sigint_deferred():
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
        if self._store is None or self._run is None:
            raise TrackerError(f"Run {self.name!r} is not started: use it as `with tracker.track(...) as run:`.")
        return self._store, self._run

    # -- what fit needs (`TrainingRun`) --------------------------------------

    @property
    def run_id(self) -> int | None:
        """The run's id in its database, once `start` has claimed it."""
        return None if self._run is None else self._run.id

    @property
    def best_value(self) -> float | None:
        """The run's best value of its monitor over every attempt, as committed: what a search objective should return.

        After a resume, ``fit``'s History holds only this process's epochs; the run holds them all.
        None before the first committed epoch. Read from the database, so it is right after the block too.
        """
        store = self._store if self._store is not None else open_store(self.options.db, create=False)
        try:
            return store.get_run(self.name).best_value
        finally:
            if store is not self._store:
                store.close()

    @property
    def attempt_id(self) -> int | None:
        """This process's attempt at the run, once `start` has claimed it: the writer that commits are fenced to."""
        return self._attempt_id

    @property
    def force(self) -> bool:
        """Whether this run was opened with ``force=True`` or ``TRACKER_FORCE=1`` (see `TrainingRun.force`)."""
        return self._force

    @property
    def preempt_requested(self) -> str | None:
        """Set once a stop signal arrived: the adapter saves at the next batch boundary, then raises `Preempted`."""
        return self._stops.requested

    @property
    def callback(self) -> Any:
        """The framework's callback that records this run, for ``callbacks=[run.callback]``."""
        if self._integration is None:
            raise TrackerError(f"Run {self.name!r} has no framework integration: create it with tracker.track(...).")
        if self._callback is None:
            self._callback = self._integration.callback(self)
        return self._callback

    def resolve_monitor(self, default: str, direction: Callable[[str], str | None]) -> None:
        """Settle the metric that defines the best epoch, in the adapter's framework's terms (see `Monitor.resolve`)."""
        self._monitor.resolve(default, direction)

    def fit_started(self) -> None:
        """Note that a training call began inside the block (even one with nothing left to train)."""
        self._fit_seen = True

    def set_target_epochs(self, epochs: int) -> None:
        """Record how many epochs in all the training call asked for, once it starts its first epoch.

        Warns when a resume asks for another total than the run was started with.
        """
        self._fit_seen = self._training_began = True
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
        """While training runs, ``stop()`` is what a stop signal calls to end the loop at the next batch boundary."""
        self._stops.on_stop = stop

    def take_resume_point(self) -> ResumePoint | None:
        """Hand over the checkpoint to restore, once; later calls get None."""
        point, self.resume_point = self.resume_point, None
        return point

    # -- handing over to the background writer ------------------------------

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
        self._raise_if_lost()
        # On the caller's thread, so that warnings name the user's line and bad names fail here.
        values = self._clean(logs)
        if self._first_commit:
            self._settle_monitor(values)
        full = None if arrays is None else {**header, STOPPED_KEY: stopped}
        self._handover.submit(lambda rows: self.commit_epoch(epoch, values, arrays, full, step_rows=rows))

    def submit_step(self, at: StepValues, arrays: Mapping[str, np.ndarray], header: Mapping[str, object]) -> None:
        """Hand a step checkpoint, ``at.batch`` batches into ``at.epoch``, to the background writer, like `submit_epoch`."""
        self._raise_if_lost()
        self._handover.submit(lambda rows: self.commit_step(at, arrays, header, step_rows=rows))

    def log_step(self, at: StepValues) -> None:
        """Record the running metrics ``at`` one global step. Buffered, and committed in groups: with the next
        checkpoint or epoch, or after `tracker.run.handover.STEP_FLUSH_SECONDS`, so that fast steps do not cost a transaction each."""
        self._handover.log(dataclasses.replace(at, values=self._clean(at.values)))

    def flush(self) -> None:
        """Wait until every handed-over epoch is committed; raise if one could not be, or if the run was lost."""
        self._raise_if_lost()
        self._handover.flush()

    # -- commits -------------------------------------------------------------

    def commit_epoch(
        self, epoch: int, logs: Mapping[str, object], arrays: Mapping[str, np.ndarray] | None, header: Mapping[str, object] | None,
        *, step_rows: Sequence[StepValues] = (),
    ) -> None:
        """Make ``epoch`` durable now: the checkpoint file first, then its row and metrics in one transaction.

        With ``arrays`` None (``checkpoint_every_seconds`` between checkpoints) only the metrics are committed.
        """
        values = self._clean(logs)
        if self._first_commit:
            self._settle_monitor(values)
        store, run = self._require()
        info = None
        if arrays is not None:
            info = self._write(lambda: self.folder.write(epoch, arrays, {**(header or {}), "run": self.name, "epoch": epoch}))
        pause_point("before-commit", epoch)
        self._run, doomed = store.commit_epoch(run, self._attempt_id, epoch, values, info, self.options.retention, step_rows)
        pause_point("after-commit", epoch)
        self._delete(doomed, epoch)

    def commit_step(
        self, at: StepValues, arrays: Mapping[str, np.ndarray] | None, header: Mapping[str, object] | None,
        *, step_rows: Sequence[StepValues] = (),
    ) -> None:
        """Make a step checkpoint durable now (file first, then its row), with the per-step metrics of ``step_rows``
        in the same transaction. With ``arrays`` None, only ``step_rows`` are committed."""
        store, run = self._require()
        info = None
        if arrays is not None:
            info = self._write(lambda: self.folder.write(
                at.epoch, arrays, {**(header or {}), "run": self.name, "epoch": at.epoch, "batch": at.batch, "step": at.step}
            ))
            pause_point("before-commit", label(at.epoch, at.batch))
        self._run, doomed = store.commit_step(run, self._attempt_id, at, info, self.options.retention, step_rows)
        if arrays is not None:
            pause_point("after-commit", label(at.epoch, at.batch))
        self._delete(doomed, label(at.epoch, at.batch))

    def _write(self, write: Callable[[], FileInfo]) -> FileInfo:
        """``write()`` a checkpoint file; if that fails because the run was deleted meanwhile, say so instead."""
        try:
            return write()
        except TrackerError as e:
            store, run = self._require()
            try:
                lost = store.writer_lost(run, self._attempt_id)
            except TrackerError:
                lost = None  # the database cannot tell now: the file's own error is the one to report
            if lost is not None:
                raise lost from e
            raise

    def _delete(self, doomed: list[str], epoch: int | str) -> None:
        if doomed:
            # The rows were marked in the commit; a crash before these deletes leaves orphans that `sweep` removes.
            pause_point("during-retention", epoch)
            self.folder.delete(doomed)

    def _settle_monitor(self, values: Mapping[str, float]) -> None:
        store, run = self._require()
        self._first_commit = False
        chosen = self._monitor.settle(values)
        if chosen is not None and (run.monitor, run.mode) != chosen:
            self._run = store.set_monitor(run, *chosen)


def _outcome(exc_type: type[BaseException] | None, exc: BaseException | None) -> tuple[Status, str | None]:
    """How an attempt ended, from what ended its block, and the error to record."""
    if exc_type is None:
        return Status.COMPLETED, None
    if issubclass(exc_type, KeyboardInterrupt):
        return Status.INTERRUPTED, None
    if issubclass(exc_type, Preempted):
        return Status.PREEMPTED, str(exc)
    return Status.FAILED, f"{exc_type.__name__}: {exc}"
