"""The private KerasTuner behaviour `tracker.track_tuner` relies on, one test per function of `tracker.keras.tuner.internals`.

A KerasTuner upgrade that changes one of these fails the test named after the function that relies on
it, instead of a relaunched search quietly running other trials. Also pinned: the order of KerasTuner's
state writes that `tracker.keras.tuner.reload` mends, and the rule that only ``internals`` touches
private KerasTuner API.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tracker" / "keras" / "tuner"


@pytest.fixture(scope="module")
def kt(keras_env):
    import keras_tuner

    return keras_tuner


def _build(hp):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(hp.Int("units", 1, 64)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model


def _tuner(kt, directory: Path, **kwargs):
    return kt.RandomSearch(_build, objective="val_loss", max_trials=10, seed=5, directory=str(directory), project_name="p", **kwargs)


def test_replace_save_json(kt, tmp_path):
    """Every state file KerasTuner writes (oracle, trial, tuner) goes through ``keras_tuner.src.utils.save_json``."""
    from keras_tuner.src import utils

    from tracker.keras.tuner import internals

    tuner = _tuner(kt, tmp_path)
    original = utils.save_json
    seen = []
    undo = internals.replace_save_json(lambda keras_tuner_own, path, obj: seen.append(os.path.relpath(path, tuner.project_dir)) or "{}")
    try:
        trial = tuner.oracle.create_trial("tuner0")
        tuner.save()
    finally:
        undo()
    assert seen == [f"trial_{trial.trial_id}/trial.json", "oracle.json", "oracle.json", "tuner0.json"]
    assert utils.save_json is original
    assert not (tmp_path / "p" / "oracle.json").exists()  # nothing was written KerasTuner's way


def test_replace_best_epoch_save(kt, keras_env, tmp_path):
    """``SaveBestEpoch`` saves through ``_save_model`` when the objective beats ``best_value``, which starts at inf."""
    from keras_tuner.src.engine import tuner_utils

    from tracker.keras.tuner import internals

    assert internals.SaveBestEpoch is tuner_utils.SaveBestEpoch
    model = _build(kt.HyperParameters())
    saver = internals.SaveBestEpoch(kt.Objective("val_loss", "min"), str(tmp_path / "checkpoint.weights.h5"))
    saver.set_model(model)
    assert saver.best_value == np.inf and kt.Objective("val_acc", "max").better_than(0.1, -np.inf)
    saves = []
    undo = internals.replace_best_epoch_save(lambda callback, keras_tuner_own: saves.append(callback.best_value))
    try:
        saver.on_epoch_end(0, {"val_loss": 0.5})
        saver.on_epoch_end(1, {"val_loss": 0.7})
        saver.best_value = 0.2  # what whole_run seeds a resumed trial's saver with
        saver.on_epoch_end(2, {"val_loss": 0.3})
        saver.on_epoch_end(3, {"val_loss": 0.1})
    finally:
        undo()
    assert saves == [0.5, 0.1]
    assert not (tmp_path / "checkpoint.weights.h5").exists()
    saver.on_epoch_end(4, {"val_loss": 0.0})  # undone: KerasTuner's own save again
    assert (tmp_path / "checkpoint.weights.h5").exists()


def test_run_trial_hands_fit_a_save_best_epoch(kt, keras_env, tmp_path):
    """``Tuner.run_trial`` adds its ``SaveBestEpoch`` to the callbacks of the trial's ``fit`` (whole_run seeds it there)."""
    import keras

    from tracker.keras.tuner import internals

    tuner = _tuner(kt, tmp_path, max_consecutive_failed_trials=1)
    seen = []
    original = keras.Model.fit

    def fit(model, *args, **kwargs):
        seen.extend(type(c) for c in kwargs["callbacks"])
        return original(model, *args, **kwargs)

    keras.utils.set_random_seed(0)  # op determinism wants a seed for fit's shuffle
    keras.Model.fit = fit
    try:
        tuner.oracle.max_trials = 1
        tuner.search(np.zeros((4, 2)), np.zeros(4), epochs=1, validation_data=(np.zeros((2, 2)), np.zeros(2)), verbose=0)
    finally:
        keras.Model.fit = original
    assert internals.SaveBestEpoch in seen


def test_is_multi_worker(kt, monkeypatch):
    from tracker.keras.tuner import internals

    assert not internals.is_multi_worker()
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    assert internals.is_multi_worker()


