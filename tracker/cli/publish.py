"""The ``publish`` subcommand: runs' pages as a self-contained folder (`tracker.serve.publish`), to open from
``file://`` or put on any static host. Imports neither TensorFlow, Keras nor matplotlib."""

from __future__ import annotations

import argparse
from pathlib import Path

from tracker.cli.command import Command
from tracker.serve.publish import publish


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="the runs to publish")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the folder to write (made, or replaced if an earlier publish)")
    p.add_argument("--include-paths", action="store_true",
                   help="keep the training machine's paths (commands, folders, checkpoint files); by default cut to names")
    p.add_argument("--force", action="store_true", help="replace DIR even if tracker publish did not write it")


def _publish(args: argparse.Namespace) -> int:
    index = publish(args.db, args.runs, Path(args.output), include_paths=args.include_paths, force=args.force)
    first = args.runs[0]
    print(f"Published {len(args.runs)} run(s) to {index.parent}: open {index.resolve().as_uri()}#/run/{first}")
    return 0


COMMANDS = [
    Command(
        "publish", "write runs' pages as a folder that opens without a server",
        "Write a self-contained folder: an index.html with the web view's own script and chart library and the "
        "runs' data embedded, which opens from file:// in a browser with no server and no network, showing the "
        "same curves, resume marks and attempts as the live page. Paths of the training machine are cut to their "
        "last component unless --include-paths.",
        "tracker publish cnn-a -o share/cnn-a\ntracker publish cnn-a cnn-b -o share/ab --include-paths",
        _arguments, _publish,
    ),
]
