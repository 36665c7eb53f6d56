"""The subcommands that read runs: ``list``, ``show``, ``export`` and ``plot``.

They only read the database, and none imports TensorFlow or Keras (only ``plot``
imports matplotlib), so they answer at once even on a machine that is busy training.
``list --sweep`` hands over to `tracker.cli.sweeps`, which lists a sweep's trials.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import fnmatch
import io
import json
import shlex
import sys
from pathlib import Path

from tracker.cli import sweeps
from tracker.cli.command import Command
from tracker.cli.text import (
    TAG_CELL,
    best_text,
    database_display,
    json_default,
    local_time,
    number_text,
    or_unknown,
    print_pairs,
    print_table,
    safe_text,
    tags_text,
)
from tracker.durable import replace_atomically
from tracker.query import attempt_status, curves, effective_status, runs
from tracker.records import AttemptRow, RunRow, Status
from tracker.spool.journal import behind as spool_behind
from tracker.store import Store, open_store

#: The statuses `list --status` accepts: what `tracker.runs` shows.
STATUSES = tuple(s.value for s in Status if s != Status.TAKEN_OVER)
#: `list --status` also takes a sweep's trial that no worker started yet.
LIST_STATUSES = (*STATUSES, "pending")
#: The database's limit on a tag key, the same on every backend.
_MAX_TAG_KEY = 255


def _list_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", metavar="GLOB", help="only runs whose name matches this shell-style pattern, e.g. 'cnn-*'")
    p.add_argument("--status", choices=LIST_STATUSES, help="only runs with this status (pending: a sweep's trial not started yet)")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="only runs with this tag (repeat: all must match)")
    p.add_argument("--sweep", metavar="NAME",
                   help="only the trials of this sweep, best first, with their params (pending ones too)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def _show_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="the run's name")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="the run's name")
    p.add_argument("--format", choices=("csv", "json"), help="output format (default: from the -o extension, else csv)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout (- is stdout)")
    p.add_argument("--include-superseded", action="store_true",
                   help="also export epochs replaced by a fallback or a rewind, with a `superseded` column")


def _plot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="names of the runs to overlay")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="image to write; the extension picks the format: .png, .svg or .pdf")
    p.add_argument("--metrics", nargs="+", metavar="NAME",
                   help="only these metrics; a family such as 'loss' includes 'val_loss' (default: all)")
    p.add_argument("--by", choices=("epoch", "step"), default="epoch",
                   help="x axis: epochs, or the global step of the metrics that log_every_steps recorded (default: epoch)")


def _plot(args: argparse.Namespace) -> int:
    from tracker.plot import plot  # matplotlib: only for this subcommand

    print(plot(args.runs, args.output, db=args.db, metrics=args.metrics, by=args.by))
    return 0


# -- list ------------------------------------------------------------------


def list_runs(args: argparse.Namespace) -> int:
    """``tracker list``: the table of runs, filtered by name pattern, status and tags (or a sweep's trials, with ``--sweep``)."""
    wanted = dict(parse_tag(t) for t in args.tag)
    if args.sweep is not None:
        return sweeps.list_trials(args, wanted)
    found = [
        r for r in runs(args.db)
        if (args.pattern is None or fnmatch.fnmatchcase(r.name, args.pattern))
        and (args.status is None or r.status == args.status)
        and all(r.tags.get(k) == v for k, v in wanted.items())
    ]
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in found], indent=2, default=json_default))
        return 0
    if not found:
        filtered = args.pattern is not None or args.status is not None or wanted
        print(f"no runs {'match' if filtered else 'yet'} in {database_display(args.db)}", file=sys.stderr)
        return 0
    # The sweep column only once some run is a trial: a plain list keeps its six columns.
    in_sweeps = any(r.sweep is not None for r in found)
    rows = [["name", *(["sweep"] if in_sweeps else []), "status", "epochs", "best", "updated", "tags"]]
    for r in found:
        done = 0 if r.last_epoch is None else r.last_epoch + 1
        trial = [] if not in_sweeps else ["-" if r.sweep is None else f"{r.sweep} #{r.trial}"]
        status = f"{r.status} ({r.behind} behind)" if r.behind else r.status
        rows.append([safe_text(r.name), *trial, status, f"{done}/{or_unknown(r.target_epochs)}",
                     best_text(r.monitor, r.best_value, r.best_epoch), local_time(r.updated_at),
                     tags_text(r.tags, TAG_CELL)])
    print_table(rows)
    return 0


