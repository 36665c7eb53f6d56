"""The database layer: every read and write of tracker's database, as plain SQLAlchemy Core.

`open_store` opens (and migrates) a database and returns a `Store`. The layer knows runs,
attempts, epochs and metrics; it knows nothing of Keras or of checkpoint files, and never
imports `tracker.checkpoint`.

Example:
    >>> store = open_store("tracker.db")            # doctest: +SKIP
    >>> store.get_run("cnn").last_epoch             # doctest: +SKIP
    11
"""

from tracker.store.store import Store, open_store

__all__ = ["Store", "open_store"]
