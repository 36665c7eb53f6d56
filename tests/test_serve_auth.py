"""The team view's access control: the route audit (every route of the app, every method, refused without a
valid token), share links (scoped, expiring, tamper-proof), tokens absent from every table and from the server's
output, and the refusals at start. In-process through Starlette's test client, and as a real server."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

import tracker
from tests.support import serving
from tracker.cli import main
from tracker.records import now
from tracker.serve import auth
from tracker.serve.app import create_app
from tracker.store import open_store

ORIGIN = serving.ORIGIN
#: A sample URL for each route's path template, and the run it names.
SAMPLES = {"{name}": "cnn-a", "{link}": "x.y"}


def _record(db: str, ckpt: str, name: str, epochs: int = 3) -> None:
    run = tracker.track(name, db=db, checkpoint_dir=ckpt, monitor="loss")
    run.start()
    for e in range(epochs):
        run.commit_epoch(e, {"loss": 1.0 / (e + 1)}, {"w": np.zeros(2)}, {})
    run.finish("completed")


@pytest.fixture
def team(sqlite_db: str, ckpt: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A team view over two runs, and tokens: a viewer's, an admin's, a revoked one and an expired one."""
    _record(sqlite_db, ckpt, "cnn-a")
    _record(sqlite_db, ckpt, "cnn-b")
    store = open_store(sqlite_db, create=False)
    tokens = {
        "viewer": store.create_token("alice", "viewer", expires_at=None),
        "admin": store.create_token("root", "admin", expires_at=None),
        "revoked": store.create_token("bob", "viewer", expires_at=None),
        "expired": store.create_token("carol", "viewer", expires_at=now() - timedelta(seconds=1)),
    }
    store.revoke_token("bob")
    app = create_app(store, hosts=["127.0.0.1"], team=True)
    with TestClient(app, base_url=ORIGIN) as client:
        yield client, tokens
    store.close()


def _routes(app) -> list[tuple[str, str, str]]:
    """Every (method, sample URL, path template) the app routes, Mounts included: what the audit knocks on."""
    found = []
    for route in app.routes:
        if isinstance(route, Mount):
            found.append(("GET", f"{route.path}/app.js", route.path))
            continue
        assert isinstance(route, Route), f"a route of an unknown kind: {route!r}"
        url = route.path
        for key, value in SAMPLES.items():
            url = url.replace(key, value)
        found += [(m, url, route.path) for m in sorted(route.methods - {"HEAD"})]
    return found


def test_every_route_declares_a_permission_and_none_answers_without_a_valid_token(team):
    client, tokens = team
    routes = _routes(client.app)
    assert len(routes) >= 14
    for method, url, template in routes:
        assert template in auth.PERMISSIONS, f"{template} declares no permission"
        if auth.PERMISSIONS[template] == "public":
            continue
        for label, headers in [("none", {}), ("wrong", {"authorization": "Bearer trk_not-a-token"}),
                               ("revoked", {"authorization": f"Bearer {tokens['revoked']}"}),
                               ("expired", {"authorization": f"Bearer {tokens['expired']}"})]:
            response = client.request(method, url, headers=headers, follow_redirects=False)
            assert response.status_code in (401, 303), (label, method, url, response.status_code)
            assert "cnn-a" not in response.text and "loss" not in response.text, (label, url)
    # A path no route matches is refused as well, before anything is looked up.
    assert client.get("/api/secret", follow_redirects=False).status_code == 401


def test_a_viewer_token_opens_every_read_route_and_not_the_admin_one(team):
    client, tokens = team
    viewer = {"authorization": f"Bearer {tokens['viewer']}"}
    assert [r["name"] for r in client.get("/api/runs", headers=viewer).json()] == ["cnn-a", "cnn-b"]
    assert client.get("/api/runs/cnn-a/curves", headers=viewer).json()["loss"] == [1.0, 0.5, 1 / 3]
    assert client.get("/run/cnn-b", headers=viewer).status_code == 200
    assert client.post("/api/share", headers=viewer, json={"runs": ["cnn-a"]}).status_code == 403
    admin = {"authorization": f"Bearer {tokens['admin']}"}
    assert client.post("/api/share", headers=admin, json={"runs": ["cnn-a"]}).json()["link"].startswith(f"{ORIGIN}/share/")


