"""`track_optuna`: an Optuna trial's ``fit`` tracked as a tracker run, so that a retried trial resumes its checkpoint.

Optuna's answer to a crash is a heartbeat on its RDB storage: a trial whose process stopped beating is marked
``FAIL``, and ``RetryFailedTrialCallback`` (``RetryHeartbeatStaleTrialCallback`` from Optuna 4.9) enqueues a new
trial with the same parameters, which trains from zero. Here each trial is the run ``<name>-<n>``, where ``n`` is
the number of the *original* trial (a retry of a retry still maps to the first), so the retried trial resumes
the crashed trial's run at its newest checkpoint.

Intermediate values come from the database, never from ``fit``'s logs: each committed epoch's monitor value is
reported to the Optuna trial once (``trial.report(value, epoch)``), after its commit. A retried trial first
reports the epochs committed before the crash, then each new one: no step is reported twice to one Optuna trial,
none that is not committed. With a pruner, the pruner is asked after each committed epoch, and once before a
resumed trial trains; a pruned trial's run ends ``completed`` (the study stopped it, as ``EarlyStopping`` would),
tagged ``optuna=pruned``.

Framework-free: it hooks the run where the Keras adapter hands it each epoch (`tracker.run.adapter.TrainingRun`),
not Keras itself, so it needs no callback of its own. Optuna is imported only when a block is entered.

Example:
    ```python
    def objective(trial):
        units = trial.suggest_int("units", 4, 64, log=True)
        keras.utils.set_random_seed(0)
        model = build(units)
        with tracker.track_optuna(trial, "mlp") as run:
            model.fit(x, y, epochs=20, validation_split=0.1)
        return run.best_value     # the whole run's best, not this process's History

    storage = optuna.storages.RDBStorage(
        "sqlite:///optuna.db", heartbeat_interval=60, grace_period=120,
        failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=3),
    )
    study = optuna.create_study(study_name="mlp", storage=storage, load_if_exists=True,
                                pruner=optuna.pruners.MedianPruner())
    study.optimize(objective, n_trials=20)
    ```
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from tracker import settings
from tracker.records import RunRow, TrialState
from tracker.run.adapter import Integration, TrainingRun
from tracker.run.options import RunOptions
from tracker.run.protocol import Run
from tracker.run.track import KERAS
from tracker.store import Store, open_store
from tracker.warn import warn_user

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

#: The sweep kind that `track_optuna` records its trials under.
KIND = "optuna"
#: The tag a pruned trial's run gets (``tracker list --tag optuna=pruned``).
PRUNED_TAG = ("optuna", "pruned")


@contextlib.contextmanager
def track_optuna(trial: optuna.Trial, name: str, **track_options: Any) -> Iterator[Run]:
    """Track the ``fit`` inside the block as trial ``trial``'s run, resumed if the trial is a retry of a crashed one.

    The run is ``<name>-<n>``, ``n`` the number of the original Optuna trial (`original_number`), with
    ``config=trial.params``: suggest every parameter before the block. It is tracked exactly as
    ``tracker.track(run_name, config=trial.params, **track_options)`` would track it, and is a trial of the
    sweep ``name`` (kind ``optuna``), which belongs to this trial's study alone.

    Each committed epoch's monitor value is reported once to ``trial`` as ``trial.report(value, epoch)``; with a
    pruner other than ``NopPruner``, ``trial.should_prune()`` is asked after each committed epoch (``fit``
    waits for that epoch's commit before the next one begins), and once before a resumed trial trains, and
    ``optuna.TrialPruned`` is raised out of the block when it says so. A pruned run ends ``completed`` with
    the epochs it has, tagged ``optuna=pruned``. Return `best_value` from the objective: after a resume,
    ``fit``'s History holds only this process's epochs.

    Example:
        ```python
        with tracker.track_optuna(trial, "mlp", monitor="val_loss") as run:
            model.fit(x, y, epochs=20, validation_split=0.1)
        return run.best_value
        ```

    Args:
        trial: The ``optuna.Trial`` that ``study.optimize`` (or ``study.ask``) gave the objective.
        name: The sweep's name; the trials' runs are ``<name>-0``, ``<name>-1``, ... (no padding).
        **track_options: The options of `tracker.track` (``db``, ``checkpoint_dir``, ``monitor``, ``mode``, ...),
            not ``config``, which is the trial's params.

    Yields:
        The `tracker.Run`, as ``tracker.track`` yields it.

    Raises:
        ValueError: A bad argument, a multi-objective study, a ``mode`` against the study's direction, or a sweep
            ``name`` that belongs to another study or kind; before anything is recorded.
        TypeError: ``trial`` is not an ``optuna.Trial`` (a ``FixedTrial`` has no run to resume).
        optuna.TrialPruned: The pruner stopped the trial.
    """
    optuna = _optuna()
    options = _check(optuna, trial, name, track_options)
    store = open_store(options.db)
    try:
        sweep_id = _register(store, trial, name, options.name)
        reports = CommittedReports(trial, store, options.name)
        if reports.number != trial.number:
            _wait_for_lease(store, options.name)
        run = Run.from_options(options, _Reporting(KERAS, reports))
        pruned: BaseException | None = None
        with run:
            reports.report_committed()  # the epochs of earlier attempts, as the run resumes them
            try:
                yield run
            except optuna.TrialPruned as e:
                pruned = e  # the study's decision, not a failure: the run ends as a completed one
            except Exception as e:
                # Recorded while this attempt is the run's writer: a run that trained nothing is discarded at exit.
                store.record_trial(sweep_id, reports.number, run.attempt_id, TrialState.FAILED, error=f"{type(e).__name__}: {e}")
                raise
        _record_end(store, sweep_id, reports.number, run, pruned=pruned is not None)
        if pruned is not None:
            raise pruned
    finally:
        store.close()


def original_number(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The number of the trial that ``trial`` retries, following a retry of a retry to the first; else its own.

    It is what Optuna's retry callback records (``retried_trial_number``); a trial that is not a retry is its own.

    Example:
        >>> original_number(study.ask())                                            # doctest: +SKIP
        0
    """
    optuna = _optuna()
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        first = retry.retried_trial_number(_frozen(trial))
    return trial.number if first is None else int(first)


class CommittedReports:
    """One Optuna trial's view of a tracker run: each committed epoch's monitor value reported once, and the pruner.

    The rule: a step goes to ``trial.report`` only once its epoch is committed (it is read back from the
    database, so the value reported is the value committed), and never when the Optuna trial holds that step
    already, reported by this object or inherited from the failed trial (``inherit_intermediate_values``).

    Example:
        ```python
        reports = CommittedReports(trial, store, "mlp-3")
        reports.report_committed()    # [0, 1, 2]: the run's committed epochs, reported now
        reports.report_committed()    # []: nothing new is committed
        ```
    """

    def __init__(self, trial: optuna.Trial, store: Store, run_name: str) -> None:
        self.trial = trial
        self.store = store
        self.run_name = run_name
        #: The original trial's number: the run's trial number in its sweep.
        self.number = original_number(trial)
        #: The steps the Optuna trial holds.
        self.steps: set[int] = set(_frozen(trial).intermediate_values)
        optuna = _optuna()
        #: Whether the study's pruner can say yes; with ``NopPruner`` epochs are reported as their commits land.
        self.asks_pruner = not isinstance(trial.study.pruner, optuna.pruners.NopPruner)
        self._submitted = -1  # newest epoch handed to the run
        self._read_through = -1  # every epoch up to this one was read back after its commit
        self._checked_direction = False

    def submitted(self, epoch: int) -> None:
        """Note that ``epoch`` was handed to the run; it is reported once committed."""
        self._submitted = max(self._submitted, epoch)

    def report_committed(self) -> list[int]:
        """Report every committed epoch that the Optuna trial does not hold yet, in epoch order; return them.

        Call it only when nothing handed to the run is still in flight (after ``flush``), or at the start.
        An epoch without a value of the monitor (``validation_freq``, say) is not reported.
        """
        run = self.store.find_run(self.run_name)
        if run is None or run.monitor is None:
            return []  # nothing committed yet: the monitor is settled at the first commit
        self._read_through = self._submitted
        epochs, values = self.store.metric_curve(run.id, run.monitor)
        new = [(epoch, value) for epoch, value in zip(epochs, values) if epoch not in self.steps]
        for epoch, value in new:
            self.trial.report(value, epoch)
            self.steps.add(epoch)
        if new and not self._checked_direction:
            self._check_direction(run)
        return [epoch for epoch, _ in new]

    def report_if_behind(self) -> None:
        """`report_committed`, but only when an epoch was handed to the run since the last read: a flush is cheap."""
        if self._submitted > self._read_through:
            self.report_committed()

    def prune_if_told(self) -> None:
        """Raise ``optuna.TrialPruned`` if the pruner says so of the steps reported; ask nothing before the first."""
        if self.asks_pruner and self.steps and self.trial.should_prune():
            raise _optuna().TrialPruned(
                f"Trial {self.trial.number} (run {self.run_name}) pruned after epoch {max(self.steps)}, which is committed."
            )

    def _check_direction(self, run: RunRow) -> None:
        self._checked_direction = True
        expected = _MODE_OF[self.trial.study.direction.name]
        if run.mode in ("min", "max") and run.mode != expected:
            warn_user(
                f"Run {self.run_name!r} reports {run.monitor!r}, best when {run.mode}imal, to a study that "
                f"{self.trial.study.direction.name.lower()}s: the pruner and the study's best trial read it the wrong "
                f"way round. Pass monitor= a metric best when {expected}imal, or create the study with "
                f"direction={'minimize' if run.mode == 'min' else 'maximize'!r}."
            )


_MODE_OF = {"MINIMIZE": "min", "MAXIMIZE": "max"}


class _Reporting:
    """The Keras integration (`Integration`), handing the adapter a run that reports each commit to the Optuna trial."""

    def __init__(self, inner: Integration, reports: CommittedReports) -> None:
        self._inner = inner
        self._reports = reports
        self.versions = (*inner.versions, "optuna")

    def environment(self) -> dict[str, str]:
        return self._inner.environment()

    def attach(self, run: TrainingRun) -> Callable[[], None]:
        return self._inner.attach(_ReportingRun(run, self._reports))

    def callback(self, run: TrainingRun) -> object:
        return self._inner.callback(_ReportingRun(run, self._reports))


class _ReportingRun:
    """A `TrainingRun` that reports each epoch once it is committed and asks the pruner; the rest is the run's.

    Every other member passes through to the wrapped run (``__getattr__``), so that the adapter sees the
    very run it would see under ``tracker.track``.
    """

    def __init__(self, run: TrainingRun, reports: CommittedReports) -> None:
        self._run = run
        self._reports = reports

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)

    def fit_started(self) -> None:
        self._run.fit_started()
        # A resumed trial: the epochs reported as the block opened may already prune it, before it trains.
        self._reports.prune_if_told()

    def submit_epoch(
        self, epoch: int, logs: Mapping[str, object], arrays: Mapping[str, np.ndarray] | None, header: Mapping[str, object] | None,
        *, stopped: bool = False,
    ) -> None:
        self._run.submit_epoch(epoch, logs, arrays, header, stopped=stopped)
        self._reports.submitted(epoch)
        if self._reports.asks_pruner and not self._run.preempt_requested:
            # Decide on this epoch before the next begins: wait for its commit, report it, ask. (A stop signal's
            # save-and-exit comes first: a pruned trial would swallow it.) Without a pruner, each epoch is
            # reported at the next flush, and the commit keeps overlapping the next epoch's training.
            self.flush()
            self._reports.prune_if_told()

    def flush(self) -> None:
        self._run.flush()
        self._reports.report_if_behind()


