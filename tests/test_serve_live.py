"""A real ``python -m tracker.serve`` process: live events, Ctrl-C, its command line, and not disturbing training."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

import tracker
from tests.support import serving
from tests.support.servers import sqlite_only
from tests.support.sweeps import plan_sweep

CHILD = Path(__file__).with_name("child_numpy.py")


def test_events_push_epochs_a_crash_and_the_resumed_run(db, tmp_path):
    # The server needs a database to open: a run that is not the one watched.
    subprocess.run([sys.executable, str(CHILD), "other", "1", "--db", db], env=serving.env(), cwd=tmp_path, check=True, timeout=120)
    shutil.copy(CHILD, tmp_path / "train.py")
    server = serving.start(db)
    events = serving.Events(server.url)
    try:
        events.wait(lambda event, _: event == "hello")
        # child_numpy dies with os._exit at epoch 3, as a killed process would: its pid is gone.
        died = subprocess.run([sys.executable, "train.py", "r", "6", "--db", db], env=serving.env(CRASH_AT="3"),
                              cwd=tmp_path, timeout=120)
        assert died.returncode == 9
        events.wait(serving.run_event("r", last_epoch=2, status="crashed"))

        subprocess.run([sys.executable, "-m", "tracker.resume", "r", "--db", db], env=serving.env(), cwd=tmp_path,
                       check=True, timeout=120)
        events.wait(serving.run_event("r", last_epoch=5, status="completed"))
        detail = httpx.get(f"{server.url}/api/runs/r").json()
        assert detail["resumed_at"] == [3]
        assert [a["status"] for a in detail["attempts"]] == ["crashed", "completed"]
    finally:
        events.close()
        code, err = server.stop()
    assert code == 0, err


def test_ctrl_c_stops_promptly_with_open_streams_and_nothing_imports_tensorflow(record, db):
    record("r", 3)
    plan_sweep(db, "s", grid={"units": [4, 8]})
    server = serving.start(db, python_flags=("-X", "importtime"))
    streams = [serving.Events(server.url) for _ in range(2)]
    try:
        for stream in streams:
            stream.wait(lambda event, _: event == "hello")
        for path in ("/", "/run/r", "/api/runs", "/api/runs/r", "/api/runs/r/curves?max_points=100&superseded=1",
                     "/sweep/s", "/api/sweeps", "/api/sweeps/s"):
            assert httpx.get(server.url + path).status_code == 200, path
        assert httpx.get(server.url + "/api/runs", headers={"host": "evil.example"}).status_code == 403
    finally:
        # An open event stream never ends by itself; uvicorn would wait for it without the feed's close.
        code, err = server.stop(timeout=15)
        for stream in streams:
            stream.close()
    assert code == 0, err[-3000:]
    assert "import time:" in err
    heavy = [line for line in err.splitlines() if any(m in line for m in ("tensorflow", "keras", "matplotlib"))]
    assert heavy == []


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracker.serve", *args], cwd=cwd, env=serving.env(),
                          capture_output=True, text=True, timeout=60)


@sqlite_only  # the default is ./tracker.db: the sqlite_db fixture's file, in its folder
@pytest.mark.parametrize("where", ["env", "default"])
def test_database_comes_from_tracker_db_else_the_working_folder(record, db, tmp_path, where):
    record("r", 1)
    cwd = Path(db).parent if where == "default" else tmp_path
    extra = {"TRACKER_DB": db} if where == "env" else {}
    proc = subprocess.Popen([sys.executable, "-m", "tracker.serve", "--port", "0"], env=serving.env(**extra), cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = serving.Server(proc, "")
    try:
        line = proc.stdout.readline()
    finally:
        code, err = server.stop()
    assert line.startswith(f"Serving {db} on http://127.0.0.1:"), (line, err)
    assert code == 0, err


def test_missing_database_is_a_one_line_error(tmp_path):
    result = run_cli("--db", str(tmp_path / "nope.db"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: No database at") and result.stderr.count("\n") == 1
    assert not (tmp_path / "nope.db").exists()


def test_busy_port_is_a_one_line_error_and_another_host_needs_the_team_view(record, db, tmp_path):
    record("r", 1)
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        loopback = run_cli("--db", db, "--port", str(port), cwd=tmp_path)
        everywhere = run_cli("--db", db, "--host", "0.0.0.0", "--port", str(port), cwd=tmp_path)
    assert loopback.returncode == 1 and loopback.stderr.startswith(f"error: Cannot listen on 127.0.0.1 port {port}")
    assert "warning" not in loopback.stderr
    assert everywhere.returncode == 1
    assert everywhere.stderr.startswith("error: Refusing to listen on 0.0.0.0 without --team") and "tracker token create" in everywhere.stderr


def test_database_url_password_is_masked_in_what_it_prints(postgres_db, tmp_path):
    from tests.support.servers import PG_PASSWORD

    subprocess.run([sys.executable, str(CHILD), "r", "1", "--db", postgres_db], env=serving.env(), cwd=tmp_path, check=True, timeout=120)
    server = serving.start(postgres_db)
    try:
        assert PG_PASSWORD not in server.url
        pages = [httpx.get(server.url + p).text for p in ("/api/runs", "/api/runs/r")]
    finally:
        code, err = server.stop()
    assert code == 0
    assert all(PG_PASSWORD not in text for text in [*pages, err])


def wal_bytes(db: str) -> int:
    try:
        return os.path.getsize(db + "-wal")
    except FileNotFoundError:
        return 0


#: SQLite's default autocheckpoint (1000 pages of 4 KiB): a WAL that keeps being checkpointed stays near it.
WAL_BOUND = 2 * 1000 * 4096
WIDE = {f"m{i:02d}": 0.0 for i in range(50)}  # 50 metrics: each epoch touches ~50 pages of the curve index


def record_wide(record, name: str, epochs: int, db: str) -> int:
    """Record ``epochs`` epochs of 50 metrics; the largest size the -wal file reached."""
    largest = 0

    def metrics(epoch: int) -> dict[str, float]:
        nonlocal largest
        largest = max(largest, wal_bytes(db))
        return {k: epoch + i / 100 for i, k in enumerate(WIDE)}

    record(name, epochs, metrics=metrics, keep_last=1)
    return max(largest, wal_bytes(db))


@sqlite_only
def test_wal_stays_bounded_while_a_200_epoch_run_is_served_and_polled(record, db):
    record("warmup", 1)
    server = serving.start(db)
    events = serving.Events(server.url)
    stop = threading.Event()

    def poll_pages() -> None:
        # A reader as busy as an open page that keeps refreshing, on top of the server's own poller.
        with httpx.Client() as client:
            while not stop.is_set():
                client.get(f"{server.url}/api/runs")
                client.get(f"{server.url}/api/runs/served/curves?max_points=200")

    try:
        events.wait(lambda event, _: event == "hello")
        reader = threading.Thread(target=poll_pages, daemon=True)
        reader.start()
        served = record_wide(record, "served", 200, db)
        events.wait(serving.run_event("served", last_epoch=199))
    finally:
        stop.set()
        events.close()
        code, err = server.stop()
    assert code == 0, err
    assert served <= WAL_BOUND, f"-wal grew to {served} bytes while served"

    # The same workload beside a reader that holds one transaction open (what the server must never do)
    # grows the WAL past the bound: the bound above is one that a long-lived reader breaks.
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN")
        holder.execute("SELECT count(*) FROM runs").fetchone()
        held = record_wide(record, "held", 200, db)
    finally:
        holder.close()
    print(f"\n-wal peak: {served:,} bytes while served and polled; {held:,} bytes beside a reader held open")
    assert held > WAL_BOUND, f"control: -wal reached only {held} bytes beside an open reader"


# -- the database deleted or replaced while serving ----------------------------


def back_up(db: str, backup: Path) -> None:
    """A copy of the database, its WAL's pages included (the server holds it open, so they may not be in the file)."""
    with sqlite3.connect(db) as source, sqlite3.connect(backup) as target:
        source.backup(target)
    source.close()
    target.close()


