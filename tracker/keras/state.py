"""Everything a Keras training needs to continue exactly, as named arrays plus a JSON header.

Captured at each checkpoint (an epoch end, or a batch boundary inside an epoch), restored at the
resume point:
- every model variable, including the state of each ``SeedGenerator`` (Dropout, random
  augmentation): ``model.variables``, where ``save_weights`` would skip the seeds;
- every optimizer variable: moments, iteration count (which is also a learning-rate
  schedule's position), learning rate, loss-scale state;
- the state of stateful callbacks: ``EarlyStopping``, ``ReduceLROnPlateau``,
  ``ModelCheckpoint``, and any callback with ``get_state()``/``set_state(state)``;
- how many iterators ``fit`` drew from each ``tf.data`` input, which is the position of a
  seeded ``shuffle(..., reshuffle_each_iteration=True)`` stream;
- the global random generator that Keras's own input pipeline draws from on this backend
  (see `_PIPELINE_RNG`), so that numpy input with ``shuffle=True`` continues its order;
- the backend that wrote the checkpoint, which a resume must match (`check_backend`);
- inside an epoch, also each compiled metric's running accumulators (so that the epoch's logged
  means come out the same), and the random generators and ``tf.data`` positions as they were at
  the epoch's start (`EpochStart`), from which a resume replays the epoch's order and skips the
  batches already trained.

A callback of your own takes part by defining two methods::

    class Curriculum(keras.callbacks.Callback):
        def get_state(self) -> dict:          # JSON-able
            return {"level": self.level}

        def set_state(self, state: dict) -> None:
            self.level = state["level"]
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from tracker.errors import CheckpointError, ResumeError

FORMAT = 1

# Where numpy input's shuffle order comes from, per backend (keras/src/trainers/data_adapters/
# array_data_adapter.py): on TensorFlow a tf.random.shuffle inside the tf.data pipeline, seeded by
# Keras's seed and replayed the same way after a restart; on JAX numpy's global generator
# (np.random.permutation); on torch torch's global generator (each DataLoader iterator draws its
# base seed from it, and a RandomSampler without a generator draws its seed from it too).
_PIPELINE_RNG = {"tensorflow": (), "jax": ("numpy",), "torch": ("torch",)}

# Attributes that make up each built-in stateful callback's memory between epochs.
# Configuration (patience, factor, min_delta...) comes from the script; only state is saved.
_BUILTIN_STATE = {
    keras.callbacks.EarlyStopping: ("wait", "stopped_epoch", "best", "best_epoch"),
    keras.callbacks.ReduceLROnPlateau: ("wait", "cooldown_counter", "best"),
    keras.callbacks.ModelCheckpoint: ("best",),
}


@dataclass(frozen=True)
class EpochStart:
    """What decides an epoch's data order, taken as the epoch begins: the global generators that
    Keras's input pipeline draws from, and how many iterators each ``tf.data`` input gave."""

    rng_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    rng_header: dict[str, Any] = field(default_factory=dict)
    data: dict[str, int] = field(default_factory=dict)


def epoch_start(data: dict[str, int] | None = None) -> EpochStart:
    """Take the `EpochStart` now: call as an epoch begins, before its data is drawn."""
    arrays, header = _capture_rngs(keras.backend.backend())
    return EpochStart(arrays, header, dict(data or {}))