def _check(optuna: Any, trial: Any, name: str, track_options: Mapping[str, Any]) -> RunOptions:
    if not isinstance(trial, optuna.Trial):
        raise TypeError(
            f"track_optuna() needs the optuna.Trial that study.optimize passes to the objective. Received: "
            f"{type(trial).__name__}. Expected optuna.Trial (a FixedTrial or FrozenTrial has no study to report to)."
        )
    if len(trial.study.directions) > 1:
        raise ValueError(
            f"track_optuna() reports intermediate values, which Optuna supports for single-objective studies only. "
            f"Received: a study with {len(trial.study.directions)} directions. Expected one."
        )
    settings.validate_run_name(name)
    if "config" in track_options:
        raise ValueError("track_optuna() sets the run's config to trial.params; pass no config=.")
    options = RunOptions(f"{name}-{original_number(trial)}", config=trial.params, **track_options)
    expected = _MODE_OF[trial.study.direction.name]
    if options.mode in ("min", "max") and options.mode != expected:
        raise ValueError(
            f"Invalid value for argument `mode`. Received: mode={options.mode!r} for a study that "
            f"{trial.study.direction.name.lower()}s. Expected {expected!r} (or 'auto' with a monitor best when {expected}imal)."
        )
    return options


def _register(store: Store, trial: optuna.Trial, name: str, run_name: str) -> int:
    """Record the trial in the sweep ``name`` of this study (created with it); return the sweep's id."""
    study = trial.study.study_name
    recorded = store.ensure_sweep(name, KIND, {"study": study})
    if recorded.kind != KIND or recorded.spec.get("study") != study:
        what = f"the Optuna study {recorded.spec.get('study')!r}" if recorded.kind == KIND else f"a {recorded.kind} sweep"
        raise ValueError(
            f"Sweep {name!r} in {store.display} is {what}. Received: a trial of the Optuna study {study!r}. "
            "Expected a sweep name of its own for each study: pass another name to track_optuna()."
        )
    store.add_trials(recorded.id, [(original_number(trial), run_name, dict(trial.params))])
    return recorded.id


