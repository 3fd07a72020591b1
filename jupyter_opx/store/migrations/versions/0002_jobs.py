"""Jobs, their state, runs with logs and metrics, and the scheduler lease.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
DIGEST = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("notebook_path", sa.Text, nullable=True),
        sa.Column("notebook_digest", DIGEST, nullable=False),
        sa.Column("params", sa.JSON, nullable=True),
        sa.Column("defaults", sa.JSON, nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_jobs_name_version"),
    )
    op.create_table(
        "job_state",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("enabled", sa.Integer, nullable=False),
        sa.Column("last_fire", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_name", sa.String(128), nullable=False),
        sa.Column("job_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("scheduled_for", TS, nullable=True),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("resolved", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("cells_done", sa.Integer, nullable=False),
        sa.Column("cells_total", sa.Integer, nullable=False),
        sa.Column("error", sa.JSON, nullable=True),
        sa.Column("output_digest", DIGEST, nullable=True),
        sa.Column("html_digest", DIGEST, nullable=True),
        sa.Column("executor", sa.String(256), nullable=False),
        sa.Column("worker", sa.String(256), nullable=True),
        sa.Column("cancel_requested", sa.Integer, nullable=False),
        sa.UniqueConstraint("job_name", "scheduled_for", name="uq_runs_job_scheduled_for"),
    )
    op.create_index("ix_runs_job_name_id", "runs", ["job_name", "id"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "run_logs",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("stream", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("ix_run_logs_run_id_seq", "run_logs", ["run_id", "seq"])
    op.create_table(
        "run_metrics",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("value", sa.JSON, nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_run_metrics_run_id", "run_metrics", ["run_id"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("leases", "run_metrics", "run_logs", "runs", "job_state", "jobs"):
        op.drop_table(table)
