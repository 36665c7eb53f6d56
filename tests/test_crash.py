"""Real processes killed with SIGKILL at every write boundary of an epoch, then resumed."""

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
from tracker.checkpoint.file import HEADER_KEY
from tracker.faults import BOUNDARIES

CHILD = Path(__file__).with_name("child_train.py")
pytestmark = pytest.mark.slow


def _env(db: str, ckpt: str, pause_at: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_") or k in ("TRACKER_SPOOL_DIR", "TRACKER_SPOOL")}
    env.update(TRACKER_DB=db, TRACKER_CHECKPOINT_DIR=ckpt, PYTHONPATH=str(Path(__file__).parents[1]))
    if pause_at:
        env["TRACKER_TEST_PAUSE_AT"] = pause_at
    return env


def run_and_kill(command: list[str], env: dict[str, str], cwd: Path) -> None:
    """Start ``command``, wait until it pauses at its test boundary, and SIGKILL it there."""
    proc = subprocess.Popen(command, env=env, cwd=cwd, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if line.startswith("TRACKER-PAUSED"):
                proc.send_signal(signal.SIGKILL)
                break
        else:
            pytest.fail(f"child exited with {proc.wait()} without reaching {env['TRACKER_TEST_PAUSE_AT']}")
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def final_state(ckpt: str, name: str) -> dict[str, bytes]:
    """Every array of run ``name``'s newest checkpoint (weights, optimizer, seeds, callbacks), as raw bytes:
    equal bytes are bit-identical, NaN included."""
    *_, newest = sorted(Path(ckpt, name).glob("epoch-*.npz"))
    with np.load(newest) as saved:
        return {key: saved[key].tobytes() for key in saved.files if key != HEADER_KEY}


EPOCHS = 7
# One epoch per boundary, in order; each kill lands on a later epoch than the one before.
KILLS = [("during-write", 1), ("before-rename", 2), ("before-commit", 3), ("during-commit", 4), ("after-commit", 4), ("during-retention", 5)]


@pytest.fixture(params=["sqlite-local", "postgresql-s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Where a run goes: a SQLite file and a local folder, or the team setup of a PostgreSQL server and S3.

    The team setup writes directly here (``TRACKER_SPOOL=off``): these are the boundaries of the server's own
    transaction. Through the spool, a commit is durable before the server's transaction begins, so a kill inside
    it loses nothing; the spool's own boundaries are killed in ``tests/test_spool.py``.
    """
    if request.param == "sqlite-local":
        return str(tmp_path / "t.db"), str(tmp_path / "ckpt")
    monkeypatch.setenv("TRACKER_SPOOL", "off")
    return request.getfixturevalue("postgres_db"), request.getfixturevalue("s3_prefix")


def test_kill_at_every_boundary_then_resume_is_bit_identical(tmp_path: Path, uninterrupted, storage: tuple[str, str]) -> None:
    db, ckpt = storage
    _kill_at_every_boundary_and_resume(tmp_path, db, ckpt, ["--case", "adam", "--backend", "tensorflow"])
    assert tracker.curves("r", db=db) == uninterrupted("tensorflow", "adam")[0]


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_kill_at_every_boundary_on_jax_and_torch(tmp_path: Path, uninterrupted, backend: str) -> None:
    """The same kills under another backend, with numpy input shuffled from that backend's global generator."""
    db, ckpt = str(tmp_path / "t.db"), str(tmp_path / "ckpt")
    _kill_at_every_boundary_and_resume(tmp_path, db, ckpt, ["--case", "shuffle", "--backend", backend])
    assert (tracker.curves("r", db=db), final_state(ckpt, "r")) == uninterrupted(backend, "shuffle")


def _kill_at_every_boundary_and_resume(tmp_path: Path, db: str, ckpt: str, options: list[str]) -> None:
    """Train run ``r``, killed once at each boundary, each restart a real `python -m tracker.resume`, to its end."""
    assert [b for b, _ in KILLS] == list(BOUNDARIES)
    committed: list[int] = []
    for i, (boundary, epoch) in enumerate(KILLS):
        command = [sys.executable, str(CHILD), "r", str(EPOCHS), *options] if i == 0 else [sys.executable, "-m", "tracker.resume", "r"]
        run_and_kill(command, _env(db, ckpt, f"{boundary}:{epoch}"), tmp_path)
        live = invariants.check(db, "r")
        assert live[: len(committed)] == committed, "a committed epoch was lost"
        assert live[-1] == (epoch if boundary in ("after-commit", "during-retention") else epoch - 1), (boundary, live)
        committed = live
        assert next(r for r in tracker.runs(db) if r.name == "r").status == "crashed"
    subprocess.run([sys.executable, "-m", "tracker.resume", "r"], env=_env(db, ckpt), cwd=tmp_path, check=True, timeout=300)
    assert invariants.check(db, "r") == list(range(EPOCHS))
    assert next(r for r in tracker.runs(db) if r.name == "r").status == "completed"
    fs, folder = fsspec.core.url_to_fs(f"{ckpt}/r")
    files = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False))
    assert not [f for f in files if f.endswith(".tmp")], files
    assert len([f for f in files if f.endswith(".npz")]) <= 4, f"retention kept too much: {files}"


def test_explicit_callback_form_resumes_identically(tmp_path: Path, uninterrupted) -> None:
    db, ckpt = str(tmp_path / "t.db"), str(tmp_path / "ckpt")
    command = [sys.executable, str(CHILD), "r", str(EPOCHS), "--case", "adam", "--backend", "tensorflow", "--explicit"]
    run_and_kill(command, _env(db, ckpt, "before-commit:3"), tmp_path)
    assert invariants.check(db, "r") == [0, 1, 2]
    subprocess.run(command, env=_env(db, ckpt), cwd=tmp_path, check=True, timeout=300)
    assert (tracker.curves("r", db=db), final_state(ckpt, "r")) == uninterrupted("tensorflow", "adam")
