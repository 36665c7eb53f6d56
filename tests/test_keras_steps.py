"""The step options of `tracker.track` on real Keras fits in this process: when checkpoints fall, the
per-step curve, and that without them tracker leaves Keras's asynchronous batch dispatch alone."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import pytest

import tracker
from tracker.store import open_store

FIT = {"batch_size": 4, "shuffle": False, "validation_split": 0.25, "verbose": 0}  # 36 training samples: 9 batches


@pytest.fixture
def db(sqlite_db: str) -> str:
    return sqlite_db


def _checkpoints(db: str, name: str) -> list[str]:
    store = open_store(db)
    try:
        return [r.describe() for r in store.checkpoints(store.get_run(name).id, live_only=False)]
    finally:
        store.close()


def _fit(make_model, data, db, ckpt, name="r", epochs=2, model=None, **options):
    x, y = data
    model = model or make_model()
    with tracker.track(name, db=db, checkpoint_dir=ckpt, keep_last=None, keep_last_steps=None, **options):
        model.fit(x, y, epochs=epochs, **FIT)
    return model


_BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end",
                "on_test_batch_begin", "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end")


def test_without_step_options_tracker_overrides_no_batch_hook(keras_env, db, ckpt):
    from keras.src.utils.python_utils import is_default

    from tracker.keras import StepTracker, TrackerCallback, callback_for

    with tracker.track("plain", db=db, checkpoint_dir=ckpt) as run:
        run.fit_started()
        plain = callback_for(run)
    with tracker.track("steps", db=db, checkpoint_dir=ckpt, checkpoint_every_steps=5) as run:
        run.fit_started()
        steps = callback_for(run)
    assert type(plain) is TrackerCallback and type(steps) is StepTracker
    # Keras's own test (CallbackList._configure_async_dispatch) of whether a callback implements a batch hook.
    assert all(is_default(getattr(plain, hook)) for hook in _BATCH_HOOKS)
    assert not is_default(steps.on_train_batch_end)


_ASYNC_PROBE = """
import sys
import keras, numpy as np, tracker
seen = []
configure = keras.callbacks.CallbackList._configure_async_dispatch
def spy(self, callbacks):
    configure(self, callbacks)
    seen.append(self._async_train)
keras.callbacks.CallbackList._configure_async_dispatch = spy
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
model.compile("sgd", "mse")
options = {"checkpoint_every_steps": 2} if sys.argv[1] == "steps" else {}
with tracker.track(sys.argv[1], **options):
    model.fit(np.ones((8, 3)), np.ones((8, 2)), epochs=1, batch_size=4, verbose=0)
print("ASYNC", seen[0])
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_without_step_options_keras_dispatches_batches_asynchronously(tmp_path, backend):
    """TensorFlow never dispatches batch callbacks asynchronously; JAX and torch do, unless a callback has a batch hook."""
    from tests.test_crash import _env

    env = {**_env(str(tmp_path / "t.db"), str(tmp_path / "c")), "KERAS_BACKEND": backend}
    seen = {}
    for name in ("plain", "steps"):
        out = subprocess.run([sys.executable, "-c", _ASYNC_PROBE, name], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        seen[name] = out.stdout.split("ASYNC ")[1].strip()
    assert seen == {"plain": "True", "steps": "False"}


def test_checkpoint_every_steps_falls_on_multiples_of_the_global_step(make_model, data, db, ckpt):
    _fit(make_model, data, db, ckpt, checkpoint_every_steps=4)
    # 9 batches per epoch: global steps 4 and 8 in epoch 0, 12 and 16 in epoch 1; each epoch end too.
    assert _checkpoints(db, "r") == ["epoch 1", "epoch 1, batch 7", "epoch 1, batch 3", "epoch 0", "epoch 0, batch 8", "epoch 0, batch 4"]


def test_under_steps_per_execution_checkpoints_fall_on_the_boundaries_keras_reports(keras_env, make_model, data, db, ckpt):
    keras = keras_env
    model = make_model()
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
                  steps_per_execution=3)
    _fit(make_model, data, db, ckpt, model=model, epochs=1, checkpoint_every_steps=2)
    # Boundaries after batches 3, 6 and 9: the first at or after steps 2 and 4 (3), 6 (6); 9 is the epoch end.
    assert _checkpoints(db, "r") == ["epoch 0", "epoch 0, batch 6", "epoch 0, batch 3"]


