"""`sweep`: a hyperparameter search whose trials are tracker runs, so that a crash costs no trial its progress.

Each trial is the run ``<sweep>-<number>`` (no padding), tracked exactly as ``tracker.track(trial.name,
config=trial.params, **track_options)`` would track it. The sweep is in the database, not in the process:

- running the same script again continues it: completed trials are skipped, a trial whose process died
  resumes at its newest checkpoint, and pending trials start;
- the same script started N times (terminals, a SLURM array, machines sharing a PostgreSQL database)
  shares the trials. A worker claims a trial by starting an attempt at its run, which the run's lease
  (`tracker.store.writers`) grants to one live process at a time; a worker that finds a trial held by a
  live one moves on to the next.

Example:
    ```python
    def objective(trial):
        model = build(units=trial.params["units"], lr=trial.params["lr"])
        model.fit(x, y, epochs=20, validation_split=0.1)   # tracked as run trial.name

    trials = tracker.sweep("mlp", objective, grid={"units": [4, 8, 16], "lr": [1e-3, 1e-2]})
    print(trials[0].params, trials[0].value)               # the best trial first
    ```
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracker import settings
from tracker.errors import Preempted, RunLockedError, TrackerError
from tracker.query import effective_status
from tracker.records import SweepRow, TrialRow, TrialState
from tracker.run.options import RunOptions
from tracker.run.track import track
from tracker.run.writer import WriterFailed
from tracker.search import space as spaces
from tracker.store import Store, open_store
from tracker.warn import warn_user

log = logging.getLogger(__name__)


class SweepError(TrackerError):
    """A sweep cannot go on: every one of its trials failed."""


@dataclass(frozen=True)
class Trial:
    """One trial of a sweep: what ``objective(trial)`` gets, and what `sweep` returns.

    Example:
        >>> t = Trial("mlp-3", 3, {"units": 8}, sweep="mlp")
        >>> t.name, t.params["units"], t.status
        ('mlp-3', 8, 'pending')
    """

    #: The trial's run name, ``<sweep>-<number>`` (its name after a ``tracker rename`` of the run).
    name: str
    #: Its index in the sweep: the grid's combination, or the draw from the space.
    number: int
    #: Its parameters, also the run's config.
    params: dict[str, Any]
    #: ``pending`` (never started), ``running``, ``crashed`` (its worker died; the next worker resumes it),
    #: ``completed``, ``failed`` (its objective raised), or the run's status if the run ended otherwise.
    status: str = "pending"
    #: What ranks it: the number the objective returned, else the run's best value of its monitor.
    value: float | None = None
    #: The objective's error, for a failed trial.
    error: str | None = None
    #: The sweep it belongs to.
    sweep: str = ""
    #: The monitor whose best value `value` is (when the objective returned nothing), and its direction.
    monitor: str | None = None
    mode: str | None = None
    #: How many times its objective raised.
    failures: int = 0
    #: Newest committed epoch of its run (0-based).
    last_epoch: int | None = None
    best_epoch: int | None = None
    _row: TrialRow | None = field(default=None, repr=False, compare=False)


def sweep(
    name: str,
    objective: Callable[[Trial], object],
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    space: Mapping[str, Any] | None = None,
    n_trials: int | None = None,
    seed: int = 0,
    retries: int = 0,
    wait: bool = False,
    **track_options: Any,
) -> list[Trial]:
    """Run a hyperparameter search whose every trial survives a crash; return its trials, best first.

    ``objective(trial)`` builds and fits a model from ``trial.params``; its ``fit`` is tracked as the run
    ``trial.name``. It may return the trial's score (a number; ranked like the monitor, by the run's
    ``mode``) or nothing, to rank by the run's best value of its monitor. Prefer nothing, or a value
    computed from ``tracker.curves(trial.name)``: after a resume, ``fit``'s History holds only the
    epochs trained by this process.

    Running the same call again (after a crash, or in another worker) continues the same sweep: completed
    trials are skipped, a crashed one resumes at its newest checkpoint, pending ones start. Asking for
    other trials under an existing sweep name is refused, naming the difference (a larger ``n_trials``
    is allowed: it draws more trials of the same space).

    Example:
        ```python
        trials = tracker.sweep(
            "mlp", objective,
            space={"lr": tracker.loguniform(1e-4, 1e-1), "units": tracker.randint(4, 65),
                   "activation": tracker.choice(["relu", "tanh"])},
            n_trials=20, seed=0, monitor="val_loss",
        )
        ```

    Args:
        name: The sweep's name; its trials are the runs ``<name>-0``, ``<name>-1``, ...
        objective: Called with each `Trial` this worker claims; trains it with ``model.fit``.
        grid: Every combination of these lists, in ``itertools.product`` order (the first key varies slowest).
        space: Distributions to draw ``n_trials`` trials from: `tracker.choice`, `tracker.uniform`,
            `tracker.loguniform`, `tracker.randint` (or a plain list, a choice).
        n_trials: How many trials to draw from ``space``.
        seed: Seeds the draws: trial ``n`` depends only on ``seed`` and ``n``. Defaults to 0.
        retries: How many more times to run a trial whose objective raised. Defaults to 0 (a failed
            trial stays failed).
        wait: When no trial is left to claim, wait for the trials that other live workers hold (and take over
            any whose worker dies) instead of returning. Defaults to False.
        **track_options: The options of `tracker.track` (``db``, ``checkpoint_dir``, ``monitor``, ``mode``,
            ``keep_last``, step options, ...) for every trial; not ``config``, which is the trial's params.

    Returns:
        Every trial of the sweep, completed ones best first, then those running or left, then failed ones.

    Raises:
        ValueError: Bad arguments, before any trial trains (see `tracker.search.space.plan`).
        SweepError: Every trial failed.
    """
    plan = _check(name, grid, space, n_trials, seed, retries, track_options)
    store = open_store(track_options.get("db"))
    try:
        recorded = _open(store, name, plan)
        worker = _Worker(store, recorded, objective, retries, track_options)
        worker.work(wait)
        found = _trials(store, recorded, track_options)
    finally:
        store.close()
    _raise_if_all_failed(name, found)
    return rank(found)


def _check(
    name: str, grid: Any, space: Any, n_trials: Any, seed: Any, retries: Any, track_options: Mapping[str, Any]
) -> spaces.Plan:
    settings.validate_run_name(name)
    if "config" in track_options:
        raise ValueError("sweep() sets each trial's config to its params; pass no config=.")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"Invalid value for argument `retries`. Received: retries={retries!r}. Expected an integer >= 0.")
    plan = spaces.plan(grid=grid, space=space, n_trials=n_trials, seed=seed)
    last = f"{name}-{len(plan.params) - 1}"
    if len(last) > 128:
        raise ValueError(f"Invalid sweep name {name!r}: its trial runs would be named up to {last!r}, over 128 characters. Choose a shorter name.")
    try:
        RunOptions(last, config=plan.params[-1], **track_options)  # the track options, and JSON-able params, before any trial
    except TypeError as e:
        if "unexpected keyword" in str(e):
            known = ", ".join(f for f in RunOptions.__dataclass_fields__ if f not in ("name", "config"))
            raise TypeError(f"sweep() got an option that tracker.track does not take: {e}. Expected any of: {known}.") from None
        raise
    return plan


def _open(store: Store, name: str, plan: spaces.Plan) -> SweepRow:
    recorded = store.ensure_sweep(name, plan.kind, plan.spec)
    differs = spaces.changes(recorded.kind, recorded.spec, plan)
    if differs:
        raise ValueError(
            f"Sweep {name!r} already exists in {store.display} with other trials: {differs}. "
            "Run it with the arguments it was started with, or choose another sweep name."
        )
    if recorded.spec != plan.spec:  # n_trials grew
        store.update_sweep_spec(recorded.id, plan.spec)
    store.add_trials(recorded.id, [(n, f"{name}-{n}", params) for n, params in enumerate(plan.params)])
    return recorded


class _Worker:
    """One process's share of a sweep: claims the trials no live worker holds, one at a time, in number order."""

    def __init__(self, store: Store, recorded: SweepRow, objective: Callable[[Trial], object], retries: int, track_options: dict[str, Any]) -> None:
        self.store = store
        self.sweep = recorded
        self.objective = objective
        self.retries = retries
        self.track_options = track_options
        self.lost: set[int] = set()  # trials this worker lost to another (a takeover): not claimed again

    def work(self, wait: bool) -> None:
        while True:
            held = False
            for listed in self.store.trials(self.sweep.id):
                if not self._wanted(listed):
                    continue
                # Read again: the list is as old as the trials trained since, and a trial it says is pending may have
                # been completed by another worker meanwhile (whose run would then let this one in, to train nothing).
                (row,) = self.store.trials(self.sweep.id, listed.number)
                if not self._wanted(row):
                    continue
                if _held(row):
                    held = True
                    continue
                if self._run(row) == "held":
                    held = True
            if not (wait and held):
                return
            time.sleep(min(5.0, settings.lease_seconds() / 4))

    def _wanted(self, row: TrialRow) -> bool:
        if row.number in self.lost or row.state == TrialState.COMPLETED:
            return False
        return row.state != TrialState.FAILED or row.failures <= self.retries

    def _run(self, row: TrialRow) -> str:
        """Train one trial; ``completed``, ``failed``, or ``held`` when another live worker has it."""
        trial = Trial(row.run_name, row.number, dict(row.params), "running", sweep=self.sweep.name, failures=row.failures)
        claimed = False
        try:
            with track(row.run_name, config=row.params, **self.track_options) as run:
                claimed = True
                value = self._call(trial, run.attempt_id)
        except RunLockedError as e:
            # Claimed by another worker a moment ago, or taken from this one (its lease lapsed while it was stopped).
            if claimed:
                self.lost.add(row.number)
                log.warning("Sweep %r: trial %s was taken over by another worker: %s", self.sweep.name, row.run_name, e)
            return "held"
        except _ObjectiveFailed:
            return "failed"
        recorded = self.store.record_trial(self.sweep.id, row.number, run.attempt_id, TrialState.COMPLETED, value=value)
        if not recorded:
            log.warning("Sweep %r: trial %s was taken over before its result was recorded; the other worker records it.", self.sweep.name, row.run_name)
        return "completed"

    def _call(self, trial: Trial, attempt_id: int) -> float | None:
        try:
            returned = self.objective(trial)
            return _as_value(trial, returned)
        except (RunLockedError, Preempted):
            raise
        except Exception as e:
            lost = _lost_run(e)
            if lost is not None:  # a commit was refused, as the run has another writer now; reported by the caller
                raise lost from e
            error = f"{type(e).__name__}: {e}"
            self.store.record_trial(self.sweep.id, trial.number, attempt_id, TrialState.FAILED, error=error)
            log.error("Sweep %r: trial %s (params %s) failed", self.sweep.name, trial.name, trial.params, exc_info=True)
            warn_user(f"Sweep {self.sweep.name!r}: trial {trial.name} failed with {error}. The sweep goes on with the next trial.")
            raise _ObjectiveFailed from e


