"""The callback that records ``fit`` into a `tracker.run.adapter.TrainingRun`, and restores its resume point at the start.

What is saved and restored lives in `tracker.keras.state`, what the inputs are in
`tracker.keras.inputs`, every private Keras API in `tracker.keras.internals`; files and the
database in the framework-free core, `tracker.run`, which this module uses and which never
imports it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import keras

from tracker.errors import Preempted, TrackerError
from tracker.keras import internals
from tracker.keras import state as keras_state
from tracker.keras.inputs import _IteratorCount
from tracker.records import ResumePoint, StepValues
from tracker.run.adapter import TrainingRun


class TrackerCallback(keras.callbacks.Callback):
    """Records each epoch of ``fit`` into a run, and restores the run's resume point at the start.

    It overrides no batch hook: Keras then keeps dispatching batches asynchronously. `StepTracker`
    adds the batch hook for runs that checkpoint or log inside epochs. Use `callback_for` to get
    the right one, or let `tracker.track` add it to ``fit`` for you, or use it explicitly:

    Example:
        ```python
        with tracker.track("cnn") as run:
            model.fit(x, y, epochs=10, callbacks=[run.callback], initial_epoch=run.initial_epoch)
        ```
        The explicit form cannot see the other callbacks or the data, so it restores the model,
        the optimizer and random seeds, but not callback state or ``tf.data`` shuffle positions.
    """

    def __init__(
        self, run: TrainingRun, *, peers: Sequence[keras.callbacks.Callback] = (), data: _IteratorCount | None = None, inside: bool = True
    ) -> None:
        super().__init__()
        self.run = run
        #: Whether checkpoints may fall inside epochs: False for an input whose position a resume cannot find.
        self._inside = inside
        #: Whether the schedule may put them there too: not where fit cannot tell an epoch's last batch (on_train_begin).
        self._scheduled = inside
        self._peers = list(peers)
        self._data = data
        self._pending: ResumePoint | None = None
        self._checked_first_epoch = False
        self._monitor_resolved = False
        self._skip = _BatchSkip()
        #: The epoch in progress, the global step at its start, and what decides its data order.
        self._epoch = 0
        self._step0 = 0
        self._start = keras_state.EpochStart()

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.run.fit_started()
        self.run.on_preempt(self._stop_soon)
        if self._inside and self.params.get("steps") is None:
            # Keras learns that such an input's epoch is over only from one more step that finds it empty,
            # so a checkpoint "inside" may be after the last batch. A resume from there trains no batch of
            # that epoch: the schedule would put one there every epoch, while a stop signal lands there
            # rarely, and only JAX's fit cannot run such an epoch at all.
            self._scheduled = False
            self._inside = keras.backend.backend() != "jax"
            if self.run.schedule.inside_epochs:
                warnings.warn(
                    f"Run {self.run.name!r}: fit does not know how many batches an epoch of this input has (a tf.data "
                    "input of unknown cardinality, or a loader without a length), so checkpoint_every_steps/_seconds "
                    "fall back to epoch ends. To checkpoint inside epochs, give the input its length, e.g. "
                    "dataset.apply(tf.data.experimental.assert_cardinality(batches_per_epoch)).",
                    stacklevel=2,
                )
        point = self.run.take_resume_point()
        if point is None:
            return
        if not self.model.built:
            raise TrackerError(
                f"Run {self.run.name!r} cannot resume into a model that is not built yet. Build it before fit "
                "(start it with keras.Input(...), or call model.build(input_shape)), or use tracker.track's patched fit, which builds it."
            )
        keras_state.check_backend(point.header, self.run.name, force=self.run.force)
        keras_state.restore_model(self.model, point.arrays, point.header)
        # Here, not before fit: fit has already drawn a batch to build itself, as it did in the
        # uninterrupted run, and the first epoch's shuffle is drawn after this.
        keras_state.restore_rngs(point.arrays, point.header)
        self._pending = point

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch
        self._step0 = keras_state.global_step(self.model)
        if self._checked_first_epoch:
            self._start = keras_state.epoch_start(self._data.positions() if self._data else None)
            return
        self._checked_first_epoch = True
        if self.run.stopped_early:
            raise TrackerError(
                f"Run {self.run.name!r} was stopped early by a callback; nothing to train. "
                "Skip fit when run.stopped_early, or rewind with python -m tracker.resume --from-epoch."
            )
        if epoch != self.run.initial_epoch:
            raise ValueError(
                f"fit started at epoch {epoch} but run {self.run.name!r} resumes at epoch {self.run.initial_epoch}: "
                f"pass initial_epoch=run.initial_epoch (= {self.run.initial_epoch}) to fit, or let tracker.track set it."
            )
        # Only once fit passed these checks: a refused resume leaves the recorded target alone.
        self.run.set_target_epochs(self.params.get("epochs"))
        point, self._pending = self._pending, None
        if point is not None:
            # Here, not in on_train_begin: every callback has reset itself by now.
            keras_state.restore_callbacks(self._peers, point.arrays, point.header)
        if point is not None and point.batch:
            # Inside an epoch: fit has just reset the metrics; give back their running state, and
            # start the epoch after the batches the checkpoint had trained (the RNGs and tf.data
            # positions restored before fit drew this epoch's order are the epoch start's).
            self._restore_metrics(point)
            self._step0 -= point.batch
            self._start = keras_state.EpochStart(
                {k: v for k, v in point.arrays.items() if k.startswith("rng.")}, point.header.get("rng", {}), point.header.get("data", {})
            )
            self._skip.install(point.batch, then=lambda: keras_state.restore_rngs(point.arrays, point.header, key=keras_state.NOW))
            if self.params.get("steps") is None:
                _log_restored_metrics_if_no_batch_trains(self.model)
        else:
            self._start = keras_state.epoch_start(self._data.positions() if self._data else None)
        self.run.schedule.start(keras_state.global_step(self.model))

    def _restore_metrics(self, point: ResumePoint) -> None:
        if len(self.model.metrics_variables) == len(point.header.get("metrics", [])):
            keras_state.restore_metrics(self.model, point.arrays, point.header)
            return
        # Only when fit was not patched (run.callback): it builds the compiled metrics at its first step.
        warnings.warn(
            f"Run {self.run.name!r} resumes {point.batch} batches into epoch {point.epoch}, but the compiled metrics are "
            "not built yet, so their running state cannot be restored: this epoch's logged metrics will cover only the "
            "batches after the resume. Let tracker.track patch fit (do not pass run.callback) to restore them.",
            stacklevel=2,
        )

    def on_test_begin(self, logs: dict | None = None) -> None:
        # Validation inside fit is about to reset the metrics: a stop signal that cut the epoch short saves now.
        if self.run.preempt_requested and self._training:
            self._preempt_if_cut_short()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._skip.remove()
        if not self.run.is_writer:
            return
        # Wait for the previous epoch's commit before taking this snapshot, so that at most one
        # snapshot is alive at a time: the memory overhead stays one checkpoint's size.
        self.run.flush()
        preempted = self.run.preempt_requested
        if preempted:
            self._preempt_if_cut_short()
        logs = logs or {}
        if not self._monitor_resolved:
            self._monitor_resolved = True
            default = "val_loss" if "val_loss" in logs else "loss"
            self.run.resolve_monitor(default, lambda name: metric_direction(self.model, name))
        # A callback that ended training at this epoch ended the run: that is part of the resume point.
        stopped = bool(self.model.stop_training) and not preempted
        last = epoch + 1 >= (self.params.get("epochs") or 0)
        step = keras_state.global_step(self.model)
        if preempted or stopped or last or self.run.schedule.due_at_epoch_end(step):
            arrays, header = keras_state.capture(self.model, self._peers, self._data.positions() if self._data else None)
            self.run.schedule.saved(step)
        else:
            arrays = header = None
        self.run.submit_epoch(epoch, logs, arrays, header, stopped=stopped)
        if preempted:
            self.run.flush()
            raise Preempted(f"Run {self.run.name!r} stopped by {preempted} after epoch {epoch}, which is committed with its checkpoint.")

    def on_train_end(self, logs: dict | None = None) -> None:
        self._skip.remove()
        self.run.on_preempt(None)
        self.run.flush()

    @property
    def _training(self) -> bool:
        return self._checked_first_epoch and self.run.is_writer

    def _stop_soon(self) -> None:
        # Called from the signal handler: Keras ends the epoch's batch loop after the current batch.
        self.model.stop_training = True

    def _preempt_if_cut_short(self) -> None:
        """After a stop signal ended the batch loop: save and stop here unless the epoch had trained all its batches."""
        done = keras_state.global_step(self.model) - self._step0
        if not self._epoch_complete(done):
            self._preempt_inside(done)

    def _epoch_complete(self, done: int) -> bool:
        steps = self.params.get("steps")
        return steps is not None and done >= steps

    def _save_inside(self, done: int) -> None:
        """Hand a step checkpoint ``done`` batches into the current epoch to the writer."""
        self.run.flush()  # at most one snapshot alive at a time, as at epoch ends
        internals.sync_jax_state(self.model)
        step = self._step0 + done
        arrays, header = keras_state.capture(self.model, self._peers, inside=self._start)
        self.run.submit_step(StepValues(self._epoch, done, step, {}), arrays, header)
        self.run.schedule.saved(step)

    def _preempt_inside(self, done: int) -> None:
        """Save inside the epoch after a stop signal, wait for the commit, and stop the process."""
        if not self._inside:
            self.run.flush()
            raise Preempted(
                f"Run {self.run.name!r} stopped by {self.run.preempt_requested} at epoch {self._epoch}, batch {done}, "
                "without a checkpoint there (its input's position cannot be saved); it resumes from its newest epoch end."
            )
        self._save_inside(done)
        self.run.flush()
        raise Preempted(
            f"Run {self.run.name!r} stopped by {self.run.preempt_requested} at epoch {self._epoch}, batch {done}; "
            "that point is committed, and a rerun continues from the next batch."
        )


class StepTracker(TrackerCallback):
    """A `TrackerCallback` that also works at batch boundaries: checkpoints inside epochs
    (``checkpoint_every_steps``, ``checkpoint_every_seconds``), per-step metrics (``log_every_steps``),
    and a stop signal's save at the very next batch.

    Under ``steps_per_execution=k`` Keras reports a batch boundary every k batches: checkpoints and
    logged steps fall on the first boundary at or after the step asked for.
    """

    def __init__(self, run: TrainingRun, **kwargs: Any) -> None:
        super().__init__(run, **kwargs)
        self._last_logged = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        first = not self._checked_first_epoch
        super().on_epoch_begin(epoch, logs)
        if first:
            # Count from the resume point, as the schedule does: a resumed run then logs the steps an
            # uninterrupted one logs (multiples of log_every_steps), not also its first batch.
            self._last_logged = keras_state.global_step(self.model)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if not self.run.is_writer:
            return
        done = batch + 1
        step = self._step0 + done
        every = self.run.log_every_steps
        if every is not None and step // every > self._last_logged // every:
            self._last_logged = step
            self.run.log_step(StepValues(self._epoch, done, step, dict(logs or {})))
        if self._epoch_complete(done):
            return  # the epoch end saves, with the epoch's metrics
        if self.run.preempt_requested:
            self._preempt_inside(done)
        if self._scheduled and self.run.schedule.due_at_batch(step):
            self._save_inside(done)


def callback_for(run: TrainingRun, **kwargs: Any) -> TrackerCallback:
    """The callback that records ``run``: with a batch hook only when the run needs one.

    Example:
        ```python
        model.fit(x, y, callbacks=[callback_for(run)], initial_epoch=run.initial_epoch)  # what run.callback is
        ```
    """
    inside = run.schedule.inside_epochs or run.log_every_steps is not None
    return (StepTracker if inside else TrackerCallback)(run, **kwargs)


def _log_restored_metrics_if_no_batch_trains(model: keras.Model) -> None:
    """Make this epoch's logs the restored metrics' results if no batch of it trains.

    A stop signal can save an input of unknown length after its last batch. Resumed there, the
    epoch's only step finds the input empty, and Keras, with no step's logs to match, would log none
    of the training metrics. Applies once: the first call is fit's, for the epoch's logs.
    """
    internals.replace_epoch_logs_once(model, lambda logs, keras_default: keras_default(logs) if logs else model.get_metrics_result())


class _BatchSkip:
    """Makes the next epoch that ``fit`` enumerates start after its first ``n`` batches.

    The skipped batches are drawn from the data (so that the data stays where it was) but no model
    step runs on them (see `tracker.keras.internals.replace_epoch_enumeration`).
    """

    def __init__(self) -> None:
        self._undo: Callable[[], None] | None = None

    def install(self, n: int, *, then: Callable[[], None]) -> None:
        """Skip ``n`` batches of the next epoch, then call ``then()`` before its first batch trains."""

        def after_n(steps: internals.Steps) -> internals.Steps:
            self.remove()  # one epoch only
            skipped = False
            for begin, end, iterator in steps:
                if begin >= n:
                    if not skipped:
                        skipped = True
                        then()
                    yield begin, end, iterator
                    continue
                for _ in range(end - begin + 1):
                    try:
                        next(iterator)
                    except StopIteration:
                        break
            if not skipped:
                then()

        self._undo = internals.replace_epoch_enumeration(after_n)

    def remove(self) -> None:
        """Give back Keras's own epoch enumeration, if the skip is still installed."""
        if self._undo is not None:
            self._undo()
            self._undo = None


def metric_direction(model: keras.Model, monitor: str) -> str | None:
    """``"min"`` or ``"max"``: which of ``monitor``'s values is best, as Keras's own callbacks decide it.

    Keras's ``MonitorCallback`` reads each compiled metric's direction; a loss is minimized.
    None when Keras cannot tell (a metric function of the user's own, say).

    Example:
        ```python
        metric_direction(model, "val_accuracy")  # "max" once the compiled metrics are built
        ```
    """
    name = monitor.removeprefix("val_")
    if name == "loss" or name.endswith("_loss"):
        return "min"
    for metric, direction in internals.direction_marks(model):
        if metric == name:
            return "max" if direction == "up" else "min"
    return None
