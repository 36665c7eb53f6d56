"""Whether an attempt's writer is still alive: its pid alone does not say, so a restarted job that got the same pid takes over."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import tracker
from tests.support.children import train
from tracker.records import ProcessInfo
from tracker.store import open_store

CHILD = Path(__file__).with_name("child_numpy.py")


def _unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _unshare_works(), reason="needs `unshare --pid` (root, util-linux) to run a child as pid 1")
def test_restarted_job_with_the_same_pid_takes_over_its_own_run(tmp_path):
    shutil.copy(CHILD, tmp_path / "train.py")
    as_pid_1 = ("unshare", "--pid", "--fork", "--mount-proc")
    env = {"TRACKER_DB": "t.db", "TRACKER_CHECKPOINT_DIR": "ck"}
    first = train(tmp_path, "5", prefix=as_pid_1, CRASH_AT="2", **env)
    assert first.returncode == 9, first.stderr
    store = open_store(str(tmp_path / "t.db"), create=False)
    assert store.attempts(store.get_run("r").id)[0].process.pid == 1
    store.close()
    # A fresh lease and the same pid: before the fix, "being written by pid 1" for 120 s.
    again = train(tmp_path, "5", prefix=as_pid_1, **env)
    assert again.returncode == 0, again.stderr
    assert "started at epoch 2" in again.stdout
    assert tracker.runs(str(tmp_path / "t.db"))[0].status == "completed"


def test_an_attempt_with_this_pid_but_another_process_start_is_dead(db, ckpt, record):
    record("r", 2, finish=None)._heartbeat.stop()
    store = open_store(db)
    writer = store.attempts(store.get_run("r").id)[-1]
    assert writer.process.pid == os.getpid() and writer.alive()
    stale = ProcessInfo(**{**writer.process.__dict__, "start": "another-boot:123"})
    with store.engine.begin() as conn:
        from tracker.store.tables import attempts

        conn.execute(attempts.update().where(attempts.c.id == writer.id).values(process_start=stale.start))
    assert not store.attempts(store.get_run("r").id)[-1].alive()
    store.close()
