"""The read-only web app: four pages, a JSON API and a server-sent event stream, on Starlette.

Routes (all GET but the team view's ``/login`` form and ``POST /api/share``; any other method gets 405):

- ``/``, ``/run/{name}``, ``/compare``, ``/sweep/{name}``: the pages (one HTML shell; ``static/app.js``
  and ``static/sweep.js`` draw them).
- ``/api/runs``, ``/api/runs/{name}``, ``/api/runs/{name}/curves``: JSON, see `tracker.serve.data`.
- ``/api/sweeps``, ``/api/sweeps/{name}``: JSON, see `tracker.serve.sweeps`.
- ``/api/events``: server-sent events from the `ChangeFeed`.
- ``/static/...``: the page's own files and the vendored chart library; nothing is fetched elsewhere.
- With ``team=True`` (``--team``): ``/login`` and ``/share/{link}``, ``POST /api/share`` for admins, and every
  route behind `tracker.serve.auth.TeamGuard`.

A request whose ``Host`` header names neither the bound address nor ``localhost`` gets 403,
so that a web page on another site cannot reach the server by DNS rebinding.

Example:
    ```python
    store = open_store("runs.db", create=False)
    app = create_app(store, hosts=["127.0.0.1"])
    uvicorn.run(app, host="127.0.0.1", port=6007)
    ```
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tracker.errors import RunNotFoundError, StoreError
from tracker.search.report import SweepNotFoundError
from tracker.serve import auth, data, sweeps
from tracker.serve.feed import ChangeFeed
from tracker.serve.follow import follow
from tracker.store import Store

STATIC = Path(__file__).with_name("static")
#: The page loads only its own files and talks only to this server, even if some script tried otherwise.
_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
     b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_CURVE_PARAMS = {"metrics", "max_points", "after", "superseded"}


def allowed_hosts(host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` header names accepted when bound to ``host``: it, ``localhost``, and ``extra``.

    Any port is accepted after the name, so an SSH tunnel to another local port still works.
    """
    names = {host, "localhost", *extra}
    if host in ("127.0.0.1", "::1"):
        names |= {"127.0.0.1", "::1"}
    return frozenset(n.strip("[]").lower() for n in names)


