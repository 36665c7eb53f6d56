"""Team mode under real server faults: training against a PostgreSQL server of the test's own never dies of an
outage, and the server ends with every epoch exactly once, on the curve of an uninterrupted SQLite run.

Each test trains ``tests/child_train.py`` (7 epochs, a few seconds apiece) against its own cluster, and while it
trains: stops the server (``pg_ctl stop -m immediate``) for 30 s, or freezes every server process (SIGSTOP) for
30 s, or stops it and SIGKILLs the trainer during the outage, then resumes on this host after it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import tracker
import tracker.store
from tests.conftest import same_floats
from tests.support.pg_cluster import Cluster
from tests.test_crash import CHILD, EPOCHS, _env, final_state

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/usr/lib/postgresql").is_dir(), reason="needs PostgreSQL's server binaries")]
#: The issue's outage: long enough for every retry and warning to happen, short of the 120 s lease.
OUTAGE_SECONDS = 30


@pytest.fixture
def pg() -> Iterator[Cluster]:
    with Cluster.start() as cluster:
        yield cluster


def _start(pg: Cluster, tmp_path: Path, **extra: str) -> subprocess.Popen[str]:
    env = {**_env(pg.url, str(tmp_path / "ckpt")), "TRACKER_SPOOL_DIR": str(tmp_path / "spool"), "TRACKER_SPOOL_WAIT": "120",
           "CHILD_ANNOUNCE_EPOCHS": "1", "CHILD_EPOCH_SLEEP": "3", **extra}
    return subprocess.Popen([sys.executable, str(CHILD), "r", str(EPOCHS)], env=env, cwd=tmp_path,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


def _wait_for_epoch(child: subprocess.Popen[str], epoch: int, seen: list[str]) -> None:
    """Read the child's stderr until its epoch ``epoch`` begins (so epochs before it are committed, to the spool)."""
    assert child.stderr is not None
    for line in child.stderr:
        seen.append(line)
        if line.strip() == f"EPOCH-BEGIN {epoch}":
            return
    raise AssertionError(f"the child ended before epoch {epoch}:\n{''.join(seen)}")


def _finish(child: subprocess.Popen[str], seen: list[str]) -> str:
    assert child.stderr is not None
    seen.extend(child.stderr)
    assert child.wait(timeout=300) == 0, "".join(seen)
    return "".join(seen)


def _assert_exact(pg: Cluster, tmp_path: Path, uninterrupted, *, superseded: int = 0) -> None:
    reference, state = uninterrupted("tensorflow", "adam")
    curve = tracker.curves("r", db=pg.url)
    assert curve["epoch"] == list(range(EPOCHS))
    for name, values in reference.items():
        assert same_floats(curve[name], values), name
    assert final_state(str(tmp_path / "ckpt"), "r") == state
    engine = sa.create_engine(pg.url)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT epoch, count(*) FROM epochs WHERE NOT superseded GROUP BY epoch ORDER BY epoch").all()
        every = conn.exec_driver_sql("SELECT count(*) FROM epochs").scalar()
    engine.dispose()
    assert rows == [(e, 1) for e in range(EPOCHS)] and every == EPOCHS + superseded
    assert not list((tmp_path / "spool").rglob("*.sqlite")), "the spool is empty once the server holds everything"


def test_a_30_s_server_crash_mid_training_costs_nothing(pg, tmp_path, uninterrupted):
    seen: list[str] = []
    child = _start(pg, tmp_path)
    _wait_for_epoch(child, 2, seen)
    pg.stop()
    time.sleep(OUTAGE_SECONDS)
    pg.restart()
    out = _finish(child, seen)
    assert out.count("is unreachable") == 1 and out.count("reachable again") == 1, out
    _assert_exact(pg, tmp_path, uninterrupted)


def test_a_server_hung_for_30_s_mid_training_costs_nothing(pg, tmp_path, uninterrupted):
    seen: list[str] = []
    child = _start(pg, tmp_path)
    _wait_for_epoch(child, 2, seen)
    pg.freeze()
    try:
        _wait_for_epoch(child, 4, seen)  # training goes on while nothing answers
        time.sleep(OUTAGE_SECONDS)
    finally:
        pg.thaw()
    out = _finish(child, seen)
    assert out.count("is unreachable") == 1 and "no answer for" in out and out.count("reachable again") == 1, out
    _assert_exact(pg, tmp_path, uninterrupted)


def test_a_trainer_killed_during_an_outage_resumes_on_its_host_with_nothing_lost(pg, tmp_path, uninterrupted):
    seen: list[str] = []
    child = _start(pg, tmp_path)
    _wait_for_epoch(child, 2, seen)
    pg.stop()
    _wait_for_epoch(child, 5, seen)  # epochs 2 and 3 (4 too, unless its commit is still being handed over) are in the spool only
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert list((tmp_path / "spool").rglob("*.sqlite"))
    pg.restart()
    seen = []
    resumed = _start(pg, tmp_path, CHILD_EPOCH_SLEEP="0")
    _finish(resumed, seen)
    # The killed attempt's spooled epochs reached the server before the resume started: it began past them.
    store = tracker.store.open_store(pg.url, create=False)
    attempts = store.attempts(store.get_run("r").id)
    store.close()
    assert [a.status for a in attempts] == ["crashed", "completed"] and attempts[1].initial_epoch in (4, 5)
    _assert_exact(pg, tmp_path, uninterrupted)


def test_an_s3_server_stopped_for_30_s_mid_training_costs_nothing(postgres_db, tmp_path, uninterrupted, monkeypatch):
    """Checkpoints go to S3 (moto's server, on a port of this test's own) through the staging folder; the server
    is stopped for 30 s after epoch 2 and started again on the same port (moto keeps its objects in this process)."""
    from moto.server import ThreadedMotoServer

    from tests.support import servers
    from tests.support.pg_cluster import _free_port

    servers.s3_endpoint()  # the session's server made the keys valid; this test's own is another door to the same store
    port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {**servers.S3_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    import fsspec

    bucket = f"tracker-outage-{port}"
    fsspec.filesystem("s3", skip_instance_cache=True).mkdir(bucket)
    prefix = f"s3://{bucket}/ckpt"
    env = {**_env(postgres_db, prefix), "TRACKER_SPOOL_DIR": str(tmp_path / "spool"), "TRACKER_SPOOL_WAIT": "120",
           "CHILD_ANNOUNCE_EPOCHS": "1", "CHILD_EPOCH_SLEEP": "3"}
    child = subprocess.Popen([sys.executable, str(CHILD), "r", str(EPOCHS)], env=env, cwd=tmp_path,
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen: list[str] = []
    try:
        _wait_for_epoch(child, 2, seen)
        moto.stop()
        time.sleep(OUTAGE_SECONDS)
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        moto.start()
        out = _finish(child, seen)
        assert out.count("Checkpoint storage is unreachable") == 1 and out.count("reachable again") == 1, out

        reference, state = uninterrupted("tensorflow", "adam")
        curve = tracker.curves("r", db=postgres_db)
        assert curve["epoch"] == list(range(EPOCHS)) and all(same_floats(curve[k], v) for k, v in reference.items())
        store = tracker.store.open_store(postgres_db, create=False)
        newest = store.checkpoints(store.get_run("r").id)[0]
        store.close()
        from tracker.checkpoint import load

        arrays, _ = load(newest.checkpoint)
        assert newest.epoch == EPOCHS - 1 and {k: v.tobytes() for k, v in arrays.items()} == state
        assert not list((tmp_path / "spool").rglob("*.npz")), "every staged checkpoint was uploaded or retired"
    finally:
        child.kill()
        moto.stop()
