"""A tracked run's options, validated once: `RunOptions`, which `tracker.track` and `Run` share.

Every argument is checked when the options are made, before any database, folder or training is
touched, and a wrong one raises ValueError or TypeError in Keras's "Received: ... Expected ..." form.

Example:
    >>> options = RunOptions("cnn", keep_last=5, save_on_signal=None)
    >>> options.retention, options.stop_signals
    (Retention(keep_last=5, keep_best=True, keep_last_steps=2), ())
    >>> RunOptions("cnn", keep_last=0)
    Traceback (most recent call last):
    ...
    ValueError: Invalid value for argument `keep_last`. Received: keep_last=0. Expected an integer >= 1, or None to keep every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from tracker import settings
from tracker.records import Retention
from tracker.run.schedule import CheckpointSchedule


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How one run is tracked: the arguments of `tracker.track` and `tracker.Run`, checked and normalized.

    Each field is the argument of the same name (see `tracker.track` for what each one means), with
    the same default. After validation, ``name`` is a safe run name, ``config`` a JSON-able copy,
    ``storage_options`` a dict, and ``stop_signals`` the `signal.Signals` that ``save_on_signal`` names.

    Example:
        ```python
        options = RunOptions("cnn", checkpoint_every_steps=500, log_every_steps=50)
        run = Run.from_options(options)
        ```

    Raises:
        ValueError: An argument has a value outside its range, such as ``keep_last=0`` or ``mode="lowest"``.
        TypeError: ``name`` is not a string, or ``config`` is not a dict of JSON-able values.
    """

    name: str
    _: dataclasses.KW_ONLY
    db: str | os.PathLike[str] | None = None
    checkpoint_dir: str | os.PathLike[str] | None = None
    config: Mapping[str, Any] | None = None
    monitor: str | None = None
    mode: str = "auto"
    keep_last: int | None = 3
    keep_best: bool = True
    force: bool = False
    storage_options: Mapping[str, Any] | None = None
    checkpoint_every_steps: int | None = None
    checkpoint_every_seconds: float | None = None
    keep_last_steps: int | None = 2
    log_every_steps: int | None = None
    save_on_signal: int | Sequence[int] | None = signal.SIGTERM
    #: The signals that make the run save a checkpoint at the next batch boundary and stop: ``save_on_signal``, as a tuple.
    stop_signals: tuple[int, ...] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        # In the order the arguments were always checked, so that the first wrong one is the one reported.
        _set(self, "name", settings.validate_run_name(self.name))
        if self.mode not in ("auto", "min", "max"):
            raise ValueError(f"Invalid value for argument `mode`. Received: mode={self.mode!r}. Expected 'auto', 'min' or 'max'.")
        for arg, value in (("keep_last", self.keep_last), ("keep_last_steps", self.keep_last_steps)):
            _check_count(arg, value, "or None to keep every checkpoint")
        _check_count("checkpoint_every_steps", self.checkpoint_every_steps, "or None for no checkpoint inside epochs")
        _check_count("log_every_steps", self.log_every_steps, "or None to log epochs only")
        seconds = self.checkpoint_every_seconds
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0):
            raise ValueError(
                f"Invalid value for argument `checkpoint_every_seconds`. Received: checkpoint_every_seconds={seconds!r}. "
                "Expected a number of seconds > 0, or None."
            )
        _set(self, "stop_signals", _signals(self.save_on_signal))
        _set(self, "config", _json_config(self.config))
        _set(self, "storage_options", dict(self.storage_options or {}))

    @property
    def retention(self) -> Retention:
        """Which checkpoints the run keeps: ``keep_last``, ``keep_best`` and ``keep_last_steps`` together."""
        return Retention(self.keep_last, self.keep_best, self.keep_last_steps)

    def schedule(self) -> CheckpointSchedule:
        """A new `CheckpointSchedule` for ``checkpoint_every_steps`` and ``checkpoint_every_seconds`` (it keeps its own clock)."""
        return CheckpointSchedule(every_steps=self.checkpoint_every_steps, every_seconds=self.checkpoint_every_seconds)


def _set(options: RunOptions, field: str, value: object) -> None:
    object.__setattr__(options, field, value)  # the normalized value, once, while the frozen options are made


def _check_count(arg: str, value: object, otherwise: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"Invalid value for argument `{arg}`. Received: {arg}={value!r}. Expected an integer >= 1, {otherwise}.")


def _signals(save_on_signal: int | Sequence[int] | None) -> tuple[int, ...]:
    if save_on_signal is None or save_on_signal is False:
        return ()
    wanted = [save_on_signal] if isinstance(save_on_signal, int) else list(save_on_signal)
    valid = set(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}
    for s in wanted:
        if isinstance(s, bool) or not isinstance(s, int) or s not in valid:
            raise ValueError(
                f"Invalid value for argument `save_on_signal`. Received: save_on_signal={save_on_signal!r}. "
                "Expected a signal such as signal.SIGTERM, a list of them, or None to not handle any."
            )
    named = [signal.Signals(s) for s in wanted]
    twice = next((s for i, s in enumerate(named) if s in named[:i]), None)
    if twice is not None:
        raise ValueError(
            f"Invalid value for argument `save_on_signal`. Received: save_on_signal={save_on_signal!r}. "
            f"{twice.name} is named twice: name each signal once."
        )
    return tuple(named)


def _json_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TypeError(f"Invalid value for argument `config`. Received: {type(config).__name__}. Expected a dict of JSON-able hyperparameters.")
    try:
        return json.loads(json.dumps(dict(config), allow_nan=True))
    except (TypeError, ValueError) as e:
        raise TypeError(f"Invalid value for argument `config`: it must be JSON-able ({e}).") from e
