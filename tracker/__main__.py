"""``python -m tracker``: list runs, show one run, export its learning curve.

Reads the database only; never imports TensorFlow, Keras or matplotlib, so it
answers at once even on a machine that is busy training.

Examples:
    python -m tracker                                   # the table of runs
    python -m tracker show cnn-baseline
    python -m tracker export cnn-baseline -o cnn-baseline.csv
    python -m tracker list --json --db postgresql+psycopg://me@db-host/runs
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import shlex
import sys
import textwrap
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from tracker import db as dbmod
from tracker import settings
from tracker.errors import TrackerError
from tracker.query import curves, effective_status, runs
from tracker.records import AttemptRow, RunRow, Status
from tracker.store import Store, open_store

_DB_HELP = "database file or SQLAlchemy URL (default: $TRACKER_DB, else ./tracker.db)"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status.

    Example:
        >>> main(["show", "cnn-baseline", "--db", "runs/tracker.db"])   # doctest: +SKIP
        0

    Args:
        argv: The arguments after the program name. Defaults to ``sys.argv[1:]``.
    """
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (TrackerError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from
        # failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tracker",
        description="Inspect tracked runs: list them, show one, export a learning curve.",
        epilog="Example: python -m tracker --db runs/tracker.db show cnn-baseline",
    )
    parser.add_argument("--db", help=_DB_HELP)
    # Without a subcommand, list the runs.
    parser.set_defaults(handler=_list, json=False)
    # SUPPRESS keeps `--db` given before the subcommand: the subparser only sets it when given after.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=argparse.SUPPRESS, help=_DB_HELP)
    sub = parser.add_subparsers(title="commands", metavar="{list,show,export}")

    p = _command(
        sub, common, "list", "list the runs (the default)",
        "List every run, oldest first: status, epochs done, best epoch, last update.",
        "python -m tracker list --db runs/tracker.db\n  python -m tracker list --json",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(handler=_list)

    p = _command(
        sub, common, "show", "show one run in detail",
        "Show one run: its summary, config, newest metrics, attempts and kept checkpoints.",
        "python -m tracker show cnn-baseline",
    )
    p.add_argument("run", help="the run's name")
    p.set_defaults(handler=_show)

    p = _command(
        sub, common, "export", "export a run's learning curve as CSV or JSON",
        "Export a run's learning curve, one row per epoch, as CSV (`epoch` then the metrics in name order) "
        "or as a JSON object of columns. Floats keep full precision, so they read back exactly. NaN and "
        "infinity are written as nan and inf in CSV, and as the NaN and Infinity tokens in JSON (not "
        "strict JSON, but what Python's json module writes and reads back).",
        "python -m tracker export cnn-baseline -o cnn-baseline.csv\n"
        "  python -m tracker export cnn-baseline --format json > cnn-baseline.json",
    )
    p.add_argument("run", help="the run's name")
    p.add_argument("--format", choices=("csv", "json"), help="output format (default: from the -o extension, else csv)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--include-superseded", action="store_true",
                   help="also export epochs replaced by a fallback or a rewind, with a `superseded` column")
    p.set_defaults(handler=_export)
    return parser


def _command(
    sub: Any, common: argparse.ArgumentParser, name: str, summary: str, description: str, example: str
) -> argparse.ArgumentParser:
    return sub.add_parser(
        name, parents=[common], help=summary, description=textwrap.fill(description, 78),
        epilog=f"Example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# -- list ------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    found = runs(args.db)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in found], indent=2, default=_iso))
        return 0
    if not found:
        print(f"no runs yet in {_where(args.db)}", file=sys.stderr)
        return 0
    rows = [["name", "status", "epochs", "best", "updated"]]
    for r in found:
        done = 0 if r.last_epoch is None else r.last_epoch + 1
        rows.append([r.name, r.status, f"{done}/{_or_unknown(r.target_epochs)}",
                     _best(r.monitor, r.best_value, r.best_epoch), _local(r.updated_at)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _where(db: str | None) -> str:
    # The store's own display: the file path, or the URL with its password masked.
    return dbmod.locate(settings.resolve_db(db)).display


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# -- show ------------------------------------------------------------------


def _show(args: argparse.Namespace) -> int:
    store = open_store(args.db, create=False)
    try:
        run = store.get_run(args.run)
        attempts = store.attempts(run.id)
        _print_summary(run, attempts[-1] if attempts else None)
        _print_latest_metrics(store, run)
        _print_attempts(attempts)
        _print_checkpoints(store, run)
    finally:
        store.close()
    return 0


def _print_summary(run: RunRow, latest: AttemptRow | None) -> None:
    done = 0 if run.last_epoch is None else run.last_epoch + 1
    monitor = "none"
    if run.monitor:
        monitor = f"{run.monitor} ({run.mode or 'min'}), best " + (
            "none yet" if run.best_epoch is None else f"{_num(run.best_value)} at epoch {run.best_epoch}"
        )
    _pairs([
        ("run", run.name),
        ("status", effective_status(run, latest)),
        ("created", _local(run.created_at, seconds=True)),
        ("updated", _local(run.updated_at, seconds=True)),
        ("epochs", f"{done} done of {_or_unknown(run.target_epochs)}"),
        ("monitor", monitor),
        ("checkpoints", run.checkpoint_dir),
        ("config", json.dumps(run.config, sort_keys=True)),
    ])


def _print_latest_metrics(store: Store, run: RunRow) -> None:
    if run.last_epoch is None:
        print("\nno epoch committed yet")
        return
    values = {
        name: value
        for _, epoch, superseded, name, value in store.all_epoch_metrics(run.id)
        if epoch == run.last_epoch and not superseded and name is not None
    }
    print(f"\nmetrics at epoch {run.last_epoch}:")
    _pairs([(name, _num(values[name])) for name in sorted(values)], indent="  ")


def _print_attempts(attempts: list[AttemptRow]) -> None:
    print("\nattempts, oldest first:")
    for i, a in enumerate(attempts, 1):
        # A writer that died without saying still reads "running" until the next attempt retires it.
        status = Status.CRASHED if a.status == Status.RUNNING and not a.alive() else a.status
        p = a.process
        print(f"  {i}. {_local(a.started_at, seconds=True)}  {status}  from epoch {a.initial_epoch}  pid {p.pid}@{p.host}")
        print(f"     command: {shlex.join([p.executable, *p.argv])}")
        print(f"     cwd:     {p.cwd}")
        if a.error:
            print(f"     error:   {a.error}")


def _print_checkpoints(store: Store, run: RunRow) -> None:
    # live_only=False: a superseded epoch's file is still on disk until retention removes it.
    kept = store.checkpoints(run.id, live_only=False)
    if not kept:
        print("\nno checkpoints kept")
        return
    print("\ncheckpoints kept, newest first:")
    rows = [
        (f"epoch {e.epoch}", _size(e.checkpoint.size), e.checkpoint.path + ("  (superseded)" if e.superseded else ""))
        for e in kept
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    for epoch, size, path in rows:
        print(f"  {epoch.ljust(widths[0])}  {size.rjust(widths[1])}  {path}")


def _pairs(pairs: Sequence[tuple[str, str]], indent: str = "") -> None:
    width = max((len(k) for k, _ in pairs), default=0) + 1
    for key, value in pairs:
        print(f"{indent}{(key + ':').ljust(width)}  {value}")


# -- export ----------------------------------------------------------------


def _export(args: argparse.Namespace) -> int:
    fmt = args.format or ("json" if args.output and Path(args.output).suffix.lower() == ".json" else "csv")
    curve = curves(args.run, args.db, include_superseded=args.include_superseded)
    leading = [c for c in ("epoch", "superseded") if c in curve]
    columns = leading + sorted(c for c in curve if c not in leading)
    # Render before opening the output, so that a failed query never leaves an empty file behind.
    text = _csv(curve, columns) if fmt == "csv" else json.dumps({c: curve[c] for c in columns}) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8", newline="") as f:
            f.write(text)
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


def _local(t: datetime, *, seconds: bool = False) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _or_unknown(n: int | None) -> str:
    return "?" if n is None else str(n)


def _num(value: float | None) -> str:
    return "none" if value is None else format(value, ".6g")


def _best(monitor: str | None, value: float | None, epoch: int | None) -> str:
    if not monitor or value is None or epoch is None:
        return "-"
    return f"{monitor}={format(value, '.4g')} at epoch {epoch}"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


if __name__ == "__main__":
    sys.exit(main())
