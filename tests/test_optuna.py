"""`tracker.track_optuna`: an Optuna trial retried after a crash (RDB storage, heartbeat, RetryFailedTrialCallback)
resumes its original trial's run, and each committed epoch is reported to each Optuna trial once.

Stale trials are real ones: a process that left its trial running (``SystemExit`` out of ``study.optimize``,
or a child killed with SIGKILL) stops beating, and ``fail_stale_trials`` hands it to the retry callback.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from tests.conftest import same_floats  # noqa: E402
from tests.support.children import child_env  # noqa: E402
from tracker import Run, curves, runs, sweep_trials  # noqa: E402
from tracker.records import Status  # noqa: E402
from tracker.search.optuna_study import CommittedReports, original_number, track_optuna  # noqa: E402
from tracker.store import open_store  # noqa: E402

CHILD = Path(__file__).with_name("child_optuna.py")
GRACE = 1  # seconds without a heartbeat before Optuna counts a trial stale


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Optuna's own notices about its experimental and deprecated arguments; a step reported twice stays loud.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    warnings.filterwarnings("error", message=".*is already reported")


def _storage(tmp_path: Path, *, inherit: bool = False) -> optuna.storages.RDBStorage:
    """The SQLite storage with a heartbeat, and the retry callback under its Optuna 4.9 name where it has it
    (tests/child_optuna.py uses the older spelling, RetryFailedTrialCallback)."""
    successor = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if successor is not None:
        retry = {"heartbeat_stale_trial_callback": successor(max_retry=5, inherit_intermediate_values=inherit)}
    else:
        retry = {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=5, inherit_intermediate_values=inherit)}
    return optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=1, grace_period=GRACE, **retry)


def _die_mid_trial(study: optuna.Study, objective: Callable[[optuna.Trial], object]) -> None:
    """Run one trial whose process "dies" inside the objective: its trial is left running, then goes stale."""
    def dying(trial: optuna.Trial) -> None:
        objective(trial)
        raise SystemExit(9)  # not caught by Optuna, so the trial is never told: as a SIGKILL leaves it

    with pytest.raises(SystemExit):
        study.optimize(dying, n_trials=1)
    number = max(t.number for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)))
    deadline = time.monotonic() + 30
    # What the next study.optimize does first; until the heartbeat is older than the grace period, it finds nothing.
    while study.trials[number].state == optuna.trial.TrialState.RUNNING:
        assert time.monotonic() < deadline, f"trial {number} never went stale"
        time.sleep(0.2)
        optuna.storages.fail_stale_trials(study)


def test_a_retry_of_a_retry_maps_to_the_original_trial(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="s", storage=_storage(tmp_path))
    seen = []

    def note(trial: optuna.Trial) -> float:
        seen.append((trial.number, original_number(trial), trial.suggest_int("units", 1, 9)))
        return 0.0

    study.enqueue_trial({"units": 4})
    _die_mid_trial(study, note)  # trial 0 dies; trial 1 retries it
    _die_mid_trial(study, note)  # trial 1 dies; trial 2 retries the retry
    study.optimize(note, n_trials=2)  # trial 2, then a new trial 3
    assert seen[:3] == [(0, 0, 4), (1, 0, 4), (2, 0, 4)]
    assert seen[3][:2] == (3, 3)


def _commit(run: Run, epoch: int, loss: float, *, checkpoint: bool = True) -> None:
    arrays = {"w": np.full(3, loss, dtype=np.float32)} if checkpoint else None
    run.commit_epoch(epoch, {"loss": loss}, arrays, {} if checkpoint else None)


@pytest.mark.parametrize("inherit", [False, True], ids=["fresh-retry", "inherits-intermediate-values"])
def test_each_committed_epoch_is_reported_once_to_each_trial_across_a_retry(tmp_path: Path, sqlite_db: str, inherit: bool) -> None:
    """The rule, framework-free: a Run commits, `CommittedReports` reports what is committed and nothing twice."""
    study = optuna.create_study(study_name="s", storage=_storage(tmp_path, inherit=inherit))
    store = open_store(sqlite_db)
    options = {"db": sqlite_db, "checkpoint_dir": str(tmp_path / "ckpt"), "monitor": "loss", "mode": "min"}
    first: dict[str, list] = {}

    def crashing(trial: optuna.Trial) -> None:
        reports = CommittedReports(trial, store, "s-0")
        with Run("s-0", **options) as run:
            assert reports.report_committed() == []
            for epoch in range(3):
                _commit(run, epoch, 1.0 / (epoch + 1))
            first["reported"] = reports.report_committed()
            assert reports.report_committed() == []  # nothing new committed: nothing reported
            _commit(run, 3, 0.3, checkpoint=False)  # metrics only, as checkpoint_every_seconds commits between files
            first["then"] = reports.report_committed()
            raise SystemExit(9)  # the process dies: the run resumes from epoch 2's file, epoch 3 is superseded

    _die_mid_trial(study, crashing)
    assert first == {"reported": [0, 1, 2], "then": [3]}
    retried: dict[str, list] = {}

    def resuming(trial: optuna.Trial) -> float:
        assert original_number(trial) == 0
        reports = CommittedReports(trial, store, "s-0")
        run = Run("s-0", **options)
        run.start()
        assert run.initial_epoch == 3
        retried["caught-up"] = reports.report_committed()
        _commit(run, 3, 0.25)  # retrained: another value than the superseded epoch's
        retried["epoch 3"] = reports.report_committed()
        _commit(run, 4, 0.2)
        retried["epoch 4"] = reports.report_committed()
        retried["again"] = reports.report_committed()
        run.finish(Status.COMPLETED)
        return 0.2

    study.optimize(resuming, n_trials=1)
    store.close()
    done = study.trials[-1]
    assert done.state == optuna.trial.TrialState.COMPLETE
    curve = curves("s-0", db=sqlite_db)
    assert curve["epoch"] == [0, 1, 2, 3, 4]
    if inherit:
        # Steps 0..3 came with the retried trial, so none is reported again; step 3 keeps the value that the failed
        # trial reported before it was superseded: Optuna stores a step once.
        assert retried == {"caught-up": [], "epoch 3": [], "epoch 4": [4], "again": []}
        assert done.intermediate_values == {**dict(zip(curve["epoch"], curve["loss"])), 3: 0.3}
    else:
        assert retried == {"caught-up": [0, 1, 2], "epoch 3": [3], "epoch 4": [4], "again": []}
        assert done.intermediate_values == dict(zip(curve["epoch"], curve["loss"]))


def test_a_monitor_best_the_other_way_round_than_the_study_is_warned_of(tmp_path: Path, sqlite_db: str) -> None:
    trial = optuna.create_study(study_name="s", direction="minimize").ask()
    store = open_store(sqlite_db)
    run = Run("s-0", db=sqlite_db, checkpoint_dir=str(tmp_path / "ckpt"), monitor="accuracy", mode="max")
    run.start()
    run.commit_epoch(0, {"accuracy": 0.5}, {"w": np.zeros(3)}, {})
    with pytest.warns(UserWarning, match="best when maximal, to a study that minimizes"):
        assert CommittedReports(trial, store, "s-0").report_committed() == [0]
    run.finish(Status.COMPLETED)
    store.close()


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda t, db: track_optuna(t, "s", db=db, config={"a": 1}), ValueError, "pass no config="),
        (lambda t, db: track_optuna(t, "bad name", db=db), ValueError, "bad name"),
        (lambda t, db: track_optuna(t, "s", db=db, mode="max"), ValueError, "Expected 'min'"),
        (lambda t, db: track_optuna(t, "s", db=db, keep_lastt=2), TypeError, "keep_lastt"),
        (lambda t, db: track_optuna(optuna.trial.FixedTrial({"units": 4}), "s", db=db), TypeError, "FixedTrial"),
    ],
    ids=["config", "run-name", "mode-against-direction", "unknown-option", "fixed-trial"],
)
def test_bad_input_fails_before_anything_is_recorded(tmp_path: Path, sqlite_db: str, call, error: type, words: str) -> None:
    trial = optuna.create_study(study_name="s").ask({"units": optuna.distributions.IntDistribution(1, 9)})
    with pytest.raises(error, match=words):
        with call(trial, sqlite_db):
            pass
    assert not Path(sqlite_db).exists() or runs(sqlite_db) == []


def test_a_multi_objective_study_is_refused(sqlite_db: str) -> None:
    trial = optuna.create_study(directions=["minimize", "maximize"]).ask()
    with pytest.raises(ValueError, match="single-objective"):
        with track_optuna(trial, "s", db=sqlite_db):
            pass


def test_a_sweep_name_belongs_to_one_study(tmp_path: Path, sqlite_db: str) -> None:
    store = open_store(sqlite_db)
    store.ensure_sweep("s", "optuna", {"study": "first"})
    store.ensure_sweep("g", "grid", {"grid": [["units", [4]]]})
    store.close()
    trial = optuna.create_study(study_name="second").ask()
    for name, words in (("s", "Optuna study 'first'"), ("g", "a grid sweep")):
        with pytest.raises(ValueError, match=words):
            with track_optuna(trial, name, db=sqlite_db):
                pass
    assert runs(sqlite_db) == []


# -- with Keras, in this process -----------------------------------------------------------------------------------


def _fit_options(data) -> dict:
    x, y = data
    return {"x": x, "y": y, "batch_size": 16, "validation_split": 0.25, "verbose": 0}


def test_a_pruned_trial_stops_after_a_committed_epoch_and_its_run_is_completed(
    tmp_path: Path, sqlite_db: str, make_model, data, keras_env
) -> None:
    # Prunes as soon as warm-up is over: after epoch 1, whose value is reported first.
    study = optuna.create_study(study_name="s", storage=_storage(tmp_path), pruner=optuna.pruners.ThresholdPruner(upper=0.0, n_warmup_steps=1))
    begun = []

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_int("units", 1, 9)
        model = make_model()
        with track_optuna(trial, "s", db=sqlite_db, checkpoint_dir=str(tmp_path / "ckpt")) as run:
            model.fit(epochs=5, callbacks=[keras_env.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: begun.append(e))], **_fit_options(data))
        return run.best_value

    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert begun == [0, 1]  # pruned before epoch 2 trained a batch
    curve = curves("s-0", db=sqlite_db)
    assert trial.intermediate_values == dict(zip(curve["epoch"], curve["val_loss"])) and curve["epoch"] == [0, 1]
    (info,) = runs(sqlite_db)
    assert (info.status, info.tags, info.sweep, info.trial) == ("completed", {"optuna": "pruned"}, "s", 0)
    (recorded,) = sweep_trials("s", sqlite_db)
    assert (recorded.status, recorded.value) == ("completed", info.best_value)


def test_a_retried_trial_resumes_and_is_pruned_before_it_trains_if_its_committed_epochs_say_so(
    tmp_path: Path, sqlite_db: str, make_model, data, keras_env
) -> None:
    storage = _storage(tmp_path)
    never = optuna.create_study(study_name="s", storage=storage, pruner=optuna.pruners.ThresholdPruner(upper=1e9))
    options = {"db": sqlite_db, "checkpoint_dir": str(tmp_path / "ckpt")}

    def dies_at_epoch_2(trial: optuna.Trial) -> None:
        trial.suggest_int("units", 1, 9)
        model = make_model()
        die = keras_env.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: e == 2 and sys.exit(9))
        with track_optuna(trial, "s", **options):
            model.fit(epochs=5, callbacks=[die], **_fit_options(data))

    _die_mid_trial(never, dies_at_epoch_2)
    now = optuna.load_study(study_name="s", storage=storage, pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    begun = []

    def objective(trial: optuna.Trial) -> float:
        model = make_model()
        with track_optuna(trial, "s", **options) as run:
            assert run.initial_epoch == 2
            model.fit(epochs=5, callbacks=[keras_env.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: begun.append(e))], **_fit_options(data))
        return run.best_value

    now.optimize(objective, n_trials=1)
    first, retry = now.trials
    assert first.state == optuna.trial.TrialState.FAIL and retry.state == optuna.trial.TrialState.PRUNED
    assert begun == []  # the epochs reported as it resumed pruned it: nothing more trained
    curve = curves("s-0", db=sqlite_db)
    assert curve["epoch"] == [0, 1]
    assert first.intermediate_values == retry.intermediate_values == dict(zip(curve["epoch"], curve["val_loss"]))
    (info,) = runs(sqlite_db)
    assert (info.status, info.tags) == ("completed", {"optuna": "pruned"})


def test_an_objective_that_raises_records_its_trial_failed(tmp_path: Path, sqlite_db: str, make_model, data) -> None:
    # Without a pruner nothing waits for a commit: each epoch is reported once the next flush finds it committed.
    study = optuna.create_study(study_name="s", storage=_storage(tmp_path), pruner=optuna.pruners.NopPruner())

    def objective(trial: optuna.Trial) -> float:
        model = make_model()
        with track_optuna(trial, "s", db=sqlite_db, checkpoint_dir=str(tmp_path / "ckpt")):
            model.fit(epochs=2, **_fit_options(data))
            raise RuntimeError("bad batch")

    study.optimize(objective, n_trials=1, catch=(RuntimeError,))
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    curve = curves("s-0", db=sqlite_db)
    assert study.trials[0].intermediate_values == dict(zip(curve["epoch"], curve["val_loss"])) and curve["epoch"] == [0, 1]
    (recorded,) = sweep_trials("s", sqlite_db)
    assert (recorded.status, recorded.error, recorded.failures) == ("failed", "RuntimeError: bad batch", 1)
    assert runs(sqlite_db)[0].status == Status.FAILED


@pytest.mark.slow
def test_a_retry_waits_for_the_lease_of_a_frozen_writer_then_takes_its_run(
    tmp_path: Path, sqlite_db: str, make_model, data, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Optuna retries a trial once its heartbeat is 2 s old; a frozen (SIGSTOPped) writer keeps the trial's run for
    its lease. The retry waits for that lease instead of failing with RunLockedError (Optuna would not retry again)."""
    monkeypatch.setenv("TRACKER_LEASE_SECONDS", "3")
    study = optuna.create_study(study_name="s", storage=_storage(tmp_path))
    study.enqueue_trial({"units": 4})
    _die_mid_trial(study, lambda trial: trial.suggest_int("units", 1, 9))
    store = open_store(sqlite_db)
    store.add_trials(store.ensure_sweep("s", "optuna", {"study": "s"}).id, [(0, "s-0", {"units": 4})])
    store.close()
    env = child_env(TRACKER_DB=sqlite_db, TRACKER_CHECKPOINT_DIR=str(tmp_path / "ckpt"), TRACKER_LEASE_SECONDS="3",
                    TRACKER_TEST_PAUSE_AT="before-commit:0")
    writer = subprocess.Popen([sys.executable, str(CHILD.with_name("child_numpy.py")), "s-0", "3"], env=env, cwd=tmp_path,
                              stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        for line in writer.stderr:
            if line.startswith("TRACKER-PAUSED"):
                break
        _freeze_holding_no_lock(writer, Path(sqlite_db))

        def objective(trial: optuna.Trial) -> float:
            model = make_model()
            with track_optuna(trial, "s", db=sqlite_db, checkpoint_dir=str(tmp_path / "ckpt")) as run:
                model.fit(epochs=2, **_fit_options(data))
            return run.best_value

        study.optimize(objective, n_trials=1)
    finally:
        writer.kill()
        writer.wait()
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    store = open_store(sqlite_db)
    attempts = store.attempts(store.get_run("s-0").id)
    store.close()
    assert [a.process.pid for a in attempts] == [writer.pid, os.getpid()] and attempts[-1].status == Status.COMPLETED
    assert curves("s-0", db=sqlite_db)["epoch"] == [0, 1]


def _freeze_holding_no_lock(proc: subprocess.Popen, *databases: Path) -> None:
    """SIGSTOP ``proc`` at an instant when none of its threads (its heartbeat) holds a write lock on a database:
    a frozen process inside a write transaction would block every other writer of that SQLite file, which is
    true but not what these tests are about."""
    for _ in range(100):
        proc.send_signal(signal.SIGSTOP)
        try:
            for path in databases:
                conn = sqlite3.connect(path, timeout=0)
                try:
                    conn.execute("BEGIN IMMEDIATE")
                finally:
                    conn.close()
            return
        except sqlite3.OperationalError:
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.05)
    pytest.fail("the child held a database lock at every one of 100 tries")


