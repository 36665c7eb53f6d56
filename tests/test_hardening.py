"""Faults and odd inputs a new user runs into (issue 10): each test reproduced a defect before its fix."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import tracker
from tests.servers import sqlite_only
from tracker import checkpoint
from tracker.errors import CheckpointError, RunLockedError
from tracker.records import ProcessInfo
from tracker.store import open_store

CHILD = Path(__file__).with_name("child_numpy.py")
REPO = Path(__file__).resolve().parents[1]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_") and k not in ("CRASH_AT", "EPOCH_SLEEP")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return {**env, **extra}


def train(cwd: Path, *args: str, prefix: tuple[str, ...] = (), **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "train.py", "r", *args], cwd=cwd, env=child_env(**env),
                          capture_output=True, text=True, timeout=120)


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


def wait_for_epoch(db: str, epoch: int, child: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline and child.poll() is None, "the child did not reach the epoch"
        try:
            if (tracker.runs(db)[0].last_epoch or 0) >= epoch:
                return
        except (tracker.StoreError, IndexError):
            pass  # not created yet
        time.sleep(0.1)


# -- 1. the same checkpoint folder reached by another path ------------------------------------


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


# -- 2. a rewind with --force fences the live writer in the same transaction ---------------------


def test_rewind_with_force_on_a_live_run_fences_its_writer_and_leaves_no_gap(tmp_path):
    shutil.copy(CHILD, tmp_path / "train.py")
    env = child_env(TRACKER_DB=str(tmp_path / "t.db"), TRACKER_CHECKPOINT_DIR=str(tmp_path / "ck"), EPOCH_SLEEP="0.3")
    old = subprocess.Popen([sys.executable, "train.py", "r", "14", "--keep-all"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_epoch(str(tmp_path / "t.db"), 4, old)
        resumed = subprocess.run([sys.executable, "-m", "tracker.resume", "r", "--from-epoch", "2", "--force"], cwd=tmp_path,
                                 env={**env, "EPOCH_SLEEP": "0"}, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        assert "started at epoch 3" in resumed.stdout
        _, old_err = old.communicate(timeout=60)
    finally:
        old.kill()
    assert old.returncode != 0 and "taken over" in old_err
    assert tracker.curves("r", db=str(tmp_path / "t.db"))["epoch"] == list(range(14))
    store = open_store(str(tmp_path / "t.db"), create=False)
    attempts = [(a.status, a.initial_epoch) for a in store.attempts(store.get_run("r").id)]
    store.close()
    # The old writer's own exit does not overwrite how it ended (item 20).
    assert attempts == [("taken-over", 0), ("completed", 3)]


# -- 3. a reused pid (pid 1 in a container) is not the old writer --------------------------------


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


# -- 4, 12, 13. metric names and values ---------------------------------------------------------


def test_metrics_named_like_curve_columns_are_skipped_with_a_warning(db, ckpt, record):
    with pytest.warns(UserWarning, match="'epoch'.*reserved") as caught:
        record("r", 3, metrics=lambda e: {"loss": 1.0 / (e + 1), "epoch": 100.0 + e, "superseded": 1.0})
    assert sum("reserved" in str(w.message) for w in caught) == 2  # once per name, not once per epoch
    assert tracker.curves("r", db=db) == {"epoch": [0, 1, 2], "loss": [1.0, 0.5, 1.0 / 3]}
    store = open_store(db)
    store.rewind(store.get_run("r"), 0, force=False)
    store.close()
    record("r", 3, metrics=lambda e: {"loss": 1.0 / (e + 1), "epoch": 7.0})
    full = tracker.curves("r", db=db, include_superseded=True)
    assert full["epoch"] == [0, 1, 1, 2, 2] and full["superseded"] == [False, True, False, True, False]


def test_a_metric_name_too_long_for_the_database_is_refused_on_every_backend(db, ckpt):
    run = tracker.track("r", db=db, checkpoint_dir=ckpt)
    run.start()
    run.set_target_epochs(3)  # as fit does when its first epoch begins
    with pytest.raises(ValueError, match="Metric name 'xxxx.*is 300 characters long.*at most 255"):
        run.submit_epoch(0, {"loss": 1.0, "x" * 300: 2.0}, {"w": np.zeros(2)}, {})
    run.finish("failed")
    assert tracker.curves("r", db=db)["epoch"] == [] and tracker.runs(db)[0].status == "failed"


def test_non_numeric_logs_are_skipped_with_one_warning_each(db, ckpt):
    run = tracker.track("r", db=db, checkpoint_dir=ckpt)
    run.start()
    odd = {"name": "adam", "vector": np.ones(3), "nothing": None, "complex": 1 + 2j}
    with pytest.warns(UserWarning) as caught:
        for epoch in range(3):
            run.submit_epoch(epoch, {"loss": 1.0 / (epoch + 1), **odd}, {"w": np.zeros(2)}, {})
        run.flush()
    run.finish("completed")
    skipped = [str(w.message) for w in caught if "is not recorded" in str(w.message)]
    assert len(skipped) == 4 and all(any(f"{k!r}" in m for m in skipped) for k in odd)
    assert tracker.curves("r", db=db) == {"epoch": [0, 1, 2], "loss": [1.0, 0.5, 1.0 / 3]}


# -- 10. a checkpoint folder made read-only mid-run ---------------------------------------------


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


# -- 11. a second Ctrl-C while the block finishes ------------------------------------------------

INTERRUPTED_CHILD = """
import sys, time
import numpy as np
import tracker

