"""The private Keras behaviour the adapter relies on, one test per function of `tracker.keras.internals`.

A Keras upgrade that changes one of these behaviours fails the test named after the function
that relies on it, instead of a resume somewhere drifting off its curve. Also pinned here: the
undocumented attributes that hold the built-in callbacks' state (`tracker.keras.state`), and the
rule that only ``internals`` touches private API, so that an upgrade means reading that one file.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest

ADAPTER = Path(__file__).resolve().parents[1] / "tracker" / "keras"


@pytest.fixture(scope="module")
def model(keras_env):
    """One tiny compiled model, shared: two inputs, three logits, a metric that goes up and one that goes down."""
    keras = keras_env
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model.compile(
        keras.optimizers.SGD(0.1),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy", keras.metrics.SparseCategoricalCrossentropy(from_logits=True, name="xent")],
    )
    return model


@pytest.fixture(scope="module")
def xy() -> tuple[np.ndarray, np.ndarray]:
    """Eight samples: four batches of two."""
    rng = np.random.default_rng(0)
    return rng.random((8, 2), dtype=np.float32), rng.integers(0, 3, 8)


def _steps(model) -> int:
    return int(np.asarray(model.optimizer.iterations))


def test_replace_epoch_enumeration(model, xy):
    """Each epoch's steps come from ``EpochIterator._enumerate_iterator``; the train step draws from the iterator it yields."""
    from keras.src.trainers.epoch_iterator import EpochIterator

    from tracker.keras import internals

    keras_own = EpochIterator.__dict__["_enumerate_iterator"]
    seen = []

    def draw_two_then_train(steps):
        for begin, end, iterator in steps:
            seen.append((begin, end))
            if begin < 2:
                next(iterator)  # drawn, not trained
            else:
                yield begin, end, iterator

    undo = internals.replace_epoch_enumeration(draw_two_then_train)
    try:
        before = _steps(model)
        model.fit(*xy, batch_size=2, epochs=1, shuffle=False, verbose=0)
    finally:
        undo()
    assert seen == [(0, 0), (1, 1), (2, 2), (3, 3)]  # Keras's steps went through the replacement
    assert _steps(model) - before == 2  # the two drawn batches trained no step
    assert EpochIterator.__dict__["_enumerate_iterator"] is keras_own


def test_replace_epoch_logs_once(model, xy):
    """``fit`` turns its last step's logs into each epoch's logs with ``Trainer._get_metrics_result_or_logs``."""
    from tracker.keras import internals

    asked = []

    def replacement(logs, keras_default):
        asked.append(sorted(logs))
        return {**keras_default(logs), "marker": 1.0}

    internals.replace_epoch_logs_once(model, replacement)
    history = model.fit(*xy, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    assert asked == [["accuracy", "loss", "xent"]]  # once, with the last step's logs
    assert history["marker"] == [1.0] and len(history["loss"]) == 2  # the first epoch's logs were the replacement's
    assert "_get_metrics_result_or_logs" not in model.__dict__  # the class's method is back


def test_can_build_symbolically(model):
    from tracker.keras import internals

    assert internals.can_build_symbolically(model)
    assert not internals.can_build_symbolically(object())


def test_build_symbolically(keras_env):
    """``Trainer._symbolic_build(data_batch=...)`` builds the compiled metrics without data, which ``fit`` does at its first step."""
    keras = keras_env
    from tracker.keras import internals

    fresh = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])  # unbuilt metrics: the shared model has trained
    fresh.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    unbuilt = len(fresh.metrics_variables)
    internals.build_symbolically(fresh, (keras.KerasTensor((None, 2), "float32"), keras.KerasTensor((None,), "int64")))
    # The loss tracker's total and count, and the accuracy's: what a resume inside an epoch gives back.
    assert (unbuilt, len(fresh.metrics_variables)) == (2, 4)
    assert fresh.optimizer.built


