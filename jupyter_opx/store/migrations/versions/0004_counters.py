"""64-bit counters on PostgreSQL: the change sequence, run log, metric and segment keys.

They grow with every visible write, log line, metric and feedback batch; a
PostgreSQL ``SERIAL`` stops at 2**31 - 1. SQLite's INTEGER PRIMARY KEY is
64-bit already (and must stay INTEGER to remain the rowid): nothing to do there.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COUNTERS = [
    ("changes", "seq"),
    ("run_logs", "seq"),
    ("run_metrics", "id"),
    ("feedback_segments", "id"),
]


def _retype(type_: type[sa.types.TypeEngine], sql_type: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table, column in COUNTERS:
        op.alter_column(table, column, type_=type_, existing_nullable=False)
        sequence = bind.execute(
            sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table, "c": column}
        ).scalar()
        if sequence:
            op.execute(f"ALTER SEQUENCE {sequence} AS {sql_type}")


def upgrade() -> None:
    _retype(sa.BigInteger, "bigint")


def downgrade() -> None:
    _retype(sa.Integer, "integer")
