"""Two MultiWorkerMirroredStrategy workers on loopback: only the chief writes; SIGKILL the chief, restart both."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import tracker
from tests.support import invariants
from tracker.store import open_store

CHILD = Path(__file__).with_name("child_multiworker.py")
EPOCHS = 5
KILL_AT = 1
pytestmark = pytest.mark.slow


def free_ports() -> tuple[str, str]:
    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = tuple(str(s.getsockname()[1]) for s in sockets)
    for s in sockets:
        s.close()
    return ports


def start_workers(folder: Path, pause_chief_at: str | None = None) -> list[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if (not k.startswith("TRACKER_") or k == "TRACKER_SPOOL_DIR") and k != "TF_CONFIG"}
    env.update(TRACKER_DB=str(folder / "t.db"), TRACKER_CHECKPOINT_DIR=str(folder / "ckpt"))
    ports = free_ports()
    return [
        subprocess.Popen(
            [sys.executable, str(CHILD), "r", str(EPOCHS), str(index), *ports], cwd=folder, text=True,
            env={**env, "TRACKER_TEST_PAUSE_AT": pause_chief_at} if index == 0 and pause_chief_at else env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for index in range(2)
    ]


def results(workers: list[subprocess.Popen]) -> list[dict]:
    found = []
    for worker in workers:
        out, err = worker.communicate(timeout=400)
        assert worker.returncode == 0, err[-3000:]
        found.append(json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:]))
    return found


def attempts(db: Path) -> list[tuple[int, int, str]]:
    store = open_store(str(db))
    try:
        return [(a.process.pid, a.initial_epoch, a.status) for a in store.attempts(store.get_run("r").id)]
    finally:
        store.close()


def test_only_the_chief_writes_and_both_workers_resume_from_its_point(tmp_path: Path) -> None:
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    reference.mkdir()
    crashed.mkdir()
    expected = results(start_workers(reference))

    chief, other = start_workers(crashed, f"after-commit:{KILL_AT}")
    try:
        assert any(line.startswith("TRACKER-PAUSED") for line in chief.stderr), f"chief exited with {chief.wait()} before pausing"
        chief.send_signal(signal.SIGKILL)
        # The other worker's collectives fail once its peer is gone; it must not outlive that for long.
        other.wait(timeout=120)
    finally:
        for worker in (chief, other):
            worker.kill()
            worker.wait()
    assert invariants.check(str(crashed / "t.db"), "r") == list(range(KILL_AT + 1))
    assert [(pid, start) for pid, start, _ in attempts(crashed / "t.db")] == [(chief.pid, 0)], "only the chief may write"

    resumed = results(start_workers(crashed))

    assert [r["chief"] for r in resumed] == [True, False]
    assert [r["initial_epoch"] for r in resumed] == [KILL_AT + 1, KILL_AT + 1]
    assert resumed[0]["digest"] == resumed[1]["digest"] == expected[0]["digest"]
    assert [(start, status) for _, start, status in attempts(crashed / "t.db")] == [(0, "crashed"), (KILL_AT + 1, "completed")]
    assert tracker.curves("r", db=str(crashed / "t.db")) == tracker.curves("r", db=str(reference / "t.db"))
    assert tracker.curves("r", db=str(crashed / "t.db"))["epoch"] == list(range(EPOCHS))
