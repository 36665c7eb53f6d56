"""Killed with SIGKILL and resumed in fresh processes, every common setup gives bit-identical metrics and weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tracker
from tests.support import invariants
from tests.test_crash import CHILD, EPOCHS, _env, final_state, run_and_kill

pytestmark = pytest.mark.slow

# Every setup on every backend, each in a fresh process killed at a write boundary. The validation_split
# of 0.25 is in every case but tfdata (which passes validation_data). Setups are joined in one child where
# that still proves each: functional,callbacks and subclassed,callbacks also check the models' variables
# against callback state (EarlyStopping keeps best weights); subclassed,dataloader also builds an unbuilt
# model from a torch DataLoader at the resume.
# tfdata runs on TensorFlow only: the JAX and torch children run as if TensorFlow were not installed.
CASES = [
    ("tensorflow", "adam", "before-commit:3"),
    ("tensorflow", "shuffle", "after-commit:2"),
    ("tensorflow", "dropout", "during-write:3"),
    ("tensorflow", "tfdata", "before-rename:4"),
    ("tensorflow", "callbacks", "before-commit:4"),
    ("tensorflow", "functional", "after-commit:3"),
    ("tensorflow", "subclassed", "before-commit:2"),
    ("tensorflow", "schedule", "during-retention:4"),
    *[(backend, case, kill_at) for backend in ("jax", "torch") for case, kill_at in (
        ("shuffle", "after-commit:2"),
        ("dropout", "during-write:3"),
        ("schedule", "during-retention:4"),
        ("functional,callbacks", "before-commit:4"),
        ("subclassed,callbacks", "before-commit:2"),
    )],
    ("torch", "subclassed,dataloader", "after-commit:3"),
]


@pytest.mark.parametrize("backend, case, kill_at", CASES)
def test_resumed_run_is_bit_identical(tmp_path: Path, uninterrupted, backend: str, case: str, kill_at: str) -> None:
    db, ckpt = str(tmp_path / "t.db"), str(tmp_path / "ckpt")
    run_and_kill([sys.executable, str(CHILD), "r", str(EPOCHS), "--case", case, "--backend", backend], _env(db, ckpt, kill_at), tmp_path)
    invariants.check(db, "r")
    subprocess.run([sys.executable, "-m", "tracker.resume", "r"], env=_env(db, ckpt), cwd=tmp_path, check=True, timeout=300)
    expected, expected_state = uninterrupted(backend, case)
    assert tracker.curves("r", db=db) == expected
    assert final_state(ckpt, "r") == expected_state
    if "callbacks" in case:
        # The test is only meaningful if the callbacks acted before the kill and stopped the run early.
        assert len(set(expected["learning_rate"][:4])) > 1
        assert len(expected["epoch"]) < EPOCHS


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_setting_up_a_shuffle_really_changes_the_curve(uninterrupted, backend: str) -> None:
    """Guards the cases above against testing nothing: shuffle and dropout change the metrics on each backend."""
    losses = {case: uninterrupted(backend, case)[0]["loss"] for case in ("adam", "shuffle", "dropout")}
    assert losses["adam"] != losses["shuffle"] and losses["adam"] != losses["dropout"]