def _host_name(header: str) -> str:
    """``example.org:6007`` -> ``example.org``; ``[::1]:6007`` -> ``::1``."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0].lower()
    return header.rsplit(":", 1)[0].lower() if header.count(":") == 1 else header.lower()


class HostGuard:
    """ASGI middleware: 403 for a foreign ``Host`` header; security headers on every response."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        if _host_name(host) not in self.hosts:
            response = JSONResponse(
                {"error": f"Host {host!r} is not allowed. Open the URL the server printed, or start it with "
                          "--allow-host NAME for the name you use."},
                status_code=403,
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                own_policy = any(k.lower() == b"content-security-policy" for k, _ in headers)  # the login form's
                message["headers"] = [*headers, *(h for h in _HEADERS if not (own_policy and h[0] == b"content-security-policy"))]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(store: Store, *, hosts: Sequence[str] | frozenset[str], poll_interval: float = 0.5, team: bool = False) -> Starlette:
    """The web app over an open ``store``; the caller closes the store after the server stops.

    Args:
        store: The database, opened with ``open_store(db, create=False)``.
        hosts: ``Host`` header names to accept (see `allowed_hosts`).
        poll_interval: Seconds between the live poller's reads. Defaults to 0.5.
        team: Serve the team view: every route needs a token or a share link (`tracker.serve.auth`), and the
            login form and share links are served. Defaults to False (this machine only, no login).

    The app's ``state.feed`` is its `ChangeFeed`; ``feed.close()`` ends the open event streams.
    """
    feed = ChangeFeed(store, interval=poll_interval)

    async def read(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> JSONResponse:
        # Database reads block: run them in a worker thread, one short transaction each.
        try:
            return JSONResponse(await anyio.to_thread.run_sync(lambda: follow(store, fn, *args, **kwargs)))
        except (RunNotFoundError, SweepNotFoundError) as e:
            return JSONResponse({"error": str(e)}, status_code=404)
        except ValueError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        except StoreError as e:
            return JSONResponse({"error": str(e)}, status_code=503)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    async def runs(request: Request) -> Response:
        if request.query_params:
            return _bad(f"GET /api/runs takes no parameters. Received: {', '.join(request.query_params)}.")
        return await read(data.list_runs)

    async def run(request: Request) -> Response:
        return await read(data.run_detail, request.path_params["name"])

    async def curves(request: Request) -> Response:
        try:
            options = _curve_options(request)
        except ValueError as e:
            return _bad(str(e))
        return await read(data.run_curves, request.path_params["name"], **options)

    async def sweep_list(request: Request) -> Response:
        if request.query_params:
            return _bad(f"GET /api/sweeps takes no parameters. Received: {', '.join(request.query_params)}.")
        return await read(sweeps.list_sweeps)

    async def sweep(request: Request) -> Response:
        if request.query_params:
            return _bad(f"GET /api/sweeps/NAME takes no parameters. Received: {', '.join(request.query_params)}.")
        return await read(sweeps.sweep_detail, request.path_params["name"])

    async def events(request: Request) -> Response:
        share = request.scope.get("state", {}).get("share")
        return StreamingResponse(
            feed.stream(only=None if share is None else set(share.runs)), media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(feed.run)
            yield
            feed.close()
            tasks.cancel_scope.cancel()

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return auth.login_page(request.query_params.get("next", "/"))
        form = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
        token, next_path = form.get("token", [""])[0].strip(), form.get("next", ["/"])[0]
        if not token or await anyio.to_thread.run_sync(store.check_token, token) is None:
            return auth.login_page(next_path, "That token is not valid: unknown, revoked or expired.")
        target = next_path if next_path.startswith("/") and not next_path.startswith("//") else "/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(auth.TOKEN_COOKIE, token, httponly=True, samesite="strict", secure=auth.secure(request))
        return response

    async def shared(request: Request) -> Response:
        key = await anyio.to_thread.run_sync(store.signing_key)
        found = auth.verify(key, request.path_params["link"])
        if isinstance(found, str):
            return JSONResponse({"error": found}, status_code=403)
        response = RedirectResponse(auth.landing(found), status_code=303)
        response.set_cookie(auth.SHARE_COOKIE, request.path_params["link"], httponly=True, samesite="lax",
                            secure=auth.secure(request), expires=int(found.expires - time.time()))
        return response

    async def make_share(request: Request) -> Response:
        try:
            body = await request.json()
            names, hours = list(body["runs"]), float(body.get("hours", 72))
            if not names or not hours > 0:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return _bad('POST /api/share takes JSON {"runs": ["NAME", ...], "hours": 72} (hours > 0, runs not empty).')
        base = f"{request.url.scheme}://{request.headers.get('host', '')}"
        return await read(lambda s: {"link": auth.share_link(s, names, hours=hours, base=base)})

    team_routes = [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/share/{link}", shared),
        Route("/api/share", make_share, methods=["POST"]),
    ] if team else []
    app = Starlette(
        routes=[
            *team_routes,
            Route("/", page),
            Route("/run/{name}", page),
            Route("/compare", page),
            Route("/sweep/{name}", page),
            Route("/api/runs", runs),
            Route("/api/runs/{name}", run),
            Route("/api/runs/{name}/curves", curves),
            Route("/api/sweeps", sweep_list),
            Route("/api/sweeps/{name}", sweep),
            Route("/api/events", events),
            Mount("/static", StaticFiles(directory=STATIC)),
        ],
        middleware=[
            Middleware(HostGuard, hosts=frozenset(hosts)),
            *([Middleware(auth.TeamGuard, store=store, routes=lambda: app.routes)] if team else []),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.feed = feed
    return app


def _bad(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


def _curve_options(request: Request) -> dict[str, Any]:
    """The curves endpoint's query parameters, checked; `ValueError` names the bad one."""
    q = request.query_params
    unknown = sorted(set(q) - _CURVE_PARAMS)
    if unknown:
        raise ValueError(f"Unknown parameter(s) {', '.join(unknown)}. Expected: {', '.join(sorted(_CURVE_PARAMS))}.")
    options: dict[str, Any] = {}
    if "metrics" in q:
        # One name per parameter (metrics=loss&metrics=val_loss): a comma belongs to the name. A single
        # parameter may also hold names between commas, the older form, resolved in `data.run_curves`.
        names = q.getlist("metrics")
        if not all(names):
            raise ValueError(
                f"Invalid value for metrics. Received: {names!r}. Expected one name per metrics= parameter, "
                "e.g. metrics=loss&metrics=val_loss."
            )
        options["metrics"] = names
    for key, least in (("max_points", 1), ("after", None)):
        if key in q:
            try:
                value = int(q[key])
            except ValueError:
                raise ValueError(f"Invalid value for {key}. Received: {q[key]!r}. Expected an integer.") from None
            if least is not None and value < least:
                raise ValueError(f"Invalid value for {key}. Received: {value}. Expected an integer >= {least}.")
            if key == "after" and not -(2**63) <= value < 2**63:  # an epoch is a 64-bit integer in the database
                raise ValueError(f"Invalid value for after. Received: {value}. Expected an integer from {-(2**63)} to {2**63 - 1}.")
            options[key] = value
    if "superseded" in q:
        flags = {"1": True, "true": True, "0": False, "false": False}
        if q["superseded"].lower() not in flags:
            raise ValueError(f"Invalid value for superseded. Received: {q['superseded']!r}. Expected 1, 0, true or false.")
        options["superseded"] = flags[q["superseded"].lower()]
    return options
