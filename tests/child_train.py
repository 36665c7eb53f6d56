"""A tiny deterministic training script, run as a real child process by the crash tests.

Usage: python child_train.py RUN EPOCHS [--explicit]
The database and checkpoint folder come from TRACKER_DB and TRACKER_CHECKPOINT_DIR.
With --explicit it uses ``run.callback`` and ``run.initial_epoch`` instead of the patched fit.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tracker  # noqa: E402

name, epochs = sys.argv[1], int(sys.argv[2])
keras.utils.set_random_seed(7)
tf.config.experimental.enable_op_determinism()
rng = np.random.default_rng(0)
x = rng.random((48, 8, 8, 1), dtype=np.float32)
y = rng.integers(0, 3, 48)
model = keras.Sequential([
    keras.Input((8, 8, 1)),
    keras.layers.Conv2D(4, 3, activation="relu"),
    keras.layers.Flatten(),
    keras.layers.Dense(3),
])
model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

with tracker.track(name, config={"lr": 1e-2}) as run:
    if "--explicit" in sys.argv:
        model.fit(x, y, epochs=epochs, batch_size=16, shuffle=False, validation_split=0.25, verbose=0,
                  callbacks=[run.callback], initial_epoch=run.initial_epoch)
    else:
        model.fit(x, y, epochs=epochs, batch_size=16, shuffle=False, validation_split=0.25, verbose=0)