def test_the_login_form_sets_an_http_only_strict_cookie(team):
    client, tokens = team
    assert client.get("/", headers={"accept": "text/html"}, follow_redirects=False).headers["location"] == "/login?next=/"
    refused = client.post("/login", data={"token": "trk_wrong", "next": "/"}, follow_redirects=False)
    assert refused.status_code == 401 and "not valid" in refused.text
    response = client.post("/login", data={"token": tokens["viewer"], "next": "/run/cnn-a"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/run/cnn-a"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert client.get("/api/runs").status_code == 200  # the cookie opens the API
    # An open redirect to another site is not possible through `next`.
    away = client.post("/login", data={"token": tokens["viewer"], "next": "//evil.example/"}, follow_redirects=False)
    assert away.headers["location"] == "/"


def test_a_share_link_opens_its_run_only_until_it_expires_and_not_once_altered(team, sqlite_db):
    client, _ = team
    store = open_store(sqlite_db, create=False)
    link = auth.share_link(store, ["cnn-a"], hours=1, base=ORIGIN)
    expired = auth.share_link(store, ["cnn-a"], hours=-1, base=ORIGIN)
    store.close()
    path = link.removeprefix(ORIGIN)

    landed = client.get(path, follow_redirects=False)
    assert landed.status_code == 303 and landed.headers["location"] == "/run/cnn-a"
    assert client.get("/api/runs/cnn-a").json()["name"] == "cnn-a"
    assert client.get("/api/runs/cnn-a/curves").json()["loss"] == [1.0, 0.5, 1 / 3]
    for other in ("/api/runs/cnn-b", "/api/runs/cnn-b/curves", "/api/runs", "/", "/compare?runs=cnn-a,cnn-b", "/api/sweeps"):
        response = client.get(other, follow_redirects=False)
        assert response.status_code in (401, 303) and "cnn-b" not in response.text, other

    client.cookies.clear()
    payload, _, signature = path.removeprefix("/share/").partition(".")
    forged = payload.replace(payload[5], "A" if payload[5] != "A" else "B") + "." + signature
    assert client.get(f"/share/{forged}").status_code == 403
    assert "expired" in client.get(expired.removeprefix(ORIGIN)).json()["error"]
    assert client.get("/api/runs/cnn-a", follow_redirects=False).status_code == 401

    store = open_store(sqlite_db)
    store.rotate_signing_key()
    store.close()
    assert "not valid" in client.get(path).json()["error"]


def test_tokens_are_in_no_table_and_no_output_of_the_server(sqlite_db, ckpt, capsys):
    _record(sqlite_db, ckpt, "cnn-a")
    assert main(["token", "create", "alice", "--role", "admin", "--db", sqlite_db]) == 0
    token = capsys.readouterr().out.strip()
    assert re.fullmatch(r"trk_[A-Za-z0-9_-]{40,}", token)
    assert main(["token", "list", "--db", sqlite_db]) == 0
    assert token not in capsys.readouterr().out
    server = serving.start(sqlite_db, "--team")
    try:
        assert httpx.get(f"{server.url}/api/runs").status_code == 401
        assert httpx.get(f"{server.url}/api/runs", headers={"authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.post(f"{server.url}/login", data={"token": token, "next": "/"}).status_code == 303
        assert httpx.get(f"{server.url}/?token={token}", follow_redirects=False).status_code in (303, 401)
    finally:
        code, err = server.stop()
    assert token not in err and token not in server.out
    engine = sa.create_engine(f"sqlite:///{sqlite_db}")
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                assert token not in repr(tuple(row)), table
    engine.dispose()


def test_the_team_view_refuses_to_start_without_a_token_and_beyond_loopback_without_team(sqlite_db, ckpt, tmp_path):
    _record(sqlite_db, ckpt, "cnn-a")

    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tracker.serve", "--db", sqlite_db, "--port", "0", *args],
                              env=serving.env(), capture_output=True, text=True, timeout=60, cwd=tmp_path)

    everywhere = serve("--host", "0.0.0.0")
    assert everywhere.returncode == 1 and "without --team" in everywhere.stderr
    no_token = serve("--team", "--host", "0.0.0.0")
    assert no_token.returncode == 1 and "no default credentials" in no_token.stderr and "tracker token create" in no_token.stderr
    store = open_store(sqlite_db)
    store.create_token("old", "viewer", expires_at=now() - timedelta(days=1))
    store.close()
    assert serve("--team").returncode == 1, "an expired token is no token"
    half_tls = serve("--team", "--tls-cert", "c.pem")
    assert half_tls.returncode == 2 and "--tls-key" in half_tls.stderr


def test_the_team_view_serves_https_with_a_certificate_and_key(sqlite_db, ckpt, tmp_path):
    _record(sqlite_db, ckpt, "cnn-a")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    store = open_store(sqlite_db)
    token = store.create_token("alice", "viewer", expires_at=None)
    store.close()
    server = serving.start(sqlite_db, "--team", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert server.url.startswith("https://")
        response = httpx.get(f"{server.url}/api/runs", headers={"authorization": f"Bearer {token}"}, verify=str(cert))
        assert response.status_code == 200 and response.json()[0]["name"] == "cnn-a"
        login = httpx.post(f"{server.url}/login", data={"token": token, "next": "/"}, verify=str(cert), follow_redirects=False)
        assert "Secure" in login.headers["set-cookie"]
    finally:
        server.stop()
