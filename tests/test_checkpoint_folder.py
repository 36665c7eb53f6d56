"""A run's checkpoint folder: reached by another path, replaced by an empty one, vanished, made read-only, and its ownership marker."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import tracker
from tests.support.children import train
from tests.support.servers import sqlite_only
from tracker import checkpoint
from tracker.errors import CheckpointError
from tracker.store import open_store

CHILD = Path(__file__).with_name("child_numpy.py")


def kept_files_exist(db: str) -> list[int]:
    """Epochs whose kept checkpoint verifies; asserts that every kept row's file is still there."""
    store = open_store(db, create=False)
    try:
        run = store.get_run("r")
        rows = store.checkpoints(run.id)
        folder = checkpoint.open_folder(str(Path(run.checkpoint_dir).parent), "r")
        for row in rows:
            checkpoint.load(folder.locate(row.checkpoint))
        return sorted(r.epoch for r in rows)
    finally:
        store.close()


@pytest.mark.parametrize("how", ["relative", "symlink", "moved"])
def test_same_folder_by_another_path_resumes_and_deletes_nothing(tmp_path, how):
    project = tmp_path / "P"
    project.mkdir()
    shutil.copy(CHILD, project / "train.py")
    first = train(project, "6", "--checkpoint-dir", "ck", TRACKER_DB="t.db", CRASH_AT="3")
    assert first.returncode == 9, first.stderr
    committed = sorted(p.name for p in (project / "ck" / "r").glob("epoch-*.npz"))
    assert len(committed) == 3

    cwd, ckpt = project, "ck"
    if how == "relative":
        ckpt = "../P/ck"
    elif how == "symlink":
        (tmp_path / "link").symlink_to(project / "ck")
        ckpt = str(tmp_path / "link")
    else:
        cwd = project.rename(tmp_path / "P2")
    # Before the fix, the orphan sweep took every committed file for an orphan here.
    again = train(cwd, "6", "--checkpoint-dir", ckpt, TRACKER_DB="t.db", CRASH_AT="4")
    assert again.returncode == 9, again.stderr
    assert "started at epoch 3" in again.stdout, again.stdout + again.stderr
    assert "missing" not in again.stderr
    assert tracker.curves("r", db=str(cwd / "t.db"))["epoch"] == [0, 1, 2, 3]
    assert kept_files_exist(str(cwd / "t.db")) == [1, 2, 3]


def test_a_new_empty_folder_for_a_run_with_checkpoints_still_resumes_from_the_recorded_files(tmp_path):
    shutil.copy(CHILD, tmp_path / "train.py")
    assert train(tmp_path, "6", "--checkpoint-dir", "old", TRACKER_DB="t.db", CRASH_AT="3").returncode == 9
    again = train(tmp_path, "6", "--checkpoint-dir", "new", TRACKER_DB="t.db")
    assert again.returncode == 0, again.stderr
    assert "started at epoch 3" in again.stdout
    assert tracker.curves("r", db=str(tmp_path / "t.db"))["epoch"] == list(range(6))


def test_a_run_whose_folder_vanished_is_refused_instead_of_started_over(tmp_path):
    shutil.copy(CHILD, tmp_path / "train.py")
    assert train(tmp_path, "6", "--checkpoint-dir", "ck", TRACKER_DB="t.db", CRASH_AT="3").returncode == 9
    (tmp_path / "ck").rename(tmp_path / "elsewhere")
    refused = train(tmp_path, "6", "--checkpoint-dir", "ck", TRACKER_DB="t.db")
    assert refused.returncode == 1
    assert "has committed checkpoints, but none is at its recorded path" in refused.stderr
    assert "pass checkpoint_dir=" in refused.stderr
    assert tracker.curves("r", db=str(tmp_path / "t.db"))["epoch"] == [0, 1, 2]  # nothing superseded
    assert not (tmp_path / "ck" / "r").exists()
    moved = train(tmp_path, "6", "--checkpoint-dir", "elsewhere", TRACKER_DB="t.db")
    assert moved.returncode == 0 and "started at epoch 3" in moved.stdout


@pytest.fixture
def small_mount(tmp_path: Path):
    mount = tmp_path / "mnt"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("needs to mount a tmpfs (root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@sqlite_only
def test_checkpoint_folder_made_read_only_mid_run_gives_a_checkpoint_error(db, small_mount):
    run = tracker.track("r", db=db, checkpoint_dir=str(small_mount))
    run.start()
    run.commit_epoch(0, {"loss": 1.0}, {"w": np.zeros(2)}, {})
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    with pytest.raises(CheckpointError, match=r"Cannot write checkpoint .*epoch-000001-.*\.npz: Read-only file system"):
        run.commit_epoch(1, {"loss": 0.5}, {"w": np.zeros(2)}, {})
    run.finish("failed")
    assert tracker.curves("r", db=db)["epoch"] == [0]


def test_an_empty_marker_left_by_a_power_loss_is_reclaimed(db, ckpt, record):
    record("r", 3)
    marker = Path(ckpt, "r", checkpoint.MARKER)
    marker.write_text("")
    run = record("r", 5)
    assert run.initial_epoch == 3
    assert marker.read_text().splitlines()[0] == open_store(db).get_run("r").uid


def test_an_empty_marker_beside_files_of_another_run_is_refused(db, ckpt, record):
    folder = Path(ckpt, "r")
    folder.mkdir(parents=True)
    (folder / checkpoint.MARKER).write_text("")
    (folder / "epoch-000000-0123456789ab.npz").write_bytes(b"someone else's")
    with pytest.raises(CheckpointError, match="ownership marker .* is empty"):
        record("r", 1)
    assert (folder / "epoch-000000-0123456789ab.npz").exists()


def test_the_marker_is_written_durably(db, ckpt, record, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd))[1])
    record("r", 0)
    folder = str(Path(ckpt, "r"))
    assert any(p.startswith(f"{folder}/.{checkpoint.MARKER}") for p in synced) and folder in synced


def test_a_failed_start_of_a_new_run_leaves_no_row_and_touches_no_folder(db, ckpt):
    other = Path(ckpt, "r")
    other.mkdir(parents=True)
    (other / checkpoint.MARKER).write_text("someone-else\nother.db\n")
    with pytest.raises(CheckpointError, match="belongs to another run"):
        tracker.track("r", db=db, checkpoint_dir=ckpt).start()
    assert tracker.runs(db) == []
    assert sorted(p.name for p in other.iterdir()) == [checkpoint.MARKER]
