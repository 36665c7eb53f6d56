"""A sweep worker, run as a real child process by tests/test_sweep.py: a tiny seeded Dense model per trial.

Usage: python child_sweep.py SWEEP (--grid | --space N) [--epochs E] [--wait] [--alone NUMBER]
The database and checkpoint folder come from TRACKER_DB and TRACKER_CHECKPOINT_DIR.
--grid searches {"units": [2, 4, 8], "lr": [0.01, 0.05]} (6 trials); --space N draws N trials from a space.
--alone NUMBER trains that trial alone with tracker.track (no sweep), as the reference its sweep run must equal.
CHILD_EPOCH_SLEEP=SECONDS sleeps at each epoch end, so that a test can kill a worker inside a trial.
Prints ``SWEEP-DONE <name> <status> <value>`` for each trial the sweep returns.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

parser = argparse.ArgumentParser()
parser.add_argument("sweep")
parser.add_argument("--grid", action="store_true")
parser.add_argument("--space", type=int)
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--wait", action="store_true")
parser.add_argument("--alone", type=int)
args = parser.parse_args()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tracker  # noqa: E402
from tracker.search import space as spaces  # noqa: E402

tf.config.experimental.enable_op_determinism()
GRID = {"units": [2, 4, 8], "lr": [0.01, 0.05]}
SPACE = {"units": tracker.randint(2, 9), "lr": tracker.loguniform(1e-3, 1e-1), "activation": tracker.choice(["relu", "tanh"])}
rng = np.random.default_rng(0)
x = rng.normal(size=(96, 6)).astype("float32")
y = (x[:, :3].sum(axis=1) > 0).astype("float32")
sleep = float(os.environ.get("CHILD_EPOCH_SLEEP", "0"))


def objective(trial: tracker.Trial) -> None:
    keras.utils.set_random_seed(100 + trial.number)
    params = trial.params
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(params["units"], activation=params.get("activation", "relu")),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(keras.optimizers.Adam(params["lr"]), "binary_crossentropy")
    pause = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: time.sleep(sleep))
    model.fit(x, y, epochs=args.epochs, batch_size=16, shuffle=True, validation_split=0.25, verbose=0, callbacks=[pause])


searched = {"grid": GRID} if args.grid else {"space": SPACE, "n_trials": args.space, "seed": 3}
if args.alone is not None:
    params = spaces.plan(**searched).params[args.alone]
    name = f"{args.sweep}-{args.alone}"
    with tracker.track(name, config=params):
        objective(tracker.Trial(name, args.alone, params))
    sys.exit(0)
for t in tracker.sweep(args.sweep, objective, wait=args.wait, **searched):
    print("SWEEP-DONE", t.name, t.status, t.value, flush=True)