def test_tuner_file_oracle_file_and_retry_queue(kt, tmp_path):
    """A project reloads only once the tuner's file exists; the trial that was ongoing is retried first, with its values."""
    from tracker.keras.tuner import internals

    first = _tuner(kt, tmp_path)
    trial = first.oracle.create_trial("tuner0")
    assert internals.oracle_file(first.oracle) == str(tmp_path / "p" / "oracle.json") and os.path.exists(internals.oracle_file(first.oracle))
    assert internals.tuner_file(first) == str(tmp_path / "p" / "tuner0.json") and not os.path.exists(internals.tuner_file(first))
    assert _tuner(kt, tmp_path).oracle.trials == {}  # killed in its first trial: not reloaded
    first.save()
    again = _tuner(kt, tmp_path)
    assert list(again.oracle.trials) == [trial.trial_id] and again.oracle.ongoing_trials == {}
    assert internals.retry_queue(again.oracle) == [trial.trial_id]
    retried = again.oracle.create_trial("tuner0")
    assert (retried.trial_id, retried.hyperparameters.values) == (trial.trial_id, trial.hyperparameters.values)
    assert internals.retry_queue(again.oracle) == []


def test_the_order_of_a_trials_state_writes(kt, tmp_path):
    """What `tracker.keras.tuner.reload` mends: a trial's start writes trial.json, then oracle.json; its end writes
    trial.json, then oracle.json still listing it as ongoing, then (the tuner's save) oracle.json without it."""
    import json

    from tracker.keras.tuner import internals

    tuner = _tuner(kt, tmp_path)
    writes = []

    def record(keras_tuner_own, path, obj):
        writes.append((os.path.basename(path), json.loads(json.dumps(obj))))
        return keras_tuner_own(path, obj)

    undo = internals.replace_save_json(record)
    try:
        trial = tuner.oracle.create_trial("tuner0")
        tuner.oracle.update_trial(trial.trial_id, {"val_loss": 0.5})
        trial.status = "COMPLETED"
        tuner.on_trial_end(trial)
    finally:
        undo()
    names = [(name, state.get("status"), state.get("ongoing_trials"), state.get("end_order")) for name, state in writes]
    assert names == [
        ("trial.json", "RUNNING", None, None), ("oracle.json", None, {"tuner0": trial.trial_id}, []),
        ("trial.json", "RUNNING", None, None),  # update_trial
        ("trial.json", "COMPLETED", None, None), ("oracle.json", None, {"tuner0": trial.trial_id}, [trial.trial_id]),
        ("oracle.json", None, {}, [trial.trial_id]), ("tuner0.json", None, None, None),
    ]


def test_count_run(kt, tmp_path):
    from tracker.keras.tuner import internals

    oracle = _tuner(kt, tmp_path).oracle
    trial = oracle.create_trial("tuner0")
    oracle.update_trial(trial.trial_id, {"val_loss": 0.5})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    assert oracle.get_state()["run_times"] == {trial.trial_id: 1}  # end_trial counts a run
    internals.count_run(oracle, trial.trial_id)
    assert oracle.get_state()["run_times"] == {trial.trial_id: 2}


def test_mark_tried(kt, tmp_path):
    """The random draw skips values marked tried, and goes on from there as if it had drawn them itself."""
    from tracker.keras.tuner import internals

    drew = _tuner(kt, tmp_path / "a").oracle
    first, second = drew.create_trial("tuner0"), drew.create_trial("tuner1")
    lost = _tuner(kt, tmp_path / "b").oracle  # the same seed state, as after a lost oracle.json write
    internals.mark_tried(lost, first)
    assert lost.populate_space("1")["values"] == second.hyperparameters.values


def test_drop_observations_from(kt):
    from tracker.keras.tuner import internals

    trial = kt.engine.trial.Trial(kt.HyperParameters(), trial_id="0")
    for step in range(4):
        trial.metrics.update("val_loss", 1.0 / (step + 1), step=step)
    internals.drop_observations_from(trial, 2)
    assert [obs.step for obs in trial.metrics.get_history("val_loss")] == [0, 1]
    trial.metrics.update("val_loss", 0.4, step=2)  # reported again, once
    assert [obs.value for obs in trial.metrics.get_history("val_loss")] == [[1.0], [0.5], [0.4]]


def _private_touches(path: Path) -> list[str]:
    """Where a module imports ``keras_tuner.src`` or ``keras.src``, or reads an underscored attribute of anything but ``self``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("keras_tuner.src", "keras.src")):
            found.append(f"{where} imports {node.module}")
        elif isinstance(node, ast.Import) and any(a.name.startswith(("keras_tuner.src", "keras.src")) for a in node.names):
            found.append(f"{where} imports a private package")
        elif isinstance(node, ast.Attribute) and node.attr == "__dict__":
            found.append(f"{where} reads __dict__")
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
              and not (isinstance(node.value, ast.Name) and node.value.id == "self")):
            found.append(f"{where} reads .{node.attr}")
    return found


def test_only_internals_touches_private_kerastuner_api():
    modules = sorted(p for p in PACKAGE.glob("*.py") if p.name != "internals.py")
    assert {p.name for p in modules} >= {"tracking.py", "state_files.py", "reload.py", "registry.py", "whole_run.py"}
    assert [t for p in modules for t in _private_touches(p)] == []
    assert _private_touches(PACKAGE / "internals.py")  # the check sees them where they are
