"""The ``sweep`` subcommand (``sweep list``, ``sweep show NAME``) and ``list --sweep NAME``: sweeps and their trials.

Trials are read through `tracker.search.report`, so they come best first with the statuses that
`tracker.sweep` gives them, pending ones included. Like the other reading subcommands, none of these
imports TensorFlow or Keras.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import textwrap

from tracker.cli.command import DB_HELP, Command
from tracker.cli.text import (
    TAG_CELL,
    best_text,
    database_display,
    json_default,
    local_time,
    or_unknown,
    param_text,
    print_pairs,
    print_table,
    safe_text,
    tags_text,
)
from tracker.redact import redact
from tracker.search.report import SweepReport, describe, read_sweep, read_sweeps, searches, spec_text
from tracker.search.sweep import Trial
from tracker.store import open_store

_LIST_HELP = "List every sweep, oldest first: its kind, how many trials stand at each status, and its best trial."
_SHOW_HELP = (
    "Show one sweep: its kind, what it searches (a grid's values, or a space's distributions with the seed and "
    "n_trials), how many trials stand at each status, and its trials best first, as tracker.sweep returns them: "
    "trial number, run, each param, status, epochs, value, what the value is (the run's monitor, or 'objective' "
    "when the objective returned it) and the best epoch. Failed trials' errors follow."
)


def _sweep_arguments(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", title="sweep subcommands", metavar="{list,show}")
    listing = _action(actions, "list", "list every sweep (the default)", _LIST_HELP, "tracker sweep list\ntracker sweep list --json")
    listing.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    show = _action(actions, "show", "show one sweep and its trials, best first", _SHOW_HELP,
                   "tracker sweep show mlp\ntracker sweep show mlp --json")
    show.add_argument("sweep", metavar="NAME", help="the sweep's name")
    show.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    # Without an action, `tracker sweep` lists the sweeps. After add_subparsers, so that it sets the action's default.
    p.set_defaults(action="list", json=False)


def _action(actions: argparse._SubParsersAction, name: str, summary: str, description: str, example: str) -> argparse.ArgumentParser:
    epilog = "Example:\n" + "\n".join(f"  {line}" for line in example.splitlines())
    parser = actions.add_parser(name, help=summary, description=textwrap.fill(description, 78), epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    # SUPPRESS keeps a `--db` given before the action, as `tracker.cli` does for one given before the subcommand.
    parser.add_argument("--db", default=argparse.SUPPRESS, help=DB_HELP)
    return parser


def _sweep(args: argparse.Namespace) -> int:
    return _show(args) if args.action == "show" else _list(args)


# -- sweep list ------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    store = open_store(args.db, create=False)
    try:
        reports = read_sweeps(store)
    finally:
        store.close()
    if args.json:
        print(json.dumps([_sweep_json(r) for r in reports], indent=2, default=json_default))
        return 0
    if not reports:
        print(f"no sweeps yet in {database_display(args.db)}", file=sys.stderr)
        return 0
    rows = [["name", "kind", "trials", "status", "best", "created"]]
    for r in reports:
        best = "-" if r.best is None else f"{safe_text(r.best.name)} {_value_text(r, r.best)}"
        rows.append([safe_text(r.sweep.name), describe(r.sweep), str(len(r.trials)), _counts_text(r), best, local_time(r.sweep.created_at)])
    print_table(rows)
    return 0


# -- sweep show ------------------------------------------------------------


def _show(args: argparse.Namespace) -> int:
    store = open_store(args.db, create=False)
    try:
        report = read_sweep(store, args.sweep)
        notes = store.annotations()
    finally:
        store.close()
    if args.json:
        found = {**_sweep_json(report), "params": report.params, "trials": [_trial_json(report, t, notes) for t in report.trials]}
        print(json.dumps(found, indent=2, default=json_default))
        return 0
    s = report.sweep
    domains = searches(s)
    best = report.best
    print_pairs([
        ("sweep", safe_text(s.name)),
        ("kind", describe(s)),
        ("searches", _continued([f"{key} {domain}" for key, domain in domains], len("searches") + 3) if domains else spec_text(s)),
        ("created", local_time(s.created_at, seconds=True)),
        ("trials", f"{len(report.trials)}: {_counts_text(report)}" if report.trials else "none yet"),
        ("best", "none yet" if best is None else f"{safe_text(best.name)}, {_value_text(report, best)}, with {_params_line(best)}"),
    ])
    if not report.trials:
        return 0
    params = report.params
    rows = [["#", "run", *map(safe_text, params), "status", "epochs", "value", "monitor", "best epoch"]]
    for t in report.trials:
        run = report.rows[t.number].run
        rows.append([
            str(t.number), safe_text(t.name), *[param_text(t.params[k]) if k in t.params else "-" for k in params], t.status,
            f"{_epochs_done(t)}/{or_unknown(run.target_epochs if run is not None else None)}",
            _number(t.value), safe_text(report.source(t) or "-"), "-" if t.best_epoch is None else str(t.best_epoch),
        ])
    print()
    print_table(rows)
    failed = [t for t in report.trials if t.error]
    if failed:
        print("\nerrors of failed trials:")
        for t in failed:
            times = f" ({t.failures} failures)" if t.failures > 1 else ""
            print(f"  {safe_text(t.name)}{times}: {safe_text(redact(t.error))}")
    return 0


def _continued(lines: list[str], indent: int) -> str:
    """Several lines as one `print_pairs` value: the later ones indented under the first."""
    return ("\n" + " " * indent).join(lines)


# -- list --sweep ----------------------------------------------------------


def list_trials(args: argparse.Namespace, tags: dict[str, str]) -> int:
    """``tracker list --sweep NAME``: the sweep's trials, best first, filtered by name pattern, status and ``tags``."""
    store = open_store(args.db, create=False)
    try:
        report = read_sweep(store, args.sweep)
        notes = store.annotations()
    finally:
        store.close()
    found = [
        t for t in report.trials
        if (args.pattern is None or fnmatch.fnmatchcase(t.name, args.pattern))
        and (args.status is None or t.status == args.status)
        and all(_tags(report, t, notes).get(k) == v for k, v in tags.items())
    ]
    if args.json:
        print(json.dumps([_trial_json(report, t, notes) for t in found], indent=2, default=json_default))
        return 0
    if not found:
        filtered = args.pattern is not None or args.status is not None or tags
        print(f"no trials {'match' if filtered else 'yet'} in sweep {report.sweep.name!r}", file=sys.stderr)
        return 0
    params = report.params
    rows = [["#", "name", *map(safe_text, params), "status", "epochs", "value", "updated", "tags"]]
    for t in found:
        row = report.rows[t.number]
        run = row.run
        rows.append([
            str(t.number), safe_text(t.name), *[param_text(t.params[k]) if k in t.params else "-" for k in params], t.status,
            f"{_epochs_done(t)}/{or_unknown(run.target_epochs if run is not None else None)}", _value_text(report, t),
            local_time(run.updated_at if run is not None else row.updated_at),
            tags_text(_tags(report, t, notes), TAG_CELL),
        ])
    print_table(rows)
    return 0


