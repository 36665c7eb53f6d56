"""The subcommands that change runs: ``resume``, ``rm``, ``rename``, ``tag`` and ``note``."""

from __future__ import annotations

import argparse
import sys

from tracker.checkpoint import newest_verified, run_folder
from tracker.cli.command import Command
from tracker.cli.read import human_size, parse_tag
from tracker.query import effective_status
from tracker.records import AttemptRow, RunRow, Status
from tracker.store import Store, open_store


def _resume_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="the run's name")
    p.add_argument("--check", action="store_true", help="report the resume point and verify its file, without training")
    p.add_argument("--from-epoch", type=int, metavar="K", help="rewind: continue from epoch K's checkpoint; later epochs are kept as superseded")
    p.add_argument("--force", action="store_true", help="resume even if the run's process looks alive")


def _resume(args: argparse.Namespace) -> int:
    from tracker.resume import plan_relaunch, rewind

    store = open_store(args.db, create=False)
    try:
        run = store.get_run(args.run)
        if args.check:
            attempts = store.attempts(run.id)
            return _check(store, run, attempts[-1] if attempts else None)
        launch = plan_relaunch(store, run, force=args.force)
        if args.from_epoch is not None:
            n = rewind(store, run, args.from_epoch, force=args.force)
            print(f"rewound run {run.name} to epoch {args.from_epoch}; {n} later epoch(s) kept as superseded", file=sys.stderr)
        print(f"resuming run {run.name}: {launch.describe()}", file=sys.stderr)
    finally:
        store.close()
    launch.exec()


def _check(store: Store, run: RunRow, latest: AttemptRow | None) -> int:
    if latest is not None and latest.status == Status.IMPORTED:
        print(f"run {run.name}: imported from another tool's log, with no checkpoint: it cannot be resumed")
        return 1
    found = newest_verified(store.checkpoints(run.id), run_folder(run))
    point = found.row
    print(f"run {run.name}: status {effective_status(run, latest)}, last committed epoch {_epoch(run.last_epoch)}, target epochs {run.target_epochs or '?'}")
    for problem in found.problems():
        print(f"  does not verify: {problem}")
    if point is None:
        if run.last_epoch is None:
            print("  no epoch committed yet: a resume starts at epoch 0")
            return 0
        print("  no checkpoint verifies: a resume would start over from epoch 0")
        return 1
    print(f"  resume point: {point.describe()} ({point.checkpoint.path}, {point.checkpoint.size} bytes, sha256 ok)")
    at = point.position
    print(f"  a resume continues at epoch {at.epoch}" + (f", batch {at.batch}" if at.batch else ""))
    return 0


def _epoch(e: int | None) -> str:
    return "none" if e is None else str(e)


def _rm_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="names of the runs to delete")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation on a terminal")
    p.add_argument("--force", action="store_true", help="delete a run even if its process looks alive (it stops at its next heartbeat)")


def _rm(args: argparse.Namespace) -> int:
    from tracker.admin.runs import delete_run

    store = open_store(args.db, create=False)
    try:
        found = [store.get_run(name) for name in dict.fromkeys(args.runs)]  # every name checked before anything is deleted
        if not args.yes and sys.stdin.isatty():
            kept = sum(len(store.checkpoints(r.id, live_only=False)) for r in found)
            answer = input(f"Delete run(s) {', '.join(r.name for r in found)} and their {kept} checkpoint file(s)? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted", file=sys.stderr)
                return 1
        for run in found:
            deleted = delete_run(store, run, force=args.force)
            freed = sum(size for _, size in deleted)
            print(f"deleted run {run.name}: {len(deleted)} file(s), {freed} bytes ({human_size(freed)})")
    finally:
        store.close()
    return 0


def _rename_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("old", metavar="OLD", help="the run's name now")
    p.add_argument("new", metavar="NEW", help="its new name")


def _rename(args: argparse.Namespace) -> int:
    from tracker.admin.runs import rename_run

    store = open_store(args.db, create=False)
    try:
        folder = rename_run(store, store.get_run(args.old), args.new)
    finally:
        store.close()
    print(f"renamed run {args.old} to {args.new}" + (f"; checkpoints in {folder}" if folder else ""))
    return 0


def _tag_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="the run's name")
    p.add_argument("pairs", nargs="*", metavar="KEY=VALUE", help="tags to set; a key already set gets the new value")
    p.add_argument("--remove", action="append", default=[], metavar="KEY", help="remove this tag (repeatable)")


def _tag(args: argparse.Namespace) -> int:
    values = dict(parse_tag(t) for t in args.pairs)
    if not values and not args.remove:
        raise ValueError("Nothing to do. Pass KEY=VALUE pairs to set, or --remove KEY.")
    store = open_store(args.db, create=False)
    try:
        tags = store.set_tags(store.get_run(args.run), values, args.remove)
    finally:
        store.close()
    print(" ".join(f"{k}={v}" for k, v in tags.items()) or "no tags")
    return 0


def _note_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="the run's name")
    p.add_argument("text", metavar="TEXT", help="the note; it replaces the previous one, and '' removes it")


def _note(args: argparse.Namespace) -> int:
    store = open_store(args.db, create=False)
    try:
        store.set_note(store.get_run(args.run), args.text or None)
    finally:
        store.close()
    return 0


COMMANDS = [
    Command(
        "resume", "continue a crashed or stopped run by re-launching its command",
        "Continue a crashed or stopped run by re-launching its training command (same interpreter, arguments and "
        "working directory, your environment passed through, pointed at the same database and checkpoint folder). "
        "An imported run has no checkpoint and cannot be resumed.",
        "tracker resume cnn-baseline\ntracker resume cnn-baseline --check\ntracker resume cnn-baseline --from-epoch 7",
        _resume_arguments, _resume,
    ),
    Command(
        "rm", "delete runs with their checkpoint files",
        "Delete runs: their rows and their checkpoint files. Crash-safe: first the database stops pointing at "
        "the files, then the files go, then the rows; a crash midway leaves orphans that `tracker gc` deletes. "
        "A run whose process is alive is refused unless --force. On a terminal it asks first, unless --yes.",
        "tracker rm cnn-old cnn-older --yes",
        _rm_arguments, _rm,
    ),
    Command(
        "rename", "rename a run; its curve, checkpoints and resumability stay",
        "Rename a run. Its checkpoint folder, when named after the run, moves to the new name crash-safely "
        "(hard links, then one transaction, then the old links go); a crash midway leaves a folder that "
        "`tracker gc` deletes. A run whose process is alive is refused.",
        "tracker rename cnn-a cnn-baseline",
        _rename_arguments, _rename,
    ),
    Command(
        "tag", "set or remove a run's tags",
        "Set tags (KEY=VALUE) on a run, or remove them with --remove KEY. `show` prints them, `list --tag` "
        "filters by them, and Python reads them as tracker.runs()[i].tags.",
        "tracker tag cnn-baseline dataset=mnist lr=0.001\ntracker tag cnn-baseline --remove lr",
        _tag_arguments, _tag,
    ),
    Command(
        "note", "set a run's note",
        "Set a run's free-text note, replacing the previous one; an empty TEXT removes it. `show` prints it.",
        "tracker note cnn-baseline 'baseline for the paper; do not delete'",
        _note_arguments, _note,
    ),
]
