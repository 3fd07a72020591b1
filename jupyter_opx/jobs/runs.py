"""Runs of jobs: records, state transitions, logs and metrics.

A run moves ``queued → running → succeeded | failed | timed_out | cancelled``
(``queued → cancelled`` too). Every transition, progress step and log append
bumps the store's change sequence so that live views follow it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from ..exceptions import ConflictError, NotFoundError, ValidationError
from ..snapshots.capture import current_user
from ..snapshots.records import fields_html, fields_text, list_html, text_table
from ..store import schema
from ..store.db import Database, as_utc, utcnow
from ..workspace import Workspace
from . import params as P
from .definitions import Job, get_job

R = schema.runs
STATUSES = ("queued", "running", "succeeded", "failed", "timed_out", "cancelled")
FINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
TRIGGERS = ("manual", "schedule", "alert", "api")


def where_text(error: dict[str, Any]) -> str:
    """`` (cell 4)`` for a run's error: the failing cell as the notebook's author counts.

    ``cell`` is 1-based in the job's notebook (the parameters cell papermill
    injects is not counted); errors raised by the injected parameters say so.
    Errors recorded before ``cell`` existed fall back to the executed
    notebook's 0-based ``cell_index``.
    """
    if error.get("in_parameters"):
        return " (in the injected parameters cell: check the run's parameters)"
    if error.get("cell") is not None:
        return f" (cell {error['cell']})"
    if error.get("cell_index") is not None:
        return f" (cell index {error['cell_index']} of the executed notebook)"
    return ""


@dataclass
class Run:
    """One execution of a job version."""

    id: int
    job_name: str
    job_version: int
    status: str
    trigger: str
    scheduled_for: datetime | None
    params: dict[str, Any]
    resolved: dict[str, Any]
    created_at: datetime
    created_by: str
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    attempt: int
    cells_done: int
    cells_total: int
    error: dict[str, Any] | None
    output_digest: str | None
    html_digest: str | None
    executor: str
    worker: str | None
    cancel_requested: bool

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish (or to now while running)."""
        if self.started_at is None:
            return None
        end = self.finished_at or utcnow()
        return (end - self.started_at).total_seconds()

    @property
    def progress(self) -> float:
        """Share of code cells done, 0 … 1."""
        return self.cells_done / self.cells_total if self.cells_total else 0.0

    def to_dict(self) -> dict[str, Any]:
        def iso(d: datetime | None) -> str | None:
            return d.isoformat() if d else None

        return {
            "id": self.id,
            "job": self.job_name,
            "job_version": self.job_version,
            "status": self.status,
            "trigger": self.trigger,
            "scheduled_for": iso(self.scheduled_for),
            "params": self.params,
            "resolved": self.resolved,
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration": self.duration,
            "attempt": self.attempt,
            "cells_done": self.cells_done,
            "cells_total": self.cells_total,
            "error": self.error,
            "output_digest": self.output_digest,
            "html_digest": self.html_digest,
            "executor": self.executor,
            "worker": self.worker,
            "cancel_requested": self.cancel_requested,
        }

    def _rows(self) -> list[list[Any]]:
        rows: list[list[Any]] = [
            ["run", f"{self.id} of {self.job_name} v{self.job_version} ({self.trigger})"],
            ["status", self.status + (f" (attempt {self.attempt})" if self.attempt > 1 else "")],
            ["progress", f"{self.cells_done}/{self.cells_total} cells"],
        ]
        if self.scheduled_for:
            rows.append(["scheduled for", f"{self.scheduled_for:%Y-%m-%d %H:%M:%S} UTC"])
        if self.started_at:
            rows.append(["started", f"{self.started_at:%Y-%m-%d %H:%M:%S} UTC"])
        if self.duration is not None:
            rows.append(["duration", f"{self.duration:.1f}s"])
        if self.params:
            rows.append(["parameters", ", ".join(f"{k}={v!r}" for k, v in self.params.items())])
        if self.resolved:
            rows.append(["resolved", ", ".join(f"{k} -> {v}" for k, v in self.resolved.items())])
        if self.error:
            rows.append(
                [
                    "error",
                    f"{self.error.get('ename')}: {self.error.get('evalue')}"
                    + where_text(self.error),
                ]
            )
        return rows

    def __str__(self) -> str:
        return fields_text(self._rows())

    def _repr_html_(self) -> str:
        bar = ""
        if self.status == "running" and self.cells_total:
            bar = f"<progress value='{self.cells_done}' max='{self.cells_total}'></progress>"
        return fields_html(self._rows(), "opx-run") + bar


class RunList(list[Run]):
    """Runs, newest first, rendered as a table."""

    HEADERS = ("run", "job", "status", "trigger", "progress", "started", "duration")

    def rows(self) -> list[list[Any]]:
        return [
            [
                r.id,
                f"{r.job_name} v{r.job_version}",
                r.status,
                r.trigger,
                f"{r.cells_done}/{r.cells_total}",
                f"{r.started_at:%Y-%m-%d %H:%M:%S}" if r.started_at else "-",
                f"{r.duration:.1f}s" if r.duration is not None else "-",
            ]
            for r in self
        ]

    def __str__(self) -> str:
        if not self:
            return "no runs yet — start one with: opx job run NAME"
        return text_table(list(self.HEADERS), self.rows())

    def _repr_html_(self) -> str:
        return list_html(self.HEADERS, self.rows())


