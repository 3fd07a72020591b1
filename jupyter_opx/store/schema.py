"""The metadata tables, in SQLAlchemy Core.

Portable types only (no SQLite-only or PostgreSQL-only constructs): the same
schema and queries run on the embedded SQLite default and on PostgreSQL.
Changing a table means adding an Alembic revision under ``migrations/versions``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

metadata = MetaData()


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that writes and reads aware UTC on every backend.

    PostgreSQL's ``timestamptz`` converts by itself; SQLite keeps no offset and
    would store an aware time of another zone as its wall-clock time. A naive
    value means UTC, on both. (The column DDL is plain ``DateTime(timezone=True)``.)
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return _utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return _utc(value)


#: a sha256 hex digest
Digest = String(64)

#: an ever-growing counter key: 64-bit on PostgreSQL (revision 0004); on SQLite an
#: INTEGER PRIMARY KEY is 64-bit already, and must stay INTEGER to remain the rowid
Counter = BigInteger().with_variant(Integer(), "sqlite")

blobs = Table(
    "blobs",
    metadata,
    Column("digest", Digest, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("parent_id", Integer, ForeignKey("snapshots.id"), nullable=True),
    # model: digest of the artifact, the codec that wrote it, its class name
    Column("model_digest", Digest, nullable=True),
    Column("model_codec", String(16), nullable=True),
    Column("model_class", String(256), nullable=True),
    Column("model_size", BigInteger, nullable=True),
    Column("metrics", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("input_schema", JSON, nullable=False),
    Column("environment", JSON, nullable=False),
    Column("provenance", JSON, nullable=False),
    # executed cells and notebook content live in a blob (they can be large)
    Column("source_digest", Digest, nullable=True),
    Column("reference_key", String(128), nullable=True),
    UniqueConstraint("name", "version", name="uq_snapshots_name_version"),
)
Index("ix_snapshots_created_at", snapshots.c.created_at)

snapshot_data = Table(
    "snapshot_data",
    metadata,
    Column("snapshot_id", Integer, ForeignKey("snapshots.id"), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("digest", Digest, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("columns", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("schema", JSON, nullable=False),
    Column("summary_digest", Digest, nullable=True),
    # the earlier snapshot whose identical data this entry reuses (lineage)
    Column("reused_from", Integer, ForeignKey("snapshots.id"), nullable=True),
)
Index("ix_snapshot_data_digest", snapshot_data.c.digest)

aliases = Table(
    "aliases",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("alias", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("updated_by", String(128), nullable=False),
)

alias_history = Table(
    "alias_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("previous_version", Integer, nullable=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("by", String(128), nullable=False),
)
Index("ix_alias_history_name_alias", alias_history.c.name, alias_history.c.alias)

#: DataFrame fingerprint -> encoded blob and summary, so unchanged data is not re-encoded
data_cache = Table(
    "data_cache",
    metadata,
    Column("fingerprint", Digest, primary_key=True),
    # a cheap key equal data always shares (see codecs.quick_key)
    Column("quick", Digest, nullable=True, index=True),
    Column("digest", Digest, nullable=False),
    Column("summary_digest", Digest, nullable=True),
    Column("meta", JSON, nullable=False),
)

changes = Table(
    "changes",
    metadata,
    Column("seq", Counter, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("subject", String(256), nullable=False),
)

# -- jobs and runs (revision 0002) ---------------------------------------------------------
jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("notebook_path", Text, nullable=True),
    Column("notebook_digest", Digest, nullable=False),
    # parsed parameters cell (None: the notebook has none) and the job's defaults
    Column("params", JSON, nullable=True),
    Column("defaults", JSON, nullable=False),
    # everything else about how it runs: schedule, tz, timeout, retries, outputs,
    # retention, env, notify, kernel, catchup, executor
    Column("settings", JSON, nullable=False),
    UniqueConstraint("name", "version", name="uq_jobs_name_version"),
)

job_state = Table(
    "job_state",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("enabled", Integer, nullable=False),
    # the last cron fire time the scheduler handled (run or skipped): restarts resume here
    Column("last_fire", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_name", String(128), nullable=False),
    Column("job_version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("scheduled_for", UTCDateTime(), nullable=True),
    Column("params", JSON, nullable=False),
    Column("resolved", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("heartbeat_at", UTCDateTime(), nullable=True),
    Column("attempt", Integer, nullable=False),
    Column("cells_done", Integer, nullable=False),
    Column("cells_total", Integer, nullable=False),
    Column("error", JSON, nullable=True),
    Column("output_digest", Digest, nullable=True),
    Column("html_digest", Digest, nullable=True),
    Column("executor", String(256), nullable=False),
    Column("worker", String(256), nullable=True),
    Column("cancel_requested", Integer, nullable=False),
    # a scheduled fire time yields at most one run, whatever restarts or failovers happen
    UniqueConstraint("job_name", "scheduled_for", name="uq_runs_job_scheduled_for"),
)
Index("ix_runs_job_name_id", runs.c.job_name, runs.c.id)
Index("ix_runs_status", runs.c.status)

run_logs = Table(
    "run_logs",
    metadata,
    Column("seq", Counter, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("stream", String(16), nullable=False),
    Column("text", Text, nullable=False),
)
Index("ix_run_logs_run_id_seq", run_logs.c.run_id, run_logs.c.seq)

run_metrics = Table(
    "run_metrics",
    metadata,
    Column("id", Counter, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=True),
    Column("name", String(128), nullable=False),
    Column("value", JSON, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
)
Index("ix_run_metrics_run_id", run_metrics.c.run_id)

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(256), nullable=False),
    Column("acquired_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
)

# -- feedback, tokens and alerts (revision 0003) -------------------------------------------
#: each ingested batch is one immutable parquet segment (a blob) plus this catalog row
feedback_segments = Table(
    "feedback_segments",
    metadata,
    Column("id", Counter, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("digest", Digest, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("min_ts", UTCDateTime(), nullable=False),
    Column("max_ts", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("run_id", Integer, nullable=True),
)
Index("ix_feedback_segments_model_kind", feedback_segments.c.model, feedback_segments.c.kind)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("scope", String(256), nullable=False),
    # sha256 of the secret: the token itself is shown once and never stored
    Column("hash", Digest, nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("last_used_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(128), nullable=False),
    Column("expr", String(256), nullable=False),
    Column("metric", String(128), nullable=False),
    Column("op", String(4), nullable=False),
    Column("threshold", JSON, nullable=False),
    Column("min_n", Integer, nullable=False),
    Column("window", String(32), nullable=False),
    Column("webhook", Text, nullable=True),
    Column("trigger_job", String(128), nullable=True),
    Column("enabled", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("since", UTCDateTime(), nullable=True),
    Column("value", JSON, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(128), nullable=False),
)
Index("ix_alert_rules_model", alert_rules.c.model)

alert_events = Table(
    "alert_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule_id", Integer, ForeignKey("alert_rules.id"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("value", JSON, nullable=True),
    Column("n", BigInteger, nullable=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("notified", Integer, nullable=False),
    Column("run_id", Integer, nullable=True),
    Column("detail", JSON, nullable=False),
)
Index("ix_alert_events_rule_id", alert_events.c.rule_id)
