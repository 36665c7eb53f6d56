"""Tracking real Keras fits in this process: resume exactness, the fit contract, bad input."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import tracker
from tracker import checkpoint
from tracker.errors import RunLockedError
from tracker.store import open_store

FIT = {"batch_size": 16, "shuffle": False, "validation_split": 0.25, "verbose": 0}


@pytest.fixture
def db(sqlite_db: str) -> str:
    """Keras tests run on SQLite; `test_split_run_on_postgres_and_s3` covers the server setup."""
    return sqlite_db


def fit_tracked(make_model, data, name, epochs, db, ckpt, kind="sequential", **fit_kwargs):
    x, y = data
    model = make_model(kind)
    with tracker.track(name, db=db, checkpoint_dir=ckpt):
        model.fit(x, y, epochs=epochs, **{**FIT, **fit_kwargs})
    return model


@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed"])
def test_split_run_equals_uninterrupted_run(make_model, data, db, ckpt, kind):
    fit_tracked(make_model, data, "whole", 4, db, ckpt, kind)
    fit_tracked(make_model, data, "split", 2, db, ckpt, kind)
    # A fresh model object: everything must come back from the checkpoint, the optimizer included.
    fit_tracked(make_model, data, "split", 4, db, ckpt, kind)
    assert tracker.curves("split", db=db) == tracker.curves("whole", db=db)


def test_split_run_on_postgres_and_s3(make_model, data, postgres_db, s3_prefix, sqlite_db, ckpt):
    fit_tracked(make_model, data, "whole", 4, sqlite_db, ckpt)
    fit_tracked(make_model, data, "split", 2, postgres_db, s3_prefix)
    fit_tracked(make_model, data, "split", 4, postgres_db, s3_prefix)
    assert tracker.curves("split", db=postgres_db) == tracker.curves("whole", db=sqlite_db)
    store = open_store(postgres_db)
    kept = [row.checkpoint.path for row in store.checkpoints(store.get_run("split").id)]
    store.close()
    assert kept and all(p.startswith(f"{s3_prefix}/split/epoch-") for p in kept)


def test_checkpoint_holds_optimizer_state(make_model, data, db, ckpt):
    fit_tracked(make_model, data, "r", 2, db, ckpt)
    store = open_store(db)
    newest = store.checkpoints(store.get_run("r").id)[0]
    arrays, header = checkpoint.load(newest.checkpoint)
    store.close()
    paths = dict(zip(header["optimizer"], (arrays[f"optimizer.{i:05d}"] for i in range(len(header["optimizer"])))))
    iteration = next(v for p, v in paths.items() if p.endswith("/iteration"))
    assert iteration == 2 * 3  # 2 epochs of 3 steps (36 training samples, batch 16)
    assert any(p.endswith("_momentum") and np.any(v != 0) for p, v in paths.items())
    assert any(p.endswith("_velocity") and np.any(v != 0) for p, v in paths.items())


def test_tf_data_input(make_model, data, db, ckpt, keras_env):
    import tensorflow as tf

    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    for name, epochs in (("whole", 3), ("split", 1), ("split", 3)):
        model = make_model()
        with tracker.track(name, db=db, checkpoint_dir=ckpt):
            model.fit(ds, epochs=epochs, verbose=0)
    assert tracker.curves("split", db=db) == tracker.curves("whole", db=db)


def test_user_callbacks_work_and_their_list_is_not_mutated(make_model, data, db, ckpt, keras_env):
    seen = []
    callbacks = [keras_env.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(e))]
    x, y = data
    with tracker.track("r", db=db, checkpoint_dir=ckpt):
        make_model().fit(x, y, epochs=2, callbacks=callbacks, **FIT)
    assert seen == [0, 1]
    assert len(callbacks) == 1
    assert tracker.curves("r", db=db)["epoch"] == [0, 1]


def test_rerun_with_same_epochs_does_nothing_and_larger_epochs_extends(make_model, data, db, ckpt):
    trained = fit_tracked(make_model, data, "r", 2, db, ckpt)
    with pytest.warns(UserWarning, match="nothing to train"):
        again = fit_tracked(make_model, data, "r", 2, db, ckpt)
    assert tracker.curves("r", db=db)["epoch"] == [0, 1]
    for a, b in zip(trained.weights, again.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    fit_tracked(make_model, data, "r", 3, db, ckpt)
    assert tracker.curves("r", db=db)["epoch"] == [0, 1, 2]


def test_conflicting_initial_epoch_fails_before_training(make_model, data, db, ckpt):
    fit_tracked(make_model, data, "r", 2, db, ckpt)
    x, y = data
    with pytest.raises(ValueError, match="conflicts with run 'r', which resumes at epoch 2"):
        with tracker.track("r", db=db, checkpoint_dir=ckpt):
            make_model().fit(x, y, epochs=4, initial_epoch=1, **FIT)
    assert tracker.curves("r", db=db)["epoch"] == [0, 1]
    assert tracker.runs(db)[0].status == "failed"


def test_explicit_form_checks_initial_epoch(make_model, data, db, ckpt):
    fit_tracked(make_model, data, "r", 1, db, ckpt)
    x, y = data
    with pytest.raises(ValueError, match="pass initial_epoch=run.initial_epoch"):
        with tracker.track("r", db=db, checkpoint_dir=ckpt) as run:
            make_model().fit(x, y, epochs=3, callbacks=[run.callback], **FIT)
    assert tracker.curves("r", db=db)["epoch"] == [0]


def test_non_scalar_log_is_skipped_with_one_warning_and_training_goes_on(make_model, data, db, ckpt, keras_env):
    fit_tracked(make_model, data, "r", 1, db, ckpt)

    class AddVector(keras_env.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["confusion"] = np.ones((3, 3))

    x, y = data
    with pytest.warns(UserWarning, match="log 'confusion' is not recorded: it is a ndarray of shape \\(3, 3\\)") as caught:
        with tracker.track("r", db=db, checkpoint_dir=ckpt):
            make_model().fit(x, y, epochs=3, callbacks=[AddVector()], **FIT)
    assert sum("confusion" in str(w.message) for w in caught) == 1
    curves = tracker.curves("r", db=db)
    assert curves["epoch"] == [0, 1, 2] and "confusion" not in curves


def test_corrupt_newest_checkpoint_falls_back_and_supersedes(make_model, data, db, ckpt):
    fit_tracked(make_model, data, "whole", 4, db, ckpt)
    fit_tracked(make_model, data, "r", 3, db, ckpt)
    newest = sorted((Path(ckpt) / "r").glob("epoch-000002-*.npz"))[0]
    newest.write_bytes(newest.read_bytes()[:-10])
    with pytest.warns(UserWarning, match="falling back to epoch 1.*epoch 2: .*has .* bytes"):
        fit_tracked(make_model, data, "r", 4, db, ckpt)
    assert tracker.curves("r", db=db) == tracker.curves("whole", db=db)
    everything = tracker.curves("r", db=db, include_superseded=True)
    assert everything["epoch"] == [0, 1, 2, 2, 3]
    assert everything["superseded"] == [False, False, True, False, False]


def test_no_checkpoint_verifies_starts_over(make_model, data, db, ckpt):
    fit_tracked(make_model, data, "r", 2, db, ckpt)
    for f in (Path(ckpt) / "r").glob("*.npz"):
        f.unlink()
    with pytest.warns(UserWarning, match="no checkpoint verifies.*Starting over from epoch 0"):
        fit_tracked(make_model, data, "r", 2, db, ckpt)
    assert tracker.curves("r", db=db)["epoch"] == [0, 1]
    assert tracker.curves("r", db=db, include_superseded=True)["epoch"] == [0, 0, 1, 1]


def test_captured_state_is_a_snapshot_that_training_does_not_change(make_model, data):
    from tracker.keras.state import capture

    x, y = data
    model = make_model()
    model.fit(x, y, epochs=1, **FIT)
    arrays, _ = capture(model)
    frozen = {k: v.copy() for k, v in arrays.items()}
    model.fit(x, y, epochs=1, **FIT)
    assert any(not np.array_equal(v.numpy(), frozen[f"model.{i:05d}"]) for i, v in enumerate(model.weights))
    for k in arrays:
        np.testing.assert_array_equal(arrays[k], frozen[k])


def test_a_failing_writer_stops_training_at_the_next_epoch_and_keeps_the_committed_point(make_model, data, db, ckpt, monkeypatch):
    fit_tracked(make_model, data, "r", 2, db, ckpt)
    real_write = checkpoint.LocalFolder.write

    def disk_full(folder, epoch, *args):
        if epoch >= 3:
            raise tracker.CheckpointError(f"Cannot write checkpoint for epoch {epoch}: No space left on device.")
        return real_write(folder, epoch, *args)

    monkeypatch.setattr(checkpoint.LocalFolder, "write", disk_full)
    seen = []
    x, y = data
    model = make_model()
    with pytest.raises(tracker.TrackerError, match="Saving an epoch failed: .*No space left on device"):
        with tracker.track("r", db=db, checkpoint_dir=ckpt):
            from keras.callbacks import LambdaCallback

            model.fit(x, y, epochs=8, callbacks=[LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(e))], **FIT)
    assert seen == [2, 3, 4]  # epoch 3's failure surfaces when epoch 4 hands over
    assert tracker.curves("r", db=db)["epoch"] == [0, 1, 2]
    monkeypatch.undo()
    fit_tracked(make_model, data, "r", 4, db, ckpt)
    assert tracker.curves("r", db=db)["epoch"] == [0, 1, 2, 3]


def test_mixed_precision_loss_scale_state_resumes(data, db, ckpt, keras_env):
    keras = keras_env
    x, y = data

    def model():
        keras.utils.set_random_seed(7)
        m = keras.Sequential([
            keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu", dtype="mixed_float16"),
            keras.layers.Flatten(), keras.layers.Dense(3, dtype="float32"),
        ])
        m.compile(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-2), initial_scale=2.0**15, dynamic_growth_steps=2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m

    for name, epochs in (("whole", 4), ("split", 2), ("split", 4)):
        with tracker.track(name, db=db, checkpoint_dir=ckpt):
            model().fit(x, y, epochs=epochs, **FIT)
    assert tracker.curves("split", db=db) == tracker.curves("whole", db=db)
    store = open_store(db)
    _, header = checkpoint.load(store.checkpoints(store.get_run("split").id)[0].checkpoint)
    store.close()
    assert any(p.endswith("dynamic_scale") for p in header["optimizer"])


@pytest.mark.parametrize(
    ("monitor", "fit_kwargs", "expected"),
    [
        (None, {}, ("val_loss", "min")),
        (None, {"validation_split": 0.0}, ("loss", "min")),
        ("val_accuracy", {}, ("val_accuracy", "max")),
        ("accuracy", {}, ("accuracy", "max")),
    ],
    ids=["default-val_loss", "default-loss-without-validation", "val_accuracy", "accuracy"],
)
def test_keras_says_which_direction_of_the_monitor_is_better(make_model, data, db, ckpt, monitor, fit_kwargs, expected):
    x, y = data
    with tracker.track("r", db=db, checkpoint_dir=ckpt, monitor=monitor):
        make_model().fit(x, y, epochs=1, **{**FIT, **fit_kwargs})
    store = open_store(db)
    run = store.get_run("r")
    store.close()
    assert (run.monitor, run.mode) == expected


def test_a_metric_keras_cannot_direct_is_taken_as_lower_is_better_with_a_warning(keras_env, data, db, ckpt):
    from tests.support.models import tiny

    def closeness(y_true, y_pred):
        return keras_env.ops.mean(y_pred)

    model = tiny()
    model.compile("adam", keras_env.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=[closeness])
    x, y = data
    with pytest.warns(UserWarning, match="cannot tell whether a higher or a lower 'closeness' is better"):
        with tracker.track("r", db=db, checkpoint_dir=ckpt, monitor="closeness"):
            model.fit(x, y, epochs=1, **FIT)
    assert tracker.runs(db)[0].monitor == "closeness"


def test_rerun_with_fewer_epochs_keeps_the_numbers_honest(make_model, data, sqlite_db, ckpt):
    x, y = data
    with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
        make_model().fit(x, y, epochs=3, batch_size=16, verbose=0)
    with pytest.warns(UserWarning, match=r"Run 'r' already has 3 epochs, more than the epochs=2 that fit asks for"):
        with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
            make_model().fit(x, y, epochs=2, batch_size=16, verbose=0)
    info = tracker.runs(sqlite_db)[0]
    assert (info.status, info.last_epoch, info.target_epochs) == ("completed", 2, 3)


def test_a_resume_whose_target_changed_warns(make_model, data, sqlite_db, ckpt):
    x, y = data
    with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
        make_model().fit(x, y, epochs=2, batch_size=16, verbose=0)
    store = open_store(sqlite_db)
    store.set_target_epochs(store.get_run("r").id, 5)  # as a crashed run that asked for 5 would have recorded
    store.close()
    with pytest.warns(UserWarning, match=r"Run 'r' was started with epochs=5; this fit asks for epochs=4"):
        with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
            make_model().fit(x, y, epochs=4, batch_size=16, verbose=0)
    assert tracker.runs(sqlite_db)[0].target_epochs == 4


def test_a_block_without_fit_records_nothing_and_warns(keras_env, sqlite_db, ckpt):
    with pytest.warns(UserWarning, match=r"no fit call ran inside tracker.track\('r'\)"):
        with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
            pass
    assert tracker.runs(sqlite_db) == []
    assert not Path(ckpt, "r").exists()


def test_a_block_without_fit_on_an_existing_run_leaves_it_as_it_was(make_model, data, sqlite_db, ckpt):
    x, y = data
    with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
        make_model().fit(x, y, epochs=2, batch_size=16, verbose=0)
    before = tracker.runs(sqlite_db)[0]
    with pytest.warns(UserWarning, match="no fit call ran"):
        with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
            pass
    after = tracker.runs(sqlite_db)[0]
    assert (after.status, after.last_epoch, after.target_epochs) == (before.status, before.last_epoch, before.target_epochs)


def test_fit_in_another_thread_is_named_in_the_warning(make_model, data, sqlite_db, ckpt):
    import threading

    x, y = data
    model = make_model()
    with pytest.warns(UserWarning, match="fit was called from another thread"):
        with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
            t = threading.Thread(target=lambda: model.fit(x, y, epochs=1, batch_size=16, verbose=0))
            t.start()
            t.join()
    assert tracker.runs(sqlite_db) == []


def test_nested_blocks_of_one_run_say_they_are_nested(keras_env, sqlite_db, ckpt):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
            with pytest.raises(RunLockedError, match=r"nested"):
                with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
                    pass


def test_a_failed_resume_keeps_the_recorded_target(make_model, data, sqlite_db, ckpt):
    x, y = data
    with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt):
        make_model().fit(x, y, epochs=2, batch_size=16, verbose=0)
    with pytest.raises(ValueError, match="initial_epoch"):
        with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt) as run:
            make_model().fit(x, y, epochs=9, batch_size=16, verbose=0, callbacks=[run.callback], initial_epoch=0)
    assert tracker.runs(sqlite_db)[0].target_epochs == 2


def test_the_monitor_typo_warning_points_at_the_users_line(make_model, data, sqlite_db, ckpt):
    x, y = data
    model = make_model()
    with pytest.warns(UserWarning, match="monitor 'val_acc' is not among the metrics") as caught:
        with tracker.track("r", db=sqlite_db, checkpoint_dir=ckpt, monitor="val_acc"):
            model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # the line the warning must name
    warning = next(w for w in caught if "val_acc" in str(w.message))
    assert Path(warning.filename).name == Path(__file__).name, warning.filename


def test_a_run_deleted_while_fit_trains_stops_fit_within_a_few_batches(tmp_path, monkeypatch, make_model, data):
    import keras

    from tracker.cli import main

    monkeypatch.setenv("TRACKER_LEASE_SECONDS", "1")  # a heartbeat every 0.125 s
    db, ckpt = str(tmp_path / "t.db"), str(tmp_path / "ckpt")
    batches_after: list[int] = []

    class DeleteAtEpoch1(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if batches_after:
                batches_after.append(batch)
                time.sleep(0.1)
            elif self.epoch == 1 and batch == 1:
                while tracker.curves("deleted", db=db).get("epoch") != [0]:  # epoch 0's commit is done, not pending
                    time.sleep(0.02)
                assert main(["rm", "deleted", "--yes", "--force", "--db", db]) == 0
                batches_after.append(batch)

    model = make_model()
    x, y = data
    with pytest.raises(tracker.errors.RunDeletedError, match="was deleted"):
        with tracker.track("deleted", db=db, checkpoint_dir=ckpt):
            model.fit(x, y, batch_size=1, epochs=3, callbacks=[DeleteAtEpoch1()], verbose=0)
    assert 2 <= len(batches_after) <= 10, batches_after  # of the epoch's 48 batches
    assert tracker.runs(db) == []
