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
from collections.abc import Callable, Mapping
from typing import Any, Literal

from tracker.run import Run


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

    def attach(self, run: Run) -> Callable[[], None]:
        from tracker import keras as adapter

        return adapter.patch_fit(run)

    def callback(self, run: Run) -> object:
        from tracker.keras import TrackerCallback

        return TrackerCallback(run)


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
) -> Run:
    """Track the Keras ``fit`` call made inside the block; resume it if the run exists.

    Every epoch's weights and optimizer state go to a durable checkpoint file,
    then that epoch's metrics and the file's path, size and sha256 are committed
    in one transaction. Re-running the same script continues from the newest
    committed epoch whose file verifies.

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

    Returns:
        A `Run`, to use as a context manager.
    """
    return Run(
        name, db=db, checkpoint_dir=checkpoint_dir, config=config, monitor=monitor, mode=mode,
        keep_last=keep_last, keep_best=keep_best, force=force, storage_options=storage_options,
        integration=KERAS,
    )
