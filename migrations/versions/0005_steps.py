"""Step checkpoints and per-step metrics: rows inside epochs, for ``checkpoint_every_steps``,
``checkpoint_every_seconds``, the save on SIGTERM and ``log_every_steps``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Each dialect's own rendering of the queries' filter, so that the planner matches the index to them.
_SQLITE_KEPT = "checkpoint_path IS NOT NULL AND checkpoint_deleted = 0"
_POSTGRESQL_KEPT = "checkpoint_path IS NOT NULL AND NOT checkpoint_deleted"


def upgrade() -> None:
    op.create_table(
        "steps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("attempt_id", sa.Integer, sa.ForeignKey("attempts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("batch", sa.Integer, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checkpoint_path", sa.Text),
        sa.Column("checkpoint_size", sa.BigInteger),
        sa.Column("checkpoint_sha256", sa.String(64)),
        sa.Column("checkpoint_deleted", sa.Boolean, nullable=False),
        sa.Column("superseded", sa.Boolean, nullable=False),
    )
    op.create_index("ix_steps_run_step", "steps", ["run_id", "superseded", "step"])
    op.create_index(
        "ix_steps_kept", "steps", ["run_id", "step"],
        sqlite_where=sa.text(_SQLITE_KEPT), postgresql_where=sa.text(_POSTGRESQL_KEPT),
    )
    op.create_index(
        "ux_steps_live", "steps", ["run_id", "step"], unique=True,
        sqlite_where=sa.text("NOT superseded"), postgresql_where=sa.text("NOT superseded"),
    )
    op.create_table(
        "step_metrics",
        sa.Column("step_id", sa.Integer, sa.ForeignKey("steps.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("value", sa.Double),
        sa.Column("superseded", sa.Boolean, nullable=False),
    )
    op.create_index("ix_step_metrics_curve", "step_metrics", ["run_id", "name", "superseded", "step", "value"])


def downgrade() -> None:
    op.drop_index("ix_step_metrics_curve", "step_metrics")
    op.drop_table("step_metrics")
    op.drop_index("ux_steps_live", "steps")
    op.drop_index("ix_steps_kept", "steps")
    op.drop_index("ix_steps_run_step", "steps")
    op.drop_table("steps")
