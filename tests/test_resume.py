"""``python -m tracker.resume``: re-launch, --check, --from-epoch, refusals. No TensorFlow here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import tracker
from tests.support.children import child_env
from tracker.resume import launch
from tracker.resume.__main__ import main as resume_main
from tracker.store import open_store

CHILD = Path(__file__).with_name("child_numpy.py")


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if (not k.startswith("TRACKER_") or k == "TRACKER_SPOOL_DIR") and k != "CRASH_AT"}
    env.update(TRACKER_DB=str(tmp_path / "t.db"), TRACKER_CHECKPOINT_DIR=str(tmp_path / "ckpt"), **extra)
    return env


def start_crashing(tmp_path: Path, script: Path, epochs: int = 5, crash_at: int = 3) -> None:
    result = subprocess.run([sys.executable, script.name, "r", str(epochs)], cwd=tmp_path,
                            env=env_for(tmp_path, CRASH_AT=str(crash_at)), timeout=120)
    assert result.returncode == (9 if crash_at < epochs else 0)


def resume_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracker.resume", "r", *args], cwd=tmp_path,
                          env=env_for(tmp_path), capture_output=True, text=True, timeout=120)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    copy = tmp_path / "train.py"
    shutil.copy(CHILD, copy)
    return copy


def test_resume_relaunches_the_recorded_command(tmp_path, script):
    start_crashing(tmp_path, script)
    assert tracker.runs(str(tmp_path / "t.db"))[0].status == "crashed"
    result = resume_cli(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "started at epoch 3" in result.stdout
    assert f"resuming run r: {sys.executable} train.py r 5" in result.stderr
    assert tracker.curves("r", db=str(tmp_path / "t.db"))["epoch"] == [0, 1, 2, 3, 4]
    assert tracker.runs(str(tmp_path / "t.db"))[0].status == "completed"


def test_check_reports_the_resume_point_without_training(tmp_path, script):
    start_crashing(tmp_path, script)
    result = resume_cli(tmp_path, "--check")
    assert result.returncode == 0, result.stderr
    assert "status crashed, last committed epoch 2, target epochs 5" in result.stdout
    assert "resume point: epoch 2" in result.stdout and "sha256 ok" in result.stdout
    assert tracker.curves("r", db=str(tmp_path / "t.db"))["epoch"] == [0, 1, 2]


def test_check_names_a_corrupt_checkpoint(tmp_path, script):
    start_crashing(tmp_path, script)
    newest = next((tmp_path / "ckpt" / "r").glob("epoch-000002-*.npz"))
    newest.write_bytes(b"garbage")
    result = resume_cli(tmp_path, "--check")
    assert "does not verify: epoch 2" in result.stdout and "resume point: epoch 1" in result.stdout


def test_from_epoch_rewinds_and_keeps_later_epochs_superseded(tmp_path, script):
    start_crashing(tmp_path, script, epochs=5, crash_at=99)  # finishes all 5 epochs
    result = resume_cli(tmp_path, "--from-epoch", "3")
    assert result.returncode == 0, result.stderr
    assert "rewound run r to epoch 3; 1 later epoch(s) kept as superseded" in result.stderr
    db = str(tmp_path / "t.db")
    assert tracker.curves("r", db=db)["epoch"] == [0, 1, 2, 3, 4]
    assert tracker.curves("r", db=db, include_superseded=True)["superseded"] == [False, False, False, False, True, False]


def test_from_epoch_without_a_kept_checkpoint_is_refused(tmp_path, script):
    start_crashing(tmp_path, script, epochs=6, crash_at=99)
    result = resume_cli(tmp_path, "--from-epoch", "0")
    assert result.returncode == 1
    assert "no kept checkpoint for epoch 0 (kept: 3, 4, 5)" in result.stderr


def test_missing_script_is_a_clear_error(tmp_path, script):
    start_crashing(tmp_path, script)
    script.unlink()
    result = resume_cli(tmp_path)
    assert result.returncode == 1
    assert f"script {script} no longer exists" in result.stderr


def test_unknown_run_suggests_names(tmp_path, script):
    start_crashing(tmp_path, script)
    result = subprocess.run([sys.executable, "-m", "tracker.resume", "rr"], cwd=tmp_path, env=env_for(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Did you mean: 'r'" in result.stderr


def test_a_live_run_is_not_resumed_without_force(record, db):
    record("r", 2, finish=None)  # this test process is the live writer
    assert resume_main(["r", "--db", db]) == 1


@pytest.mark.parametrize(
    "argv, kind",
    [
        (["train.py", "--lr", "1"], ("script", "train.py")),
        (["-u", "-X", "importtime", "train.py"], ("script", "train.py")),
        (["-m", "pkg.train", "x"], ("module", "pkg.train")),
        (["-c", "print(1)"], ("command", "")),
        (["-"], ("stdin", "")),
        ([], ("interactive", "")),
    ],
    ids=["script", "options", "module", "command", "stdin", "repl"],
)
def test_entry_point_of_recorded_command(argv, kind):
    assert launch._entry_point(argv) == kind


def test_the_resume_subcommand_is_the_same_command(tmp_path, script):
    start_crashing(tmp_path, script)
    result = subprocess.run([sys.executable, "-m", "tracker", "resume", "r"], cwd=tmp_path, env=env_for(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "started at epoch 3" in result.stdout
    assert tracker.curves("r", db=str(tmp_path / "t.db"))["epoch"] == [0, 1, 2, 3, 4]


def test_shim_help_keeps_its_own_name(capsys):
    with pytest.raises(SystemExit) as exc:
        resume_main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m tracker.resume") and "  python -m tracker.resume cnn-baseline --check" in out


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


def test_extending_a_completed_run_does_not_warn_about_its_target(db, ckpt, record):
    record("r", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record("r", 5)
    assert tracker.runs(db)[0].target_epochs == 5
