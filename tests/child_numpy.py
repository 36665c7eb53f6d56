"""A training script without TensorFlow: commits numpy "state" through the real protocol.

Usage: python child_numpy.py RUN EPOCHS [--db URL] [--checkpoint-dir DIR] [--keep-all]
Without --db the database comes from $TRACKER_DB, without --checkpoint-dir the folder from
$TRACKER_CHECKPOINT_DIR. Dies with os._exit at epoch $CRASH_AT, as a killed process would
(no cleanup runs). Sleeps $EPOCH_SLEEP seconds per epoch, to be caught while it trains.
--keep-all keeps every checkpoint (keep_last=None).
"""

import argparse
import os
import time

import numpy as np

import tracker

parser = argparse.ArgumentParser()
parser.add_argument("name")
parser.add_argument("epochs", type=int)
parser.add_argument("--db")
parser.add_argument("--checkpoint-dir")
parser.add_argument("--keep-all", action="store_true")
args = parser.parse_args()
crash_at = int(os.environ.get("CRASH_AT", "-1"))
epoch_sleep = float(os.environ.get("EPOCH_SLEEP", "0"))
run = tracker.track(args.name, db=args.db, checkpoint_dir=args.checkpoint_dir, keep_last=None if args.keep_all else 3)
run.start()
run.set_target_epochs(args.epochs)
print(f"started at epoch {run.initial_epoch}", flush=True)
for epoch in range(run.initial_epoch, args.epochs):
    if epoch == crash_at:
        os._exit(9)
    time.sleep(epoch_sleep)
    run.commit_epoch(epoch, {"loss": 1.0 / (epoch + 1)}, {"w": np.full(3, float(epoch))}, {})
run.finish("completed")
