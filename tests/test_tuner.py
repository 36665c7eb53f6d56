"""`tracker.track_tuner`: a KerasTuner RandomSearch killed with SIGKILL, relaunched, ends as the search that never was.

Every search here is ``tests/child_tuner.py`` (4 trials of 5 epochs, seeded, under torch with TensorFlow
blocked), run as a real child process; the reference is the same search run once, uninterrupted.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

import tracker
from tests.support.children import child_env
from tracker.store import open_store

CHILD = Path(__file__).with_name("child_tuner.py")
TRIALS = ("0", "1", "2", "3")


class Search:
    """One search's folder: the KerasTuner project, tracker's database and checkpoints, and every launch's epochs."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.db = str(root / "t.db")
        self.out = root / "out.json"
        self.project = root / "search"
        #: ``(trial_id, epoch)`` of every epoch trained, in every launch.
        self.epochs: list[tuple[str, int]] = []

    def launch(self, *, kill_at: str | None = None, trial: str | None = None) -> None:
        """Run the search to its end, or, with ``kill_at`` (a pause point, in ``trial`` only if given), SIGKILL it there."""
        extra = {"TRACKER_DB": self.db, "TRACKER_CHECKPOINT_DIR": str(self.root / "ckpt")}
        if kill_at and trial:
            extra |= {"CHILD_PAUSE_TRIAL": trial, "CHILD_PAUSE_AT": kill_at}
        elif kill_at:
            extra["TRACKER_TEST_PAUSE_AT"] = kill_at
        proc = subprocess.Popen([sys.executable, str(CHILD), str(self.root), str(self.out)], env=child_env(**extra),
                                cwd=self.root, stderr=subprocess.PIPE, text=True)
        tail: list[str] = []
        try:
            for line in proc.stderr:
                if line.startswith("CHILD-EPOCH"):
                    _, trial_id, epoch = line.split()
                    self.epochs.append((trial_id, int(epoch)))
                elif line.startswith("TRACKER-PAUSED"):
                    proc.send_signal(signal.SIGKILL)
                    break
                else:
                    tail = [*tail[-30:], line]
        finally:
            rest = proc.stderr.read() if kill_at is None else ""
            proc.kill()
            proc.wait(timeout=60)
        if kill_at:
            assert proc.returncode == -signal.SIGKILL, f"the child exited with {proc.returncode} before {kill_at}:\n{''.join(tail)}"
        else:
            assert proc.returncode == 0, "".join(tail) + rest

    def result(self) -> dict:
        return json.loads(self.out.read_text())

    def curves(self) -> dict[str, dict[str, list]]:
        return {t: tracker.curves(f"kt-{t}", self.db) for t in TRIALS}

    def attempts(self) -> dict[str, list[int]]:
        """Each trial run's attempts, as the epoch each one began at."""
        store = open_store(self.db, create=False)
        try:
            return {t: [a.initial_epoch for a in store.attempts(store.get_run(f"kt-{t}").id)] for t in TRIALS}
        finally:
            store.close()

    def best_weights(self) -> dict[str, dict[str, bytes]]:
        """Each trial's ``checkpoint.weights.h5`` (KerasTuner's best epoch), array by array as raw bytes."""
        found = {}
        for t in TRIALS:
            with h5py.File(self.project / f"trial_{t}" / "checkpoint.weights.h5", "r") as f:
                arrays: dict[str, bytes] = {}
                f.visititems(lambda key, item, arrays=arrays: arrays.__setitem__(key, np.asarray(item).tobytes())
                             if isinstance(item, h5py.Dataset) else None)
                found[t] = arrays
        return found


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Search:
    """The search run once, never killed."""
    search = Search(tmp_path_factory.mktemp("reference"))
    search.launch()
    return search


def _assert_same_search(search: Search, reference: Search) -> None:
    got, want = search.result(), reference.result()
    assert got["trials"] == want["trials"]  # the same ids, hyperparameters, scores, best steps, statuses
    assert got["best"] == want["best"]
    assert (got["start_order"], got["end_order"]) == (want["start_order"], want["end_order"])
    assert search.curves() == reference.curves()  # every epoch's metrics, bit for bit
    assert search.best_weights() == reference.best_weights()


@pytest.mark.slow
def test_a_search_killed_inside_two_trials_ends_as_the_uninterrupted_one(tmp_path: Path, reference: Search) -> None:
    search = Search(tmp_path / "killed")
    search.launch(kill_at="after-commit:1", trial="1")
    search.launch(kill_at="after-commit:2", trial="2")
    search.launch()

    _assert_same_search(search, reference)
    attempts = search.attempts()
    assert attempts["0"] == [0] and attempts["3"] == [0]  # never killed: trained once
    for t, committed in (("1", 1), ("2", 2)):
        first, second = attempts[t]
        assert first == 0 and second > committed  # resumed after its committed epochs, not from 0
    trained = Counter(search.epochs)
    assert all(trained[("0", e)] == 1 for e in range(5))  # the trial completed before the kills did not run again
    assert trained[("1", 0)] == trained[("1", 1)] == 1 and trained[("2", 2)] == 1
    assert {r.name: (r.sweep, r.trial, r.status) for r in tracker.runs(search.db)} == {
        f"kt-{t}": ("kt", int(t), "completed") for t in TRIALS
    }
    store = open_store(search.db, create=False)
    try:
        rows = store.trials(store.find_sweep("kt").id)
    finally:
        store.close()
    scores = {t: v["score"] for t, v in reference.result()["trials"].items()}
    assert [(r.number, r.state, r.value, r.params) for r in rows] == [
        (int(t), "completed", scores[t], reference.result()["trials"][t]["values"]) for t in TRIALS
    ]


@pytest.mark.slow
def test_kills_inside_and_between_the_tuners_state_writes_do_not_change_the_search(tmp_path: Path, reference: Search) -> None:
    """Each kill lands halfway through a write of oracle.json; every other KerasTuner file is written before or after it.

    Per trial, KerasTuner writes oracle.json three times: as the trial starts (after its trial.json), as it
    ends (after its trial.json, still listing it as ongoing), and as the tuner saves (no longer ongoing).
    """
    search = Search(tmp_path / "killed")
    # 1st launch: trial 0's three writes, trial 1's start, then halfway through trial 1's end.
    search.launch(kill_at="tuner-during-write:oracle.json#5")
    state = json.loads((search.project / "oracle.json").read_text())  # whole: the write went to a temporary file
    assert state["ongoing_trials"] == {"tuner0": "1"} and state["end_order"] == ["0"]
    assert json.loads((search.project / "trial_1" / "trial.json").read_text())["status"] == "COMPLETED"
    assert list(search.project.glob(".oracle.json.*.tmp"))  # the half-written temporary file, never renamed
    # 2nd launch: halfway through trial 2's start, after its trial.json (stock KerasTuner would run trial 1 again).
    search.launch(kill_at="tuner-during-write:oracle.json#1")
    assert json.loads((search.project / "trial_2" / "trial.json").read_text())["status"] == "RUNNING"
    assert "2" not in json.loads((search.project / "oracle.json").read_text())["start_order"]
    # 3rd launch: trial 2 runs; halfway through the tuner's save after its end (still ongoing in oracle.json).
    search.launch(kill_at="tuner-during-write:oracle.json#3")
    state = json.loads((search.project / "oracle.json").read_text())
    assert state["ongoing_trials"] == {"tuner0": "2"} and state["end_order"] == ["0", "1", "2"]
    search.launch()

    _assert_same_search(search, reference)
    assert search.attempts() == {t: [0] for t in TRIALS}  # no trial trained twice, none restarted
    assert Counter(search.epochs) == Counter((t, e) for t in TRIALS for e in range(5))
