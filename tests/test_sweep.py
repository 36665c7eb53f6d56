"""`tracker.sweep`: what it searches, bad input refused before any trial trains, failures, and workers killed mid-trial."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

import tracker
from tests.support.children import REPO, child_env
from tracker.search import space as spaces
from tracker.search.sweep import rank
from tracker.store import open_store

CHILD = str(REPO / "tests" / "child_sweep.py")


# -- what a sweep searches -------------------------------------------------------


def test_a_grid_is_the_full_product_with_the_last_key_fastest():
    plan = spaces.plan(grid={"units": [4, 8, 16], "lr": [1e-3, 1e-2]})
    assert plan.params == [
        {"units": u, "lr": lr} for u in (4, 8, 16) for lr in (1e-3, 1e-2)
    ]


def test_a_space_draws_each_trial_from_its_seed_and_number_alone():
    space = {"lr": tracker.loguniform(1e-4, 1e-1), "units": tracker.randint(4, 65), "act": tracker.choice(["relu", "tanh"]),
             "drop": tracker.uniform(0.0, 0.5), "opt": ["adam", "sgd"]}
    first = spaces.plan(space=space, n_trials=50, seed=1).params
    assert first == spaces.plan(space=space, n_trials=50, seed=1).params
    assert first[:20] == spaces.plan(space=space, n_trials=20, seed=1).params  # more trials, same first ones
    assert first != spaces.plan(space=space, n_trials=50, seed=2).params
    assert all(1e-4 <= p["lr"] < 1e-1 and 4 <= p["units"] < 65 and 0 <= p["drop"] < 0.5 for p in first)
    assert {p["act"] for p in first} == {"relu", "tanh"} and {p["opt"] for p in first} == {"adam", "sgd"}
    assert all(isinstance(p["units"], int) and isinstance(p["lr"], float) for p in first)
    logs = np.log10([p["lr"] for p in first])
    assert logs.min() < -3 and logs.max() > -2  # spread over the decades, as a log-uniform draw is


def test_the_json_form_of_a_distribution_is_the_distribution():
    as_json = {"lr": {"distribution": "loguniform", "low": 1e-4, "high": 0.1}}
    assert spaces.plan(space=as_json, n_trials=5).params == spaces.plan(space={"lr": tracker.loguniform(1e-4, 0.1)}, n_trials=5).params


def _never(trial):
    raise AssertionError("no trial may train when the arguments are wrong")


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"grid": {}}, ValueError, "non-empty dict"),
        ({"grid": {"units": []}}, ValueError, "grid['units']"),
        ({"grid": {"units": 4}}, ValueError, "grid['units']"),
        ({"grid": {"u": [1]}, "space": {"u": [1]}}, ValueError, "not both"),
        ({}, ValueError, "Nothing to search"),
        ({"space": {"lr": tracker.uniform(0, 1)}}, ValueError, "needs n_trials"),
        ({"space": {"lr": {"distribution": "normal", "mu": 0}}, "n_trials": 3}, ValueError, "Unknown distribution 'normal'"),
        ({"space": {"lr": 0.1}, "n_trials": 3}, ValueError, "space['lr']"),
        ({"space": {"lr": tracker.uniform(0, 1)}, "n_trials": 0}, ValueError, "n_trials"),
        ({"grid": {"u": [1]}, "n_trials": 3}, ValueError, "only for space"),
        ({"grid": {"u": [object()]}}, ValueError, "JSON-able"),
        ({"grid": {"u": [1]}, "config": {"a": 1}}, ValueError, "no config="),
        ({"grid": {"u": [1]}, "retries": -1}, ValueError, "retries"),
        ({"grid": {"u": [1]}, "epochs": 3}, TypeError, "tracker.track does not take"),
        ({"grid": {"u": [1]}, "keep_last": 0}, ValueError, "keep_last"),
    ],
    ids=["empty-grid", "empty-list", "not-a-list", "grid-and-space", "neither", "no-n-trials", "unknown-distribution",
         "bare-value", "zero-trials", "n-trials-with-grid", "not-json", "config", "retries", "unknown-option", "bad-track-option"],
)
def test_bad_arguments_are_refused_before_any_trial(sqlite_db, kwargs, error, words):
    with pytest.raises(error, match=_escape(words)):
        tracker.sweep("s", _never, db=sqlite_db, **kwargs)


@pytest.mark.parametrize("name", ["", "../up", "a/b", "x" * 127], ids=["empty", "dotdot", "slash", "too-long-with-number"])
def test_a_sweep_name_that_cannot_name_its_runs_is_refused(sqlite_db, name):
    with pytest.raises(ValueError, match="name"):
        tracker.sweep(name, _never, grid={"u": list(range(12))}, db=sqlite_db)


def _escape(words: str) -> str:
    import re

    return re.escape(words)


# -- trials in one process (a tiny Keras model) -------------------------------


def _objective(fail_when=lambda p: False, returns=None):
    import keras

    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    called = []

    def objective(trial):
        called.append(trial.name)
        keras.utils.set_random_seed(trial.number)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(trial.params["units"]), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(trial.params.get("lr", 0.01)), "mse")
        if fail_when(trial.params):
            raise RuntimeError(f"boom at units={trial.params['units']}")
        model.fit(x, y, epochs=2, verbose=0, validation_split=0.25)
        return returns(trial) if returns else None

    objective.called = called
    return objective


def test_trials_are_runs_of_the_sweep_ranked_best_first(sqlite_db):
    objective = _objective()
    trials = tracker.sweep("s", objective, grid={"units": [1, 2], "lr": [0.01, 0.001]}, db=sqlite_db)
    assert sorted(t.name for t in trials) == ["s-0", "s-1", "s-2", "s-3"] and objective.called == ["s-0", "s-1", "s-2", "s-3"]
    assert all(t.status == "completed" and t.monitor == "val_loss" for t in trials)
    values = [t.value for t in trials]
    assert values == sorted(values)
    for t in trials:  # the value is the run's best monitor value, and the config is the params
        run = {r.name: r for r in tracker.runs(sqlite_db)}[t.name]
        assert (run.best_value, run.config, run.sweep, run.trial) == (t.value, t.params, "s", t.number)
        assert t.value == min(tracker.curves(t.name, sqlite_db)["val_loss"])
    again = _objective()
    assert tracker.sweep("s", again, grid={"units": [1, 2], "lr": [0.01, 0.001]}, db=sqlite_db) == trials
    assert again.called == []  # completed trials are not run again


def test_a_returned_number_ranks_the_trials_in_the_runs_direction(sqlite_db):
    trials = tracker.sweep("s", _objective(returns=lambda t: float(t.params["units"])), grid={"units": [3, 1, 2]},
                           db=sqlite_db, monitor="val_loss", mode="max")
    assert [t.params["units"] for t in trials] == [3, 2, 1] and [t.value for t in trials] == [3.0, 2.0, 1.0]


def test_a_returned_history_fails_the_trial_with_what_to_return_instead(sqlite_db):
    with pytest.raises(tracker.SweepError, match="Every trial"):
        tracker.sweep("s", _objective(returns=lambda t: {"loss": [1.0]}), grid={"units": [1]}, db=sqlite_db)
    (trial,) = tracker.sweep_trials("s", sqlite_db)
    assert trial.status == "failed" and "tracker.curves(trial.name)" in trial.error


def test_a_failed_trial_is_recorded_and_not_retried_unless_asked(sqlite_db):
    flaky = _objective(fail_when=lambda p: p["units"] == 2)
    with pytest.warns(UserWarning, match="trial s-1 failed with RuntimeError: boom at units=2"):
        trials = tracker.sweep("s", flaky, grid={"units": [1, 2, 3]}, db=sqlite_db)
    assert [t.status for t in trials] == ["completed", "completed", "failed"]
    assert trials[-1].name == "s-1" and trials[-1].error == "RuntimeError: boom at units=2" and trials[-1].failures == 1
    assert "s-1" not in {r.name for r in tracker.runs(sqlite_db)}  # it failed before training: no empty run left
    again = _objective()
    tracker.sweep("s", again, grid={"units": [1, 2, 3]}, db=sqlite_db)
    assert again.called == []
    fixed = _objective()
    trials = tracker.sweep("s", fixed, grid={"units": [1, 2, 3]}, db=sqlite_db, retries=1)
    assert fixed.called == ["s-1"] and all(t.status == "completed" for t in trials)
    assert {t.name: (t.error, t.failures) for t in trials}["s-1"] == (None, 1)


def test_a_sweep_whose_every_trial_fails_says_so(sqlite_db):
    with pytest.raises(tracker.SweepError, match=r"Every trial of sweep 's' failed \(2 of 2\)\. Their errors: RuntimeError: boom"):
        tracker.sweep("s", _objective(fail_when=lambda p: True), grid={"units": [1, 2]}, db=sqlite_db)


def test_other_trials_under_an_existing_name_are_refused_naming_the_difference(sqlite_db):
    tracker.sweep("s", _objective(), grid={"units": [1, 2]}, db=sqlite_db)
    with pytest.raises(ValueError, match=r"'units' was \[1, 2\] and is now \[1, 3\]"):
        tracker.sweep("s", _never, grid={"units": [1, 3]}, db=sqlite_db)
    with pytest.raises(ValueError, match="'lr' was added"):
        tracker.sweep("s", _never, grid={"units": [1, 2], "lr": [0.1]}, db=sqlite_db)
    with pytest.raises(ValueError, match="it was a grid search"):
        tracker.sweep("s", _never, space={"units": [1, 2]}, n_trials=2, db=sqlite_db)
    space = {"units": tracker.randint(1, 4)}
    tracker.sweep("r", _objective(), space=space, n_trials=1, seed=5, db=sqlite_db)
    with pytest.raises(ValueError, match="seed was 5 and is now 6"):
        tracker.sweep("r", _never, space=space, n_trials=1, seed=6, db=sqlite_db)
    with pytest.raises(ValueError, match=r"'units' was .*randint.* and is now .*randint"):
        tracker.sweep("r", _never, space={"units": tracker.randint(1, 5)}, n_trials=1, seed=5, db=sqlite_db)
    more = _objective()
    trials = tracker.sweep("r", more, space=space, n_trials=3, seed=5, db=sqlite_db)  # n_trials may grow
    assert more.called == ["r-1", "r-2"] and len(trials) == 3


def test_a_run_that_is_not_a_trial_is_never_taken_as_one(sqlite_db, record):
    record("s-1", 2)
    with pytest.raises(ValueError, match="a run named 's-1' already exists .* not one of its trials"):
        tracker.sweep("s", _never, grid={"units": [1, 2]}, db=sqlite_db)


def test_a_renamed_trial_run_stays_the_trial(sqlite_db):
    tracker.sweep("s", _objective(), grid={"units": [1, 2]}, db=sqlite_db)
    assert subprocess.run([sys.executable, "-m", "tracker", "--db", sqlite_db, "rename", "s-0", "s-first"],
                          env=child_env(), capture_output=True, text=True).returncode == 0
    again = _objective()
    trials = tracker.sweep("s", again, grid={"units": [1, 2]}, db=sqlite_db)
    assert again.called == [] and {t.name for t in trials} == {"s-first", "s-1"}
    assert {r.name: r.trial for r in tracker.runs(sqlite_db)} == {"s-first": 0, "s-1": 1}


# -- the claim: one writer per trial, on PostgreSQL too --------------------------


CLAIM = """
import sys, time
from pathlib import Path
from tracker.errors import RunLockedError
from tracker.process import this_process
from tracker.store import open_store
store = open_store(sys.argv[1])
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
try:
    store.start_attempt("trial-0", config={}, checkpoint_dir="ckpt", process=this_process(), force=False)
    print("claimed")
