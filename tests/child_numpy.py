"""A training script without TensorFlow: commits numpy "state" through the real protocol.

Usage: python child_numpy.py RUN EPOCHS
Dies with os._exit at epoch $CRASH_AT, as a killed process would (no cleanup runs).
"""

import os
import sys

import numpy as np

import tracker

name, epochs = sys.argv[1], int(sys.argv[2])
crash_at = int(os.environ.get("CRASH_AT", "-1"))
run = tracker.track(name)
run.start()
run.set_target_epochs(epochs)
print(f"started at epoch {run.initial_epoch}", flush=True)
for epoch in range(run.initial_epoch, epochs):
    if epoch == crash_at:
        os._exit(9)
    run.commit_epoch(epoch, {"loss": 1.0 / (epoch + 1)}, {"w": np.full(3, float(epoch))}, {})
run.finish("completed")
