"""Record when each attempt's process started, so that a reused pid is not taken for it.

In containers the training process is often pid 1 at every restart: a pid alone
says nothing about whether the recorded process is still alive.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # "<boot id>:<start time in clock ticks since boot>" from /proc; NULL where unknown.
    op.add_column("attempts", sa.Column("process_start", sa.String(64)))


def downgrade() -> None:
    # In place, not through a batch copy: on SQLite, dropping the copied table would cascade to every epoch.
    op.drop_column("attempts", "process_start")
