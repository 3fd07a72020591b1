"""Feedback segments, API tokens, alert rules and their events.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
DIGEST = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "feedback_segments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("min_ts", TS, nullable=False),
        sa.Column("max_ts", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=True),
    )
    op.create_index("ix_feedback_segments_model_kind", "feedback_segments", ["model", "kind"])
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("scope", sa.String(256), nullable=False),
        sa.Column("hash", DIGEST, nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("last_used_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
    )
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("expr", sa.String(256), nullable=False),
        sa.Column("metric", sa.String(128), nullable=False),
        sa.Column("op", sa.String(4), nullable=False),
        sa.Column("threshold", sa.JSON, nullable=False),
        sa.Column("min_n", sa.Integer, nullable=False),
        sa.Column("window", sa.String(32), nullable=False),
        sa.Column("webhook", sa.Text, nullable=True),
        sa.Column("trigger_job", sa.String(128), nullable=True),
        sa.Column("enabled", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("since", TS, nullable=True),
        sa.Column("value", sa.JSON, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
    )
    op.create_index("ix_alert_rules_model", "alert_rules", ["model"])
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule_id", sa.Integer, sa.ForeignKey("alert_rules.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("value", sa.JSON, nullable=True),
        sa.Column("n", sa.BigInteger, nullable=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("notified", sa.Integer, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_alert_events_rule_id", "alert_events", ["rule_id"])


def downgrade() -> None:
    for table in ("alert_events", "alert_rules", "tokens", "feedback_segments"):
        op.drop_table(table)
