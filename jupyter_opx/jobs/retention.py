"""Retention: keep the outputs of the last N runs of a job; metadata stays."""

from __future__ import annotations

import contextlib

from sqlalchemy import Connection, or_, select, update

from ..store import schema
from ..store.db import Database
from ..workspace import Workspace

R = schema.runs


def _referenced(conn: Connection, digest: str, exclude_run: int) -> bool:
    """Whether anything but run ``exclude_run`` still points at ``digest``."""
    checks = [
        select(R.c.id).where(
            R.c.id != exclude_run, or_(R.c.output_digest == digest, R.c.html_digest == digest)
        ),
        select(schema.snapshots.c.id).where(
            or_(
                schema.snapshots.c.model_digest == digest,
                schema.snapshots.c.source_digest == digest,
            )
        ),
        select(schema.snapshot_data.c.snapshot_id).where(
            or_(
                schema.snapshot_data.c.digest == digest,
                schema.snapshot_data.c.summary_digest == digest,
            )
        ),
        select(schema.jobs.c.id).where(schema.jobs.c.notebook_digest == digest),
    ]
    return any(conn.execute(q.limit(1)).first() is not None for q in checks)


def prune_outputs(ws: Workspace, job_name: str, keep: int) -> list[int]:
    """Drop the output notebooks/HTML of all but the newest ``keep`` finished runs.

    Returns the ids of the runs whose outputs were removed. Blobs still used
    elsewhere (identical content) are kept.
    """
    removed: list[int] = []
    doomed: list[str] = []

    def write(conn: Connection) -> None:
        rows = conn.execute(
            select(R.c.id, R.c.output_digest, R.c.html_digest)
            .where(R.c.job_name == job_name, R.c.finished_at.is_not(None))
            .order_by(R.c.id.desc())
        ).all()
        for row in rows[keep:]:
            if row.output_digest is None and row.html_digest is None:
                continue
            conn.execute(
                update(R).where(R.c.id == row.id).values(output_digest=None, html_digest=None)
            )
            removed.append(row.id)
            for digest in (row.output_digest, row.html_digest):
                if digest and not _referenced(conn, digest, row.id):
                    doomed.append(digest)
                    conn.execute(schema.blobs.delete().where(schema.blobs.c.digest == digest))
        if removed:
            Database.record_change(conn, "run", f"{job_name} pruned")

    ws.db.run_write(write)
    for digest in doomed:  # after the commit: a crash here leaves a harmless orphan
        with contextlib.suppress(OSError):
            ws.blobs.fs.rm_file(ws.blobs.path(digest))
    return removed
