"""`Command`: what each subcommand module declares, so that `tracker.cli` builds one parser from them all.

A leaf of the command line: the subcommand modules (`tracker.cli.read`, `manage`, `maintain`) import it,
and `tracker.cli` imports them, so nothing imports the package that imports it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

#: The help of ``--db``, which every subcommand (and a subcommand's own subcommands) takes.
DB_HELP = "database file or SQLAlchemy URL (default: $TRACKER_DB, else ./tracker.db)"


@dataclass(frozen=True)
class Command:
    """One subcommand: its help texts, its arguments and the function that runs it."""

    name: str
    summary: str
    description: str
    #: One or more example lines, shown under "Example:" in --help.
    example: str
    arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]
