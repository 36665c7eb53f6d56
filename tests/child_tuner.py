"""A tiny seeded KerasTuner RandomSearch, run as a real child process by tests/test_tuner.py and scripts/tuner_bench.py.

Usage: python child_tuner.py DIRECTORY OUT_JSON [--stock] [--name NAME] [--epochs N] [--max-trials N] [--backend B]

The search's project is DIRECTORY/search (KerasTuner's overwrite=False: a second start reloads it);
tracker's database and checkpoints come from TRACKER_DB and TRACKER_CHECKPOINT_DIR. With --stock
the search runs without tracker, as stock KerasTuner. At the end the trials, their scores and the
best trial go to OUT_JSON.

CHILD_PAUSE_TRIAL=ID with CHILD_PAUSE_AT=BOUNDARY:LABEL sets TRACKER_TEST_PAUSE_AT=BOUNDARY:LABEL
while trial ID runs (``after-commit:1`` stops after that trial's epoch 1 is committed), so that a
test's SIGKILL lands in that trial. Each epoch end prints ``CHILD-EPOCH <trial_id> <epoch>`` to stderr.
--backend torch (the default) or jax blocks TensorFlow, as if it were not installed; torch trains these
tiny models eagerly, with no compile per trial, so the child is cheapest there. Each backend runs under
its determinism settings (TensorFlow's op determinism, torch's deterministic algorithms).
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tracker, however this script is started

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

parser = argparse.ArgumentParser()
parser.add_argument("directory")
parser.add_argument("out")
parser.add_argument("--stock", action="store_true")
parser.add_argument("--name", default="kt")
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--max-trials", type=int, default=4)
parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default="torch")
args = parser.parse_args()
os.environ["KERAS_BACKEND"] = args.backend
if args.backend != "tensorflow":
    sys.modules["tensorflow"] = None

import keras  # noqa: E402
import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402

from tracker.settings import ENV_PAUSE_AT  # noqa: E402

keras.utils.set_random_seed(7)
if args.backend == "tensorflow":
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
elif args.backend == "torch":
    import torch

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # tiny models: threads only contend for the machine's cores

rng = np.random.default_rng(0)
x = rng.random((64, 8), dtype=np.float32)
y = (x @ rng.random(8, dtype=np.float32) + 0.1 * rng.standard_normal(64, dtype=np.float32)).astype(np.float32)


def build(hp):
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(hp.Int("units", 4, 32, step=4), activation=hp.Choice("activation", ["relu", "tanh"])),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(1),
    ])
    model.compile(keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-1, sampling="log")), "mse", metrics=["mae"])
    return model


class Search(keras_tuner.RandomSearch):
    def on_trial_begin(self, trial):
        if trial.trial_id == os.environ.get("CHILD_PAUSE_TRIAL"):
            os.environ[ENV_PAUSE_AT] = os.environ["CHILD_PAUSE_AT"]
        elif os.environ.get("CHILD_PAUSE_TRIAL"):
            os.environ.pop(ENV_PAUSE_AT, None)
        super().on_trial_begin(trial)

    def on_epoch_end(self, trial, model, epoch, logs=None):
        sys.stderr.write(f"CHILD-EPOCH {trial.trial_id} {epoch}\n")  # one write: tracker's writer thread may write too
        sys.stderr.flush()
        super().on_epoch_end(trial, model, epoch, logs)


tuner = Search(build, objective="val_loss", max_trials=args.max_trials, seed=3, directory=args.directory, project_name="search")
fit = {"epochs": args.epochs, "validation_split": 0.25, "batch_size": 16, "verbose": 0}
if args.stock:
    tuner.search(x, y, **fit)
else:
    import tracker.keras.tuner

    with tracker.keras.tuner.track_tuner(tuner, args.name):
        tuner.search(x, y, **fit)

oracle = tuner.oracle
trials = {
    t.trial_id: {"values": t.hyperparameters.values, "score": t.score, "best_step": t.best_step, "status": t.status}
    for t in oracle.trials.values()
}
best = oracle.get_best_trials(1)[0]
out = {"trials": trials, "start_order": oracle.start_order, "end_order": oracle.end_order,
       "best": {"trial_id": best.trial_id, "values": best.hyperparameters.values, "score": best.score}}
Path(args.out).write_text(json.dumps(out, indent=1, sort_keys=True))
