"""Alembic environment for tracker.

tracker runs migrations itself when it opens a database (`tracker.migrate`),
handing over the live connection it already holds the migration lock on.
There is deliberately no ``fileConfig`` here: it would reconfigure the logging
of whatever program opened the database.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "tracker's migrations run through tracker.migrate.upgrade(), which supplies a connection; "
        "open the database with tracker (any `python -m tracker` command) instead of the alembic CLI."
    )

context.configure(
    connection=connection,
    target_metadata=None,
    # SQLite cannot ALTER most things in place; batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    # Each revision in its own transaction is not needed: the caller holds one
    # transaction, under the migration lock, around the whole upgrade.
    transaction_per_migration=False,
)
context.run_migrations()
