"""Killed with SIGKILL and resumed in fresh processes, every common setup gives bit-identical metrics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tracker
from tests import invariants
from tests.test_crash import CHILD, _env, run_and_kill

pytestmark = pytest.mark.slow

EPOCHS = 7


# Every setup on TensorFlow. On JAX and torch the setups whose randomness lives elsewhere than on
# TensorFlow (numpy input's shuffle order in the backend's global generator, Dropout's seed generator,
# a schedule's position in the optimizer); the others exercise nothing backend-specific that these miss.
CASES = [
    ("tensorflow", "adam", "before-commit:3"),
    ("tensorflow", "shuffle", "after-commit:2"),
    ("tensorflow", "dropout", "during-write:3"),
    ("tensorflow", "tfdata", "before-rename:4"),
    ("tensorflow", "callbacks", "before-commit:4"),
    ("tensorflow", "functional", "after-commit:3"),
    ("tensorflow", "subclassed", "before-commit:2"),
    ("tensorflow", "schedule", "during-retention:4"),
    *[(backend, case, kill_at) for backend in ("jax", "torch")
      for case, kill_at in (("shuffle", "after-commit:2"), ("dropout", "during-write:3"), ("schedule", "during-retention:4"))],
]


@pytest.mark.parametrize("backend, case, kill_at", CASES)
def test_resumed_run_is_bit_identical(tmp_path: Path, backend: str, case: str, kill_at: str) -> None:
    db, ckpt = str(tmp_path / "t.db"), str(tmp_path / "ckpt")
    options = ["--case", case, "--backend", backend]
    subprocess.run([sys.executable, str(CHILD), "ref", str(EPOCHS), *options], env=_env(db, ckpt), cwd=tmp_path, check=True, timeout=300)
    run_and_kill([sys.executable, str(CHILD), "r", str(EPOCHS), *options], _env(db, ckpt, kill_at), tmp_path)
    invariants.check(db, "r")
    subprocess.run([sys.executable, "-m", "tracker.resume", "r"], env=_env(db, ckpt), cwd=tmp_path, check=True, timeout=300)
    expected, got = tracker.curves("ref", db=db), tracker.curves("r", db=db)
    assert got == expected
    if case == "callbacks":
        # The test is only meaningful if the callbacks acted before the kill and stopped the run early.
        assert len(set(expected["learning_rate"][:4])) > 1
        assert len(expected["epoch"]) < EPOCHS


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_setting_up_a_shuffle_really_changes_the_curve(tmp_path: Path, backend: str) -> None:
    """Guards the cases above against testing nothing: shuffle and dropout change the metrics on each backend."""
    db, ckpt = str(tmp_path / "t.db"), str(tmp_path / "ckpt")
    for case in ("adam", "shuffle", "dropout"):
        command = [sys.executable, str(CHILD), case, "3", "--case", case, "--backend", backend]
        subprocess.run(command, env=_env(db, ckpt), cwd=tmp_path, check=True, timeout=300)
    losses = {case: tracker.curves(case, db=db)["loss"] for case in ("adam", "shuffle", "dropout")}
    assert losses["adam"] != losses["shuffle"] and losses["adam"] != losses["dropout"]