# -- shared ----------------------------------------------------------------


def _tags(report: SweepReport, t: Trial, notes: dict[int, tuple[dict[str, str], str | None]]) -> dict[str, str]:
    run = report.rows[t.number].run
    return {} if run is None else notes.get(run.id, ({}, None))[0]


def _sweep_json(report: SweepReport) -> dict:
    s, best = report.sweep, report.best
    return {
        "name": s.name, "kind": s.kind, "spec": s.spec, "created_at": s.created_at,
        "total": len(report.trials), "counts": report.counts,
        "best": None if best is None else {"name": best.name, "trial": best.number, "params": best.params,
                                           "value": best.value, "source": report.source(best)},
    }


def _trial_json(report: SweepReport, t: Trial, notes: dict[int, tuple[dict[str, str], str | None]]) -> dict:
    row = report.rows[t.number]
    run = row.run
    return {
        "sweep": t.sweep, "trial": t.number, "name": t.name, "params": t.params, "status": t.status,
        "value": t.value, "source": report.source(t), "monitor": t.monitor, "mode": t.mode,
        "last_epoch": t.last_epoch, "best_epoch": t.best_epoch, "target_epochs": None if run is None else run.target_epochs,
        "updated_at": row.updated_at if run is None else run.updated_at, "tags": _tags(report, t, notes),
        # The objective's error text, which may quote a database URL.
        "failures": t.failures, "error": None if t.error is None else redact(t.error),
    }


def _counts_text(report: SweepReport) -> str:
    return ", ".join(f"{n} {status}" for status, n in report.counts.items()) or "no trials"


def _value_text(report: SweepReport, t: Trial) -> str:
    """``val_loss=0.52 at epoch 2``, or ``objective=0.93`` for a value the objective returned; ``-`` for none."""
    source = report.source(t)
    if t.value is None or source is None:
        return "-"
    if source != t.monitor or t.best_epoch is None:
        return f"{safe_text(source)}={format(t.value, '.4g')}"
    return best_text(t.monitor, t.value, t.best_epoch)


def _params_line(t: Trial) -> str:
    return ", ".join(f"{safe_text(k)}={param_text(v)}" for k, v in t.params.items()) or "no params"


def _epochs_done(t: Trial) -> int:
    return 0 if t.last_epoch is None else t.last_epoch + 1


def _number(value: float | None) -> str:
    return "-" if value is None else format(value, ".6g")


COMMANDS = [
    Command(
        "sweep", "list sweeps, or show one sweep's trials best first",
        "Read the sweeps that tracker.sweep, tracker.track_tuner and tracker.track_optuna record: `sweep list` "
        "lists them with their trials per status and best trial; `sweep show NAME` shows what one searches and "
        "its trials best first, with their params, status and value. Without an action it lists them.",
        "tracker sweep list\ntracker sweep show mlp\ntracker sweep show mlp --json",
        _sweep_arguments, _sweep,
    ),
]
