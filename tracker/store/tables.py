"""SQLAlchemy Core descriptions of the tables, used to build queries.

The schema itself is created only by the Alembic migrations in ``migrations/``;
``tests/test_store.py`` checks that these descriptions and the migrations agree.

A metric value is never NULL except to stand for NaN: SQLite stores a NaN REAL
as NULL, so the store writes NaN as NULL on every backend and reads NULL back as NaN.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
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
    # The attempt allowed to write; a commit from any other attempt is refused (fencing).
    sa.Column("writer_attempt_id", sa.Integer),
    # Free text from `tracker note`.
    sa.Column("note", sa.Text),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
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
    sa.Column("process_start", sa.String(64)),
    # Team mode (`tracker.spool`): the spool file on ``host`` its commits went through first, the newest of them
    # this database holds (a replay at or below it is skipped), and how far behind the spool it was when last heard.
    sa.Column("spool", sa.Text),
    sa.Column("replicated_seq", sa.Integer),
    sa.Column("spool_pending", sa.Integer),
    sa.Column("spool_newest", sa.String(64)),
    sa.Column("spooled_at", sa.DateTime(timezone=True)),
)

epochs = sa.Table(
    "epochs",
    metadata,
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
    # The live epochs of a run, in order, from the index alone.
    sa.Index("ix_epochs_run_epoch", "run_id", "superseded", "epoch"),
    # The checkpoints a run still keeps (a handful), for retention and resume, without scanning every epoch.
    # Each dialect's own rendering of the queries' filter, so that the planner matches the index to them.
    sa.Index(
        "ix_epochs_kept",
        "run_id",
        "epoch",
        sqlite_where=sa.text("checkpoint_path IS NOT NULL AND checkpoint_deleted = 0"),
        postgresql_where=sa.text("checkpoint_path IS NOT NULL AND NOT checkpoint_deleted"),
    ),
    # At most one live row per epoch of a run: the database itself forbids a duplicate epoch.
    sa.Index(
        "ux_epochs_live",
        "run_id",
        "epoch",
        unique=True,
        sqlite_where=sa.text("NOT superseded"),
        postgresql_where=sa.text("NOT superseded"),
    ),
)

metrics = sa.Table(
    "metrics",
    metadata,
    sa.Column("epoch_id", sa.Integer, sa.ForeignKey("epochs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("epoch", sa.Integer, nullable=False),
    sa.Column("value", sa.Double),
    sa.Column("superseded", sa.Boolean, nullable=False),
    # One metric's curve is one range scan of this covering index.
    sa.Index("ix_metrics_curve", "run_id", "name", "superseded", "epoch", "value"),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    # `list --tag KEY=VALUE` looks runs up by tag.
    sa.Index("ix_tags_key_value", "key", "value"),
)

# Rows inside epochs: the step checkpoints (``checkpoint_every_steps``/``_seconds``, a save on SIGTERM)
# and the per-step metrics (``log_every_steps``). A row has a checkpoint, metrics, or both.
steps = sa.Table(
    "steps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("attempt_id", sa.Integer, sa.ForeignKey("attempts.id", ondelete="CASCADE"), nullable=False),
    # The epoch in progress, and how many of its batches were trained.
    sa.Column("epoch", sa.Integer, nullable=False),
    sa.Column("batch", sa.Integer, nullable=False),
    # The global step: batches trained in the run so far.
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("checkpoint_path", sa.Text),
    sa.Column("checkpoint_size", sa.BigInteger),
    sa.Column("checkpoint_sha256", sa.String(64)),
    sa.Column("checkpoint_deleted", sa.Boolean, nullable=False),
    sa.Column("superseded", sa.Boolean, nullable=False),
    sa.Index("ix_steps_run_step", "run_id", "superseded", "step"),
    sa.Index(
        "ix_steps_kept",
        "run_id",
        "step",
        sqlite_where=sa.text("checkpoint_path IS NOT NULL AND checkpoint_deleted = 0"),
        postgresql_where=sa.text("checkpoint_path IS NOT NULL AND NOT checkpoint_deleted"),
    ),
    # At most one live row per step of a run: the curve by step never has a step twice.
    sa.Index(
        "ux_steps_live",
        "run_id",
        "step",
        unique=True,
        sqlite_where=sa.text("NOT superseded"),
        postgresql_where=sa.text("NOT superseded"),
    ),
)

step_metrics = sa.Table(
    "step_metrics",
    metadata,
    sa.Column("step_id", sa.Integer, sa.ForeignKey("steps.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("value", sa.Double),
    sa.Column("superseded", sa.Boolean, nullable=False),
    # One metric's curve by step is one range scan of this covering index.
    sa.Index("ix_step_metrics_curve", "run_id", "name", "superseded", "step", "value"),
)

# A hyperparameter search: its kind (``grid``, ``random``, ``keras-tuner``, ``optuna``) and what it searches (JSON).
sweeps = sa.Table(
    "sweeps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# One trial of a sweep, known before its run exists. The run (by name) holds the curve and the lease; the trial
# holds what the run cannot: its parameters before it starts, its value, and failures that left no run behind.
trials = sa.Table(
    "trials",
    metadata,
    sa.Column("sweep_id", sa.Integer, sa.ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("run_name", sa.String(128), nullable=False, unique=True),
    sa.Column("params", sa.Text, nullable=False),
    # ``pending`` until the trial's objective returned (``completed``) or raised (``failed``).
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("value", sa.Double),
    sa.Column("error", sa.Text),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

#: The team view's access tokens (`python -m tracker.serve --team`), stored as their sha256 only.
tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
)

#: The keys that sign the team view's share links; the newest signs, rotating voids the older links.
signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("secret", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