# -- real kills ----------------------------------------------------------------------------------------------------


def _launch(tmp_path: Path, pause: str | None) -> None:
    """Run the child study; with ``pause`` (``TRIAL:BOUNDARY:EPOCH``), SIGKILL it there and wait out Optuna's grace."""
    env = child_env(TRACKER_DB=str(tmp_path / "tracker.db"), TRACKER_CHECKPOINT_DIR=str(tmp_path / "ckpt"), CHILD_PAUSE=pause or "")
    command = [sys.executable, str(CHILD), f"sqlite:///{tmp_path / 'optuna.db'}", "5", "--units", "2,2"]
    proc = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if pause and line.startswith("TRACKER-PAUSED"):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        rc = proc.wait(timeout=120)
    if pause:
        assert rc == -signal.SIGKILL, "".join(lines[-20:])
        time.sleep(2.5)  # the child's grace_period is 2 s: its trial is stale by the next launch
    else:
        assert rc == 0, "".join(lines[-20:])


@pytest.mark.slow
def test_a_killed_trial_is_retried_twice_and_resumes_its_run_to_the_uninterrupted_curve(tmp_path: Path) -> None:
    """Two trials of the same params: 0 trains uninterrupted, 1 is SIGKILLed after committing epoch 2, its retry
    after committing epoch 3, and the retry of the retry finishes it."""
    _launch(tmp_path, "1:after-commit:2")
    _launch(tmp_path, "1:after-commit:3")
    _launch(tmp_path, None)
    db = str(tmp_path / "tracker.db")
    store = open_store(db)
    killed = store.get_run("s-1")
    assert [(a.status, a.initial_epoch) for a in store.attempts(killed.id)] == [
        (Status.CRASHED, 0), (Status.CRASHED, 3), (Status.COMPLETED, 4)]
    store.close()
    reference, resumed = curves("s-0", db=db), curves("s-1", db=db)
    assert resumed["epoch"] == [0, 1, 2, 3, 4]
    assert all(same_floats(reference[k], resumed[k]) for k in reference)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    states = [(t.number, t.state.name, original_number(t)) for t in study.trials]
    assert states == [(0, "COMPLETE", 0), (1, "FAIL", 1), (2, "FAIL", 1), (3, "COMPLETE", 1)]
    committed = dict(zip(resumed["epoch"], resumed["val_loss"]))
    # Each Optuna trial holds committed values only (a kill after a commit and before its report loses the
    # report, not the epoch); the one that finished holds every epoch, each once.
    for t in study.trials[1:]:
        assert t.intermediate_values == {e: committed[e] for e in t.intermediate_values}
    assert study.trials[1].intermediate_values.keys() <= {0, 1, 2} and study.trials[2].intermediate_values.keys() >= {0, 1, 2}
    assert study.trials[3].intermediate_values == committed
    assert study.trials[3].value == study.trials[0].value == min(resumed["val_loss"])
    assert [(t.number, t.status) for t in sweep_trials("s", db)] == [(0, "completed"), (1, "completed")]
