"""The ``token`` and ``share`` subcommands: who may open the team view (``python -m tracker.serve --team``).

``tracker token create NAME --role viewer|admin [--expires DAYS]`` prints a new token once (only its sha256 is
stored); ``token list`` lists them without it; ``token revoke NAME`` ends one. ``tracker share RUN [RUN...]``
prints a signed, read-only link to one run's page (or to the comparison of several) that expires; ``share
--rotate`` voids every link made so far. None imports TensorFlow or Keras.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from tracker.cli.command import Command
from tracker.cli.text import local_time, print_table
from tracker.records import now
from tracker.serve.auth import share_link
from tracker.store import open_store
from tracker.store.access import ROLES


def _token_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("create", "list", "revoke"), help="what to do")
    p.add_argument("name", nargs="?", metavar="NAME", help="the token's name (who it is for): for create and revoke")
    p.add_argument("--role", choices=ROLES, default="viewer", help="viewer: read everything; admin: also make share links (default: viewer)")
    p.add_argument("--expires", type=float, metavar="DAYS", help="days until the token stops working (default: never)")


def _token(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.name:
        raise ValueError(f"tracker token {args.action} needs the token's NAME, e.g. tracker token {args.action} alice")
    if args.expires is not None and not args.expires > 0:
        raise ValueError(f"Invalid value for --expires. Received: {args.expires}. Expected a number of days > 0.")
    store = open_store(args.db)
    try:
        if args.action == "create":
            expires = None if args.expires is None else now() + timedelta(days=args.expires)
            token = store.create_token(args.name, args.role, expires_at=expires)
            print(token)
            print(f"Token {args.name!r} ({args.role}) made; it is shown this once and stored only as its sha256. "
                  "Keep it in a password manager; log in with it at the team view's /login.", file=sys.stderr)
        elif args.action == "revoke":
            if not store.revoke_token(args.name):
                raise ValueError(f"No token named {args.name!r} to revoke. tracker token list shows them.")
            print(f"Token {args.name!r} revoked: it opens nothing from now on.")
        else:
            found = store.tokens()
            if not found:
                print(f"No tokens in {store.display}. Make one with: tracker token create NAME --role admin", file=sys.stderr)
                return 0
            rows = [["NAME", "ROLE", "CREATED", "EXPIRES", "LAST USED", "STATE"]]
            for t in found:
                state = "revoked" if t.revoked_at else ("expired" if not t.valid() else "valid")
                rows.append([t.name, t.role, local_time(t.created_at), local_time(t.expires_at) if t.expires_at else "never",
                             local_time(t.last_used_at) if t.last_used_at else "-", state])
            print_table(rows)
    finally:
        store.close()
    return 0


def _share_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", metavar="RUN", help="the run to share; several: their comparison")
    p.add_argument("--expires", type=float, default=72.0, metavar="HOURS", help="hours until the link stops working (default: 72)")
    p.add_argument("--url", default="http://127.0.0.1:6007", help="the team view's address, as colleagues reach it (default: http://127.0.0.1:6007)")
    p.add_argument("--rotate", action="store_true", help="void every share link made so far (a new signing key)")


def _share(args: argparse.Namespace) -> int:
    if not args.runs and not args.rotate:
        raise ValueError("tracker share needs a RUN to share (or --rotate), e.g. tracker share cnn-a --url https://tracker.lan")
    if not args.expires > 0:
        raise ValueError(f"Invalid value for --expires. Received: {args.expires}. Expected a number of hours > 0.")
    store = open_store(args.db, create=False)
    try:
        if args.rotate:
            store.rotate_signing_key()
            print("Signing key rotated: every share link made before opens nothing now.", file=sys.stderr)
        if args.runs:
            print(share_link(store, args.runs, hours=args.expires, base=args.url))
    finally:
        store.close()
    return 0


COMMANDS = [
    Command(
        "token", "make, list or revoke the team view's access tokens",
        "The team view (python -m tracker.serve --team) opens only with a token: `token create NAME` prints a new "
        "one once (viewer: reads everything; admin: also makes share links), stored only as its sha256; `token "
        "list` shows them, without the tokens; `token revoke NAME` ends one at once.",
        "tracker token create alice --role viewer --expires 90\ntracker token list\ntracker token revoke alice",
        _token_arguments, _token,
    ),
    Command(
        "share", "print a signed, read-only link to one run (or a comparison) that expires",
        "A link to the team view that opens one run's page (or the comparison of several runs) and nothing else, "
        "read-only, until it expires; no token needed. `--rotate` voids every link made so far.",
        "tracker share cnn-a --url https://tracker.lan --expires 24\ntracker share cnn-a cnn-b",
        _share_arguments, _share,
    ),
]
