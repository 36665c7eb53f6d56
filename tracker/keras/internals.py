"""Every touch of Keras's (and TensorFlow's) private API that the adapter makes, each behind one named function.

A Keras upgrade means reading this file: each function says which behaviour of Keras 3 (as of
3.15) it relies on and why no public path does the job, and ``tests/test_keras_internals.py``
pins that behaviour with one test per function, named after it. The rest of the adapter uses
only Keras's public API and these functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import keras
from keras.src.trainers.epoch_iterator import EpochIterator

#: What ``EpochIterator._enumerate_iterator`` yields: ``(first step, last step, iterator)`` per train-step call.
Steps = Iterator[tuple[int, int, Any]]


def replace_epoch_enumeration(replacement: Callable[[Steps], Steps]) -> Callable[[], None]:
    """Make every epoch that ``fit`` enumerates go through ``replacement(keras_steps)``; returns the undo.

    Keras 3's ``EpochIterator._enumerate_iterator`` (``keras/src/trainers/epoch_iterator.py``) is
    the one place where every backend's ``fit`` learns which steps an epoch has: it yields
    ``(begin, end, iterator)`` and the train step then draws its batches from ``iterator``. A
    replacement can so draw batches without training on them, which a resume inside an epoch
    needs (the data stays where it was, no model step runs). Keras has no public hook between
    the data and the train step: a callback runs after a batch has trained.

    Example:
        ```python
        def skip_two(steps):
            for begin, end, iterator in steps:
                if begin < 2:
                    next(iterator)  # drawn, not trained
                else:
                    yield begin, end, iterator

        undo = replace_epoch_enumeration(skip_two)
        ```

    Args:
        replacement: Called with Keras's own steps of an epoch (a generator), yields the steps to train.
    """
    original = EpochIterator.__dict__["_enumerate_iterator"]

    def enumerate_iterator(iterator_self: EpochIterator) -> Steps:
        return replacement(original(iterator_self))

    EpochIterator._enumerate_iterator = enumerate_iterator

    def undo() -> None:
        EpochIterator._enumerate_iterator = original

    return undo


def replace_epoch_logs_once(model: keras.Model, replacement: Callable[[dict, Callable[[dict], dict]], dict]) -> None:
    """The next time ``fit`` turns its last step's logs into an epoch's logs, ask ``replacement`` instead.

    ``replacement(logs, keras_default)`` gets the last step's logs and Keras's own conversion.
    Keras 3's trainers (TensorFlow, JAX, torch) compute an epoch's logs with the private
    ``Trainer._get_metrics_result_or_logs(logs)``, which gives the metrics' results only when the
    last step logged the same keys: with no step at all it gives nothing. No callback can change
    the logs that ``fit`` hands to every callback and returns in its History. The override sits in
    the instance's own ``__dict__`` (past Keras's attribute tracking) and removes itself on its
    first call, which gives back the class's method.

    Args:
        model: The model whose next epoch's logs to compute.
        replacement: ``(logs, keras_default) -> epoch logs``.
    """

    def once(logs: dict) -> dict:
        del model.__dict__["_get_metrics_result_or_logs"]
        return replacement(logs, model._get_metrics_result_or_logs)

    model.__dict__["_get_metrics_result_or_logs"] = once


def can_build_symbolically(model: keras.Model) -> bool:
    """Whether `build_symbolically` can build ``model``: the trainer has Keras 3's ``_symbolic_build``."""
    return hasattr(model, "_symbolic_build")


def build_symbolically(model: keras.Model, batch: Any) -> None:
    """Build the model, its compiled loss and metrics, and its optimizer, from one symbolic batch.

    Keras 3 builds the compiled metrics only when ``fit`` runs its first step (on TensorFlow, when
    it traces it), and its private ``Trainer._symbolic_build(data_batch=...)`` is what ``fit``
    itself calls to build them without data. A resume inside an epoch must give the metrics their
    running state before that first step, and ``model.build`` builds the layers only.

    Args:
        model: A compiled model.
        batch: ``keras.KerasTensor`` structures shaped like one batch: ``(x, y)``, or a ``tf.data`` element.
    """
    model._symbolic_build(data_batch=batch)


def sync_jax_state(model: keras.Model) -> None:
    """Copy the JAX trainer's in-flight state into the model's variables; a no-op on other backends.

    During an epoch Keras 3's JAX trainer keeps the trained variables in a state tuple outside the
    model's variables and writes them back only at the epoch's end, or when its
    ``JAXTrainer.jax_state_sync()`` (public name, undocumented, not part of ``keras.Model``) is
    called. A checkpoint inside an epoch reads the variables, so it syncs them first.
    """
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


def direction_marks(model: keras.Model) -> Iterator[tuple[str, str]]:
    """``(name, "up" or "down")`` for each compiled metric that says which way is better, in ``model.metrics`` order.

    Keras 3 keeps a metric's direction in the private ``Metric._direction`` and its
    ``MonitorCallback._set_monitor_op`` reads that same attribute; the compiled metrics come inside
    containers (``CompileMetrics``, ``MetricsList``) that list theirs in ``.metrics``. There is no
    public accessor, and guessing from a metric's name is what Keras's own callbacks avoid.

    Args:
        model: A compiled model whose metrics are built (by its first step, or `build_symbolically`).
    """

    def flat(metrics: Any) -> Iterator[Any]:
        for m in metrics:
            yield m
            yield from flat(getattr(m, "metrics", None) or [])

    for m in flat(getattr(model, "metrics", [])):
        direction = getattr(m, "_direction", None)
        if direction in ("up", "down"):
            yield m.name, direction


@contextlib.contextmanager
def on_dataset_iter(seen: Callable[[Any], None]) -> Iterator[None]:
    """Within the block, call ``seen(dataset)`` each time an iterator of any ``tf.data.Dataset`` is made.

    Keras 3's ``fit`` on TensorFlow, JAX and torch makes new iterators of a ``tf.data`` input
    inside its ``EpochIterator`` (the same number every epoch) and never says so; with
    ``shuffle(seed=..., reshuffle_each_iteration=True)`` each new iterator draws the next order,
    so their count is the input's position. TensorFlow has no hook on iterator creation, so the
    class's ``__iter__`` is wrapped for the block, and put back after it.

    Args:
        seen: Called with the dataset whose ``__iter__`` runs, before the iterator is made.
    """
    import tensorflow as tf

    original = tf.data.Dataset.__iter__

    def counted(ds: Any) -> Any:
        seen(ds)
        return original(ds)

    tf.data.Dataset.__iter__ = counted
    try:
        yield
    finally:
        tf.data.Dataset.__iter__ = original
