"""`tracker.track_tuner`: a KerasTuner RandomSearch killed with SIGKILL, relaunched, ends as the search that never was.

The slow tests: every search is ``tests/child_tuner.py`` (4 trials of 5 epochs, seeded, under torch with TensorFlow
blocked), run as a real child process; the reference is the same search run once, uninterrupted.
The others check, in this process, what is refused before any trial, the sweep's rows, and that
KerasTuner's files are replaced whole while the context is active, and only then.
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
    # In the first trial, before KerasTuner has written the tuner file that makes it reload a project at all.
    search.launch(kill_at="after-commit:1", trial="0")
    assert not (search.project / "tuner0.json").exists()
    search.launch(kill_at="after-commit:2", trial="2")
    search.launch()

    _assert_same_search(search, reference)
    attempts = search.attempts()
    assert attempts["1"] == [0] and attempts["3"] == [0]  # never killed: trained once
    for t, committed in (("0", 1), ("2", 2)):
        first, second = attempts[t]
        assert first == 0 and second > committed  # resumed after its committed epochs, not from 0
    trained = Counter(search.epochs)
    assert all(trained[(t, e)] == 1 for t in ("0", "1") for e in range(5) if (t, e) != ("0", 2))  # nothing done ran again
    assert trained[("2", 0)] == trained[("2", 1)] == trained[("2", 2)] == 1
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


# -- in this process: what is refused, the sweep's rows, the state files ---------------------------------


@pytest.fixture(scope="module")
def kt(keras_env):
    import keras_tuner

    return keras_tuner


def _build(hp):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(hp.Int("units", 1, 64)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model


def _scored(kt, score=lambda hp: 0.5, hp_name: str = "units"):
    """A hypermodel whose ``fit`` trains nothing and returns ``score(hp)``: a search without training."""

    class Scored(kt.HyperModel):
        def build(self, hp):
            hp.Int(hp_name, 1, 64)
            return _build(kt.HyperParameters())

        def fit(self, hp, model, *args, **kwargs):
            return score(hp)

    return Scored()


def _tuner(kt, directory: Path, hypermodel=_build, **kwargs):
    options = {"objective": "val_loss", "max_trials": 3, "seed": 5, "directory": str(directory), "project_name": "p"} | kwargs
    return kt.RandomSearch(hypermodel, **options)


def test_import_tracker_imports_no_kerastuner():
    out = subprocess.run([sys.executable, "-c", "import sys, tracker; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1])
    assert not {m.split(".")[0] for m in out.stdout.split()} & {"keras_tuner", "keras", "tensorflow"}


@pytest.mark.parametrize(
    ("make", "options", "error", "words"),
    [
        (lambda kt, d: object(), {}, TypeError, "Expected a keras_tuner.Tuner"),
        (lambda kt, d: kt.Hyperband(_build, objective="val_loss", max_epochs=3, directory=str(d)), {}, ValueError, "Hyperband"),
        (lambda kt, d: _tuner(kt, d, executions_per_trial=2), {}, ValueError, "executions_per_trial=2. Expected 1"),
        (lambda kt, d: _tuner(kt, d), {"config": {"a": 1}}, ValueError, "pass no config"),
        (lambda kt, d: _tuner(kt, d), {"epochs": 3}, TypeError, "does not take"),
        (lambda kt, d: _tuner(kt, d), {"keep_last": 0}, ValueError, "keep_last=0"),
        (lambda kt, d: _tuner(kt, d), {"name": "a b"}, ValueError, "Invalid run name"),
    ],
    ids=["not-a-tuner", "hyperband", "executions", "config", "unknown-option", "bad-option", "bad-name"],
)
def test_what_track_tuner_refuses_before_any_trial(kt, tmp_path, make, options, error, words):
    from tracker.keras.tuner import track_tuner

    name = options.pop("name", "s")
    with pytest.raises(error, match=words):
        track_tuner(make(kt, tmp_path), name, **options)
    assert not (tmp_path / "tracker.db").exists()


def test_the_objective_is_the_default_monitor_in_its_direction(kt, tmp_path):
    from tracker.keras.tuner import track_tuner

    assert track_tuner(_tuner(kt, tmp_path / "a"), "s").options == {"monitor": "val_loss", "mode": "min"}
    assert track_tuner(_tuner(kt, tmp_path / "b", objective="val_accuracy"), "s").options == {"monitor": "val_accuracy", "mode": "max"}
    assert track_tuner(_tuner(kt, tmp_path / "c"), "s", monitor="loss", mode="min").options == {"monitor": "loss", "mode": "min"}


def test_a_sweep_of_that_name_that_is_another_search_is_refused_and_nothing_stays_patched(kt, tmp_path):
    import keras
    from keras_tuner.src import utils

    from tracker.keras.tuner import internals, track_tuner

    db = str(tmp_path / "t.db")
    before = (utils.save_json, internals.SaveBestEpoch._save_model, keras.Model.fit)
    with track_tuner(_tuner(kt, tmp_path / "a"), "s", db=db):
        pass
    tuner = _tuner(kt, tmp_path / "b", seed=6)
    with pytest.raises(ValueError, match="already exists .* as another search: seed was 5 and is now 6"):
        with track_tuner(tuner, "s", db=db):
            pytest.fail("entered")
    assert (utils.save_json, internals.SaveBestEpoch._save_model, keras.Model.fit) == before
    assert not {"run_trial", "on_trial_begin", "on_trial_end"} & set(vars(tuner))


def test_trials_are_the_sweeps_rows_and_an_overwritten_project_is_refused(kt, tmp_path):
    from tracker.keras.tuner import track_tuner

    db = str(tmp_path / "t.db")
    tuner = _tuner(kt, tmp_path, max_trials=2)
    xy = (np.ones((4, 2), np.float32), np.ones(4, np.float32))
    with track_tuner(tuner, "s", db=db, checkpoint_dir=str(tmp_path / "ckpt")):
        tuner.search(*xy, epochs=2, validation_data=xy, verbose=0)
    store = open_store(db, create=False)
    try:
        sweep = store.find_sweep("s")
        rows = store.trials(sweep.id)
    finally:
        store.close()
    assert sweep.kind == "keras-tuner" and sweep.spec["objective"] == "val_loss" and sweep.spec["seed"] == 5
    want = {t.trial_id: t for t in tuner.oracle.trials.values()}
    assert [(r.number, r.run_name, r.params, r.state, r.value, r.run.best_value) for r in rows] == [
        (int(i), f"s-{i}", t.hyperparameters.values, "completed", t.score, t.score) for i, t in sorted(want.items())
    ]  # KerasTuner's score is the run's best value of its monitor, the objective
    again = _tuner(kt, tmp_path, _scored(kt, hp_name="width"), overwrite=True)  # another space, in the same project
    with pytest.raises(ValueError, match="was recorded with .*overwritten"):
        with track_tuner(again, "s", db=db):
            again.search(verbose=0)


def test_a_trial_that_raises_is_recorded_failed_with_its_error(kt, tmp_path):
    from tracker.keras.tuner import track_tuner

    def boom(hp):
        raise ValueError("boom")

    db = str(tmp_path / "t.db")
    tuner = _tuner(kt, tmp_path, _scored(kt, boom), max_trials=1)
    with track_tuner(tuner, "s", db=db):
        tuner.search(verbose=0)
    store = open_store(db, create=False)
    try:
        [row] = store.trials(store.find_sweep("s").id)
    finally:
        store.close()
    assert (row.state, row.error, row.failures) == ("failed", "ValueError: boom", 1)
    assert tuner.oracle.trials["0"].status == "FAILED"


def _inode(path: Path) -> int:
    return path.stat().st_ino


def test_kerastuners_files_are_replaced_whole_while_the_context_is_active_and_only_then(kt, tmp_path):
    """A file replaced by a rename is a new inode; KerasTuner's own writes truncate and rewrite the same one."""
    from tracker.keras.tuner import internals, track_tuner

    tuner = _tuner(kt, tmp_path / "kt")
    oracle_json = tmp_path / "kt" / "p" / "oracle.json"
    weights = tmp_path / "kt" / "p" / "checkpoint.weights.h5"
    elsewhere = tmp_path / "elsewhere.weights.h5"
    model = _build(kt.HyperParameters())
    savers = [internals.SaveBestEpoch(kt.Objective("val_loss", "min"), str(path)) for path in (weights, elsewhere)]
    for saver in savers:
        saver.set_model(model)

    def save_all(value: float) -> tuple[int, int, int]:
        tuner.oracle.save()
        for saver in savers:
            saver.on_epoch_end(0, {"val_loss": value})
        return _inode(oracle_json), _inode(weights), _inode(elsewhere)

    first = save_all(3.0)
    with track_tuner(tuner, "s", db=str(tmp_path / "t.db")):
        inside = save_all(2.0)
        assert json.loads(oracle_json.read_text()) == tuner.oracle.get_state() | {"run_times": {}, "id_to_hash": {}}
    after = save_all(1.0)
    assert inside[0] != first[0] and inside[1] != first[1]  # replaced by a rename
    assert inside[2] == first[2]  # a file outside the project: KerasTuner's way
    assert after == inside  # the context is gone: in place again
    assert not list(tmp_path.rglob("*.tmp*"))
