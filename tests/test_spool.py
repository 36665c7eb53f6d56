"""The local-first spool of team mode, one instant at a time: real processes stopped and SIGKILLed at the spool's
own boundaries, a real PostgreSQL database and a real S3-compatible store (moto).

The outages themselves (a stopped, a frozen server) are in ``tests/test_team_outage.py``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import tracker
from tests.support import invariants
from tests.support.children import REPO, child_env
from tracker.cli import main
from tracker.store import open_store

CHILD = REPO / "tests" / "child_numpy.py"


def _popen(db: str, ckpt: str, epochs: int = 5, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(CHILD), "r", str(epochs), "--db", db, "--checkpoint-dir", ckpt],
                            env=child_env(**env), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


def _kill_when_paused(proc: subprocess.Popen[str]) -> None:
    assert proc.stderr is not None
    try:
        assert any(line.startswith("TRACKER-PAUSED") for line in proc.stderr)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


def _epoch_rows(db: str) -> list[tuple[int, int]]:
    engine = sa.create_engine(db)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT epoch, count(*) FROM epochs GROUP BY epoch ORDER BY epoch").all()
    engine.dispose()
    return [tuple(r) for r in rows]


def _spool_files() -> list[Path]:
    return list(Path(os.environ["TRACKER_SPOOL_DIR"]).rglob("*.sqlite"))


def test_a_commit_the_server_took_just_before_a_kill_is_not_applied_again(postgres_db, ckpt):
    """Killed after the server committed epoch 2 and before the spool forgot it: the resume's replay of epoch 2
    is refused by the attempt's replication mark, in its own transaction, so the server holds it once."""
    _kill_when_paused(_popen(postgres_db, ckpt, TRACKER_TEST_PAUSE_AT="spool-after-replay:2"))
    assert _spool_files(), "the killed attempt's spool is left on this host"
    subprocess.run([sys.executable, str(CHILD), "r", "5", "--db", postgres_db, "--checkpoint-dir", ckpt],
                   env=child_env(), check=True, timeout=120, capture_output=True)
    assert _epoch_rows(postgres_db) == [(e, 1) for e in range(5)]
    assert invariants.check(postgres_db, "r") == list(range(5))
    assert not _spool_files()


def test_a_checkpoint_staged_but_not_uploaded_when_killed_is_uploaded_by_the_next_start(postgres_db, s3_prefix):
    """Checkpoints on S3 are written to the local staging folder first; killed before epoch 2's upload, the file is
    on this host only, and the next start uploads, verifies and commits it before training on."""
    _kill_when_paused(_popen(postgres_db, s3_prefix, TRACKER_TEST_PAUSE_AT="spool-before-upload:2"))
    staged = list(Path(os.environ["TRACKER_SPOOL_DIR"], "staging").rglob("epoch-000002-*.npz"))
    assert len(staged) == 1
    store = open_store(postgres_db, create=False)
    assert store.get_run("r").last_epoch == 1  # the server has not heard of epoch 2 yet
    store.close()
    subprocess.run([sys.executable, str(CHILD), "r", "5", "--db", postgres_db, "--checkpoint-dir", s3_prefix],
                   env=child_env(), check=True, timeout=120, capture_output=True)
    store = open_store(postgres_db, create=False)
    run = store.get_run("r")
    attempts = store.attempts(run.id)
    store.close()
    assert attempts[1].initial_epoch > 2, "the resume continued past the epoch it uploaded"
    assert invariants.check(postgres_db, "r") == list(range(5))
    assert not staged[0].exists() and not _spool_files()


def test_a_sqlite_run_with_local_checkpoints_has_no_spool(sqlite_db, ckpt):
    run = tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt, monitor="loss")
    run.start()
    run.commit_epoch(0, {"loss": 1.0}, {"w": [0.0]}, {})
    run.finish("completed")
    assert not Path(os.environ["TRACKER_SPOOL_DIR"]).exists()


def test_a_spool_folder_on_a_full_disk_is_refused_before_training(postgres_db, ckpt, full_disk, monkeypatch):
    from tests.conftest import fill

    fill(full_disk)
    monkeypatch.setenv("TRACKER_SPOOL_DIR", str(full_disk / "spool"))
    run = tracker.track("r", db=postgres_db, checkpoint_dir=ckpt, monitor="loss")
    with pytest.raises(tracker.StoreError, match=r"Spool folder .*(disk is full|cannot be written).*TRACKER_SPOOL_DIR"):
        run.start()
    assert tracker.runs(db=postgres_db) == [], "the failed start left no run behind"


def test_spool_off_writes_to_the_server_directly(postgres_db, ckpt, monkeypatch):
    monkeypatch.setenv("TRACKER_SPOOL", "off")
    run = tracker.track("r", db=postgres_db, checkpoint_dir=ckpt, monitor="loss")
    run.start()
    run.commit_epoch(0, {"loss": 1.0}, {"w": [0.0]}, {})
    assert tracker.curves("r", db=postgres_db)["epoch"] == [0]  # there before the block ends: no spool in between
    run.finish("completed")
    assert not _spool_files()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a UTS namespace (a host of another name)")
def test_a_resume_on_another_host_names_the_host_whose_spool_may_hold_newer_epochs(postgres_db, ckpt, capfd):
    """A writer on host 'gpu-a' whose commits stay in its spool (its replicator stopped at epoch 1) dies; a resume
    here sees the server's state, and names gpu-a and its spool."""
    shell = f"hostname gpu-a && exec {sys.executable} {CHILD} r 5 --db {postgres_db} --checkpoint-dir {ckpt}"
    proc = subprocess.Popen(["unshare", "--uts", "sh", "-c", shell], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env=child_env(TRACKER_TEST_PAUSE_AT="spool-after-replay:1", TRACKER_LEASE_SECONDS="2",
                                          TRACKER_SPOOL_DIR=str(ckpt) + "-gpu-a-disk"))  # another host's disk
    _kill_when_paused(proc)
    assert main(["show", "r", "--db", postgres_db]) == 0
    shown = capfd.readouterr().out
    assert "spool on gpu-a" in shown, shown

    os.environ["TRACKER_LEASE_SECONDS"] = "2"
    time.sleep(2.5)  # the killed writer's lease lapses: on another host its process cannot be looked up
    try:
        with pytest.warns(UserWarning, match=r"on host gpu-a\) wrote through a local spool there .* may hold newer epochs"):
            run = tracker.track("r", db=postgres_db, checkpoint_dir=ckpt, monitor="loss")
            run.start()
    finally:
        del os.environ["TRACKER_LEASE_SECONDS"]
    assert socket.gethostname() != "gpu-a" and run.initial_epoch == 2
    run.finish("interrupted")