def _to_run(row: Any) -> Run:
    return Run(
        id=row.id,
        job_name=row.job_name,
        job_version=row.job_version,
        status=row.status,
        trigger=row.trigger,
        scheduled_for=as_utc(row.scheduled_for),
        params=dict(row.params),
        resolved=dict(row.resolved),
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        created_by=row.created_by,
        started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at),
        heartbeat_at=as_utc(row.heartbeat_at),
        attempt=row.attempt,
        cells_done=row.cells_done,
        cells_total=row.cells_total,
        error=row.error,
        output_digest=row.output_digest,
        html_digest=row.html_digest,
        executor=row.executor,
        worker=row.worker,
        cancel_requested=bool(row.cancel_requested),
    )


def run_values(job: Job, values: dict[str, Any] | None) -> dict[str, Any]:
    """The job's defaults overridden by ``values``, converted and validated."""
    params = job.param_objects()
    given = P.validate(params, values or {}) if values else {}
    return {**job.defaults, **given}


def insert_run(
    conn: Connection,
    job: Job,
    values: dict[str, Any],
    trigger: str,
    scheduled_for: datetime | None = None,
    executor: str | None = None,
) -> int:
    """Insert a queued run inside the caller's transaction; returns its id."""
    inserted = conn.execute(
        insert(R).values(
            job_name=job.name,
            job_version=job.version,
            status="queued",
            trigger=trigger,
            scheduled_for=scheduled_for,
            params=values,
            resolved={},
            created_at=utcnow(),
            created_by=current_user(),
            attempt=0,
            cells_done=0,
            cells_total=0,
            executor=executor or job.settings.get("executor") or "local",
            cancel_requested=0,
        )
    ).inserted_primary_key
    assert inserted is not None
    Database.record_change(conn, "run", f"{job.name}#{inserted[0]}")
    return int(inserted[0])


def create_run(
    ws: Workspace,
    job_name: str,
    values: dict[str, Any] | None = None,
    *,
    trigger: str = "manual",
    version: int | None = None,
    executor: str | None = None,
) -> Run:
    """Queue a run of a job; parameters are validated before anything starts.

    Raises
    ------
    ValidationError
        An unknown parameter or a value that does not fit its type.
    """
    if trigger not in TRIGGERS:
        raise ValidationError(f"trigger must be one of {', '.join(TRIGGERS)}")
    job = get_job(ws, job_name, version)
    merged = run_values(job, values)
    run_id = ws.db.run_write(lambda conn: insert_run(conn, job, merged, trigger, None, executor))
    return get_run(ws, run_id)


def get_run(ws: Workspace, run_id: int | str) -> Run:
    """A run by id."""
    try:
        rid = int(run_id)
    except (TypeError, ValueError):
        raise ValidationError(f"a run id is a number, got {run_id!r}") from None
    if not ws.exists:
        raise NotFoundError(f"no run {rid} (there is no store here yet)")
    with ws.db.transaction() as conn:
        row = conn.execute(select(R).where(R.c.id == rid)).first()
    if row is None:
        raise NotFoundError(f"no run {rid}; list runs with: opx runs")
    return _to_run(row)


def list_runs(
    ws: Workspace,
    job_name: str | None = None,
    *,
    status: str | None = None,
    limit: int | None = 50,
    offset: int = 0,
) -> RunList:
    """Runs, newest first, optionally of one job and/or in one status."""
    if not ws.exists:
        return RunList()
    query = select(R).order_by(R.c.id.desc())
    if job_name is not None:
        get_job(ws, job_name)
        query = query.where(R.c.job_name == job_name)
    if status is not None:
        if status not in STATUSES:
            raise ValidationError(f"status must be one of {', '.join(STATUSES)}")
        query = query.where(R.c.status == status)
    if limit is not None:
        query = query.limit(limit).offset(offset)
    with ws.db.transaction() as conn:
        return RunList(_to_run(r) for r in conn.execute(query))


def count_runs(ws: Workspace, job_name: str | None = None, *, status: str | None = None) -> int:
    """How many runs :func:`list_runs` would list without a limit (a page's total)."""
    if not ws.exists:
        return 0
    query = select(func.count()).select_from(R)
    if job_name is not None:
        get_job(ws, job_name)
        query = query.where(R.c.job_name == job_name)
    if status is not None:
        if status not in STATUSES:
            raise ValidationError(f"status must be one of {', '.join(STATUSES)}")
        query = query.where(R.c.status == status)
    with ws.db.transaction() as conn:
        return int(conn.execute(query).scalar() or 0)


