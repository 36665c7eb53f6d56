"""Initial schema: runs, attempts, epochs, metrics.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("uid", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("monitor", sa.String(255)),
        sa.Column("mode", sa.String(3)),
        sa.Column("target_epochs", sa.Integer),
        sa.Column("checkpoint_dir", sa.Text, nullable=False),
        sa.Column("last_epoch", sa.Integer),
        sa.Column("best_epoch", sa.Integer),
        sa.Column("best_value", sa.Double),
        sa.Column("writer_attempt_id", sa.Integer),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("initial_epoch", sa.Integer, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("executable", sa.Text, nullable=False),
        sa.Column("argv", sa.Text, nullable=False),
        sa.Column("cwd", sa.Text, nullable=False),
        sa.Column("versions", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_attempts_run_id", "attempts", ["run_id"])
    op.create_table(
        "epochs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("attempt_id", sa.Integer, sa.ForeignKey("attempts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checkpoint_path", sa.Text),
        sa.Column("checkpoint_size", sa.BigInteger),
        sa.Column("checkpoint_sha256", sa.String(64)),
        sa.Column("checkpoint_deleted", sa.Boolean, nullable=False),
        sa.Column("superseded", sa.Boolean, nullable=False),
    )
    op.create_index("ix_epochs_run_epoch", "epochs", ["run_id", "superseded", "epoch"])
    op.create_index(
        "ux_epochs_live",
        "epochs",
        ["run_id", "epoch"],
        unique=True,
        sqlite_where=sa.text("NOT superseded"),
        postgresql_where=sa.text("NOT superseded"),
    )
    op.create_table(
        "metrics",
        sa.Column("epoch_id", sa.Integer, sa.ForeignKey("epochs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("value", sa.Double),
        sa.Column("superseded", sa.Boolean, nullable=False),
    )
    op.create_index("ix_metrics_curve", "metrics", ["run_id", "name", "superseded", "epoch", "value"])


def downgrade() -> None:
    op.drop_table("metrics")
    op.drop_table("epochs")
    op.drop_table("attempts")
    op.drop_table("runs")
