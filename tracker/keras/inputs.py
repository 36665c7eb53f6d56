"""What ``fit``'s inputs are, seen before training: which ones a resume can find its place in,
their shapes (to build a model or its metrics without drawing data), and how many iterators
``fit`` has drawn from each ``tf.data`` input (`_IteratorCount`), which is its shuffle position.

Never imports TensorFlow or torch itself: an input can only be one of theirs once they are loaded.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from tracker.keras import internals
from tracker.run.adapter import TrainingRun


class _IteratorCount:
    """Counts the iterators ``fit`` creates over each ``tf.data`` input, on top of a restored start.

    Each new iterator of ``shuffle(seed=..., reshuffle_each_iteration=True)`` draws the next
    seed, so this count is the position of the shuffle stream.
    """

    def __init__(self, datasets: dict[str, Any], start: dict[str, int]) -> None:
        self._datasets = datasets
        self._counts = {name: start.get(name, 0) for name in datasets}

    def positions(self) -> dict[str, int]:
        """How many iterators each input has given so far, by its ``fit`` argument's name."""
        return dict(self._counts)

    def fast_forward(self) -> None:
        """Make as many iterators of each input as the restored start counts, so that the next is the one fit drew next."""
        for name, ds in self._datasets.items():
            for _ in range(self._counts[name]):
                iter(ds)

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """Count, within the block, each iterator made of one of the inputs (``fit`` runs inside it)."""
        if not self._datasets:
            yield
            return
        by_id = {id(ds): name for name, ds in self._datasets.items()}

        def seen(ds: Any) -> None:
            name = by_id.get(id(ds))
            if name is not None:
                self._counts[name] += 1

        with internals.on_dataset_iter(seen):
            yield


def _tf_dataset_type() -> type | None:
    """``tf.data.Dataset``, or None when TensorFlow is not loaded: then no input can be one.

    Never imports TensorFlow itself, so that a JAX or torch run does not load it.
    """
    tf = sys.modules.get("tensorflow")
    return tf.data.Dataset if tf is not None and hasattr(tf, "data") else None


def _datasets(bound: dict[str, Any]) -> dict[str, Any]:
    """The ``tf.data`` inputs among ``fit``'s arguments, by argument name."""
    dataset = _tf_dataset_type()
    if dataset is None:
        return {}
    return {k: bound[k] for k in ("x", "validation_data") if isinstance(bound.get(k), dataset)}


def _warn_if_inexact(run: TrainingRun, bound: dict[str, Any]) -> bool:
    """Name, before the first epoch, each input whose position a resume cannot restore; False for one.

    Such an input gets no checkpoint inside epochs: a resume from one would skip batches of a
    different order. Its resume point stays the newest epoch end.
    """
    x = bound.get("x")
    dataset = _tf_dataset_type()
    reason = None
    if isinstance(x, keras.utils.PyDataset):
        reason = "a keras.utils.PyDataset keeps its order in Python state that tracker cannot save"
    elif inspect.isgenerator(x) or isinstance(x, Iterator):
        reason = "a Python generator or iterator keeps hidden state that tracker cannot save"
    elif dataset is not None and isinstance(x, dataset) and bound.get("class_weight") is not None:
        reason = "with class_weight, Keras wraps the tf.data input, so its shuffle position cannot be followed"
    elif _is_torch_loader(x) and getattr(x, "generator", None) is not None:
        reason = "a torch DataLoader given its own generator keeps its order in that generator, which tracker does not save"
    elif bound.get("steps_per_epoch") is not None and bound["steps_per_epoch"] != _batches_per_pass(bound, dataset):
        reason = ("with steps_per_epoch shorter or longer than one pass over the input, Keras draws the epochs' batches "
                  "from one iterator that runs on across epochs, and a resume would restart it")
    if reason:
        warnings.warn(
            f"Run {run.name!r}: a resumed run will not be bit-identical to an uninterrupted one: {reason}. "
            "Weights, optimizer state and the epoch counter still resume.",
            stacklevel=3,
        )
        if run.schedule.inside_epochs:
            warnings.warn(
                f"Run {run.name!r}: no checkpoint inside epochs with this input ({reason}), since a resume could not find "
                "its place in the data: checkpoint_every_steps/_seconds fall back to epoch ends, and a stop signal "
                "stops at the next batch without saving it (the resume point stays the newest epoch end).",
                stacklevel=3,
            )
    return reason is None


def _batches_per_pass(bound: dict[str, Any], dataset: type | None) -> int | None:
    """How many batches one pass over ``fit``'s training input gives, where that is known before fit runs."""
    x = bound.get("x")
    if dataset is not None and isinstance(x, dataset):
        n = int(x.cardinality())
        return n if n >= 0 else None  # infinite (repeat()) or unknown
    if _is_torch_loader(x):
        try:
            return len(x)
        except TypeError:  # an IterableDataset without a length
            return None
    arrays = keras.tree.flatten(x)
    if not arrays or not hasattr(arrays[0], "shape"):
        return None
    samples = int(arrays[0].shape[0] * (1.0 - (bound.get("validation_split") or 0.0)))  # as Keras splits
    return -(-samples // (bound.get("batch_size") or 32))


def _is_torch_loader(x: Any) -> bool:
    # Never imports torch: a DataLoader can only exist once torch is loaded.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.utils.data.DataLoader)


def _build_from(model: keras.Model, x: Any) -> None:
    """Build an unbuilt (subclassed) model symbolically from its input's shape, without drawing data."""
    model(_symbolic(x, first_only=True))


def _build_metrics(model: keras.Model, bound: dict[str, Any]) -> None:
    """Build the compiled metrics now, from the input's shapes, without drawing data.

    On TensorFlow fit builds them only when it traces its first step, but a resume inside an
    epoch must give them their running state before that step.
    """
    if not internals.can_build_symbolically(model) or bound.get("x") is None:
        return
    x = bound["x"]
    if _tf_dataset_type() is not None and isinstance(x, _tf_dataset_type()):
        batch = _symbolic(x, first_only=False)
    elif bound.get("y") is not None:
        batch = (_symbolic(x, first_only=False), _symbolic(bound["y"], first_only=False))
    else:
        return
    internals.build_symbolically(model, batch)


def _symbolic(x: Any, *, first_only: bool) -> Any:
    """Symbolic tensors shaped like one batch of ``x`` (arrays, or a ``tf.data`` input's elements)."""
    dataset = _tf_dataset_type()
    if dataset is not None and isinstance(x, dataset):
        spec = x.element_spec
        spec = spec[0] if first_only and isinstance(spec, tuple) else spec
        return keras.tree.map_structure(lambda s: keras.KerasTensor(tuple(s.shape), s.dtype.name), spec)
    if _is_torch_loader(x):
        # One sample read from the dataset itself: iterating the DataLoader would draw a shuffle order.
        # An iterable dataset cannot be indexed: its first batch is read instead (before the saved
        # generators are put back, so a draw does not count).
        try:
            sample, batched = x.dataset[0], False
        except (TypeError, NotImplementedError, AttributeError):
            sample, batched = next(iter(x)), True
        parts = keras.utils.unpack_x_y_sample_weight(sample)
        return keras.tree.map_structure(
            lambda a: keras.KerasTensor((None, *a.shape[batched:]), keras.backend.standardize_dtype(a.dtype)),
            parts[0] if first_only else tuple(p for p in parts if p is not None),
        )
    return keras.tree.map_structure(
        lambda a: keras.KerasTensor((None, *np.shape(a)[1:]), keras.backend.standardize_dtype(getattr(a, "dtype", "float32"))), x
    )
