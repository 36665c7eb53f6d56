"""The ``spool`` subcommand: the local-first spools of runs written to a database server, on this host.

``tracker spool`` lists them (run, attempt, commits waiting, the newest point they reach, whether a live
process holds the file); ``tracker spool push`` sends every spool no live process holds to the server, for
runs that will not start on this host again (a start sends its own run's spools by itself). Neither imports
TensorFlow or Keras.
"""

from __future__ import annotations

import argparse
import sys

from tracker import spool
from tracker.cli.command import Command
from tracker.cli.text import print_table
from tracker.store import open_store


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=("list", "push"), default="list",
                   help="list the spools (the default), or push them to the server")


def _spool(args: argparse.Namespace) -> int:
    store = open_store(args.db, create=False)
    try:
        if args.action == "push":
            sent = spool.push(store)
            for found, taken in sent:
                outcome = "sent" if taken else "refused (the run was taken over since): dropped"
                print(f"{found.run} attempt {found.attempt_id}: {found.waiting} commits {outcome}")
            if not sent:
                print(f"Nothing to send to {store.display} from this host.")
            return 0
        found = spool.spools(store)
        if not found:
            print(f"No spool on this host for {store.display}.")
            return 0
        rows = [["RUN", "ATTEMPT", "WAITING", "NEWEST", "STATE", "FILE"]]
        rows += [[s.run, str(s.attempt_id), str(s.waiting), s.newest or "-", "live" if s.live else "left over", str(s.path)] for s in found]
        print_table(rows)
        if any(not s.live for s in found):
            print("\nLeft-over spools are sent when their run starts again here, or now with: tracker spool push", file=sys.stderr)
        return 0
    finally:
        store.close()


COMMANDS = [
    Command(
        "spool", "list this host's spools of runs on a database server, or push them",
        "A run that writes to a database server or to object storage commits to a spool on its own host first, "
        "and a thread of it sends each commit on, so that an outage of the server never stops training. "
        "`tracker spool` lists the spools on this host for the database: the run, the attempt, how many commits "
        "wait, the newest point they reach, and whether a live process holds the file. `tracker spool push` sends "
        "the ones no live process holds (a run's next start here sends its own by itself).",
        "tracker spool --db postgresql+psycopg://me@db-host/runs\ntracker spool push",
        _arguments, _spool,
    ),
]
