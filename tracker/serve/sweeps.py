"""What the web view shows of sweeps, as JSON-able dicts: the sweep list, and one sweep with its trials and chart axes.

The trials come from `tracker.search.report`: best first, with the statuses `tracker.sweep` gives them,
as ``tracker sweep show`` prints them. Like `tracker.serve.data`, every read is one of the store's short
transactions, and NaN and infinity are sent as JSON can carry them (`tracker.serve.data.number`).

Example:
    >>> store = open_store("runs.db", create=False)        # doctest: +SKIP
    >>> sweep_detail(store, "mlp")["trials"][0]["name"]    # doctest: +SKIP
    'mlp-3'
"""

from __future__ import annotations

import json
import math
import numbers
from typing import Any

from tracker.redact import redact
from tracker.search.report import SweepReport, describe, listed_values, log_scaled, read_sweep, read_sweeps, searches, spec_text
from tracker.search.sweep import Trial
from tracker.serve.data import number, strict
from tracker.store import Store

#: A numeric parameter whose positive values span this factor or more is charted on a log axis.
LOG_SPAN = 100.0


def list_sweeps(store: Store) -> list[dict]:
    """Every sweep, oldest first, as `sweep_summary` dicts."""
    return [sweep_summary(report) for report in read_sweeps(store)]


def sweep_summary(report: SweepReport) -> dict:
    """One sweep as ``GET /api/sweeps`` lists it: what it searches, its trials per status and its best trial."""
    s, best = report.sweep, report.best
    return {
        "name": s.name,
        "kind": s.kind,
        "description": describe(s),
        "searches": [[key, domain] for key, domain in searches(s)] or None,
        "spec_text": None if searches(s) else spec_text(s),
        "created_at": s.created_at.isoformat(),
        "total": len(report.trials),
        "counts": report.counts,
        "best": None if best is None else {
            "name": best.name, "trial": best.number, "params": strict(best.params),
            "value": number(best.value), "source": report.source(best),
        },
    }


def sweep_detail(store: Store, name: str) -> dict:
    """One sweep: its summary, its spec, its parameters with their chart axes, and its trials best first.

    Raises:
        SweepNotFoundError: No sweep of that name.
    """
    report = read_sweep(store, name)
    detail = sweep_summary(report)
    detail.update(
        spec=strict(report.sweep.spec),
        params=_params(report),
        trials=[_trial(report, t) for t in report.trials],
    )
    return detail


def _trial(report: SweepReport, t: Trial) -> dict:
    row = report.rows[t.number]
    run = row.run
    return {
        "trial": t.number,
        "name": t.name,
        "params": strict(t.params),
        "status": t.status,
        "value": number(t.value),
        "source": report.source(t),
        "monitor": t.monitor,
        "mode": t.mode,
        "last_epoch": t.last_epoch,
        "epochs_done": 0 if t.last_epoch is None else t.last_epoch + 1,
        "target_epochs": None if run is None else run.target_epochs,
        "best_epoch": t.best_epoch,
        # Whether the run exists yet: a pending trial has no run page and no curve.
        "run": run is not None,
        "failures": t.failures,
        # The objective's error text, which may quote a database URL.
        "error": None if t.error is None else redact(t.error),
        "updated_at": (row.updated_at if run is None else run.updated_at).isoformat(),
    }


def _params(report: SweepReport) -> list[dict]:
    """Each parameter with its chart axis: ``log`` or ``linear`` (with ``values``, the numbers a grid or a choice
    lists), or ``category`` (with ``categories``, its values in the spec's order, then the trials')."""
    logged = log_scaled(report.sweep)
    declared = listed_values(report.sweep)
    found = []
    for key in report.params:
        values = [t.params[key] for t in sorted(report.trials, key=lambda t: t.number) if key in t.params]
        numeric = [float(v) for v in values if _is_number(v)]
        if values and len(numeric) == len(values):
            positive = all(v > 0 for v in numeric)
            log = positive and (key in logged or max(numeric) >= LOG_SPAN * min(numeric))
            entry: dict[str, Any] = {"name": key, "axis": "log" if log else "linear"}
            if key in declared and all(_is_number(v) for v in declared[key]):
                entry["values"] = sorted(declared[key])  # a grid's few values: the ticks of its axis
            found.append(entry)
            continue
        # Categories in the order the spec lists them (a grid's values, a choice), then as the trials first have them.
        order: list[Any] = []
        for v in [*declared.get(key, []), *values]:
            if all(_key(v) != _key(o) for o in order):
                order.append(v)
        found.append({"name": key, "axis": "category", "categories": strict(order)})
    return found


def _is_number(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _key(v: object) -> str:
    # JSON text tells 1 from "1" and True from 1, as the page does when it places a value on the axis.
    return json.dumps(v, sort_keys=True)
