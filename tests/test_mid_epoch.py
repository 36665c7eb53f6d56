"""Resume at the exact batch: killed inside an epoch, or stopped by SIGTERM, a run continues at the next
batch, in fresh processes, and ends bit-identical to an uninterrupted run (issue: exact-batch resume)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tracker
from tests.support import invariants
from tests.test_crash import CHILD, _env, run_and_kill
from tracker.errors import Preempted
from tracker.store import open_store

pytestmark = pytest.mark.slow

EPOCHS = 4
# 64 samples, a quarter for validation: three batches of 16 per epoch.
SAMPLES = ["--samples", "64"]


def _reference(tmp: Path, case: str, backend: str = "tensorflow") -> dict[str, list]:
    db, ckpt = str(tmp / "ref.db"), str(tmp / "ref-ckpt")
    command = [sys.executable, str(CHILD), "ref", str(EPOCHS), "--case", case, "--backend", backend, *SAMPLES]
    subprocess.run(command, env=_env(db, ckpt), cwd=tmp, check=True, timeout=300)
    return tracker.curves("ref", db=db)


def _final_weights(db: str, run: str) -> dict:
    from tracker import checkpoint

    store = open_store(db)
    try:
        newest = store.checkpoints(store.get_run(run).id)[0]
    finally:
        store.close()
    arrays, _ = checkpoint.load(newest.checkpoint, {})
    return {k: v for k, v in arrays.items() if k.startswith("model.")}


# Each setup the issue names, killed at a write boundary of a step checkpoint (``<epoch>.<batch>``): numpy
# input (shuffle=False and True, with validation_split), a seeded tf.data input reshuffled each epoch,
# Dropout, ReduceLROnPlateau (with EarlyStopping); on JAX and torch the setups whose randomness lives
# elsewhere than on TensorFlow (the global generators that shuffle numpy input, Dropout's seeds).
CASES = [
    ("tensorflow", "adam", "after-commit:1.1"),
    ("tensorflow", "shuffle", "during-commit:2.2"),
    ("tensorflow", "tfdata", "before-commit:1.2"),
    ("tensorflow", "dropout", "after-commit:2.1"),
    ("tensorflow", "callbacks", "during-retention:2.2"),
    ("jax", "shuffle", "after-commit:2.1"),
    ("jax", "dropout", "before-rename:1.2"),
    ("torch", "shuffle", "during-write:2.2"),
    ("torch", "dropout", "after-commit:1.1"),
]


@pytest.mark.parametrize("backend, case, kill_at", CASES)
def test_killed_inside_an_epoch_resumes_at_the_next_batch_bit_identical(tmp_path: Path, backend: str, case: str, kill_at: str) -> None:
    expected = _reference(tmp_path, case, backend)
    db, ckpt = str(tmp_path / "t.db"), str(tmp_path / "ckpt")
    command = [sys.executable, str(CHILD), "r", str(EPOCHS), "--case", case, "--backend", backend, "--every-steps", "1", *SAMPLES]
    run_and_kill(command, _env(db, ckpt, kill_at), tmp_path)
    invariants.check(db, "r")
    assert _newest_checkpoint(db, "r") == _resume_point_after(kill_at)
    resumed = subprocess.run([sys.executable, "-m", "tracker.resume", "r"], env=_env(db, ckpt), cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    got = tracker.curves("r", db=db)
    assert got == expected
    ref_db = str(tmp_path / "ref.db")
    final, want = _final_weights(db, "r"), _final_weights(ref_db, "ref")
    assert final.keys() == want.keys() and all((final[k] == want[k]).all() for k in want)


def _resume_point_after(kill_at: str) -> str:
    """Where a run checkpointing every batch resumes after a kill at ``<boundary>:<epoch>.<batch>``."""
    boundary, where = kill_at.split(":")
    epoch, batch = map(int, where.split("."))
    if boundary in ("after-commit", "during-retention"):
        return f"epoch {epoch}, batch {batch}"
    return f"epoch {epoch}, batch {batch - 1}" if batch > 1 else f"epoch {epoch - 1}"


def _newest_checkpoint(db: str, run: str) -> str:
    store = open_store(db)
    try:
        return store.checkpoints(store.get_run(run).id)[0].describe()
    finally:
        store.close()


def test_skipping_the_trained_batches_does_not_run_the_model_on_them(tmp_path: Path) -> None:
    """The resumed epoch's first batch is the one after the checkpoint, and fit runs only the batches left."""
    db, ckpt = str(tmp_path / "t.db"), str(tmp_path / "ckpt")
    command = [sys.executable, str(CHILD), "r", "2", "--every-steps", "1", *SAMPLES]
    run_and_kill(command, _env(db, ckpt, "after-commit:0.2"), tmp_path)
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import runpy, sys, json, keras\n"
        "seen = []\n"
        "original = keras.Model.train_step\n"
        "class Count(keras.callbacks.Callback):\n"
        "    def on_train_batch_begin(self, batch, logs=None): seen.append((self.model.optimizer.iterations.numpy().item(), batch))\n"
        "fit = keras.Model.fit\n"
        "keras.Model.fit = lambda self, *a, **k: fit(self, *a, **{**k, 'callbacks': [*k.get('callbacks', []), Count()]})\n"
        "sys.argv = sys.argv[1:]\n"
        "try:\n"
        "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "finally:\n"
        "    print('SEEN', json.dumps(seen))\n"
    )
    out = subprocess.run([sys.executable, str(probe), str(CHILD), "r", "2", "--every-steps", "1", *SAMPLES],
                         env=_env(db, ckpt), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.split("SEEN ", 1)[1])
    # Killed after batch 2 of epoch 0 (iterations 2): epoch 0 continues with its third batch, then epoch 1's three.
    assert seen == [[2, 2], [3, 0], [4, 1], [5, 2]]