def test_sync_jax_state(model):
    """The JAX trainer's ``jax_state_sync()`` takes no argument; on other backends there is nothing to sync."""
    pytest.importorskip("jax")
    from keras.src.backend.jax.trainer import JAXTrainer

    from tracker.keras import internals

    assert list(inspect.signature(JAXTrainer.jax_state_sync).parameters) == ["self"]
    assert not hasattr(model, "jax_state_sync")  # the TensorFlow model: the call below must be a no-op
    weights = [w.numpy().copy() for w in model.weights]
    internals.sync_jax_state(model)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(weights, model.weights))

    class Trainer:
        synced = 0

        def jax_state_sync(self):
            self.synced += 1

    trainer = Trainer()
    internals.sync_jax_state(trainer)
    assert trainer.synced == 1


def test_direction_marks(model, xy):
    """Compiled metrics keep their direction in ``Metric._direction``, inside containers that list theirs in ``.metrics``."""
    from tracker.keras import internals, metric_direction

    model.fit(*xy, batch_size=4, epochs=1, verbose=0)  # the compiled metrics are built by a step
    assert dict(internals.direction_marks(model)) == {"accuracy": "up", "xent": "down"}
    assert (metric_direction(model, "val_accuracy"), metric_direction(model, "xent")) == ("max", "min")


def test_on_dataset_iter(model, xy):
    """``fit`` makes the same number of iterators of each ``tf.data`` input every epoch, through ``Dataset.__iter__``."""
    import tensorflow as tf

    from tracker.keras import internals

    tf_own = tf.data.Dataset.__iter__
    train = tf.data.Dataset.from_tensor_slices(xy).batch(2)
    val = tf.data.Dataset.from_tensor_slices(xy).batch(4)

    def iterators(epochs: int) -> tuple[int, int]:
        seen = []
        with internals.on_dataset_iter(seen.append):
            model.fit(train, validation_data=val, epochs=epochs, shuffle=False, verbose=0)
        return sum(d is train for d in seen), sum(d is val for d in seen)

    one = iterators(1)
    assert min(one) >= 1
    assert iterators(3) == (3 * one[0], 3 * one[1])
    assert tf.data.Dataset.__iter__ is tf_own  # put back


def test_the_builtin_callbacks_keep_their_state_in_the_attributes_that_state_saves(model, keras_env, tmp_path):
    """`tracker.keras.state` saves these public but undocumented attributes; an upgrade that renames one would save None."""
    keras = keras_env
    from tracker.keras.state import _BUILTIN_STATE

    made = {
        keras.callbacks.EarlyStopping: keras.callbacks.EarlyStopping(patience=5),
        keras.callbacks.ReduceLROnPlateau: keras.callbacks.ReduceLROnPlateau(),
        keras.callbacks.ModelCheckpoint: keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras")),
    }
    assert made.keys() == _BUILTIN_STATE.keys()
    for cls, cb in made.items():
        cb.set_model(model)
        cb.on_train_begin()  # where each resets its state
        missing = [a for a in _BUILTIN_STATE[cls] if not hasattr(cb, a)]
        assert not missing, f"{cls.__name__} has no {missing}"
    stopper = made[keras.callbacks.EarlyStopping]
    stopper.on_epoch_end(0, {"val_loss": 0.5})
    stopper.on_epoch_end(1, {"val_loss": 0.7})
    assert (stopper.wait, stopper.best, stopper.best_epoch) == (1, 0.5, 0)  # they are the memory between epochs


def _private_touches(path: Path) -> list[str]:
    """Where a module imports ``keras.src``, reads an underscored attribute of anything but ``self``, or a ``__dict__``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras.src"):
            found.append(f"{where} imports {node.module}")
        elif isinstance(node, ast.Import) and any(a.name.startswith("keras.src") for a in node.names):
            found.append(f"{where} imports keras.src")
        elif isinstance(node, ast.Attribute) and node.attr == "__dict__":
            found.append(f"{where} reads __dict__")
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
              and not (isinstance(node.value, ast.Name) and node.value.id == "self")):
            found.append(f"{where} reads .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr", "setattr")
              and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and str(node.args[1].value).startswith("_")):
            found.append(f"{where} {node.func.id}(..., {node.args[1].value!r})")
    return found


def test_only_internals_touches_private_keras_api():
    modules = sorted(p for p in ADAPTER.glob("*.py") if p.name != "internals.py")
    assert {p.name for p in modules} >= {"callback.py", "fit.py", "inputs.py", "state.py"}
    assert [t for p in modules for t in _private_touches(p)] == []
    assert _private_touches(ADAPTER / "internals.py")  # the check sees them where they are
