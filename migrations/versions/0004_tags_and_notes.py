"""Tags and a note on each run, for ``tracker tag``, ``tracker note`` and ``tracker list --tag``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("note", sa.Text))
    op.create_table(
        "tags",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    # `list --tag KEY=VALUE` looks runs up by tag.
    op.create_index("ix_tags_key_value", "tags", ["key", "value"])


def downgrade() -> None:
    op.drop_index("ix_tags_key_value", "tags")
    op.drop_table("tags")
    # Not batch mode: on SQLite it would copy and drop the runs table, and with foreign keys on,
    # dropping it deletes every epoch through ON DELETE CASCADE. SQLite >= 3.35 drops a column in place.
    op.drop_column("runs", "note")