def _lost_run(e: BaseException) -> RunLockedError | None:
    """The refusal of a commit that ``e`` carries (`WriterFailed` wraps it), if this attempt lost its run."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, RunLockedError):
            return seen
        seen = seen.error if isinstance(seen, WriterFailed) else seen.__cause__
    return None


class _ObjectiveFailed(Exception):
    """The objective raised: recorded on the trial, and the run's attempt ends ``failed``."""


def _held(row: TrialRow) -> bool:
    """Whether a live worker (this process excluded: it runs one trial at a time) holds the trial's run."""
    return row.run is not None and row.attempt is not None and row.attempt.alive() and row.run.writer_attempt_id == row.attempt.id


def _as_value(trial: Trial, returned: object) -> float | None:
    if returned is None:
        return None
    if isinstance(returned, bool) or not isinstance(returned, numbers.Real):
        raise TypeError(
            f"The objective of trial {trial.name} returned {type(returned).__name__} {returned!r:.80}. Expected a number "
            "(the trial's score) or None (rank by the run's best monitor value). After a resume, fit's History holds only "
            "this process's epochs: compute a score from tracker.curves(trial.name) instead."
        )
    return float(returned)


def sweep_trials(name: str, db: str | os.PathLike[str] | None = None) -> list[Trial]:
    """The trials of sweep ``name``, best first, as `sweep` returns them; for reading a sweep from anywhere.

    Example:
        >>> best = tracker.sweep_trials("mlp")[0]                  # doctest: +SKIP

    Raises:
        ValueError: No sweep of that name.
    """
    store = open_store(db, create=False)
    try:
        recorded = store.find_sweep(name)
        if recorded is None:
            known = ", ".join(s.name for s in store.sweeps()) or "none"
            raise ValueError(f"No sweep named {name!r} in {store.display}. Sweeps there: {known}.")
        return rank(_trials(store, recorded, {}))
    finally:
        store.close()


def _trials(store: Store, recorded: SweepRow, track_options: Mapping[str, Any]) -> list[Trial]:
    return [trial_of(row, track_options) for row in store.trials(recorded.id)]


def trial_of(row: TrialRow, track_options: Mapping[str, Any] | None = None) -> Trial:
    """The `Trial` a trial row stands for, with its status settled from its run (``running``, ``crashed``, ...)."""
    track_options = track_options or {}
    run = row.run
    if row.state == TrialState.COMPLETED:
        status = "completed"
    elif run is not None and _held(row):
        status = "running"
    elif row.state == TrialState.FAILED:
        status = "failed"
    elif run is None:
        status = "pending"
    else:
        status = str(effective_status(run, row.attempt))
    value = row.value if row.value is not None else (run.best_value if run is not None else None)
    mode = (run.mode if run is not None else None) or track_options.get("mode")
    return Trial(
        row.run_name, row.number, row.params, status, value, row.error, row.sweep,
        monitor=run.monitor if run is not None else None, mode=mode if mode in ("min", "max") else None,
        failures=row.failures, last_epoch=run.last_epoch if run is not None else None,
        best_epoch=run.best_epoch if run is not None else None, _row=row,
    )


_ORDER = {"completed": 0, "running": 1, "crashed": 2, "pending": 4, "failed": 5}


def rank(trials: Sequence[Trial]) -> list[Trial]:
    """Completed trials best first (by each run's mode; ``min`` when unknown), then running, crashed, the rest, failed."""
    def key(t: Trial) -> tuple:
        known = t.value is not None and not math.isnan(t.value)
        score = (-t.value if t.mode == "max" else t.value) if known else math.inf
        return (_ORDER.get(t.status, 3), not known, score, t.number)

    return sorted(trials, key=key)


def _raise_if_all_failed(name: str, found: Sequence[Trial]) -> None:
    if found and all(t.status == "failed" for t in found):
        errors = sorted({t.error or "?" for t in found})
        raise SweepError(
            f"Every trial of sweep {name!r} failed ({len(found)} of {len(found)}). "
            f"{'Its error' if len(errors) == 1 else 'Their errors'}: {'; '.join(errors[:3])}"
            f"{' ...' if len(errors) > 3 else ''}. Fix the objective, then run again with retries=1 to rerun them."
        )
