"""`report`: what the views show of a sweep: its trials best first, how many stand where, and what it searches.

Read-only, shared by the command line (``tracker sweep``, ``tracker list --sweep``) and the web view
(`tracker.serve`), which cannot import each other. Each read is one of the store's short transactions,
and the trials are ranked and given their statuses by `tracker.search.sweep` itself, so every view lists
them as ``tracker.sweep`` returns them. It imports no framework.

Example:
    >>> store = open_store("runs.db", create=False)        # doctest: +SKIP
    >>> report = read_sweep(store, "mlp")                   # doctest: +SKIP
    >>> report.counts, report.best.name, searches(report.sweep)    # doctest: +SKIP
    ({'completed': 5, 'pending': 1}, 'mlp-3', [('units', '[4, 8, 16]'), ('lr', '[0.001, 0.01]')])
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from tracker.errors import TrackerError
from tracker.records import SweepRow, TrialRow
from tracker.search.sweep import Trial, rank, trial_of
from tracker.store import Store

#: The statuses a trial's count is reported under, in this order; any other (``interrupted``, ...) follows.
STATUS_ORDER = ("completed", "running", "crashed", "pending", "failed")
#: What a trial's value is called when the objective returned it, rather than the run's best monitor value.
OBJECTIVE = "objective"
#: How many known names an unknown-sweep error lists at most.
_KNOWN_SHOWN = 20


class SweepNotFoundError(TrackerError):
    """No sweep of that name exists in the database."""

    def __init__(self, name: str, db: str, known: list[str]) -> None:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean: {', '.join(repr(s) for s in close)}?" if close else ""
        shown = ", ".join(known[:_KNOWN_SHOWN]) + (f" and {len(known) - _KNOWN_SHOWN} more" if len(known) > _KNOWN_SHOWN else "")
        super().__init__(f"No sweep named {name!r} in {db}.{hint} Sweeps there: {shown or 'none'}.")
        self.name = name


@dataclass(frozen=True)
class SweepReport:
    """A sweep as the views show it: its record and its trials, best first (`tracker.search.sweep.rank`)."""

    sweep: SweepRow
    trials: list[Trial]
    #: Each trial's row by its number, with its run (`TrialRow.run`) once the run exists.
    rows: dict[int, TrialRow]

    @property
    def params(self) -> list[str]:
        """The parameter names: those the spec names, in its order, then any other a trial has (KerasTuner's conditional ones)."""
        names = [key for key, _ in _axes(self.sweep)]
        for t in sorted(self.trials, key=lambda t: t.number):
            names += [k for k in t.params if k not in names]
        return names

    @property
    def counts(self) -> dict[str, int]:
        """How many trials stand at each status, in `STATUS_ORDER` (statuses without a trial left out)."""
        found: dict[str, int] = {}
        for t in self.trials:
            found[t.status] = found.get(t.status, 0) + 1
        known = [s for s in STATUS_ORDER if s in found]
        return {s: found[s] for s in [*known, *sorted(set(found) - set(known))]}

    @property
    def best(self) -> Trial | None:
        """The best completed trial with a value, or None while there is none."""
        first = self.trials[0] if self.trials else None
        return first if first is not None and first.status == "completed" and first.value is not None else None

    def source(self, trial: Trial) -> str | None:
        """What ``trial.value`` is: `OBJECTIVE` when the objective returned it, else the run's monitor (None if unknown)."""
        return OBJECTIVE if self.rows[trial.number].value is not None else trial.monitor


def read_sweep(store: Store, name: str) -> SweepReport:
    """The sweep called ``name`` with its trials, best first.

    Raises:
        SweepNotFoundError: No sweep of that name; the message names the sweeps there.
    """
    recorded = store.find_sweep(name)
    if recorded is None:
        raise SweepNotFoundError(name, store.display, [s.name for s in store.sweeps()])
    return _report(store, recorded)


def read_sweeps(store: Store) -> list[SweepReport]:
    """Every sweep with its trials, oldest sweep first."""
    return [_report(store, recorded) for recorded in store.sweeps()]


def _report(store: Store, recorded: SweepRow) -> SweepReport:
    rows = store.trials(recorded.id)
    # The statuses and the ranking are the sweep's own (what `tracker.sweep` returns), not a second rule here.
    trials = rank([trial_of(row, {}) for row in rows])
    return SweepReport(recorded, trials, {row.number: row for row in rows})


def searches(sweep: SweepRow) -> list[tuple[str, str]]:
    """``(parameter, what it takes)`` for each parameter the spec names: ``("lr", "loguniform(0.0001, 0.1)")``,
    ``("units", "[4, 8, 16]")`` for a grid's values or a choice; empty for a spec of another form."""
    return [(key, _domain(value)) for key, value in _axes(sweep)]


def describe(sweep: SweepRow) -> str:
    """The sweep's kind and size in a few words: ``grid of 6 combinations``, ``random, 20 trials, seed 0``."""
    spec = sweep.spec
    if sweep.kind == "grid" and "grid" in spec:
        size = 1
        for _, values in spec["grid"]:
            size *= len(values)
        return f"grid of {size} combination{'s' if size != 1 else ''}"
    if sweep.kind == "random" and "space" in spec:
        return f"random, {spec.get('n_trials', '?')} trials, seed {spec.get('seed', '?')}"
    return sweep.kind


def spec_text(sweep: SweepRow, limit: int = 300) -> str:
    """The spec as compact JSON, cut to ``limit`` characters: for a kind whose spec `searches` cannot read."""
    text = json.dumps(sweep.spec, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def log_scaled(sweep: SweepRow) -> set[str]:
    """The parameters the spec draws log-uniformly: a chart puts them on a log axis."""
    return {key for key, value in _axes(sweep) if isinstance(value, dict) and value.get("distribution") == "loguniform"}


def listed_values(sweep: SweepRow) -> dict[str, list[Any]]:
    """The values the spec lists for each parameter that takes one of a list (a grid's, a choice's), in its order."""
    found = {}
    for key, value in _axes(sweep):
        if isinstance(value, list):
            found[key] = value
        elif isinstance(value, dict) and value.get("distribution") == "choice" and isinstance(value.get("values"), list):
            found[key] = value["values"]
    return found


def _axes(sweep: SweepRow) -> list[tuple[str, Any]]:
    """``[(key, values or distribution), ...]`` from a grid's or a space's spec; [] for a spec of another form."""
    for field in ("grid", "space"):
        entries = sweep.spec.get(field)
        if isinstance(entries, list) and all(isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) for e in entries):
            return [(key, value) for key, value in entries]
    return []


def _domain(value: Any) -> str:
    if isinstance(value, dict) and "distribution" in value:
        kind = value["distribution"]
        if kind == "choice":
            return json.dumps(value.get("values"))
        return f"{kind}({value.get('low')}, {value.get('high')})"
    return json.dumps(value)
