"""A run's signal handling: save-and-stop on a stop signal (SIGTERM by default), and Ctrl-C held off at the end.

While a ``track`` block runs in the main thread, a stop signal does not kill the process: it asks the
adapter to save a checkpoint at the next batch boundary and then raise `tracker.errors.Preempted`
(exit status 143, the attempt recorded as ``preempted``). Outside training there is nothing newer to
save, so the signal raises `Preempted` at once.

Example:
    ```python
    stops = StopSignals("cnn", (signal.SIGTERM,))
    stops.catch()
    stops.on_stop = training_loop.stop_soon  # while training runs
    ...
    stops.release()  # the handlers that were there before are back
    ```
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from tracker.errors import Preempted

log = logging.getLogger(__name__)


class StopSignals:
    """The stop signals of one run: caught from `catch` to `release`, in the main thread only (Python's rule)."""

    def __init__(self, run_name: str, signals: tuple[int, ...]) -> None:
        self._run_name = run_name
        self._signals = signals
        self._previous: dict[int, Any] = {}
        #: The name of the stop signal that arrived (``"SIGTERM"``); None until one does.
        self.requested: str | None = None
        #: While training runs, what a stop signal calls to end the loop at the next batch boundary; None otherwise.
        self.on_stop: Callable[[], None] | None = None

    def catch(self) -> None:
        """Install the handlers, remembering the ones they replace; in another thread than the main one, do nothing."""
        if not self._signals or threading.current_thread() is not threading.main_thread():
            return
        for signum in self._signals:
            previous = signal.signal(signum, self.received)
            # Caught already: what was there before the first catch is what `release` must put back.
            self._previous.setdefault(signum, previous)

    def release(self) -> None:
        """Put back the handlers that `catch` replaced. Safe to call when nothing was caught."""
        handlers, self._previous = self._previous, {}
        for signum, previous in handlers.items():
            # None: the handler was not set from Python; the default is the best that can be put back.
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)

    def received(self, signum: int, frame: object) -> None:
        """The handler: note the signal, and stop training soon, or at once when none runs."""
        name = signal.Signals(signum).name
        if self.requested:
            log.warning("Run %r: %s again; already saving a checkpoint before stopping.", self._run_name, name)
            return
        self.requested = name
        if self.on_stop is None:
            # Not training: the last checkpoint is all there is to save.
            raise Preempted(f"Run {self._run_name!r} stopped by {name} outside training; its newest checkpoint is its resume point.")
        log.warning("Run %r: %s received; saving a checkpoint at the next batch boundary, then stopping.", self._run_name, name)
        self.on_stop()


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold off Ctrl-C while the end of an attempt is recorded; raise it afterwards.

    Example:
        ```python
        with sigint_deferred():
            store.finish_attempt(run_id, attempt_id, Status.COMPLETED)  # a Ctrl-C here is raised after it
        ```
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt
