"""Index of the checkpoints a run still keeps, so retention and resume read only those.

Without it, every epoch's retention step scanned all of the run's epochs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Each dialect's own rendering of the queries' filter, so that the planner matches the index to them.
_SQLITE_WHERE = "checkpoint_path IS NOT NULL AND checkpoint_deleted = 0"
_POSTGRESQL_WHERE = "checkpoint_path IS NOT NULL AND NOT checkpoint_deleted"


def upgrade() -> None:
    op.create_index(
        "ix_epochs_kept", "epochs", ["run_id", "epoch"],
        sqlite_where=sa.text(_SQLITE_WHERE), postgresql_where=sa.text(_POSTGRESQL_WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_epochs_kept", table_name="epochs")