def test_sigterm_saves_at_the_next_batch_and_a_resume_retrains_nothing(tmp_path: Path) -> None:
    expected = _reference(tmp_path, "shuffle")
    db, ckpt = str(tmp_path / "t.db"), str(tmp_path / "ckpt")
    env = {**_env(db, ckpt), "CHILD_BATCH_SLEEP": "0.3"}
    # No step option: the save on SIGTERM works without any batch hook of tracker's.
    command = [sys.executable, str(CHILD), "r", str(EPOCHS), "--case", "shuffle", *SAMPLES]
    proc = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _epochs(db, "r"):
        time.sleep(0.05)
    time.sleep(0.45)  # inside epoch 1, after its first or second batch began
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == Preempted.EXIT_STATUS, err
    invariants.check(db, "r")
    store = open_store(db)
    run = store.get_run("r")
    point = store.checkpoints(run.id)[0]
    attempts = store.attempts(run.id)
    store.close()
    assert point.batch in (1, 2) and point.epoch == 1, point
    assert attempts[-1].status == "preempted"
    listing = subprocess.run([sys.executable, "-m", "tracker"], env=_env(db, ckpt), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "preempted" in listing.stdout

    resumed = subprocess.run([sys.executable, "-m", "tracker.resume", "r"], env=_env(db, ckpt), cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert tracker.curves("r", db=db) == expected


def _epochs(db: str, run: str) -> list[int]:
    if not Path(db).exists():
        return []
    try:
        return tracker.curves(run, db=db)["epoch"]
    except tracker.TrackerError:
        return []


def test_a_resume_logs_the_steps_an_uninterrupted_run_logs(tmp_path: Path) -> None:
    """Found by crash_torture --mid-epoch: with log_every_steps=2, a run resumed from the step checkpoint at
    step 2 logged step 3 (the first batch after the resume), which the uninterrupted run never logs, so the
    curve by step differed from it (steps 2, 3, 4, ... instead of 2, 4, 6, ...)."""
    options = ["--every-steps", "1", "--log-every-steps", "2", *SAMPLES]
    ref_db = str(tmp_path / "ref.db")
    subprocess.run([sys.executable, str(CHILD), "ref", "2", *options], env=_env(ref_db, str(tmp_path / "ref-ckpt")),
                   cwd=tmp_path, check=True, timeout=300)
    expected = tracker.curves("ref", db=ref_db, by="step")
    assert expected["step"] == [2, 4, 6]
    db, ckpt = str(tmp_path / "t.db"), str(tmp_path / "ckpt")
    run_and_kill([sys.executable, str(CHILD), "r", "2", *options], _env(db, ckpt, "after-commit:0.2"), tmp_path)
    resumed = subprocess.run([sys.executable, "-m", "tracker.resume", "r"], env=_env(db, ckpt), cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert tracker.curves("r", db=db, by="step") == expected
