"""Initial schema: blobs, snapshots, their data, aliases and history, change sequence.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
DIGEST = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("digest", DIGEST, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("snapshots.id"), nullable=True),
        sa.Column("model_digest", DIGEST, nullable=True),
        sa.Column("model_codec", sa.String(16), nullable=True),
        sa.Column("model_class", sa.String(256), nullable=True),
        sa.Column("model_size", sa.BigInteger, nullable=True),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("input_schema", sa.JSON, nullable=False),
        sa.Column("environment", sa.JSON, nullable=False),
        sa.Column("provenance", sa.JSON, nullable=False),
        sa.Column("source_digest", DIGEST, nullable=True),
        sa.Column("reference_key", sa.String(128), nullable=True),
        sa.UniqueConstraint("name", "version", name="uq_snapshots_name_version"),
    )
    op.create_index("ix_snapshots_created_at", "snapshots", ["created_at"])
    op.create_table(
        "snapshot_data",
        sa.Column("snapshot_id", sa.Integer, sa.ForeignKey("snapshots.id"), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("columns", sa.Integer, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("schema", sa.JSON, nullable=False),
        sa.Column("summary_digest", DIGEST, nullable=True),
        sa.Column("reused_from", sa.Integer, sa.ForeignKey("snapshots.id"), nullable=True),
    )
    op.create_index("ix_snapshot_data_digest", "snapshot_data", ["digest"])
    op.create_table(
        "aliases",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "alias_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("previous_version", sa.Integer, nullable=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("by", sa.String(128), nullable=False),
    )
    op.create_index("ix_alias_history_name_alias", "alias_history", ["name", "alias"])
    op.create_table(
        "data_cache",
        sa.Column("fingerprint", DIGEST, primary_key=True),
        sa.Column("quick", DIGEST, nullable=True),
        sa.Column("digest", DIGEST, nullable=False),
        sa.Column("summary_digest", DIGEST, nullable=True),
        sa.Column("meta", sa.JSON, nullable=False),
    )
    op.create_index("ix_data_cache_quick", "data_cache", ["quick"])
    op.create_table(
        "changes",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "changes",
        "data_cache",
        "alias_history",
        "aliases",
        "snapshot_data",
        "snapshots",
        "blobs",
    ):
        op.drop_table(table)
