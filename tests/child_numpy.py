"""A training script without TensorFlow: commits numpy "state" through the real protocol.

Usage: python child_numpy.py RUN EPOCHS [--db URL]
Without --db the database comes from $TRACKER_DB. Dies with os._exit at epoch
$CRASH_AT, as a killed process would (no cleanup runs).
"""

import argparse
import os

import numpy as np

import tracker

parser = argparse.ArgumentParser()
parser.add_argument("name")
parser.add_argument("epochs", type=int)
parser.add_argument("--db")
args = parser.parse_args()
crash_at = int(os.environ.get("CRASH_AT", "-1"))
run = tracker.track(args.name, db=args.db)
run.start()
run.set_target_epochs(args.epochs)
print(f"started at epoch {run.initial_epoch}", flush=True)
for epoch in range(run.initial_epoch, args.epochs):
    if epoch == crash_at:
        os._exit(9)
    run.commit_epoch(epoch, {"loss": 1.0 / (epoch + 1)}, {"w": np.full(3, float(epoch))}, {})
run.finish("completed")
