"""`track`: a `Run` wired to Keras's ``fit``. The one place where the core meets a framework.

Importing this module imports no framework: Keras is imported when a ``track`` block
is entered (or ``run.callback`` is asked for), through `KerasIntegration`.

Example:
    ```python
    with tracker.track("cnn-baseline", config={"lr": 1e-3}):
        model.fit(x, y, epochs=20, validation_split=0.1)
    ```
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from tracker.run.adapter import TrainingRun
from tracker.run.options import RunOptions
from tracker.run.protocol import Run


class KerasIntegration:
    """The Keras adapter (`tracker.keras`) as a `tracker.run.Integration`, imported only when used."""

    versions = ("keras", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch")

    def environment(self) -> dict[str, str]:
        # Which of the installed frameworks this process trains with. Asked of Keras itself, which
        # settles it at import from $KERAS_BACKEND or ~/.keras/keras.json; without Keras, attach
        # fails the attempt with the reason right after.
        try:
            import keras
        except ImportError:
            return {}
        return {"keras_backend": keras.backend.backend()}

    def attach(self, run: TrainingRun) -> Callable[[], None]:
        from tracker import keras as adapter

        return adapter.patch_fit(run)

    def callback(self, run: TrainingRun) -> object:
        from tracker.keras import callback_for

        return callback_for(run)


KERAS = KerasIntegration()


def track(
    name: str,
    *,
    db: str | os.PathLike[str] | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    config: Mapping[str, Any] | None = None,
    monitor: str | None = None,
    mode: Literal["auto", "min", "max"] = "auto",
    keep_last: int | None = 3,
    keep_best: bool = True,
    force: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    checkpoint_every_steps: int | None = None,
    checkpoint_every_seconds: float | None = None,
    keep_last_steps: int | None = 2,
    log_every_steps: int | None = None,
    save_on_signal: int | Sequence[int] | None = signal.SIGTERM,
) -> Run:
    """Track the Keras ``fit`` call made inside the block; resume it if the run exists.

    Every epoch's weights and optimizer state go to a durable checkpoint file,
    then that epoch's metrics and the file's path, size and sha256 are committed
    in one transaction. Re-running the same script continues from the newest
    committed checkpoint whose file verifies: an epoch end, or, with the step
    options, a batch inside an epoch (training then continues at the next batch).

    Example:
        ```python
        with tracker.track("cnn-baseline", config={"lr": 1e-3}) as run:
            model.fit(x, y, epochs=20, validation_split=0.1)
        ```
        Without patching ``fit``:
        ```python
        with tracker.track("cnn-baseline") as run:
            model.fit(x, y, epochs=20, callbacks=[run.callback], initial_epoch=run.initial_epoch)
        ```

    Args:
        name: The run's name: letters, digits and ``._=+@,-``; it also names its checkpoint folder.
        db: A SQLite file path or a SQLAlchemy URL. Defaults to ``$TRACKER_DB``, else ``./tracker.db``.
        checkpoint_dir: The folder under which the run's folder of checkpoints is made: a local
            path, or a URL of shared storage such as ``s3://bucket/prefix`` (through fsspec).
            Defaults to ``$TRACKER_CHECKPOINT_DIR``, else ``./checkpoints``.
        config: JSON-able hyperparameters stored with the run. Defaults to None.
        monitor: The metric that defines the best epoch. Defaults to ``val_loss``,
            or ``loss`` when there is no validation.
        mode: Whether lower (``"min"``) or higher (``"max"``) ``monitor`` is better;
            ``"auto"`` asks Keras, which knows each compiled metric's direction. Defaults to ``"auto"``.
        keep_last: How many of the newest checkpoints to keep; None keeps all. Defaults to 3.
        keep_best: Also keep the best epoch's checkpoint. Defaults to True.
        force: Take over the run even if another live process is writing it. Defaults to False.
        storage_options: Options for the fsspec filesystem of a ``checkpoint_dir`` URL, such as
            ``{"endpoint_url": ...}``; never recorded. Defaults to None (the provider's environment).
        checkpoint_every_steps: Also checkpoint inside epochs, at every multiple of this many
            training batches (global step). Defaults to None (epoch ends only).
        checkpoint_every_seconds: Checkpoint at the first batch boundary or epoch end at least this
            many seconds after the previous checkpoint; epoch ends in between commit their metrics
            without a file. Defaults to None (every epoch end).
        keep_last_steps: How many of the newest checkpoints taken inside epochs to keep, besides
            ``keep_last`` epoch checkpoints; None keeps all. Defaults to 2.
        log_every_steps: Record the running batch metrics Keras reports every this many batches,
            for ``tracker.curves(name, by="step")``. Defaults to None (epochs only).
        save_on_signal: The signal(s) on which the block saves a checkpoint at the next batch
            boundary and stops the process with exit status 143 (the attempt is recorded as
            ``preempted``); None handles none. Only in the main thread. Defaults to ``signal.SIGTERM``.

    Returns:
        A `Run`, to use as a context manager.
    """
    # Every parameter of track is the RunOptions field of the same name (tests/test_run_parts.py checks it).
    return Run.from_options(RunOptions(**locals()), KERAS)

