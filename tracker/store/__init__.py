"""The database layer: every read and write of tracker's database, as plain SQLAlchemy Core.

`open_store` opens (and migrates) a database and returns a `Store`. The layer knows runs,
attempts, epochs and metrics; it knows nothing of Keras or of checkpoint files, and never
imports `tracker.checkpoint`.

`Store` is one object composed of parts (`tracker.store.store`): the engine and its transactions
(`session`), reads (`reads`), attempts and the writer's lease (`writers`), fenced commits and
retention (`commits`), and the catalogue of tags, notes, renames, deletes and imports (`catalogue`),
over the row mappers (`rows`), the tables (`tables`), the engine set-up (`db`) and `migrate`.

Example:
    >>> store = open_store("tracker.db")            # doctest: +SKIP
    >>> store.get_run("cnn").last_epoch             # doctest: +SKIP
    11
"""

from tracker.store.store import Store, open_store

__all__ = ["Store", "open_store"]
