"""One worker of a two-worker MultiWorkerMirroredStrategy run, trained inside ``tracker.track``.

Usage: python child_multiworker.py RUN EPOCHS INDEX PORT0 PORT1
Prints ``RESULT {json}`` at the end: whether it was the chief, the epoch it resumed at,
and a sha256 of its model and optimizer variables.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

run_name, epochs, index, port0, port1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{port0}", f"127.0.0.1:{port1}"]}, "task": {"type": "worker", "index": index}})
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support.models

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tracker  # noqa: E402
from tests.support.models import tiny  # noqa: E402


def work_around_keras_multi_worker_fit() -> None:
    """Keras 3 (up to 3.15 at least) cannot run fit under MultiWorkerMirroredStrategy at all,
    with or without tracker: https://github.com/keras-team/keras/issues/20585. Two internal
    reductions fail with several workers; these patches make just those two work, so that
    this test exercises tracker's chief-only writing. Drop them once Keras fixes the bug.
    """
    from keras.src.backend.tensorflow import trainer

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return tf.distribute.get_strategy().experimental_local_results(value)[0]
        return value

    original_build = trainer.TensorFlowTrainer._maybe_symbolic_build

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras reduces a nested per-replica batch, which MultiWorkerMirroredStrategy cannot do; build from the local one.
        if self._distribute_strategy is None or iterator is None:
            return original_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=tf.nest.map_structure(local, batch))

    original_reduce = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction="auto"):
        # Keras reduces scalar logs along axis 0 with several workers, which fails on a scalar.
        if trainer._collective_all_reduce_multi_worker(strategy) and reduction in ("auto", "mean"):
            return tf.nest.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=0 if v.shape.rank else None)
                if isinstance(v, tf.distribute.DistributedValues) else v,
                values,
            )
        return original_reduce(values, strategy, reduction)

    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica


work_around_keras_multi_worker_fit()
keras.utils.set_random_seed(7)
tf.config.experimental.enable_op_determinism()
strategy = tf.distribute.MultiWorkerMirroredStrategy()
rng = np.random.default_rng(0)
x, y = rng.random((48, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 48)
with strategy.scope():
    model = tiny("sequential")
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

with tracker.track(run_name) as run:
    resumed_at = run.initial_epoch
    model.fit(x, y, batch_size=16, epochs=epochs, validation_split=0.25, shuffle=False, verbose=0)
state = b"".join(np.ascontiguousarray(v.numpy()).tobytes() for v in [*model.variables, *model.optimizer.variables])
print("RESULT " + json.dumps({"chief": run.is_writer, "initial_epoch": resumed_at, "digest": hashlib.sha256(state).hexdigest()}), flush=True)