def put_back(backup: Path, db: str) -> None:
    """A copy of the database put where it was: a new file (another inode), as restoring a backup makes."""
    shutil.copy(backup, f"{db}.tmp")
    os.replace(f"{db}.tmp", db)


@sqlite_only
def test_a_deleted_database_is_a_503_for_the_viewer_and_served_again_once_put_back(record, db, client, tmp_path):
    record("r", 3)
    backup = tmp_path / "backup.db"
    back_up(db, backup)
    assert client.get("/api/runs").status_code == 200

    os.unlink(db)
    gone = client.get("/api/runs")
    assert gone.status_code == 503
    message = gone.json()["error"]
    assert "deleted or moved away while this server was showing it" in message
    assert "recovers by itself" in message and "resume the run" not in message
    assert client.get("/api/runs/r/curves").status_code == 503

    put_back(backup, db)
    assert [r["name"] for r in client.get("/api/runs").json()] == ["r"]
    assert client.get("/api/runs/r/curves").json()["epoch"] == [0, 1, 2]


@sqlite_only
def test_a_database_replaced_by_another_is_served_and_one_not_tracker_s_is_a_503(record, db, client, tmp_path):
    record("r", 2)
    assert client.get("/api/runs").status_code == 200
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    os.replace(junk, db)
    refused = client.get("/api/runs/r")
    assert refused.status_code == 503
    assert "replaced while this server was showing it" in refused.json()["error"]
    assert "resume the run" not in refused.json()["error"]

    other = tmp_path / "other.db"
    run = tracker.track("o", db=str(other), checkpoint_dir=str(tmp_path / "other-ckpt"), monitor="loss")
    run.start()
    run.commit_epoch(0, {"loss": 1.0}, {"w": np.zeros(2)}, {})
    run.finish("completed")
    put_back(other, db)
    assert [r["name"] for r in client.get("/api/runs").json()] == ["o"]
    assert client.get("/api/runs/r").status_code == 404


@sqlite_only
def test_poll_failures_are_logged_once_when_they_start_and_once_on_recovery(record, db, tmp_path, caplog):
    import anyio

    from tracker.serve.feed import ChangeFeed
    from tracker.store import open_store

    record("r", 2)
    backup = tmp_path / "backup.db"
    back_up(db, backup)
    store = open_store(db, create=False)
    feed = ChangeFeed(store, interval=0.01)
    events: list[bytes] = []

    async def page() -> None:
        async for chunk in feed.stream():
            events.append(chunk)

    async def scenario() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(feed.run)
            tasks.start_soon(page)
            await anyio.sleep(0.3)
            os.unlink(db)
            await anyio.sleep(0.5)  # some 50 failed polls
            put_back(backup, db)
            await anyio.sleep(0.5)
            feed.close()

    caplog.set_level("INFO", logger="tracker.serve.feed")
    try:
        anyio.run(scenario)
    finally:
        store.close()
    said = [r.getMessage() for r in caplog.records if r.name == "tracker.serve.feed"]
    assert len(said) == 2, said
    assert "cannot read the database" in said[0] and "deleted or moved away" in said[0]
    assert "can read the database again" in said[1]
    # The page re-reads everything on a hello after the outage: the database may be another one now.
    assert sum(chunk.startswith(b"event: hello") for chunk in events) == 2, events