def _wait_for_lease(store: Store, run_name: str) -> None:
    """Wait, up to one lease, while the run of the trial being retried is still held by its writer.

    Optuna retries a trial once its heartbeat is ``grace_period`` old; tracker frees a run once its writer is dead
    (a process gone from this host) or its lease has lapsed (``$TRACKER_LEASE_SECONDS``: a frozen process, another
    host). A retry that arrives in between would fail with `RunLockedError`, and Optuna retries a failed trial no
    more; so it waits for the lease here. A writer still beating after that is a live one: the claim then refuses.
    """
    run = store.find_run(run_name)
    if run is None or store.live_writer(run) is None:
        return
    lease = settings.lease_seconds()
    deadline = time.monotonic() + lease * 1.25  # a lease, and two of its heartbeats
    log.info("Run %r of the retried trial is still held by its writer; waiting up to %.0f s for its lease to lapse", run_name, lease)
    while time.monotonic() < deadline and store.live_writer(run) is not None:
        time.sleep(min(1.0, lease / 8))


def _record_end(store: Store, sweep_id: int, number: int, run: Run, *, pruned: bool) -> None:
    """The trial's outcome, and the run's pruned tag; only while this attempt is still the run's writer."""
    if not store.record_trial(sweep_id, number, run.attempt_id, TrialState.COMPLETED):
        return  # another process took the run over; it records the outcome
    found = store.get_run(run.name)
    key, value = PRUNED_TAG
    if pruned:
        store.set_tags(found, {key: value})
    else:
        store.set_tags(found, {}, remove=[key])  # a trial pruned once and completed after a retry is not pruned


def _frozen(trial: optuna.Trial | optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
    """The trial as its study records it now: its system attributes (a retry's origin) and intermediate values.

    From the study's running trials: since Optuna 5 an ``optuna.Trial`` shows neither.
    """
    optuna = _optuna()
    if isinstance(trial, optuna.trial.FrozenTrial):
        return trial
    for frozen in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if frozen.number == trial.number:
            return frozen
    raise ValueError(
        f"Trial {trial.number} of study {trial.study.study_name!r} is not running. Expected the trial that "
        "study.optimize (or study.ask) gave the objective, before study.tell."
    )


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as e:
        raise ImportError("tracker.track_optuna needs Optuna: pip install 'tracker[optuna]' (or pip install optuna).") from e
    return optuna