def global_step(model: keras.Model) -> int:
    """How many batches the model's optimizer has trained on: the run's global step."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations)) if model.optimizer is not None else 0


def capture(
    model: keras.Model, callbacks: Sequence[keras.callbacks.Callback] = (), data: dict[str, int] | None = None,
    *, inside: EpochStart | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Snapshot the training state. The arrays stay valid while training goes on.

    ``inside``: the snapshot is taken inside an epoch that began at this `EpochStart`; it then also
    holds the metrics' running state, and the epoch start's generators and data positions.
    """
    model_vars = list(model.variables)
    opt_vars = list(model.optimizer.variables) if model.optimizer is not None else []
    # Reading a TensorFlow variable yields an immutable tensor (later updates copy on write),
    # so these arrays are a snapshot that the background writer can use while training goes on.
    arrays = {f"model.{i:05d}": v.numpy() for i, v in enumerate(model_vars)}
    arrays.update({f"optimizer.{i:05d}": v.numpy() for i, v in enumerate(opt_vars)})
    states = []
    for i, cb in enumerate(callbacks):
        state = _callback_state(cb)
        if state is None:
            continue
        best_weights = getattr(cb, "best_weights", None) if isinstance(cb, keras.callbacks.EarlyStopping) else None
        if best_weights is not None:
            arrays.update({f"callback.{i}.best_weights.{j:05d}": np.asarray(w) for j, w in enumerate(best_weights)})
            state["best_weights"] = len(best_weights)
        states.append({"index": i, "class": type(cb).__name__, "state": state})
    header = {
        "format": FORMAT,
        "model": [v.path for v in model_vars],
        "optimizer": [v.path for v in opt_vars],
        "callbacks": states,
        "data": dict(data or {}),
        "backend": keras.backend.backend(),
    }
    if inside is None:
        rng_arrays, header["rng"] = _capture_rngs(keras.backend.backend())
    else:
        rng_arrays, header["rng"], header["data"] = dict(inside.rng_arrays), inside.rng_header, dict(inside.data)
        # And as they are now: the batches trained so far drew from them too (torch's unseeded Dropout does).
        now_arrays, header[NOW] = _capture_rngs(keras.backend.backend(), prefix=NOW)
        rng_arrays.update(now_arrays)
        metric_vars = list(model.metrics_variables)
        arrays.update({f"metric.{i:05d}": v.numpy() for i, v in enumerate(metric_vars)})
        header["metrics"] = [v.path for v in metric_vars]
    arrays.update(rng_arrays)
    return arrays, header


def restore_metrics(model: keras.Model, arrays: dict[str, np.ndarray], header: dict[str, Any]) -> None:
    """Put back the metrics' running state of a checkpoint taken inside an epoch; call after the epoch's metric reset."""
    for variable, value in _pairs("metrics", list(model.metrics_variables), arrays, header, prefix="metric"):
        variable.assign(value)


def check_backend(header: dict[str, Any], run_name: str, *, force: bool) -> None:
    """Refuse to resume under another Keras backend than the one that wrote the checkpoint.

    Each backend keeps its randomness elsewhere and computes differently, so a switched backend
    could not continue the curve exactly. A checkpoint written before backends were recorded
    (no ``backend`` key) is not checked: it cannot say.
    """
    saved, current = header.get("backend"), keras.backend.backend()
    if saved is None or saved == current or force:
        return
    raise ResumeError(
        f"Run {run_name!r} cannot resume under another Keras backend than the one it was trained on. "
        f"Received: KERAS_BACKEND={current!r}. Expected: KERAS_BACKEND={saved!r}, the backend of its checkpoint. "
        "Set KERAS_BACKEND back, or pass force=True to tracker.track (or set TRACKER_FORCE=1) to continue "
        "from its weights anyway, without an identical curve."
    )


def restore_rngs(arrays: dict[str, np.ndarray], header: dict[str, Any], *, key: str = "rng") -> None:
    """Put back the global generators `capture` saved; call after ``fit`` built its input, before the first epoch.

    ``key=NOW``: those of a checkpoint inside an epoch as they were at its batch, once the resumed
    epoch has drawn its order and skipped the trained batches.
    """
    saved = header.get(key, {})
    if "numpy" in saved:
        s = saved["numpy"]
        np.random.set_state((s["kind"], arrays[f"{key}.numpy"], s["pos"], s["has_gauss"], s["cached_gaussian"]))
    if "torch" in saved:
        import torch

        torch.set_rng_state(torch.from_numpy(arrays[f"{key}.torch"].copy()))


