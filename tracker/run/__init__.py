"""A tracked run: the consistency protocol between checkpoint files and the database, and `track`.

The core of tracker: it knows no ML framework. `Run` is the protocol (start, commit, finish,
heartbeat); `track` wires a `Run` to Keras's ``fit`` through a small `Integration`.
"""

from tracker.run.adapter import Integration
from tracker.run.protocol import Run
from tracker.run.reader import Reader  # noqa: F401 - defined here, so that every Run can become one on a non-chief worker
from tracker.run.track import track
from tracker.run.tuner import track_tuner

__all__ = ["Integration", "Run", "track", "track_tuner"]
