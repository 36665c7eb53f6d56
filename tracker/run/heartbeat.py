"""An attempt's heartbeat: a daemon thread that tells the database, every `tracker.records.heartbeat_interval`, that it is alive.

A process that dies stops beating; once its heartbeat is older than the lease (`tracker.records.lease`, `$TRACKER_LEASE_SECONDS`), its attempt no
longer counts as alive (`tracker.records.AttemptRow.alive`) and another process may take the run over.

Example:
    ```python
    heartbeat = Heartbeat(lambda: store.heartbeat(attempt_id), run_name="cnn")
    heartbeat.start()
    ...  # training
    heartbeat.stop()
    ```
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tracker.errors import TrackerError
from tracker.records import heartbeat_interval

log = logging.getLogger(__name__)


class Heartbeat:
    """Calls ``beat()`` every `tracker.records.heartbeat_interval` on its own thread, from `start` to `stop`; a failed beat only warns."""

    def __init__(self, beat: Callable[[], None], *, run_name: str) -> None:
        self._beat = beat
        self._run_name = run_name
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"tracker-heartbeat-{run_name}", daemon=True)

    def start(self) -> None:
        """Start beating, one interval from now."""
        self._thread.start()

    def stop(self) -> None:
        """Stop beating, and wait until a beat in progress is done."""
        self._stopped.set()
        self._thread.join()

    def _loop(self) -> None:
        interval = heartbeat_interval().total_seconds()
        while not self._stopped.wait(interval):
            try:
                self._beat()
            except TrackerError as e:
                log.warning("Run %r: heartbeat failed: %s", self._run_name, e)
