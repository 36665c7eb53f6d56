"""A KerasTuner search as a tracker sweep of kind ``keras-tuner``: its spec, its trials, and how each ended.

The sweep is what ``tracker.runs()`` (``sweep`` and ``trial`` of each entry), ``tracker list --sweep NAME``
and ``tracker sweep show NAME`` read; KerasTuner's project folder stays the source of its own search.
A trial is added as it begins, as the run ``<name>-<trial_id>`` with its hyperparameters as params,
and its outcome is recorded as it ends (its score as the value), fenced to the attempt that trained it.

Example:
    ```python
    registry = Registry(store, "mlp", tuner)
    registry.open()                       # the sweep, the trials the project already has, their outcomes
    registry.begin(trial)                 # as KerasTuner begins a trial
    registry.end(trial, attempt_id)       # once KerasTuner has scored it
    ```
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import keras_tuner

from tracker.records import SweepRow, TrialState
from tracker.store import Store

KIND = "keras-tuner"
#: The spec keys that may change under the same sweep: KerasTuner itself lets a reloaded search run to another max_trials.
_MAY_CHANGE = ("max_trials",)


def spec_of(tuner: keras_tuner.Tuner) -> dict[str, Any]:
    """What identifies the search: the tuner's and oracle's classes, the objective, the oracle's seed, max_trials."""
    oracle = tuner.oracle
    objective = oracle.objective
    spec: dict[str, Any] = {
        "tuner": type(tuner).__name__, "oracle": type(oracle).__name__, "objective": objective.name,
        "direction": objective.direction, "seed": oracle.seed, "max_trials": oracle.max_trials,
    }
    parts = getattr(objective, "name_to_direction", None)
    if parts:
        spec["objectives"] = dict(parts)
    return json.loads(json.dumps(spec))


def params_of(trial: keras_tuner.engine.trial.Trial) -> dict[str, Any]:
    """The trial's hyperparameter values as the database gives them back (JSON)."""
    return json.loads(json.dumps(dict(trial.hyperparameters.values)))


class Registry:
    """One search's rows in tracker's database, kept up to date from KerasTuner's hooks."""

    def __init__(self, store: Store, name: str, tuner: keras_tuner.Tuner) -> None:
        self.store = store
        self.name = name
        self.tuner = tuner
        self.sweep: SweepRow | None = None

    def run_name(self, trial: keras_tuner.engine.trial.Trial) -> str:
        """The trial's run: ``<name>-<trial_id>`` (KerasTuner pads its ids with zeros to max_trials' width)."""
        return f"{self.name}-{trial.trial_id}"

    def number(self, trial: keras_tuner.engine.trial.Trial) -> int:
        """The trial's number: its id as an integer (KerasTuner numbers trials in the order they start)."""
        trial_id = trial.trial_id
        return int(trial_id) if trial_id.isdigit() else self.tuner.oracle.start_order.index(trial_id)

    def open(self) -> None:
        """Create the sweep, or check that the recorded one is this search; then record what the project holds.

        Raises:
            ValueError: The sweep exists as another search (another kind, tuner, objective or seed).
        """
        spec = spec_of(self.tuner)
        recorded = self.store.ensure_sweep(self.name, KIND, spec)
        differs = _changes(recorded, spec)
        if differs:
            raise ValueError(
                f"Sweep {self.name!r} already exists in {self.store.display} as another search: {differs}. Track this tuner under "
                "another name, or rerun the search the sweep was started with (overwrite=False, the same directory and project_name)."
            )
        if recorded.spec != spec:
            self.store.update_sweep_spec(recorded.id, spec)
        self.sweep = recorded
        oracle = self.tuner.oracle
        known = [oracle.trials[t] for t in oracle.start_order if t in oracle.trials]
        self.store.add_trials(recorded.id, [(self.number(t), self.run_name(t), params_of(t)) for t in known])
        rows = {row.number: row for row in self.store.trials(recorded.id)}
        for trial in known:
            row = rows.get(self.number(trial))
            if trial.status == "COMPLETED" and row is not None and row.state != TrialState.COMPLETED and row.run is not None:
                # Scored by KerasTuner, then killed before the score reached this database: record it now,
                # for the attempt that trained the run (a completed run keeps its last writer).
                self._record(trial, row.run.writer_attempt_id)

    def begin(self, trial: keras_tuner.engine.trial.Trial) -> None:
        """Add the trial as it begins, or check it against the trial of that number recorded before.

        Raises:
            ValueError: The sweep's trial of that number had other hyperparameters: the project was
                overwritten or replaced under the same sweep name.
        """
        sweep = self._sweep()
        number, params = self.number(trial), params_of(trial)
        self.store.add_trials(sweep.id, [(number, self.run_name(trial), params)])
        [row] = self.store.trials(sweep.id, number)
        if row.params != params:
            raise ValueError(
                f"KerasTuner's trial {trial.trial_id} has the hyperparameters {params}, but trial {number} of sweep {self.name!r} "
                f"was recorded with {row.params} (run {row.run_name!r}). The tuner's project was overwritten or is another "
                "one (overwrite=True, another directory or project_name). Track a new search under a new name."
            )

    def failed(self, trial: keras_tuner.engine.trial.Trial, attempt_id: int | None, error: str) -> None:
        """Record that the trial's training raised ``error``, while its attempt is still the run's writer."""
        if attempt_id is not None:
            self.store.record_trial(self._sweep().id, self.number(trial), attempt_id, TrialState.FAILED, error=error)

    def end(self, trial: keras_tuner.engine.trial.Trial, attempt_id: int | None) -> None:
        """Record a trial that KerasTuner has scored (``COMPLETED``), or one that failed outside its training."""
        if attempt_id is None:
            return
        if trial.status == "COMPLETED":
            self._record(trial, attempt_id)
        elif trial.status in ("INVALID", "FAILED"):
            [row] = self.store.trials(self._sweep().id, self.number(trial))
            if row.state != TrialState.FAILED:
                self.failed(trial, attempt_id, _last_line(trial.message))

    def _record(self, trial: keras_tuner.engine.trial.Trial, attempt_id: int | None) -> None:
        if attempt_id is None:
            return
        score = None if trial.score is None else float(trial.score)
        value = None if score is None or math.isnan(score) else score
        self.store.record_trial(self._sweep().id, self.number(trial), attempt_id, TrialState.COMPLETED, value=value)

    def _sweep(self) -> SweepRow:
        if self.sweep is None:
            raise RuntimeError("Registry.open() first")
        return self.sweep


def _changes(recorded: SweepRow, spec: Mapping[str, Any]) -> str | None:
    if recorded.kind != KIND:
        return f"it is a {recorded.kind} sweep, not a KerasTuner search"
    found = [
        f"{key} was {json.dumps(recorded.spec.get(key))} and is now {json.dumps(spec.get(key))}"
        for key in sorted(set(recorded.spec) | set(spec))
        if key not in _MAY_CHANGE and recorded.spec.get(key) != spec.get(key)
    ]
    return "; ".join(found) or None


def _last_line(message: str | None) -> str:
    """The exception line of a traceback, as KerasTuner keeps a failed trial's message."""
    lines = [line for line in (message or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "the trial failed"
