"""``tracker`` (and ``python -m tracker``): one command line for everything, as sqlite-utils has.

One argparse parser with a subcommand each for reading runs (``list``, ``show``, ``export``,
``plot``) and sweeps (``sweep list``, ``sweep show``), managing runs (``resume``, ``rm``,
``rename``, ``tag``, ``note``), keeping the database and its files healthy (``verify``, ``gc``) and bringing in other tools' logs
(``import``). Every subcommand takes the same ``--db`` option and goes through one error
wrapper: ``error: ...`` on stderr with exit status 1, usage errors 2, a warning as one
``warning: ...`` line. Each subcommand is a thin call into the library; none imports
TensorFlow or Keras, and only ``plot`` imports matplotlib.

Examples:
    tracker list --status crashed
    tracker show cnn-baseline --json
    tracker sweep show mlp
    tracker verify && tracker gc --dry-run
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence

from tracker.cli.command import DB_HELP, Command
from tracker.errors import TrackerError


def commands() -> list[Command]:
    """Every subcommand, in the order ``tracker --help`` lists them."""
    from tracker.cli import maintain, manage, publish, read, spool, sweeps, team

    return [*read.COMMANDS, *sweeps.COMMANDS, *manage.COMMANDS, *maintain.COMMANDS, *spool.COMMANDS, *team.COMMANDS,
            *publish.COMMANDS]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tracker`` (the console script, and ``python -m tracker``); return the exit status.

    Without a subcommand it lists the runs.

    Example:
        >>> main(["show", "cnn-baseline", "--db", "runs/tracker.db"])   # doctest: +SKIP
        0

    Args:
        argv: The arguments after the program name. Defaults to ``sys.argv[1:]``.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    return _run(args.handler, args)


def run_command(name: str, argv: Sequence[str] | None, *, prog: str) -> int:
    """Run one subcommand as a program of its own: the ``python -m tracker.plot`` and ``python -m tracker.resume`` shims.

    Example:
        >>> run_command("plot", ["cnn-a", "-o", "a.png"], prog="python -m tracker.plot")   # doctest: +SKIP
        0
    """
    command = next(c for c in commands() if c.name == name)
    parser = argparse.ArgumentParser(
        prog=prog, description=textwrap.fill(command.description, 78), epilog=_epilog(command, prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", help=DB_HELP)
    command.arguments(parser)
    return _run(command.handler, parser.parse_args(argv))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracker",
        description="Crash-safe experiment tracking for Keras: inspect, manage, verify and import runs.",
        epilog="Example:\n  tracker --db runs/tracker.db show cnn-baseline\n\n"
        "Run `tracker SUBCOMMAND --help` for each subcommand's options and an example.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", help=DB_HELP)
    from tracker.cli import read

    # Without a subcommand, list the runs.
    parser.set_defaults(handler=read.list_runs, json=False, pattern=None, status=None, tag=[], sweep=None)
    # SUPPRESS keeps a `--db` given before the subcommand: the subparser only sets it when given after.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=argparse.SUPPRESS, help=DB_HELP)
    found = commands()
    sub = parser.add_subparsers(title="subcommands", metavar="{" + ",".join(c.name for c in found) + "}")
    for command in found:
        p = sub.add_parser(
            command.name, parents=[common], help=command.summary, description=textwrap.fill(command.description, 78),
            epilog=_epilog(command, "tracker"), formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.arguments(p)
        p.set_defaults(handler=command.handler)
    return parser


def _epilog(command: Command, prog: str) -> str:
    lines = [line.strip() for line in command.example.strip().splitlines()]
    if prog != "tracker":  # a shim shows its own spelling
        lines = [line.replace(f"tracker {command.name}", prog, 1) for line in lines]
    return "Example:\n" + "\n".join(f"  {line}" for line in lines)


def _run(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """The one error wrapper: a tracker failure or a bad value is one ``error:`` line and exit status 1."""
    # Only how a warning is shown changes, for this call; which warnings show is left to the caller's filters.
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return handler(args)
        except (TrackerError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, and keep Python from
            # failing again when it flushes stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except OSError as e:
            # A file that cannot be read, written or deleted (permissions, a full disk): one line, no traceback.
            where = f" {e.filename}" if e.filename else ""
            print(f"error: Cannot access{where}: {e.strerror or e}.", file=sys.stderr)
            return 1


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: object = None, line: str | None = None) -> None:
    # A command-line user needs the message, not the library line that raised it.
    print(f"warning: {message}", file=sys.stderr)
