"""``python -m tracker.serve``: watch runs live in the browser. Read-only; never imports TensorFlow or Keras.

Examples:
    python -m tracker.serve                          # ./tracker.db (or $TRACKER_DB) on http://127.0.0.1:6007/
    python -m tracker.serve --db runs/tracker.db --port 8080
    python -m tracker.serve --db postgresql+psycopg://me@db-host/runs
    python -m tracker.serve --team --host 0.0.0.0 --allow-host tracker.lan     # for a team: tokens, share links
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from types import FrameType

import uvicorn

from tracker.errors import TrackerError
from tracker.serve.app import allowed_hosts, create_app
from tracker.store import Store, open_store

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6007
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tracker.serve",
        description="Serve a live, read-only view of the runs in a database: the run list, each run's curves,\n"
        "attempts and checkpoints, and a comparison of runs. Pages update as epochs commit.",
        epilog="Examples:\n  python -m tracker.serve --db runs/tracker.db\n"
        "  python -m tracker.serve --host 0.0.0.0 --allow-host gpu-box.lan   # reachable from the network",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", help="database file or SQLAlchemy URL (default: $TRACKER_DB, else ./tracker.db)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default: {DEFAULT_HOST}, this machine only; anything else warns)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default: {DEFAULT_PORT})")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="also accept requests addressed to NAME (the Host header), e.g. the machine's name "
                        "when listening on another address; may be repeated")
    parser.add_argument("--team", action="store_true",
                        help="the team view: every page and API route needs a token (tracker token create NAME) or a "
                        "share link (tracker share RUN); needed to listen beyond this machine")
    parser.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM); with --tls-key")
    parser.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C; return the exit status (0, or 1 with one ``error: ...`` line on stderr).

    Example:
        >>> main(["--db", "runs/tracker.db", "--port", "8080"])   # doctest: +SKIP

    Args:
        argv: The arguments after the program name. Defaults to ``sys.argv[1:]``.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"argument --port: invalid port {args.port}; expected 0 to 65535 (0 picks a free one)")
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together: pass both, or neither (and put a TLS proxy in front)")
    if args.host not in _LOOPBACK and not args.team:
        print(
            f"error: Refusing to listen on {args.host} without --team: anyone who could reach this machine on port "
            f"{args.port} would read every run (configs, metrics, commands, host names) with no login. Make a token "
            "(tracker token create NAME --role admin) and start with --team, or keep the default --host 127.0.0.1 "
            "and use an SSH tunnel.",
            file=sys.stderr,
        )
        return 1
    try:
        store = open_store(args.db, create=False)
    except (TrackerError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        no_token = args.team and not store.has_valid_token()
    except TrackerError as e:
        store.close()
        print(f"error: {e}", file=sys.stderr)
        return 1
    if no_token:
        store.close()
        print(
            f"error: --team needs a token, and {store.display} has none that is valid: there are no default "
            "credentials. Make one with: tracker token create NAME --role admin (add --db as here).",
            file=sys.stderr,
        )
        return 1
    try:
        sock = socket.create_server((args.host, args.port), family=socket.AF_INET6 if ":" in args.host else socket.AF_INET)
        # Accepted connections inherit it. asyncio sets it only on sockets it made itself, and without it each
        # response on a kept-alive connection waits ~40 ms for the client's delayed ACK (Nagle's algorithm).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as e:
        store.close()
        print(f"error: Cannot listen on {args.host} port {args.port}: {e.strerror or e}. Pass another --port.", file=sys.stderr)
        return 1
    try:
        port = sock.getsockname()[1]
        shown = f"[{args.host}]" if ":" in args.host else args.host
        scheme = "https" if args.tls_cert else "http"
        view = "the team view: a token or a share link opens it; " if args.team else ""
        print(f"Serving {store.display} on {scheme}://{shown}:{port}/  ({view}Ctrl-C to stop)", flush=True)
        _serve(store, sock, allowed_hosts(args.host, args.allow_host), team=args.team, tls=(args.tls_cert, args.tls_key))
    except KeyboardInterrupt:
        # Ctrl-C is the way to stop: uvicorn re-raises the one it handled once it has shut down cleanly,
        # and one that comes while it starts is no error either.
        pass
    finally:
        sock.close()
        store.close()
    return 0


def _serve(store: Store, sock: socket.socket, hosts: frozenset[str], *, team: bool, tls: tuple[str | None, str | None]) -> None:
    """Run uvicorn on the listening ``sock`` until Ctrl-C (or SIGTERM); open event streams end at once."""
    app = create_app(store, hosts=hosts, team=team)
    feed = app.state.feed
    loop: list[asyncio.AbstractEventLoop] = []

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            loop.append(asyncio.get_running_loop())
            await super().startup(sockets)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # uvicorn waits for open responses before it stops, and an event stream never ends by itself.
            if loop:
                loop[0].call_soon_threadsafe(feed.close)
            super().handle_exit(sig, frame)

    # The grace period only matters if a response hangs; event streams end at once through feed.close.
    # No access log: a URL may carry a share link, and nothing a visitor sends is worth keeping.
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=3, lifespan="on",
                            ssl_certfile=tls[0], ssl_keyfile=tls[1])
    Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