with tracker.track("r") as run:
    for epoch in range(3):
        run.submit_epoch(epoch, {"loss": 1.0}, {"w": np.zeros(2)}, {})
    print("waiting", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_a_second_ctrl_c_while_finishing_records_interrupted(tmp_path):
    (tmp_path / "train.py").write_text(textwrap.dedent(INTERRUPTED_CHILD))
    # The writer stops for good before committing epoch 2, so the first Ctrl-C's finish waits on it.
    child = subprocess.Popen([sys.executable, "train.py"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=child_env(TRACKER_DB="t.db", TRACKER_CHECKPOINT_DIR="ck", TRACKER_TEST_PAUSE_AT="before-commit:2"))
    try:
        assert child.stdout.readline() == "waiting\n"
        while "TRACKER-PAUSED" not in child.stderr.readline():
            pass
        child.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert child.poll() is None  # still waiting for the pending epoch
        child.send_signal(signal.SIGINT)
        child.wait(timeout=30)
    finally:
        child.kill()
    info = tracker.runs(str(tmp_path / "t.db"))[0]
    assert (info.status, info.last_epoch) == ("interrupted", 1)


# -- 14. re-running with fewer epochs ------------------------------------------------------------


def test_rerun_with_fewer_epochs_keeps_the_numbers_honest(make_model, data, sqlite_db, ckpt):
    x, y = data
    with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
        make_model().fit(x, y, epochs=3, batch_size=16, verbose=0)
    with pytest.warns(UserWarning, match=r"Run 'r' already has 3 epochs, more than the epochs=2 that fit asks for"):
        with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
            make_model().fit(x, y, epochs=2, batch_size=16, verbose=0)
    info = tracker.runs(sqlite_db)[0]
    assert (info.status, info.last_epoch, info.target_epochs) == ("completed", 2, 3)


def test_a_resume_whose_target_changed_warns(make_model, data, sqlite_db, ckpt):
    x, y = data
    with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
        make_model().fit(x, y, epochs=2, batch_size=16, verbose=0)
    store = open_store(sqlite_db)
    store.set_target_epochs(store.get_run("r").id, 5)  # as a crashed run that asked for 5 would have recorded
    store.close()
    with pytest.warns(UserWarning, match=r"Run 'r' was started with epochs=5; this fit asks for epochs=4"):
        with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
            make_model().fit(x, y, epochs=4, batch_size=16, verbose=0)
    assert tracker.runs(sqlite_db)[0].target_epochs == 4


# -- 15. a block in which no fit ran -------------------------------------------------------------


def test_a_block_without_fit_records_nothing_and_warns(keras_env, sqlite_db, ckpt):
    with pytest.warns(UserWarning, match=r"no fit call ran inside tracker.track\('r'\)"):
        with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
            pass
    assert tracker.runs(sqlite_db) == []
    assert not Path(ckpt, "r").exists()


def test_a_block_without_fit_on_an_existing_run_leaves_it_as_it_was(make_model, data, sqlite_db, ckpt):
    x, y = data
    with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
        make_model().fit(x, y, epochs=2, batch_size=16, verbose=0)
    before = tracker.runs(sqlite_db)[0]
    with pytest.warns(UserWarning, match="no fit call ran"):
        with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
            pass
    after = tracker.runs(sqlite_db)[0]
    assert (after.status, after.last_epoch, after.target_epochs) == (before.status, before.last_epoch, before.target_epochs)


def test_fit_in_another_thread_is_named_in_the_warning(make_model, data, sqlite_db, ckpt):
    import threading

    x, y = data
    model = make_model()
    with pytest.warns(UserWarning, match="fit was called from another thread"):
        with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
            t = threading.Thread(target=lambda: model.fit(x, y, epochs=1, batch_size=16, verbose=0))
            t.start()
            t.join()
    assert tracker.runs(sqlite_db) == []


def test_nested_blocks_of_one_run_say_they_are_nested(keras_env, sqlite_db, ckpt):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
            with pytest.raises(RunLockedError, match=r"nested"):
                with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
                    pass


# -- 19. the ownership marker ---------------------------------------------------------------------


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


# -- 20. failed starts and the monitor warning --------------------------------------------------


def test_a_failed_start_of_a_new_run_leaves_no_row_and_touches_no_folder(db, ckpt):
    other = Path(ckpt, "r")
    other.mkdir(parents=True)
    (other / checkpoint.MARKER).write_text("someone-else\nother.db\n")
    with pytest.raises(CheckpointError, match="belongs to another run"):
        tracker.track("r", db=db, checkpoint_dir=ckpt).start()
    assert tracker.runs(db) == []
    assert sorted(p.name for p in other.iterdir()) == [checkpoint.MARKER]


def test_a_failed_resume_keeps_the_recorded_target(make_model, data, sqlite_db, ckpt):
    x, y = data
    with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
        make_model().fit(x, y, epochs=2, batch_size=16, verbose=0)
    with pytest.raises(ValueError, match="initial_epoch"):
        with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt) as run:
            make_model().fit(x, y, epochs=9, batch_size=16, verbose=0, callbacks=[run.callback], initial_epoch=0)
    assert tracker.runs(sqlite_db)[0].target_epochs == 2


def test_the_monitor_typo_warning_points_at_the_users_line(make_model, data, sqlite_db, ckpt):
    x, y = data
    model = make_model()
    with pytest.warns(UserWarning, match="monitor 'val_acc' is not among the metrics") as caught:
        with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt, monitor="val_acc"):
            model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # the line the warning must name
    warning = next(w for w in caught if "val_acc" in str(w.message))
    assert Path(warning.filename).name == "test_hardening.py", warning.filename


def test_extending_a_completed_run_does_not_warn_about_its_target(db, ckpt, record):
    record("r", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record("r", 5)
    assert tracker.runs(db)[0].target_epochs == 5


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