except RunLockedError:
    print("refused")
time.sleep(1)  # alive while the others try
"""


def test_workers_claiming_one_new_trial_at_the_same_instant_get_one_writer(db, tmp_path):
    open_store(db).close()  # migrated before the race
    for round_ in range(3):
        go = tmp_path / f"go-{round_}"
        children = [subprocess.Popen([sys.executable, "-c", CLAIM, db, str(go)], env=child_env(), stdout=subprocess.PIPE, text=True)
                    for _ in range(4)]
        time.sleep(1.5)  # every child waits at the start line
        go.touch()
        said = sorted(c.communicate(timeout=60)[0].strip() for c in children)
        assert said == ["claimed", "refused", "refused", "refused"], said
        store = open_store(db)
        with store.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM attempts"))
            conn.execute(sa.text("DELETE FROM runs"))
        store.close()


# -- workers killed mid-trial (real processes, SIGKILL) ---------------------------


def _worker(sweep: str, searched: list[str], env: dict[str, str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, CHILD, sweep, *searched, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _in_progress(db: str) -> list[tuple[str, int]]:
    """Trial runs whose writer is alive and has committed an epoch, with two or more left: a kill lands mid-trial."""
    if not Path(db).exists():
        return []
    store = open_store(db, create=False)
    try:
        return [(r.name, a.process.pid) for r, a in store.list_runs()
                if a is not None and a.alive() and r.last_epoch is not None and r.last_epoch < 3]
    finally:
        store.close()


def _references(tmp_path: Path, sweep: str, searched: list[str], numbers: list[int]) -> dict[str, dict]:
    """Each trial trained alone with tracker.track, uninterrupted, two at a time."""
    env = child_env(TRACKER_DB=str(tmp_path / "alone.db"), TRACKER_CHECKPOINT_DIR=str(tmp_path / "alone-ckpt"))
    for pair in (numbers[i:i + 2] for i in range(0, len(numbers), 2)):
        for p in [_worker(sweep, searched, env, "--alone", str(n)) for n in pair]:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err[-3000:]
    return {f"{sweep}-{n}": tracker.curves(f"{sweep}-{n}", str(tmp_path / "alone.db")) for n in numbers}


def _kill_workers_mid_trial(tmp_path: Path, searched: list[str], trials: int, kills: int) -> None:
    db, ckpt = str(tmp_path / "sweep.db"), str(tmp_path / "ckpt")
    env = child_env(TRACKER_DB=db, TRACKER_CHECKPOINT_DIR=ckpt, CHILD_EPOCH_SLEEP="0.3")
    chance = random.Random(int(os.environ.get("TRACKER_TEST_SEED", "19")))
    workers = [_worker("s", searched, env) for _ in range(2)]
    killed: list[str] = []
    deadline = time.monotonic() + 400
    while len(killed) < kills and time.monotonic() < deadline:
        busy = [(name, pid) for name, pid in _in_progress(db) if any(w.pid == pid for w in workers)]
        if not busy:
            time.sleep(0.05)
            continue
        time.sleep(chance.uniform(0, 0.3))  # a random instant inside the epoch that follows a commit
        name, pid = chance.choice(busy)
        victim = next(w for w in workers if w.pid == pid)
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
        killed.append(name)
        workers[workers.index(victim)] = _worker("s", searched, env)  # relaunched: the same script, run again
    assert len(killed) == kills, f"only {len(killed)} kills landed mid-trial"
    outputs = []
    for w in workers:
        out, err = w.communicate(timeout=400)
        assert w.returncode == 0, err[-3000:]
        outputs.append(out)
    # Whoever finished last saw every trial completed.
    assert any(out.count("completed") == trials for out in outputs), outputs

    store = open_store(db, create=False)
    by_name = {r.name: r for r, _ in store.list_runs()}
    assert len(by_name) == trials
    for name, run in by_name.items():
        attempts = store.attempts(run.id)
        assert attempts[-1].status == "completed" and all(a.status == "crashed" for a in attempts[:-1]), (name, attempts)
        assert len(store.all_epoch_metrics(run.id)) == len(tracker.curves(name, db)["epoch"]) * 2  # no epoch trained twice
    resumed = {name for name, run in by_name.items() if any(a.initial_epoch > 0 for a in store.attempts(run.id))}
    store.close()
    assert set(killed) <= resumed  # each killed trial resumed at a later epoch, not from 0
    trials_seen = tracker.sweep_trials("s", db)
    assert all(t.status == "completed" and t.failures == 0 for t in trials_seen)
    expected = _references(tmp_path, "s", searched, sorted(t.number for t in trials_seen))
    for t in trials_seen:  # bit-identical to the trial trained alone
        got = tracker.curves(t.name, db)
        assert got["epoch"] == list(range(5)) and got == expected[t.name], t.name


@pytest.mark.slow
def test_a_grid_in_two_workers_killed_mid_trial_completes_each_trial_once_and_exactly(tmp_path):
    _kill_workers_mid_trial(tmp_path, ["--grid"], trials=6, kills=3)


@pytest.mark.slow
def test_a_random_space_in_two_workers_killed_mid_trial_completes_each_trial_once_and_exactly(tmp_path):
    _kill_workers_mid_trial(tmp_path, ["--space", "4"], trials=4, kills=2)


@pytest.mark.slow
def test_a_stopped_worker_past_its_lease_loses_its_trial_and_commits_nothing_after(tmp_path):
    db, ckpt = str(tmp_path / "sweep.db"), str(tmp_path / "ckpt")
    env = child_env(TRACKER_DB=db, TRACKER_CHECKPOINT_DIR=ckpt, CHILD_EPOCH_SLEEP="0.5", TRACKER_LEASE_SECONDS="3")
    stopped = _worker("s", ["--space", "1"], env)
    deadline = time.monotonic() + 120
    while not _in_progress(db) and time.monotonic() < deadline:
        time.sleep(0.02)
    stopped.send_signal(signal.SIGSTOP)
    try:
        other = _worker("s", ["--space", "1"], env, "--wait")  # waits for the trial, and takes it once the lease lapses
        out, err = other.communicate(timeout=300)
        assert other.returncode == 0 and "SWEEP-DONE s-0 completed" in out, err[-3000:]
    finally:
        stopped.send_signal(signal.SIGCONT)
    out, err = stopped.communicate(timeout=120)
    assert stopped.returncode == 0, err[-3000:]  # fenced: it gives the trial up and ends, without a failure
    assert "was taken over by another worker" in err

    store = open_store(db, create=False)
    run = store.get_run("s-0")
    first, second = store.attempts(run.id)
    assert (first.status, second.status, second.initial_epoch > 0) == ("crashed", "completed", True)
    with store.engine.connect() as conn:
        late = conn.execute(
            sa.text("SELECT count(*) FROM epochs WHERE attempt_id = :a AND committed_at >= :t"), {"a": first.id, "t": second.started_at}
        ).scalar()
    store.close()
    assert late == 0  # nothing committed by the stopped worker once the other took over
    (trial,) = tracker.sweep_trials("s", db)
    assert (trial.status, trial.failures) == ("completed", 0)
    assert tracker.curves("s-0", db) == _references(tmp_path, "s", ["--space", "1"], [0])["s-0"]


def test_nan_values_rank_last():
    t = [tracker.Trial(f"s-{i}", i, {}, "completed", v) for i, v in enumerate([math.nan, 2.0, 1.0])]
    assert [x.number for x in rank(t)] == [2, 1, 0]


CLAIMS = """
import sys
import numpy as np
from tracker import Run, RunLockedError
from tracker.store import open_store
db, ckpt = sys.argv[1], sys.argv[2]
sweep_store = open_store(db)  # open all along, as tracker.sweep's is while its trials open their own
for i in range(40):
    sweep_store.find_run(f"r-{i}")
    run = Run(f"r-{i}", db=db, checkpoint_dir=ckpt, monitor="loss")
    try:
        run.start()
    except RunLockedError:
        continue
    for epoch in range(run.initial_epoch, 3):
        run.commit_epoch(epoch, {"loss": 1.0}, {"w": np.zeros(10)}, {})
    run.finish("completed")
"""


def test_workers_racing_through_new_runs_with_a_second_store_open_lose_nothing(tmp_path):
    # Two bugs this found: a raw read of the database file released this process's SQLite locks ("disk I/O
    # error" in another process), and a worker refused a new run removed the folder its winner had just claimed.
    db, ckpt = str(tmp_path / "t.db"), str(tmp_path / "ckpt")
    children = [subprocess.Popen([sys.executable, "-c", CLAIMS, db, ckpt], env=child_env(), stderr=subprocess.PIPE, text=True)
                for _ in range(3)]
    errors = [c.communicate(timeout=300)[1] for c in children]
    assert [c.returncode for c in children] == [0, 0, 0], [e[-2000:] for e in errors]
    found = tracker.runs(db)
    assert len(found) == 40 and all(r.status == "completed" and r.last_epoch == 2 for r in found)