def set_fields(ws: Workspace, run_id: int, change: str | None = None, **values: Any) -> None:
    """Update columns of a run (and bump the change sequence when ``change`` is given)."""

    def write(conn: Connection) -> None:
        conn.execute(update(R).where(R.c.id == run_id).values(**values))
        if change:
            Database.record_change(conn, "run", change)

    ws.db.run_write(write)


def claim(ws: Workspace, run_id: int, worker: str) -> bool:
    """Atomically move a queued run to running; False if someone else took it."""

    def write(conn: Connection) -> bool:
        now = utcnow()
        result = conn.execute(
            update(R)
            .where(R.c.id == run_id, R.c.status == "queued", R.c.cancel_requested == 0)
            .values(status="running", started_at=now, heartbeat_at=now, worker=worker, attempt=1)
        )
        if result.rowcount != 1:
            return False
        Database.record_change(conn, "run", f"#{run_id} running")
        return True

    return bool(ws.db.run_write(write))


def finish(ws: Workspace, run_id: int, status: str, **values: Any) -> None:
    """Record a final status (never overwriting an earlier final one)."""
    if status not in FINAL:
        raise ValueError(status)

    def write(conn: Connection) -> None:
        conn.execute(
            update(R)
            .where(R.c.id == run_id, R.c.status.notin_(tuple(FINAL)))
            .values(status=status, finished_at=utcnow(), **values)
        )
        Database.record_change(conn, "run", f"#{run_id} {status}")

    ws.db.run_write(write)


def request_cancel(ws: Workspace, run_id: int | str) -> Run:
    """Cancel a run: a queued one at once, a running one by killing its kernel."""
    run = get_run(ws, run_id)
    if run.finished:
        raise ConflictError(f"run {run.id} already {run.status}; nothing to cancel")

    def write(conn: Connection) -> None:
        conn.execute(update(R).where(R.c.id == run.id).values(cancel_requested=1))
        conn.execute(
            update(R)
            .where(R.c.id == run.id, R.c.status == "queued")
            .values(status="cancelled", finished_at=utcnow())
        )
        Database.record_change(conn, "run", f"#{run.id} cancel")

    ws.db.run_write(write)
    return get_run(ws, run.id)


def append_logs(ws: Workspace, run_id: int, entries: list[tuple[str, str]]) -> None:
    """Append ``(stream, text)`` entries to a run's log.

    A NUL character (which PostgreSQL cannot store in text) is kept as U+FFFD.
    """
    if not entries:
        return
    rows = [
        {"stream": s, "text": t.replace("\x00", "\ufffd") if "\x00" in t else t} for s, t in entries
    ]

    def write(conn: Connection) -> None:
        now = utcnow()
        conn.execute(
            insert(schema.run_logs), [{"run_id": run_id, "at": now, **row} for row in rows]
        )
        Database.record_change(conn, "log", f"#{run_id}")

    ws.db.run_write(write)


def read_logs(ws: Workspace, run_id: int, after: int = 0) -> list[tuple[int, str, str]]:
    """Log entries ``(seq, stream, text)`` of a run with ``seq > after``."""
    L = schema.run_logs
    with ws.db.transaction() as conn:
        rows = conn.execute(
            select(L.c.seq, L.c.stream, L.c.text)
            .where(L.c.run_id == run_id, L.c.seq > after)
            .order_by(L.c.seq)
        ).all()
    return [(int(r.seq), r.stream, r.text) for r in rows]


def log_metric(ws: Workspace, run_id: int | None, name: str, value: Any) -> None:
    """Record a named value (a number, or any JSON value) for a run."""
    if not isinstance(name, str) or not name or len(name) > 128:
        raise ValidationError("a metric name is a non-empty string of at most 128 characters")
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise ValidationError(f"metric {name!r}: the value must be JSON (a number, string …)")

    def write(conn: Connection) -> None:
        conn.execute(
            insert(schema.run_metrics).values(run_id=run_id, name=name, value=value, at=utcnow())
        )
        Database.record_change(conn, "metric", name)

    ws.db.run_write(write)


def run_metrics(ws: Workspace, run_id: int) -> dict[str, Any]:
    """The metrics a run logged (the last value of each name)."""
    M = schema.run_metrics
    with ws.db.transaction() as conn:
        rows = conn.execute(
            select(M.c.name, M.c.value).where(M.c.run_id == run_id).order_by(M.c.id)
        )
        return {r.name: r.value for r in rows}


def stale_running(ws: Workspace, older_than: float = 30.0) -> list[int]:
    """Running runs whose runner stopped sending heartbeats."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    with ws.db.transaction() as conn:
        return list(
            conn.execute(
                select(R.c.id).where(R.c.status == "running", R.c.heartbeat_at < cutoff)
            ).scalars()
        )


def counts_by_status(ws: Workspace) -> dict[str, int]:
    """How many runs are in each status."""
    with ws.db.transaction() as conn:
        rows = conn.execute(select(R.c.status, func.count()).group_by(R.c.status))
        return {r[0]: int(r[1]) for r in rows}
