"""The subcommands that keep a database healthy and fill it: ``verify``, ``gc`` and ``import``."""

from __future__ import annotations

import argparse
from pathlib import Path

from tracker.cli.command import Command
from tracker.cli.read import STATUSES, human_size
from tracker.store import open_store


def _verify_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", metavar="RUN", help="the runs to check (default: all)")


def _verify(args: argparse.Namespace) -> int:
    from tracker.admin.maintenance import verify

    store = open_store(args.db, create=False)
    try:
        checks = verify(store, args.runs)
    finally:
        store.close()
    bad = [c for c in checks if c.findings]
    for check in bad:
        for f in check.findings:
            print(f"{check.run}: {f.kind}: {f.path}: {f.detail}")
        if check.fallback is not None:
            print(f"{check.run}: a resume would continue from {check.fallback}")
    print(f"{len(checks)} run(s) checked, {len(bad)} with problems" + ("" if bad else ": all is well"))
    return 1 if bad else 0


def _gc_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="only print what would be deleted")
    p.add_argument("--older-than", type=float, metavar="DAYS", help="apply retention to stopped runs not updated for DAYS days")
    p.add_argument("--status", choices=STATUSES, help="apply retention to stopped runs with this status")
    p.add_argument("--keep-last", type=int, default=1, metavar="N",
                   help="checkpoints retention keeps besides the best one (default: 1, the resume point)")


def _gc(args: argparse.Namespace) -> int:
    from tracker.admin.maintenance import collect

    store = open_store(args.db, create=False)
    try:
        freed = collect(store, dry_run=args.dry_run, older_than=args.older_than, status=args.status, keep_last=args.keep_last)
    finally:
        store.close()
    verb = "would delete" if args.dry_run else "deleted"
    for path, size, why in freed:
        print(f"{verb} {path} ({size} bytes, {why})")
    total = sum(size for _, size, _ in freed)
    print(f"{'would free' if args.dry_run else 'freed'} {total} bytes ({human_size(total)}) in {len(freed)} file(s)")
    return 0


def _import_arguments(p: argparse.ArgumentParser) -> None:
    from tracker.admin.importer import FORMATS

    p.add_argument("path", metavar="PATH", help="the history file, or a folder of TensorBoard event files")
    p.add_argument("--name", required=True, metavar="RUN", help="the name of the run to create")
    p.add_argument("--format", choices=FORMATS, help="the file's format (default: detected from its content)")
    p.add_argument("--replace", action="store_true", help="replace an existing run of that name (deleted with its checkpoints)")


def _import(args: argparse.Namespace) -> int:
    from tracker import settings
    from tracker.admin.importer import detect, import_history, parse
    from tracker.admin.runs import delete_run

    settings.validate_run_name(args.name)
    # Everything is read and checked before the database is touched.
    records, replaced = parse(args.path, args.format)
    store = open_store(args.db)
    try:
        existing = store.find_run(args.name)
        if existing is not None:
            if not args.replace:
                raise ValueError(f"A run named {args.name!r} already exists in {store.display}. Pass --replace to replace it, or choose another --name.")
            delete_run(store, existing, force=False)
        run = import_history(store, args.name, records)
    finally:
        store.close()
    fmt = args.format or detect(Path(args.path))
    print(f"imported {len(records)} epoch(s) from {args.path} ({fmt}) as run {run.name}"
          + (f"; {replaced} epoch(s) logged again after a restart were replaced by the later rows" if replaced else ""))
    return 0


COMMANDS = [
    Command(
        "verify", "re-read every kept checkpoint and compare it with the database",
        "Re-read every kept checkpoint and compare its size and sha256 with the database. Reports missing, "
        "corrupt and orphaned files (and runs an interrupted rm or rename left), and for each affected run the "
        "epoch a resume would fall back to. Exit status 0 when all is well, 1 when anything is wrong: usable from cron and CI.",
        "tracker verify\ntracker verify cnn-baseline cnn-b || echo 'something is wrong'",
        _verify_arguments, _verify,
    ),
    Command(
        "gc", "delete orphaned files, and apply retention to old runs",
        "Delete checkpoint files that no committed row points at (orphans in the folders the database knows, and "
        "what an interrupted rm or rename left), and, for the stopped runs that --older-than and --status select, "
        "every checkpoint but the newest --keep-last and the best. Prints each file and the bytes freed. It never "
        "deletes a file a committed row points at, and never touches a running run's folder.",
        "tracker gc --dry-run\ntracker gc --older-than 30 --status completed",
        _gc_arguments, _gc,
    ),
    Command(
        "import", "create a run from another tool's history file",
        "Create a run whose curve is a history that another tool wrote: the seed article's history.json (a list "
        "of per-epoch objects), Keras History.history saved as JSON (a dict of lists), a CSVLogger CSV (a header "
        "repeated after a restart included), or a folder of TensorBoard event files (pip install "
        "'tracker[tensorboard]'). The format is detected when --format is omitted. When a restart logged epochs "
        "again, the later rows replace the earlier ones from that epoch on. The run is marked as imported and has "
        "no checkpoint, so it cannot be resumed. A malformed file is an error naming the line or field, and nothing is written.",
        "tracker import training_checkpoints/history.json --name seed-cnn\n"
        "tracker import logs/training.csv --name cnn-csv --replace\ntracker import logs/fit --name cnn-tb --format tensorboard",
        _import_arguments, _import,
    ),
]