#: The header key and array prefix of the global generators at a checkpoint inside an epoch.
NOW = "rng_now"


def _capture_rngs(backend: str, prefix: str = "rng") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays: dict[str, np.ndarray] = {}
    header: dict[str, Any] = {}
    wanted = _PIPELINE_RNG.get(backend, ())
    if "numpy" in wanted:
        kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
        arrays[f"{prefix}.numpy"] = keys.copy()
        header["numpy"] = {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}
    if "torch" in wanted:
        import torch

        arrays[f"{prefix}.torch"] = torch.get_rng_state().numpy().copy()
        header["torch"] = {}
    return arrays, header


def restore_model(model: keras.Model, arrays: dict[str, np.ndarray], header: dict[str, Any]) -> None:
    """Assign the saved variables to the model and its optimizer, checking that they fit."""
    if header.get("format") != FORMAT:
        raise CheckpointError(f"Checkpoint format {header.get('format')!r} is not supported by this tracker (expects {FORMAT}).")
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    pairs = _pairs("model", list(model.variables), arrays, header)
    if model.optimizer is not None:
        pairs += _pairs("optimizer", list(model.optimizer.variables), arrays, header)
    for variable, value in pairs:
        variable.assign(value)


def restore_callbacks(callbacks: Sequence[keras.callbacks.Callback], arrays: dict[str, np.ndarray], header: dict[str, Any]) -> None:
    """Give each stateful callback back its state; call after every callback's ``on_train_begin`` reset."""
    for saved in header.get("callbacks", []):
        i = saved["index"]
        cb = callbacks[i] if i < len(callbacks) else None
        if cb is None or type(cb).__name__ != saved["class"]:
            warnings.warn(
                f"The callbacks passed to fit changed since the checkpoint: {saved['class']} (position {i}) "
                "gets no saved state, so the resumed run may differ from an uninterrupted one.",
                stacklevel=2,
            )
            continue
        state = dict(saved["state"])
        n_best = state.pop("best_weights", None)
        if hasattr(cb, "set_state") and type(cb) not in _BUILTIN_STATE:
            cb.set_state(state)
            continue
        for attr, value in state.items():
            setattr(cb, attr, value)
        if n_best is not None:
            cb.best_weights = [arrays[f"callback.{i}.best_weights.{j:05d}"] for j in range(n_best)]


def _callback_state(cb: keras.callbacks.Callback) -> dict[str, Any] | None:
    for cls, attrs in _BUILTIN_STATE.items():
        if isinstance(cb, cls):
            return {a: _plain(getattr(cb, a, None)) for a in attrs}
    if callable(getattr(cb, "get_state", None)) and callable(getattr(cb, "set_state", None)):
        return dict(cb.get_state())
    return None


def _plain(value: Any) -> Any:
    # numpy and tensor scalars become Python numbers, so the header stays JSON.
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return np.asarray(value).item()


def _pairs(
    kind: str, variables: list, arrays: dict[str, np.ndarray], header: dict[str, Any], *, prefix: str | None = None
) -> list[tuple[Any, np.ndarray]]:
    saved_paths = header.get(kind, [])
    if len(saved_paths) != len(variables):
        raise CheckpointError(
            f"The checkpoint holds {len(saved_paths)} {kind} variables but the {kind} has {len(variables)}. "
            "The model or optimizer changed since this run started: restore the original code, or start a new run name."
        )
    pairs = []
    for i, (variable, saved_path) in enumerate(zip(variables, saved_paths)):
        value = arrays[f"{prefix or kind}.{i:05d}"]
        if tuple(variable.shape) != value.shape:
            raise CheckpointError(
                f"{kind} variable {i} ({variable.path}) has shape {tuple(variable.shape)} but the checkpoint's "
                f"({saved_path}) has {value.shape}. The model changed since this run started: restore the "
                "original code, or start a new run name."
            )
        pairs.append((variable, value))
    return pairs
