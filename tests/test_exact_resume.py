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


@pytest.mark.parametrize(
    "case, kill_at",
    [
        ("adam", "before-commit:3"),
        ("shuffle", "after-commit:2"),
        ("dropout", "during-write:3"),
        ("tfdata", "before-rename:4"),
        ("callbacks", "before-commit:4"),
        ("functional", "after-commit:3"),
        ("subclassed", "before-commit:2"),
        ("schedule", "during-retention:4"),
    ],
)
def test_resumed_run_is_bit_identical(tmp_path: Path, case: str, kill_at: str) -> None:
    db, ckpt = str(tmp_path / "t.db"), str(tmp_path / "ckpt")
    reference = [sys.executable, str(CHILD), "ref", str(EPOCHS), "--case", case]
    subprocess.run(reference, env=_env(db, ckpt), cwd=tmp_path, check=True, timeout=300)
    run_and_kill([sys.executable, str(CHILD), "r", str(EPOCHS), "--case", case], _env(db, ckpt, kill_at), tmp_path)
    invariants.check(db, "r")
    subprocess.run([sys.executable, "-m", "tracker.resume", "r"], env=_env(db, ckpt), cwd=tmp_path, check=True, timeout=300)
    expected, got = tracker.curves("ref", db=db), tracker.curves("r", db=db)
    assert got == expected
    if case == "callbacks":
        # The test is only meaningful if the callbacks acted before the kill and stopped the run early.
        assert len(set(expected["learning_rate"][:4])) > 1
        assert len(expected["epoch"]) < EPOCHS


def test_setting_up_a_shuffle_really_changes_the_curve(tmp_path: Path) -> None:
    """Guards the cases above against testing nothing: shuffle, dropout and tf.data change the metrics."""
    db, ckpt = str(tmp_path / "t.db"), str(tmp_path / "ckpt")
    for case in ("adam", "shuffle", "dropout"):
        subprocess.run([sys.executable, str(CHILD), case, "3", "--case", case], env=_env(db, ckpt), cwd=tmp_path, check=True, timeout=300)
    losses = {case: tracker.curves(case, db=db)["loss"] for case in ("adam", "shuffle", "dropout")}
    assert losses["adam"] != losses["shuffle"] and losses["adam"] != losses["dropout"]
