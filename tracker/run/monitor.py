"""Which metric defines a run's best epoch, and whether lower or higher of it is better.

The user may name both (``monitor=``, ``mode=``); else a resumed run keeps what it recorded; else
the framework's adapter settles them (`Monitor.resolve`). Without an adapter to ask, lower is better.

Example:
    >>> monitor = Monitor("cnn", "val_accuracy", "auto")
    >>> monitor.resolve("val_loss", lambda name: "max")
    >>> monitor.settle({"val_accuracy": 0.9, "loss": 0.3})
    ('val_accuracy', 'max')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tracker.warn import warn_user


class Monitor:
    """One run's monitor and mode, settled once, at its first commit."""

    def __init__(self, run_name: str, name: str | None, mode: str) -> None:
        self._run_name = run_name
        self._given = name
        #: The metric that defines the best epoch, and whether "min" or "max" of it is best; None until known.
        self.name: str | None = name
        self.mode: str | None = None if mode == "auto" else mode
        #: Whether the adapter could not say which direction of the monitor is better.
        self._guessed = False

    def recorded(self, name: str | None, mode: str | None) -> None:
        """The run being resumed recorded this monitor: keep it, unless the user named one."""
        if self._given is None and name:
            self.name, self.mode = name, mode or self.mode

    def resolve(self, default: str, direction: Callable[[str], str | None]) -> None:
        """Settle what is still unknown: ``default`` is the monitor when none is named or recorded, and
        ``direction(name)`` says whether ``"min"`` or ``"max"`` of a metric is better, or None when it cannot tell."""
        if self.name is None:
            self.name = default
        if self.mode is None:
            self.mode = direction(self.name)
            self._guessed = self.mode is None

    def settle(self, values: Mapping[str, float]) -> tuple[str, str] | None:
        """The monitor and mode to record, given the first commit's metrics; None when there is no monitor.

        Warns when the monitor is not among ``values``, or when its direction had to be guessed.
        """
        if self.name is None:
            return None  # no monitor named, and no integration to choose one: no best epoch
        mode = self.mode or "min"  # without an integration to ask, lower is better
        if self.name not in values:
            warn_user(
                f"Run {self._run_name!r}: monitor {self.name!r} is not among the metrics "
                f"({', '.join(sorted(values))}); the best epoch will not be tracked."
            )
        elif self._guessed:
            warn_user(
                f"Run {self._run_name!r}: cannot tell whether a higher or a lower {self.name!r} is better; "
                "taking lower as better. Pass mode='max' or mode='min' to tracker.track to say which."
            )
        return self.name, mode