def parse_tag(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` as a pair; `ValueError` naming the expected form otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"Invalid tag {text!r}. Expected KEY=VALUE, for example dataset=mnist.")
    if len(key) > _MAX_TAG_KEY:
        raise ValueError(f"Invalid tag key {key[:40]!r}...: it has {len(key)} characters. Expected at most {_MAX_TAG_KEY}.")
    return key, value


# -- show ------------------------------------------------------------------


def _show(args: argparse.Namespace) -> int:
    store = open_store(args.db, create=False)
    try:
        run = store.get_run(args.run)
        attempts = store.attempts(run.id)
        tags, note = store.annotations().get(run.id, ({}, None))
        if args.json:
            print(json.dumps(_show_json(store, run, attempts, tags, note), indent=2, default=json_default))
            return 0
        _print_summary(run, attempts[-1] if attempts else None, tags, note)
        _print_latest_metrics(store, run)
        _print_attempts(attempts)
        _print_checkpoints(store, run)
    finally:
        store.close()
    return 0


def _show_json(store: Store, run: RunRow, attempts: list[AttemptRow], tags: dict[str, str], note: str | None) -> dict:
    return {
        "name": run.name, "status": effective_status(run, attempts[-1] if attempts else None),
        "created_at": run.created_at, "updated_at": run.updated_at,
        "last_epoch": run.last_epoch, "target_epochs": run.target_epochs,
        "monitor": run.monitor, "mode": run.mode, "best_epoch": run.best_epoch, "best_value": run.best_value,
        "config": run.config, "tags": tags, "note": note,
        "imported": _imported(attempts), "checkpoint_dir": run.checkpoint_dir or None,
        "metrics": _latest_metrics(store, run),
        "attempts": [
            {"status": attempt_status(a), "started_at": a.started_at, "ended_at": a.ended_at, "initial_epoch": a.initial_epoch,
             "pid": a.process.pid, "host": a.process.host, "command": [a.process.executable, *a.process.argv],
             "cwd": a.process.cwd, "error": a.error,
             "spool": None if a.spool is None else {"path": a.spool.path, **dataclasses.asdict(spool_behind(a.spool, a.process.host))}}
            for a in attempts
        ],
        "checkpoints": [
            {"epoch": e.epoch, "batch": e.batch, "step": e.step, "path": e.checkpoint.path, "size": e.checkpoint.size,
             "sha256": e.checkpoint.sha256, "superseded": e.superseded}
            for e in store.checkpoints(run.id, live_only=False)
        ],
    }


def _imported(attempts: list[AttemptRow]) -> bool:
    return any(a.status == Status.IMPORTED for a in attempts)


def _latest_metrics(store: Store, run: RunRow) -> dict[str, float]:
    return {
        name: value
        for _, epoch, superseded, name, value in store.all_epoch_metrics(run.id)
        if epoch == run.last_epoch and not superseded and name is not None
    }


def _print_summary(run: RunRow, latest: AttemptRow | None, tags: dict[str, str], note: str | None) -> None:
    done = 0 if run.last_epoch is None else run.last_epoch + 1
    monitor = "none"
    if run.monitor:
        monitor = f"{run.monitor} ({run.mode or 'min'}), best " + (
            "none yet" if run.best_epoch is None else f"{number_text(run.best_value)} at epoch {run.best_epoch}"
        )
    print_pairs([
        ("run", safe_text(run.name)),
        ("status", effective_status(run, latest)),
        ("created", local_time(run.created_at, seconds=True)),
        ("updated", local_time(run.updated_at, seconds=True)),
        ("epochs", f"{done} done of {or_unknown(run.target_epochs)}"),
        ("monitor", monitor),
        ("checkpoints", run.checkpoint_dir or "none: imported from another tool's log, so it cannot be resumed"),
        ("config", json.dumps(run.config, sort_keys=True)),
        ("tags", tags_text(tags) or "none"),
        ("note", safe_text(note) if note else "none"),
    ])


def _print_latest_metrics(store: Store, run: RunRow) -> None:
    if run.last_epoch is None:
        print("\nno epoch committed yet")
        return
    values = _latest_metrics(store, run)
    print(f"\nmetrics at epoch {run.last_epoch}:")
    print_pairs([(safe_text(name), number_text(values[name])) for name in sorted(values)], indent="  ")


def _print_attempts(attempts: list[AttemptRow]) -> None:
    print("\nattempts, oldest first:")
    for i, a in enumerate(attempts, 1):
        status = attempt_status(a)
        p = a.process
        print(f"  {i}. {local_time(a.started_at, seconds=True)}  {status}  from epoch {a.initial_epoch}  pid {p.pid}@{p.host}")
        print(f"     command: {safe_text(shlex.join([p.executable, *p.argv]))}")
        print(f"     cwd:     {safe_text(p.cwd)}")
        if a.error:
            print(f"     error:   {safe_text(a.error)}")
        if a.spool is not None:
            print(f"     spool:   {_spool_text(a)}")


def _spool_text(a: AttemptRow) -> str:
    """``spool on gpu-a: 3 commits not in this database yet (newest: epoch 7), as of ...``."""
    assert a.spool is not None
    late = spool_behind(a.spool, a.process.host)
    if not late.waiting:
        return f"spool on {late.host}: every commit is in this database"
    newest = f" (newest: {late.newest})" if late.newest else ""
    when = "counted now" if late.as_of is None else f"when last heard from, {local_time(late.as_of, seconds=True)}"
    return f"spool on {late.host}: {late.waiting} commits not in this database yet{newest}, {when}; file {a.spool.path}"


def _print_checkpoints(store: Store, run: RunRow) -> None:
    # live_only=False: a superseded epoch's file is still on disk until retention removes it.
    kept = store.checkpoints(run.id, live_only=False)
    if not kept:
        print("\nno checkpoints kept")
        return
    print("\ncheckpoints kept, newest first:")
    rows = [
        (e.describe(), human_size(e.checkpoint.size), e.checkpoint.path + ("  (superseded)" if e.superseded else ""))
        for e in kept
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for epoch, size, path in rows:
        print(f"  {epoch.ljust(widths[0])}  {size.rjust(widths[1])}  {path}")


# -- export ----------------------------------------------------------------


def _export(args: argparse.Namespace) -> int:
    fmt = args.format or ("json" if args.output and Path(args.output).suffix.lower() == ".json" else "csv")
    curve = curves(args.run, args.db, include_superseded=args.include_superseded)
    leading = [c for c in ("epoch", "superseded") if c in curve]
    columns = leading + sorted(c for c in curve if c not in leading)
    # Render before opening the output, so that a failed query never leaves an empty file behind.
    text = _csv(curve, columns) if fmt == "csv" else json.dumps({c: curve[c] for c in columns}) + "\n"
    if args.output is None or args.output == "-":
        sys.stdout.write(text)
        return 0
    try:
        # Never a truncated file under the asked name, even on a full disk.
        with replace_atomically(args.output) as f:
            f.write(text.encode("utf-8"))
    except OSError as e:
        raise ValueError(f"Cannot write {args.output}: {e.strerror or e}.") from e
    return 0


def _csv(curve: dict[str, list], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for i in range(len(curve["epoch"])):
        writer.writerow([_cell(curve[c][i]) for c in columns])
    return out.getvalue()


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # repr is the shortest text that reads back to the same float; it gives nan, inf and -inf.
        return repr(value)
    return str(value)


# -- formatting ------------------------------------------------------------


def human_size(n: int) -> str:
    """``n`` bytes for a reader: ``512 B``, ``1.5 KiB``, ``3.2 MiB``."""
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


COMMANDS = [
    Command(
        "list", "list the runs (the default)",
        "List runs, oldest first: status, epochs done, best epoch, last update, tags, and the sweep and trial "
        "number of a sweep's trials. Filter by a shell-style name pattern, by status and by tags. With --sweep, "
        "list that sweep's trials instead, best first as tracker.sweep returns them, with a column for each param.",
        "tracker list\ntracker list 'cnn-*' --status crashed --tag dataset=mnist\ntracker list --json\n"
        "tracker list --sweep mlp",
        _list_arguments, list_runs,
    ),
    Command(
        "show", "show one run in detail",
        "Show one run: its summary, tags and note, config, newest metrics, attempts and kept checkpoints.",
        "tracker show cnn-baseline\ntracker show cnn-baseline --json",
        _show_arguments, _show,
    ),
    Command(
        "export", "export a run's learning curve as CSV or JSON",
        "Export a run's learning curve, one row per epoch, as CSV (`epoch` then the metrics in name order) "
        "or as a JSON object of columns. Floats keep full precision, so they read back exactly. NaN and "
        "infinity are written as nan and inf in CSV, and as the NaN and Infinity tokens in JSON (not "
        "strict JSON, but what Python's json module writes and reads back). A file is written whole or not at all.",
        "tracker export cnn-baseline -o cnn-baseline.csv\ntracker export cnn-baseline --format json -o - | jq .epoch",
        _export_arguments, _export,
    ),
    Command(
        "plot", "draw learning curves into a PNG, SVG or PDF file",
        "Draw the learning curves of tracked runs into an image: one panel per metric (val_ metrics share it, "
        "dashed), resume points dotted, the best epoch starred. A run without epochs, or a metric without a "
        "finite value, is left out with a warning.",
        "tracker plot cnn-a -o cnn-a.png\ntracker plot cnn-a cnn-b -o compare.pdf --metrics loss accuracy",
        _plot_arguments, _plot,
    ),
]
