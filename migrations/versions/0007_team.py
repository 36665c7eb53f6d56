"""Team mode: the local-first spool's replication marks on attempts, and the team view's tokens and signing keys.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The spool file on the attempt's host that its commits went through first (None: written directly).
    op.add_column("attempts", sa.Column("spool", sa.Text))
    # The newest of the spool's commits that this database holds: a replayed commit at or below it is skipped.
    op.add_column("attempts", sa.Column("replicated_seq", sa.Integer))
    # How many commits waited in the spool when the writer was last heard from, and when that was.
    op.add_column("attempts", sa.Column("spool_pending", sa.Integer))
    op.add_column("attempts", sa.Column("spool_newest", sa.String(64)))
    op.add_column("attempts", sa.Column("spooled_at", sa.DateTime(timezone=True)))
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        # sha256 of the token: the token itself is shown once, when it is created, and stored nowhere.
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        # The HMAC key of share links: rotating it (a new row) voids every link signed with the old one.
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("signing_keys")
    op.drop_table("tokens")
    # In place, not through a batch copy: on SQLite, dropping the copied table would cascade to every epoch.
    for column in ("spooled_at", "spool_newest", "spool_pending", "replicated_seq", "spool"):
        op.drop_column("attempts", column)