def test_checkpoint_every_seconds_commits_every_epoch_and_checkpoints_the_last(make_model, data, db, ckpt):
    _fit(make_model, data, db, ckpt, epochs=3, checkpoint_every_seconds=3600)
    assert tracker.curves("r", db=db)["epoch"] == [0, 1, 2]
    # None was due within the hour, but the run's last epoch is always checkpointed.
    assert _checkpoints(db, "r") == ["epoch 2"]


def test_a_resume_supersedes_the_epochs_committed_after_the_newest_checkpoint(db, ckpt, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import os, sys\n"
        "os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
        "import keras, numpy as np, tracker\n"
        "from tests.support.models import tiny\n"
        "keras.utils.set_random_seed(7)\n"
        "x = np.random.default_rng(0).random((48, 8, 8, 1), dtype=np.float32); y = np.random.default_rng(0).integers(0, 3, 48)\n"
        "m = tiny('sequential'); m.compile('adam', keras.losses.SparseCategoricalCrossentropy(from_logits=True))\n"
        "crash = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, l: os._exit(9) if e == 3 and sys.argv[1] == 'crash' else None)\n"
        "with tracker.track('r', checkpoint_every_seconds=3600, checkpoint_every_steps=4):\n"
        "    m.fit(x, y, epochs=5, batch_size=16, verbose=0, callbacks=[crash])\n"
    )
    from tests.test_crash import _env

    env = _env(db, ckpt)
    crashed = subprocess.run([sys.executable, str(script), "crash"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert crashed.returncode == 9, crashed.stderr
    # Three batches an epoch: steps 4 and 8 fall inside epochs 1 and 2; no epoch end was due within the hour.
    assert tracker.curves("r", db=db)["epoch"] == [0, 1, 2]
    assert _checkpoints(db, "r") == ["epoch 2, batch 2", "epoch 1, batch 1"]
    done = subprocess.run([sys.executable, str(script), "go"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    curves = tracker.curves("r", db=db, include_superseded=True)
    # Epoch 2 committed after the newest checkpoint (2 batches into it): superseded, and trained again from there.
    assert curves["epoch"] == [0, 1, 2, 2, 3, 4] and curves["superseded"] == [False, False, True, False, False, False]
    assert _checkpoints(db, "r")[0] == "epoch 4"  # a run's last epoch is always checkpointed


def test_log_every_steps_records_the_running_metrics_by_global_step(make_model, data, db, ckpt):
    _fit(make_model, data, db, ckpt, log_every_steps=3)
    steps = tracker.curves("r", db=db, by="step")
    assert steps["step"] == [3, 6, 9, 12, 15, 18]
    assert steps["epoch"] == [0, 0, 0, 1, 1, 1]
    assert set(steps) == {"step", "epoch", "loss", "accuracy"}
    epochs = tracker.curves("r", db=db)
    # The running mean at an epoch's last batch is the epoch's training loss.
    assert steps["loss"][2] == pytest.approx(epochs["loss"][0]) and steps["loss"][5] == pytest.approx(epochs["loss"][1])
    assert all(not math.isnan(v) for v in steps["accuracy"])


def test_log_every_steps_commits_in_groups_not_one_transaction_per_step(make_model, data, db, ckpt, monkeypatch):
    from tracker.run import handover as run_module
    from tracker.store import Store

    grouped: list[tuple[str, int]] = []
    commit_epoch, commit_step = Store.commit_epoch, Store.commit_step

    def spy_epoch(self, *args, **kwargs):
        grouped.append(("epoch", len(args[6] if len(args) > 6 else kwargs.get("step_rows", ()))))
        return commit_epoch(self, *args, **kwargs)

    def spy_step(self, *args, **kwargs):
        grouped.append(("step", len(args[5] if len(args) > 5 else kwargs.get("step_rows", ()))))
        return commit_step(self, *args, **kwargs)

    monkeypatch.setattr(Store, "commit_epoch", spy_epoch)
    monkeypatch.setattr(Store, "commit_step", spy_step)
    monkeypatch.setattr(run_module, "STEP_FLUSH_SECONDS", 3600)
    _fit(make_model, data, db, ckpt, log_every_steps=1)
    # 18 logged steps in two epochs: they ride along with the two epoch commits.
    assert grouped == [("epoch", 9), ("epoch", 9)]
    assert len(tracker.curves("r", db=db, by="step")["step"]) == 18

    grouped.clear()
    monkeypatch.setattr(run_module, "STEP_FLUSH_SECONDS", 0)
    _fit(make_model, data, db, ckpt, name="eager", log_every_steps=1, epochs=1)
    # Once the flush interval has passed, the rows go in a transaction of their own (here: at every step).
    assert grouped == [("step", 1)] * 9 + [("epoch", 0)]


def test_a_generator_input_warns_before_training_and_gets_no_checkpoint_inside_epochs(make_model, data, db, ckpt):
    x, y = data

    def batches():
        while True:
            for i in range(0, 36, 4):
                yield x[i : i + 4], y[i : i + 4]

    model = make_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tracker.track("r", db=db, checkpoint_dir=ckpt, checkpoint_every_steps=2):
            model.fit(batches(), steps_per_epoch=9, epochs=2, verbose=0)
    messages = [str(w.message) for w in caught]
    assert any("no checkpoint inside epochs" in m and "Python generator" in m for m in messages), messages
    assert _checkpoints(db, "r") == ["epoch 1", "epoch 0"]


def _unknown_length(data):
    import tensorflow as tf

    x, y = data
    return tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: True).batch(4)  # 12 batches, cardinality unknown


def test_an_input_of_unknown_length_warns_and_gets_no_scheduled_checkpoint_inside_epochs(make_model, data, db, ckpt):
    """Keras ends such an epoch by finding one more step empty: the schedule cannot tell a checkpoint after the
    last batch from one inside the epoch, and would put one there every epoch."""
    import tensorflow as tf

    unknown = _unknown_length(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tracker.track("r", db=db, checkpoint_dir=ckpt, checkpoint_every_steps=2, keep_last_steps=None):
            make_model().fit(unknown, epochs=2, verbose=0)
    messages = [str(w.message) for w in caught]
    assert any("does not know how many batches" in m and "assert_cardinality" in m for m in messages), messages
    assert _checkpoints(db, "r") == ["epoch 1", "epoch 0"]

    known = unknown.apply(tf.data.experimental.assert_cardinality(12))
    with tracker.track("k", db=db, checkpoint_dir=ckpt, checkpoint_every_steps=5, keep_last=None, keep_last_steps=None):
        make_model().fit(known, epochs=1, verbose=0)
    assert _checkpoints(db, "k") == ["epoch 0", "epoch 0, batch 10", "epoch 0, batch 5"]


def test_a_sigterm_after_the_last_batch_of_an_input_of_unknown_length_resumes_with_the_epochs_metrics(make_model, data, db, ckpt):
    """The stop signal saves where it lands, here after the epoch's last batch (fit cannot tell): the resumed
    epoch trains no batch, and still logs the training metrics an uninterrupted run logs."""
    import os
    import signal

    import keras

    with tracker.track("ref", db=db, checkpoint_dir=ckpt):
        make_model().fit(_unknown_length(data), epochs=2, verbose=0)

    terminate = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batch == 11 and os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(tracker.Preempted):
        with tracker.track("r", db=db, checkpoint_dir=ckpt):
            make_model().fit(_unknown_length(data), epochs=2, verbose=0, callbacks=[terminate])
    assert _checkpoints(db, "r")[0] == "epoch 0, batch 12"
    with tracker.track("r", db=db, checkpoint_dir=ckpt):
        make_model().fit(_unknown_length(data), epochs=2, verbose=0)
    got, want = tracker.curves("r", db=db), tracker.curves("ref", db=db)
    assert got == want and not any(math.isnan(v) for v in got["loss"])


def test_steps_per_epoch_across_passes_warns_and_gets_no_checkpoint_inside_epochs(make_model, data, db, ckpt):
    """With steps_per_epoch, Keras keeps one iterator running across epochs (here over a repeated input), so a
    resume that restarts the input would train other batches than an uninterrupted run; one pass per epoch is exact."""
    import tensorflow as tf

    x, y = data
    repeated = tf.data.Dataset.from_tensor_slices((x, y)).batch(4).repeat()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tracker.track("r", db=db, checkpoint_dir=ckpt, checkpoint_every_steps=2, keep_last_steps=None):
            make_model().fit(repeated, steps_per_epoch=5, epochs=2, verbose=0)
    messages = [str(w.message) for w in caught]
    assert any("no checkpoint inside epochs" in m and "steps_per_epoch" in m for m in messages), messages
    assert _checkpoints(db, "r") == ["epoch 1", "epoch 0"]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tracker.track("one-pass", db=db, checkpoint_dir=ckpt, checkpoint_every_steps=4, keep_last_steps=None):
            make_model().fit(x, y, steps_per_epoch=9, epochs=1, **FIT)  # 36 training samples, batches of 4
    assert not [str(w.message) for w in caught if "Run 'one-pass'" in str(w.message)]
    assert _checkpoints(db, "one-pass") == ["epoch 0", "epoch 0, batch 8", "epoch 0, batch 4"]
