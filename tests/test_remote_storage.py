"""Checkpoints on an S3-compatible server (moto, on loopback): durable upload, verification, orphans, fallback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import fsspec
import numpy as np
import pytest

import tracker
from tests.support import invariants
from tracker.store import open_store

CHILD = Path(__file__).with_name("child_numpy.py")


def objects(prefix: str) -> list[str]:
    fs, root = fsspec.core.url_to_fs(prefix)
    fs.invalidate_cache()
    try:
        return sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
    except FileNotFoundError:
        return []


def record(name: str, epochs: int, db: str, prefix: str, **options) -> tracker.Run:
    run = tracker.track(name, db=db, checkpoint_dir=prefix, **options)
    run.start()
    for epoch in range(run.initial_epoch, epochs):
        run.commit_epoch(epoch, {"loss": 1.0 / (epoch + 1)}, {"w": np.full(4, float(epoch))}, {})
    run.finish("completed")
    return run


def checkpoint_paths(db: str, name: str) -> list[str]:
    store = open_store(db)
    try:
        return [row.checkpoint.path for row in store.checkpoints(store.get_run(name).id)]
    finally:
        store.close()


def test_epochs_point_at_verified_objects_and_retention_deletes_old_ones(sqlite_db, s3_prefix):
    record("r", 6, sqlite_db, s3_prefix, keep_last=2, keep_best=False)

    kept = checkpoint_paths(sqlite_db, "r")
    assert [p.rsplit("/", 1)[-1][:12] for p in kept] == ["epoch-000005", "epoch-000004"]
    assert all(p.startswith(f"{s3_prefix}/r/") for p in kept)
    assert [o for o in objects(f"{s3_prefix}/r") if o.endswith(".npz")] == sorted(p.rsplit("/", 1)[-1] for p in kept)
    assert invariants.check(sqlite_db, "r") == list(range(6))


def test_a_rerun_resumes_from_the_newest_object(sqlite_db, s3_prefix):
    record("r", 3, sqlite_db, s3_prefix)
    run = record("r", 5, sqlite_db, s3_prefix)

    assert run.initial_epoch == 3
    assert tracker.curves("r", db=sqlite_db)["epoch"] == [0, 1, 2, 3, 4]


def test_an_upload_killed_before_verification_leaves_an_orphan_that_the_next_start_deletes(sqlite_db, s3_prefix, tmp_path):
    # Direct uploads (TRACKER_SPOOL=off); staged ones are in tests/test_spool.py.
    env = {**os.environ, "TRACKER_DB": sqlite_db, "TRACKER_CHECKPOINT_DIR": s3_prefix, "TRACKER_TEST_PAUSE_AT": "before-rename:2",
           "TRACKER_SPOOL": "off"}
    proc = subprocess.Popen([sys.executable, str(CHILD), "r", "4"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        assert any(line.startswith("TRACKER-PAUSED") for line in proc.stderr)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    orphan = [o for o in objects(f"{s3_prefix}/r") if o.startswith("epoch-000002")]
    assert len(orphan) == 1, "the uploaded but uncommitted object should be there"
    assert invariants.check(sqlite_db, "r") == [0, 1]

    del env["TRACKER_TEST_PAUSE_AT"]
    subprocess.run([sys.executable, str(CHILD), "r", "4"], env=env, cwd=tmp_path, check=True, timeout=120)

    assert orphan[0] not in objects(f"{s3_prefix}/r")
    assert invariants.check(sqlite_db, "r") == [0, 1, 2, 3]


def test_resume_check_verifies_the_object(sqlite_db, s3_prefix, tmp_path):
    record("r", 3, sqlite_db, s3_prefix)
    result = subprocess.run([sys.executable, "-m", "tracker.resume", "r", "--check", "--db", sqlite_db],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"resume point: epoch 2 ({s3_prefix}/r/epoch-000002-" in result.stdout and "sha256 ok" in result.stdout


def test_a_corrupt_newest_object_falls_back_to_the_previous_epoch(sqlite_db, s3_prefix):
    record("r", 3, sqlite_db, s3_prefix)
    newest = checkpoint_paths(sqlite_db, "r")[0]
    with fsspec.open(newest, "wb") as f:
        f.write(b"not a checkpoint")

    with pytest.warns(UserWarning, match="falling back to epoch 1.*sha256|falling back to epoch 1.*bytes"):
        run = tracker.track("r", db=sqlite_db, checkpoint_dir=s3_prefix)
        run.start()
    run.finish("completed")
    assert run.initial_epoch == 2


def test_a_missing_bucket_fails_before_anything_is_recorded(sqlite_db, s3_prefix):
    missing = "s3://no-such-bucket-for-tracker/ckpt"
    with pytest.raises(tracker.CheckpointError, match=r"s3://no-such-bucket-for-tracker/ckpt/r is not writable: .*bucket"):
        tracker.track("r", db=sqlite_db, checkpoint_dir=missing).start()
    assert not Path(sqlite_db).exists()


def test_an_unreachable_endpoint_fails_before_anything_is_recorded(sqlite_db, s3_prefix):
    with pytest.raises(tracker.CheckpointError, match="is not writable"):
        tracker.track("r", db=sqlite_db, checkpoint_dir=s3_prefix, storage_options={"endpoint_url": "http://127.0.0.1:9"}).start()
    assert not Path(sqlite_db).exists()


def test_a_password_in_the_checkpoint_url_is_refused_without_echoing_it(sqlite_db):
    with pytest.raises(ValueError, match="holds a password") as exc:
        tracker.track("r", db=sqlite_db, checkpoint_dir="ftp://me:hunter2@files.lan/ckpt")
    assert "hunter2" not in str(exc.value)
