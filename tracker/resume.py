"""``python -m tracker.resume RUN``: continue a crashed or stopped run.

It re-launches the run's own training command (same interpreter, arguments
and working directory, the caller's environment passed through), pointed at
the same database and checkpoint folder. The script's ``tracker.track`` block
then restores the newest committed epoch whose checkpoint verifies.

Examples:
    python -m tracker.resume cnn-baseline
    python -m tracker.resume cnn-baseline --check
    python -m tracker.resume cnn-baseline --from-epoch 7
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from tracker import checkpoint, settings
from tracker.errors import CheckpointError, ResumeError, RunLockedError
from tracker.faults import pause_point
from tracker.query import effective_status
from tracker.records import AttemptRow, EpochRow, RunRow, Status
from tracker.redact import redact, unredact
from tracker.store import Store, open_store

_OPTIONS_WITH_VALUE = ("-X", "-W")


def launch_command(attempt: AttemptRow) -> list[str]:
    """The command that started ``attempt``, checked so that running it again can work.

    Raises:
        ResumeError: The interpreter, working directory or script is gone, or the run
            was started in a way that cannot be re-launched (``-c``, stdin, a notebook).
    """
    if attempt.status == Status.IMPORTED:
        raise ResumeError("The run was imported from another tool's log: it has no checkpoint, so it cannot be resumed.")
    p = attempt.process
    if not Path(p.executable).exists():
        raise ResumeError(f"The run's Python interpreter {p.executable} no longer exists. Re-run the training script by hand with the same run name.")
    if not Path(p.cwd).is_dir():
        raise ResumeError(f"The run's working directory {p.cwd} no longer exists. Re-run the training script by hand with the same run name.")
    kind, target = _entry_point(p.argv)
    if kind == "script" and not (Path(p.cwd) / target).is_file():
        raise ResumeError(
            f"The run's script {Path(p.cwd) / target} no longer exists (it was started as: "
            f"{shlex.join([p.executable, *p.argv])}). Restore the script, or re-run your training code with the same run name."
        )
    if kind == "module" and target.split(".")[0] in ("ipykernel_launcher", "ipykernel", "IPython"):
        raise ResumeError("The run was started from a notebook. Re-run the notebook's training cell: it resumes by itself.")
    if kind in ("command", "stdin", "interactive"):
        raise ResumeError(
            f"The run was started from {'python -c' if kind == 'command' else 'an interactive session or stdin'}, "
            "which cannot be re-launched. Run the same training code again with the same run name: it resumes by itself."
        )
    return [p.executable, *p.argv]


def _entry_point(argv: list[str]) -> tuple[str, str]:
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-m":
            return "module", argv[i + 1] if i + 1 < len(argv) else ""
        if arg == "-c":
            return "command", ""
        if arg == "-":
            return "stdin", ""
        if arg in _OPTIONS_WITH_VALUE:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return "script", arg
    return "interactive", ""


def resume_point(store: Store, run: RunRow) -> tuple[EpochRow | None, list[str]]:
    """The newest live checkpoint that verifies, and why each newer one does not."""
    problems = []
    folder = checkpoint.run_folder(run)
    for row in store.checkpoints(run.id):
        try:
            checkpoint.load(folder.locate(row.checkpoint))
        except CheckpointError as e:
            problems.append(f"{row.describe()}: {e}")
            continue
        return row, problems
    return None, problems


def _check(store: Store, run: RunRow, latest: AttemptRow | None) -> int:
    if latest is not None and latest.status == Status.IMPORTED:
        print(f"run {run.name}: imported from another tool's log, with no checkpoint: it cannot be resumed")
        return 1
    point, problems = resume_point(store, run)
    print(f"run {run.name}: status {effective_status(run, latest)}, last committed epoch {_epoch(run.last_epoch)}, target epochs {run.target_epochs or '?'}")
    for problem in problems:
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


def _parent(location: str) -> str:
    return location.rsplit("/", 1)[0] if settings.is_url(location) else str(Path(location).parent)


def _epoch(e: int | None) -> str:
    return "none" if e is None else str(e)


def _rewind(store: Store, run: RunRow, epoch: int, *, force: bool) -> None:
    # An epoch end's checkpoint: a rewind to "epoch K" continues at epoch K + 1.
    ends = [r for r in store.checkpoints(run.id) if r.batch is None]
    row = next((r for r in ends if r.epoch == epoch), None)
    if row is None:
        kept = ", ".join(str(r.epoch) for r in reversed(ends)) or "none"
        raise ResumeError(f"Run {run.name!r} has no kept checkpoint for epoch {epoch} (kept: {kept}). Choose one of those with --from-epoch.")
    try:
        checkpoint.load(checkpoint.run_folder(run).locate(row.checkpoint))
    except CheckpointError as e:
        raise ResumeError(f"Cannot rewind run {run.name!r} to epoch {epoch}: {e}.") from e
    # Retires a live writer in the same transaction: with --force it can no longer commit past the rewind.
    n = store.rewind(run, epoch, force=force)
    print(f"rewound run {run.name} to epoch {epoch}; {n} later epoch(s) kept as superseded", file=sys.stderr)
    pause_point("after-rewind", epoch)


def main(argv: list[str] | None = None) -> int:
    """``python -m tracker.resume``: the same as ``tracker resume`` (see `tracker.cli`), kept for existing scripts."""
    from tracker.cli import run_command

    return run_command("resume", argv, prog="python -m tracker.resume")


def _resume(args: argparse.Namespace) -> int:
    store = open_store(args.db, create=False)
    try:
        run = store.get_run(args.run)
        attempts = store.attempts(run.id)
        latest = attempts[-1] if attempts else None
        if args.check:
            return _check(store, run, latest)
        if latest is None:
            raise ResumeError(f"Run {run.name!r} has no recorded attempt to re-launch.")
        if latest.alive() and not args.force:
            raise RunLockedError(
                f"Run {run.name!r} is still being written by pid {latest.process.pid} on host {latest.process.host}. "
                "Wait for it, stop it, or pass --force to take over."
            )
        # The recorded command line has its passwords masked; the URL given to us has the real one.
        command = [unredact(arg, [store.url]) for arg in launch_command(latest)]
        if args.from_epoch is not None:
            _rewind(store, run, args.from_epoch, force=args.force)
        env = dict(os.environ)
        env[settings.ENV_DB] = str(store.url)
        env[settings.ENV_CHECKPOINT_DIR] = _parent(run.checkpoint_dir)
        if args.force:
            env[settings.ENV_FORCE] = "1"
        print(f"resuming run {run.name}: {redact(shlex.join(command))}  (in {latest.process.cwd})", file=sys.stderr)
    finally:
        store.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(latest.process.cwd)
    # Become the training process, so that a signal or a kill reaches training directly.
    os.execve(command[0], command, env)
    return 0  # unreachable: execve does not return


if __name__ == "__main__":
    sys.exit(main())
