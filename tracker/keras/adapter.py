"""The Keras adapter: a callback, and the patch of ``Model.fit`` that `track` installs.

What is saved and restored lives in `tracker.keras.state`; files and the database
in the framework-free core, `tracker.run`, which this module uses and which never
imports it. Import this module only when Keras is wanted: it imports Keras.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
from keras.src.trainers.epoch_iterator import EpochIterator

from tracker.errors import Preempted, TrackerError
from tracker.keras import state as keras_state
from tracker.records import ResumePoint, StepValues
from tracker.run.adapter import TrainingRun

_FIT_PARAMS = list(inspect.signature(keras.Model.fit).parameters)[1:]  # without self


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
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()  # the JAX trainer keeps the state outside the model's variables during an epoch
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
    """The callback that records ``run``: with a batch hook only when the run needs one."""
    inside = run.schedule.inside_epochs or run.log_every_steps is not None
    return (StepTracker if inside else TrackerCallback)(run, **kwargs)


def _log_restored_metrics_if_no_batch_trains(model: keras.Model) -> None:
    """Make this epoch's logs the restored metrics' results if no batch of it trains.

    A stop signal can save an input of unknown length after its last batch. Resumed there, the
    epoch's only step finds the input empty, and Keras, with no step's logs to match, would log none
    of the training metrics. Applies once: the first call is fit's, for the epoch's logs.
    """
    def once(logs: dict) -> dict:
        del model.__dict__["_get_metrics_result_or_logs"]
        return model._get_metrics_result_or_logs(logs) if logs else model.get_metrics_result()

    # In the instance's own dict, past Keras's attribute tracking; deleting it restores the class's method.
    model.__dict__["_get_metrics_result_or_logs"] = once


class _BatchSkip:
    """Makes the next epoch that ``fit`` enumerates start after its first ``n`` batches.

    The skipped batches are drawn from the data (so that the data stays where it was) but no model
    step runs on them. Every backend's ``EpochIterator`` yields ``(begin, end, iterator)`` from
    ``_enumerate_iterator``, and the train step then draws its batches from ``iterator``.
    """

    def __init__(self) -> None:
        self._original: Any = None

    def install(self, n: int, *, then: Callable[[], None]) -> None:
        """Skip ``n`` batches of the next epoch, then call ``then()`` before its first batch trains."""
        original = self._original = EpochIterator.__dict__["_enumerate_iterator"]
        skip = self

        def enumerate_after(iterator_self: EpochIterator) -> Iterator[tuple[int, int, Any]]:
            skip.remove()  # one epoch only
            skipped = False
            for begin, end, iterator in original(iterator_self):
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

        EpochIterator._enumerate_iterator = enumerate_after

    def remove(self) -> None:
        if self._original is not None:
            EpochIterator._enumerate_iterator = self._original
            self._original = None


class _IteratorCount:
    """Counts the iterators ``fit`` creates over each ``tf.data`` input, on top of a restored start.

    Each new iterator of ``shuffle(seed=..., reshuffle_each_iteration=True)`` draws the next
    seed, so this count is the position of the shuffle stream.
    """

    def __init__(self, datasets: dict[str, Any], start: dict[str, int]) -> None:
        self._datasets = datasets
        self._counts = {name: start.get(name, 0) for name in datasets}

    def positions(self) -> dict[str, int]:
        return dict(self._counts)

    def fast_forward(self) -> None:
        for name, ds in self._datasets.items():
            for _ in range(self._counts[name]):
                iter(ds)

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        if not self._datasets:
            yield
            return
        import tensorflow as tf

        original = tf.data.Dataset.__iter__
        by_id = {id(ds): name for name, ds in self._datasets.items()}

        def counted(ds: Any) -> Any:
            name = by_id.get(id(ds))
            if name is not None:
                self._counts[name] += 1
            return original(ds)

        tf.data.Dataset.__iter__ = counted
        try:
            yield
        finally:
            tf.data.Dataset.__iter__ = original


def patch_fit(run: TrainingRun) -> Callable[[], None]:
    """Make the next ``keras.Model.fit`` call in this thread record into ``run``; returns the undo."""
    original = keras.Model.fit
    owner = threading.get_ident()
    used = False

    @functools.wraps(original)
    def fit(model: keras.Model, *args: Any, **kwargs: Any) -> Any:
        nonlocal used
        if threading.get_ident() != owner:
            warnings.warn(
                f"fit was called from another thread than the one that opened tracker.track({run.name!r}); that fit "
                "is not tracked. Call fit in the thread that opened the block.", stacklevel=2,
            )
            return original(model, *args, **kwargs)
        if used:
            raise TrackerError(f"Run {run.name!r} already tracked one fit call; start a new tracker.track(...) block for each fit.")
        used = True
        bound = dict(zip(_FIT_PARAMS, args)) | kwargs
        callbacks = list(bound.pop("callbacks", None) or [])
        if any(isinstance(c, TrackerCallback) for c in callbacks):
            return original(model, callbacks=callbacks, **bound)
        requested = bound.pop("initial_epoch", 0)
        if requested not in (0, run.initial_epoch):
            raise ValueError(
                f"fit(initial_epoch={requested}) conflicts with run {run.name!r}, which resumes at epoch "
                f"{run.initial_epoch}. Drop initial_epoch: tracker.track sets it from the newest committed epoch."
            )
        epochs = bound.get("epochs", 1)
        start = run.initial_epoch
        if run.stopped_early:
            warnings.warn(f"Run {run.name!r} was stopped early by a callback at epoch {start - 1}; nothing to train. "
                          "The model gets the final checkpoint. Rewind with python -m tracker.resume --from-epoch to train more.", stacklevel=2)
            start = epochs
        elif start > epochs:
            warnings.warn(f"Run {run.name!r} already has {start} epochs, more than the epochs={epochs} that fit asks for; "
                          f"nothing to train, and the run keeps its {start} epochs. The model gets the newest checkpoint "
                          f"(epoch {start - 1}). To train from an earlier epoch, rewind with "
                          f"python -m tracker.resume {run.name} --from-epoch K.", stacklevel=2)
        elif start == epochs:
            warnings.warn(f"Run {run.name!r} already has all {epochs} epochs; nothing to train. "
                          "The model gets the newest checkpoint. Pass a larger epochs= to extend the run.", stacklevel=2)
        exact = _warn_if_inexact(run, bound)
        data = _IteratorCount(_datasets(bound), run.resume_point.header.get("data", {}) if run.resume_point else {})
        if run.resume_point is not None:
            if not model.built:
                _build_from(model, bound.get("x"))
            if run.resume_point.batch:
                _build_metrics(model, bound)
            data.fast_forward()
        tracking = callback_for(run, peers=callbacks, data=data, inside=exact)
        with data.counting():
            return original(model, callbacks=[*callbacks, tracking], initial_epoch=start, **bound)

    keras.Model.fit = fit

    def undo() -> None:
        keras.Model.fit = original

    return undo


def metric_direction(model: keras.Model, monitor: str) -> str | None:
    """``"min"`` or ``"max"``: which of ``monitor``'s values is best, as Keras's own callbacks decide it.

    Keras's ``MonitorCallback`` reads each compiled metric's direction; a loss is minimized.
    None when Keras cannot tell (a metric function of the user's own, say).
    """
    name = monitor.removeprefix("val_")
    if name == "loss" or name.endswith("_loss"):
        return "min"

    def flat(metrics: Sequence[Any]) -> Iterator[Any]:
        for m in metrics:
            yield m
            # The compiled metrics come as containers (CompileMetrics, MetricsList) that list their metrics.
            yield from flat(getattr(m, "metrics", None) or [])

    for m in flat(getattr(model, "metrics", [])):
        # `_direction` is where Keras keeps it ("up" or "down"); MonitorCallback reads the same attribute.
        direction = getattr(m, "_direction", None)
        if m.name == name and direction in ("up", "down"):
            return "max" if direction == "up" else "min"
    return None


def _tf_dataset_type() -> type | None:
    """``tf.data.Dataset``, or None when TensorFlow is not loaded: then no input can be one.

    Never imports TensorFlow itself, so that a JAX or torch run does not load it.
    """
    tf = sys.modules.get("tensorflow")
    return tf.data.Dataset if tf is not None and hasattr(tf, "data") else None


def _datasets(bound: dict[str, Any]) -> dict[str, Any]:
    dataset = _tf_dataset_type()
    if dataset is None:
        return {}
    return {k: bound[k] for k in ("x", "validation_data") if isinstance(bound.get(k), dataset)}


def _warn_if_inexact(run: TrainingRun, bound: dict[str, Any]) -> bool:
    """Name, before the first epoch, each input whose position a resume cannot restore; False for one.

    Such an input gets no checkpoint inside epochs: a resume from one would skip batches of a
    different order. Its resume point stays the newest epoch end.
    """
    x = bound.get("x")
    dataset = _tf_dataset_type()
    reason = None
    if isinstance(x, keras.utils.PyDataset):
        reason = "a keras.utils.PyDataset keeps its order in Python state that tracker cannot save"
    elif inspect.isgenerator(x) or isinstance(x, Iterator):
        reason = "a Python generator or iterator keeps hidden state that tracker cannot save"
    elif dataset is not None and isinstance(x, dataset) and bound.get("class_weight") is not None:
        reason = "with class_weight, Keras wraps the tf.data input, so its shuffle position cannot be followed"
    elif _is_torch_loader(x) and getattr(x, "generator", None) is not None:
        reason = "a torch DataLoader given its own generator keeps its order in that generator, which tracker does not save"
    elif bound.get("steps_per_epoch") is not None and bound["steps_per_epoch"] != _batches_per_pass(bound, dataset):
        reason = ("with steps_per_epoch shorter or longer than one pass over the input, Keras draws the epochs' batches "
                  "from one iterator that runs on across epochs, and a resume would restart it")
    if reason:
        warnings.warn(
            f"Run {run.name!r}: a resumed run will not be bit-identical to an uninterrupted one: {reason}. "
            "Weights, optimizer state and the epoch counter still resume.",
            stacklevel=3,
        )
        if run.schedule.inside_epochs:
            warnings.warn(
                f"Run {run.name!r}: no checkpoint inside epochs with this input ({reason}), since a resume could not find "
                "its place in the data: checkpoint_every_steps/_seconds fall back to epoch ends, and a stop signal "
                "stops at the next batch without saving it (the resume point stays the newest epoch end).",
                stacklevel=3,
            )
    return reason is None


def _batches_per_pass(bound: dict[str, Any], dataset: type | None) -> int | None:
    """How many batches one pass over ``fit``'s training input gives, where that is known before fit runs."""
    x = bound.get("x")
    if dataset is not None and isinstance(x, dataset):
        n = int(x.cardinality())
        return n if n >= 0 else None  # infinite (repeat()) or unknown
    if _is_torch_loader(x):
        try:
            return len(x)
        except TypeError:  # an IterableDataset without a length
            return None
    arrays = keras.tree.flatten(x)
    if not arrays or not hasattr(arrays[0], "shape"):
        return None
    samples = int(arrays[0].shape[0] * (1.0 - (bound.get("validation_split") or 0.0)))  # as Keras splits
    return -(-samples // (bound.get("batch_size") or 32))


def _is_torch_loader(x: Any) -> bool:
    # Never imports torch: a DataLoader can only exist once torch is loaded.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.utils.data.DataLoader)


def _build_from(model: keras.Model, x: Any) -> None:
    """Build an unbuilt (subclassed) model symbolically from its input's shape, without drawing data."""
    model(_symbolic(x, first_only=True))


def _build_metrics(model: keras.Model, bound: dict[str, Any]) -> None:
    """Build the compiled metrics now, from the input's shapes, without drawing data.

    On TensorFlow fit builds them only when it traces its first step, but a resume inside an
    epoch must give them their running state before that step.
    """
    if not hasattr(model, "_symbolic_build") or bound.get("x") is None:
        return
    x = bound["x"]
    if _tf_dataset_type() is not None and isinstance(x, _tf_dataset_type()):
        batch = _symbolic(x, first_only=False)
    elif bound.get("y") is not None:
        batch = (_symbolic(x, first_only=False), _symbolic(bound["y"], first_only=False))
    else:
        return
    model._symbolic_build(data_batch=batch)


def _symbolic(x: Any, *, first_only: bool) -> Any:
    """Symbolic tensors shaped like one batch of ``x`` (arrays, or a ``tf.data`` input's elements)."""
    dataset = _tf_dataset_type()
    if dataset is not None and isinstance(x, dataset):
        spec = x.element_spec
        spec = spec[0] if first_only and isinstance(spec, tuple) else spec
        return keras.tree.map_structure(lambda s: keras.KerasTensor(tuple(s.shape), s.dtype.name), spec)
    if _is_torch_loader(x):
        # One sample read from the dataset itself: iterating the DataLoader would draw a shuffle order.
        # An iterable dataset cannot be indexed: its first batch is read instead (before the saved
        # generators are put back, so a draw does not count).
        try:
            sample, batched = x.dataset[0], False
        except (TypeError, NotImplementedError, AttributeError):
            sample, batched = next(iter(x)), True
        parts = keras.utils.unpack_x_y_sample_weight(sample)
        return keras.tree.map_structure(
            lambda a: keras.KerasTensor((None, *a.shape[batched:]), keras.backend.standardize_dtype(a.dtype)),
            parts[0] if first_only else tuple(p for p in parts if p is not None),
        )
    return keras.tree.map_structure(
        lambda a: keras.KerasTensor((None, *np.shape(a)[1:]), keras.backend.standardize_dtype(getattr(a, "dtype", "float32"))), x
    )
