"""An Optuna study on RDB storage (heartbeat and retry) training a tiny seeded Keras model per trial, run as a real
child process by tests/test_optuna.py and scripts/optuna_bench.py, and killed there with SIGKILL.

Usage: python child_optuna.py STORAGE_URL EPOCHS [--units 2,3,...] [--stock] [--pruner none|median|threshold:UPPER]
The study is ``s``, the tracker sweep ``s`` (runs ``s-0``, ``s-1``, ...); the tracker database and checkpoint
folder come from TRACKER_DB and TRACKER_CHECKPOINT_DIR. A new study gets one enqueued trial per ``--units`` value,
in that order, so that every launch runs the same parameters whatever crashed (the same value twice trains the
same trial twice); the study stops once that many trials are complete or pruned.
Storage: heartbeat_interval=1, grace_period=2, RetryFailedTrialCallback(max_retry=5).

--stock trains without tracker, as Optuna's own Keras pruning callback does: each trial from epoch 0, reporting
``logs["val_loss"]`` at each epoch end. The default trains inside ``tracker.track_optuna(trial, "s")``.

CHILD_PAUSE=N:BOUNDARY:EPOCH sets TRACKER_TEST_PAUSE_AT=BOUNDARY:EPOCH for the fit of (original) trial N only.
CHILD_ANNOUNCE_EPOCHS=1 prints ``CHILD-EPOCH <begin|end> <original trial> <epoch>`` to stderr at epoch boundaries.
Optuna's "already reported" warning is an error here: a step reported twice fails the child.
"""

import argparse
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tracker from this checkout, however the script is started

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ["KERAS_BACKEND"] = "tensorflow"

parser = argparse.ArgumentParser()
parser.add_argument("storage")
parser.add_argument("epochs", type=int)
parser.add_argument("--units", default="2,3", help="one trial per value, comma-separated")
parser.add_argument("--stock", action="store_true")
parser.add_argument("--pruner", default="median")
args = parser.parse_args()
units = [int(u) for u in args.units.split(",")]

import keras  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import tensorflow as tf  # noqa: E402

from tracker.search.optuna_study import original_number, track_optuna  # noqa: E402

tf.config.experimental.enable_op_determinism()
warnings.filterwarnings("error", message=".*is already reported")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", category=FutureWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)

rng = np.random.default_rng(0)
x = rng.random((48, 8, 8, 1), dtype=np.float32)
y = rng.integers(0, 3, 48)


def pruner() -> optuna.pruners.BasePruner:
    if args.pruner == "none":
        return optuna.pruners.NopPruner()
    if args.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=len(units) + 10)  # asked at every epoch, never prunes
    kind, _, upper = args.pruner.partition(":")
    assert kind == "threshold", args.pruner
    return optuna.pruners.ThresholdPruner(upper=float(upper))


class StockPruning(keras.callbacks.Callback):
    """What optuna-integration's TFKerasPruningCallback does: report the epoch's logged value, prune if told."""

    def __init__(self, trial: optuna.Trial) -> None:
        super().__init__()
        self.trial = trial

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.trial.report(float(logs["val_loss"]), epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")


def announcer(number: int) -> list[keras.callbacks.Callback]:
    if not os.environ.get("CHILD_ANNOUNCE_EPOCHS"):
        return []

    def say(what: str, epoch: int) -> None:
        sys.stderr.write(f"CHILD-EPOCH {what} {number} {epoch}\n")
        sys.stderr.flush()

    return [keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: say("begin", e), on_epoch_end=lambda e, logs: say("end", e))]


def objective(trial: optuna.Trial) -> float:
    units = trial.suggest_int("units", 2, 64)
    number = original_number(trial)
    keras.utils.set_random_seed(7)  # each trial's training depends on its params only, whatever ran before it
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Flatten(),
        keras.layers.Dense(units, activation="relu"), keras.layers.Dense(3),
    ])
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    fit = {"x": x, "y": y, "batch_size": 16, "epochs": args.epochs, "validation_split": 0.25, "shuffle": True, "verbose": 0}
    pause = os.environ.get("CHILD_PAUSE", "")
    if pause.startswith(f"{number}:"):
        os.environ["TRACKER_TEST_PAUSE_AT"] = pause.partition(":")[2]
    else:
        os.environ.pop("TRACKER_TEST_PAUSE_AT", None)
    if args.stock:
        history = model.fit(callbacks=[StockPruning(trial), *announcer(number)], **fit)
        return min(history.history["val_loss"])
    with track_optuna(trial, "s", monitor="val_loss") as run:
        model.fit(callbacks=announcer(number), **fit)
    return run.best_value


storage = optuna.storages.RDBStorage(
    args.storage, heartbeat_interval=1, grace_period=2,
    failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=5),
)
study = optuna.create_study(study_name="s", storage=storage, load_if_exists=True, pruner=pruner())
if not study.trials:
    for u in units:
        study.enqueue_trial({"units": u})
finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
if len(study.get_trials(states=finished)) < len(units):
    # n_trials only bounds a broken search (a retry that failed is not retried: new sampled trials would follow).
    study.optimize(objective, n_trials=4 * len(units), callbacks=[optuna.study.MaxTrialsCallback(len(units), states=finished)])
