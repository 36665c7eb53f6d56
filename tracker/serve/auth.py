"""The team view's access control (``python -m tracker.serve --team``): every route declares what it needs, and
nothing answers without it.

`PERMISSIONS` maps each route of the app (its path template) to what it needs: ``public`` (the login form and
the files of the page itself), ``view`` (a valid token: every page and API route), ``run`` (a valid token,
or a share link whose scope holds the route's run), or ``admin`` (an admin's token: making share links,
``POST /api/share``). `TeamGuard` matches each request to the app's routes
itself, before Starlette does: a request that matches no route, or a route with no entry here, is refused, so
a route added later without a declared permission stays closed (deny by default; `tests/test_serve_auth.py`
enumerates the routes).

Credentials: ``Authorization: Bearer <token>`` for programs; for browsers, the login form (``/login``) sets an
HttpOnly, ``SameSite=Strict`` cookie holding the token (``Secure`` over HTTPS). A share link (``tracker share``)
is ``/share/<payload>.<signature>``: the payload names the runs it opens and when it expires, signed with
HMAC-SHA256 under the database's signing key; opening it sets a cookie with the link, good for those runs only.

Example:
    ```python
    app = create_app(store, hosts=hosts, team=True)   # wraps the routes in TeamGuard
    link = share_link(store, ["cnn-a"], hours=72, base="https://tracker.example.org")
    ```
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from tracker.store import Store

#: What each route needs: ``public``, ``view`` (a token), ``run`` (a token, or a share link for that run), or
#: ``admin`` (an admin's token).
PERMISSIONS: dict[str, str] = {
    "/login": "public",
    "/share/{link}": "public",
    "/static": "public",  # the page's own script, styles and chart library: nothing of the runs
    "/": "view",
    "/api/runs": "view",
    "/api/sweeps": "view",
    "/api/sweeps/{name}": "view",
    "/sweep/{name}": "view",
    "/run/{name}": "run",
    "/api/runs/{name}": "run",
    "/api/runs/{name}/curves": "run",
    "/compare": "run",
    "/api/events": "run",
    "/api/share": "admin",
}
TOKEN_COOKIE = "tracker_token"
SHARE_COOKIE = "tracker_share"


@dataclass(frozen=True)
class Share:
    """What a share link opens: these runs, until ``expires`` (seconds since the epoch)."""

    runs: tuple[str, ...]
    expires: float


def sign(key: bytes, share: Share) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"runs": list(share.runs), "exp": int(share.expires)}).encode()).decode().rstrip("=")
    signature = hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}.{signature}"


def verify(key: bytes, link: str) -> Share | str:
    """The share that ``link`` signs, or why it opens nothing."""
    payload, _, signature = link.partition(".")
    expected = hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, expected):
        return "This share link is not valid (altered, or signed with a key that was rotated since). Ask for a new one."
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        share = Share(tuple(data["runs"]), float(data["exp"]))
    except (ValueError, KeyError, TypeError):
        return "This share link is not valid. Ask for a new one."
    if share.expires <= time.time():
        return f"This share link expired at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(share.expires))}. Ask for a new one."
    return share


def share_link(store: Store, runs: Iterable[str], *, hours: float, base: str) -> str:
    """A signed, read-only link to ``runs`` (one: its page; several: their comparison), valid for ``hours``."""
    names = tuple(runs)
    for name in names:
        store.get_run(name)  # an unknown run fails here, with close names
    return f"{base.rstrip('/')}/share/{sign(store.signing_key(), Share(names, time.time() + hours * 3600))}"


def landing(share: Share) -> str:
    """Where a share link's visitor lands: the run's page, or the comparison of its runs."""
    quote = urllib.parse.quote
    if len(share.runs) == 1:
        return f"/run/{quote(share.runs[0], safe='')}"
    return "/compare?runs=" + ",".join(quote(n, safe="") for n in share.runs)


class TeamGuard:
    """ASGI middleware: answers a request only if its route's permission (`PERMISSIONS`) is met."""

    def __init__(self, app: ASGIApp, store: Store, routes: Callable[[], list]) -> None:
        self.app = app
        self.store = store
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        import anyio

        request = Request(scope)
        template, params = self._match(scope)
        needed = PERMISSIONS.get(template or "")
        if needed is None:
            await _refuse(401, "Not found, or not open to you: this tracker needs a token.")(scope, receive, send)
            return
        if needed == "public":
            await self.app(scope, receive, send)
            return
        token = _presented_token(request)
        found = await anyio.to_thread.run_sync(self.store.check_token, token) if token else None
        if found is not None and (needed != "admin" or found.role == "admin"):
            await self.app(scope, receive, send)
            return
        if found is not None:
            await _refuse(403, f"Token {found.name!r} is a {found.role}'s: this needs an admin's.")(scope, receive, send)
            return
        if needed == "run":
            share = await self._share(request)
            if isinstance(share, Share) and _in_scope(share, template, params, request):
                scope.setdefault("state", {})["share"] = share
                await self.app(scope, receive, send)
                return
        if request.headers.get("accept", "").startswith("text/html"):
            await RedirectResponse("/login?next=" + urllib.parse.quote(request.url.path), status_code=303)(scope, receive, send)
            return
        await _refuse(401, "This tracker needs a token: send Authorization: Bearer <token>, or log in at /login.")(scope, receive, send)

    def _match(self, scope: Scope) -> tuple[str | None, dict]:
        for route in self._routes():
            match, child = route.matches(scope)
            if match == Match.FULL:
                return route.path, child.get("path_params", {})
        return None, {}

    async def _share(self, request: Request) -> Share | str | None:
        import anyio

        link = request.cookies.get(SHARE_COOKIE)
        if not link:
            return None
        key = await anyio.to_thread.run_sync(self.store.signing_key)
        return verify(key, link)


def _presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(TOKEN_COOKIE)


def _in_scope(share: Share, template: str | None, params: dict, request: Request) -> bool:
    if template == "/compare":
        wanted = [n for n in request.query_params.get("runs", "").split(",") if n]
        return bool(wanted) and set(wanted) <= set(share.runs)
    if template == "/api/events":
        return True  # filtered to the share's runs by the app
    return params.get("name") in share.runs


def _refuse(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def secure(request: Request) -> bool:
    """Whether the browser reached us over HTTPS: directly, or through a proxy that says so."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


LOGIN_CSP = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>tracker: log in</title>
<link rel="stylesheet" href="/static/app.css"></head><body><main>
<h1>tracker</h1><p>This view needs a token (<code>tracker token create NAME</code> makes one).</p>
<form method="post" action="/login"><input type="hidden" name="next" value="{next}">
<label>Token <input type="password" name="token" id="token" autocomplete="off" required></label>
<button type="submit">Log in</button></form>{error}</main></body></html>"""


def login_page(next_path: str, error: str = "") -> HTMLResponse:
    safe_next = next_path if next_path.startswith("/") and not next_path.startswith("//") else "/"
    body = LOGIN_PAGE.format(next=_escape(safe_next), error=f'<p class="error">{_escape(error)}</p>' if error else "")
    # This page alone posts a form, to itself: its own policy, which `tracker.serve.app.HostGuard` keeps.
    return HTMLResponse(body, status_code=401 if error else 200, headers={"content-security-policy": LOGIN_CSP})


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
