"""Continuing a crashed or stopped run: the command that re-launches its training, and a rewind.

A resume re-launches the run's own training command (same interpreter, arguments and working
directory, the caller's environment passed through), pointed at the same database and checkpoint
folder; the script's ``tracker.track`` block then restores the newest committed epoch whose
checkpoint verifies. ``tracker resume`` and ``python -m tracker.resume`` (`tracker.cli.manage`)
are the commands; this module is what they call.

Example:
    >>> launch = plan_relaunch(store, store.get_run("cnn"), force=False)     # doctest: +SKIP
    >>> rewind(store, store.get_run("cnn"), 7, force=False)                  # doctest: +SKIP
    3
    >>> launch.exec()                                                        # doctest: +SKIP
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from tracker import settings
from tracker.checkpoint import load, run_folder
from tracker.errors import CheckpointError, ResumeError, RunLockedError
from tracker.faults import pause_point
from tracker.records import AttemptRow, RunRow, Status
from tracker.redact import redact, unredact
from tracker.store import Store

_OPTIONS_WITH_VALUE = ("-X", "-W")


@dataclass(frozen=True)
class Relaunch:
    """A run's training command, ready to become this process (`exec`)."""

    command: list[str]
    cwd: str
    env: dict[str, str]

    def describe(self) -> str:
        """The command as a shell line, with its passwords masked."""
        return f"{redact(shlex.join(self.command))}  (in {self.cwd})"

    def exec(self) -> NoReturn:
        """Become the training process, so that a signal or a kill reaches training directly."""
        sys.stdout.flush()
        sys.stderr.flush()
        os.chdir(self.cwd)
        os.execve(self.command[0], self.command, self.env)


def plan_relaunch(store: Store, run: RunRow, *, force: bool) -> Relaunch:
    """The command, folder and environment that continue ``run``, checked before anything changes.

    Raises:
        ResumeError: The run has no attempt, or its command cannot be launched again (`launch_command`).
        RunLockedError: The run's process looks alive and ``force`` is False.
    """
    attempts = store.attempts(run.id)
    if not attempts:
        raise ResumeError(f"Run {run.name!r} has no recorded attempt to re-launch.")
    latest = attempts[-1]
    if latest.alive() and not force:
        raise RunLockedError(
            f"Run {run.name!r} is still being written by pid {latest.process.pid} on host {latest.process.host}. "
            "Wait for it, stop it, or pass --force to take over."
        )
    # The recorded command line has its passwords masked; the URL given to us has the real one.
    command = [unredact(arg, [store.url]) for arg in launch_command(latest)]
    env = dict(os.environ)
    env[settings.ENV_DB] = str(store.url)
    env[settings.ENV_CHECKPOINT_DIR] = _parent(run.checkpoint_dir)
    if force:
        env[settings.ENV_FORCE] = "1"
    return Relaunch(command, latest.process.cwd, env)


def rewind(store: Store, run: RunRow, epoch: int, *, force: bool) -> int:
    """Make epoch ``epoch``'s end the run's resume point; return how many later epochs became superseded.

    Raises:
        ResumeError: No kept checkpoint ends that epoch (the message lists the kept ones), or its file does not verify.
    """
    # An epoch end's checkpoint: a rewind to "epoch K" continues at epoch K + 1.
    ends = [r for r in store.checkpoints(run.id) if r.batch is None]
    row = next((r for r in ends if r.epoch == epoch), None)
    if row is None:
        kept = ", ".join(str(r.epoch) for r in reversed(ends)) or "none"
        raise ResumeError(f"Run {run.name!r} has no kept checkpoint for epoch {epoch} (kept: {kept}). Choose one of those with --from-epoch.")
    try:
        load(run_folder(run).locate(row.checkpoint))
    except CheckpointError as e:
        raise ResumeError(f"Cannot rewind run {run.name!r} to epoch {epoch}: {e}.") from e
    # Retires a live writer in the same transaction: with --force it can no longer commit past the rewind.
    n = store.rewind(run, epoch, force=force)
    pause_point("after-rewind", epoch)
    return n


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


def _parent(location: str) -> str:
    return location.rsplit("/", 1)[0] if settings.is_url(location) else str(Path(location).parent)
