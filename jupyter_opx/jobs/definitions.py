"""Job definitions: an immutable, versioned copy of a notebook plus how to run it.

``create_job`` stores the notebook (its parameters cell tagged ``parameters``
for papermill), the parsed typed parameters, the job's default values
(validated against those types), and its settings: schedule and time zone,
whole-run timeout, retries, output formats, retention, environment,
notification, kernel, catch-up policy and executor. ``update_job`` makes
version N+1; earlier versions stay, so every run can say which version it ran.
Enabling/disabling is state of the job name, not of a version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from ..exceptions import ConflictError, NotFoundError, ValidationError
from ..snapshots.capture import current_user
from ..snapshots.records import fields_html, fields_text, list_html, text_table
from ..snapshots.refs import check_name
from ..store import schema
from ..store.db import Database, as_utc, utcnow
from ..workspace import Workspace
from . import params as P
from . import schedule as S

J = schema.jobs
CATCHUP = ("latest", "none")
DEFAULT_SETTINGS: dict[str, Any] = {
    "schedule": None,
    "timezone": "UTC",
    "timeout": None,
    "retries": 0,
    "retry_backoff": 10.0,
    "output": [],
    "keep": None,
    "env": {},
    "notify": None,
    "notify_on_success": False,
    "kernel": None,
    "catchup": "latest",
    "executor": "local",
}


@dataclass
class Job:
    """One version of a job, with the name's state (enabled, next and last run)."""

    name: str
    version: int
    created_at: datetime
    created_by: str
    notebook_path: str | None
    notebook_digest: str
    params: list[dict[str, Any]] | None
    defaults: dict[str, Any]
    settings: dict[str, Any]
    enabled: bool = True
    next_run: datetime | None = None
    last_status: str | None = None
    last_run_id: int | None = None
    latest_version: int | None = field(default=None, repr=False)

    @property
    def schedule(self) -> str | None:
        return self.settings.get("schedule")

    @property
    def timezone(self) -> str:
        return str(self.settings.get("timezone") or "UTC")

    @property
    def schedule_text(self) -> str:
        """The schedule in words, e.g. ``"every day at 06:00 UTC"``."""
        return S.describe(self.schedule, self.timezone)

    def param_objects(self) -> list[P.Param] | None:
        """The parsed parameters as :class:`~jupyter_opx.jobs.params.Param` objects."""
        if self.params is None:
            return None
        return [P.Param.from_dict(p) for p in self.params]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "notebook_path": self.notebook_path,
            "notebook_digest": self.notebook_digest,
            "params": self.params,
            "defaults": self.defaults,
            **{k: self.settings.get(k, v) for k, v in DEFAULT_SETTINGS.items()},
            "schedule_text": self.schedule_text,
            "enabled": self.enabled,
            "next_run": self.next_run.isoformat() if self.next_run else None,
            "last_status": self.last_status,
            "last_run_id": self.last_run_id,
        }

    def _rows(self) -> list[list[Any]]:
        s = self.settings
        rows: list[list[Any]] = [
            ["job", f"{self.name} v{self.version}" + ("" if self.enabled else " (disabled)")],
            ["notebook", self.notebook_path or "(stored copy)"],
            ["schedule", self.schedule_text + (f"  [{self.schedule}]" if self.schedule else "")],
            ["next run", f"{self.next_run:%Y-%m-%d %H:%M:%S} UTC" if self.next_run else "-"],
            ["last status", self.last_status or "-"],
        ]
        if self.params:
            rows.append(["parameters", ", ".join(f"{p['name']}: {p['type']}" for p in self.params)])
        if self.defaults:
            rows.append(["defaults", ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())])
        extras = [
            f"timeout {s['timeout']:g}s" if s.get("timeout") else None,
            f"retries {s['retries']}" if s.get("retries") else None,
            f"keep {s['keep']}" if s.get("keep") else None,
            f"outputs ipynb{''.join(',' + o for o in s.get('output', []))}",
            f"executor {s.get('executor', 'local')}",
        ]
        rows.append(["settings", ", ".join(e for e in extras if e)])
        if s.get("env"):
            rows.append(["env", ", ".join(sorted(s["env"]))])
        return rows

    def __str__(self) -> str:
        return fields_text(self._rows())

    def _repr_html_(self) -> str:
        return fields_html(self._rows(), "opx-job")


class JobList(list[Job]):
    """Jobs, rendered as a table."""

    HEADERS = ("job", "version", "schedule", "next run", "last status", "enabled")

    def rows(self) -> list[list[Any]]:
        return [
            [
                j.name,
                j.version,
                j.schedule_text,
                f"{j.next_run:%Y-%m-%d %H:%M} UTC" if j.next_run else "-",
                j.last_status or "-",
                "yes" if j.enabled else "no",
            ]
            for j in self
        ]

    def __str__(self) -> str:
        if not self:
            return "no jobs yet — create one with: opx job create NAME --notebook PATH"
        return text_table(list(self.HEADERS), self.rows())

    def _repr_html_(self) -> str:
        return list_html(self.HEADERS, self.rows())


# -- settings --------------------------------------------------------------------------
def parse_env(items: list[str] | dict[str, Any] | None) -> dict[str, str | None]:
    """``["KEY=VALUE", "KEY"]`` → ``{"KEY": "VALUE", "KEY2": None}`` (None: pass through)."""
    if items is None:
        return {}
    if isinstance(items, dict):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            key, sep, value = str(item).partition("=")
            pairs.append((key, value if sep else None))
    out: dict[str, str | None] = {}
    for key, value in pairs:
        if not key or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise ValidationError(
                f"invalid environment variable name {key!r}: use letters, digits and '_'"
            )
        if key in ("OPX_RUN_ID", "OPX_HOME"):
            raise ValidationError(f"{key} is set by jupyter_opx for every run")
        out[key] = None if value is None else str(value)
    return out


def _check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    if "tz" in settings:  # the CLI's spelling
        settings = {**settings, "timezone": settings["tz"]}
        del settings["tz"]
    s = {**DEFAULT_SETTINGS, **{k: v for k, v in settings.items() if v is not None}}
    unknown = set(settings) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ValidationError(f"unknown job setting(s): {', '.join(sorted(unknown))}")
    # an empty schedule or notify URL clears it (`opx job update NAME --schedule ""`)
    s["schedule"] = S.check_cron(s["schedule"]) if s["schedule"] else None
    s["notify"] = s["notify"] or None
    S.check_timezone(s["timezone"])
    if s["timeout"] is not None:
        s["timeout"] = float(s["timeout"])
        if s["timeout"] <= 0:
            raise ValidationError("timeout must be a positive number of seconds")
    if not isinstance(s["retries"], int) or s["retries"] < 0 or s["retries"] > 20:
        raise ValidationError("retries must be a whole number from 0 to 20")
    if float(s["retry_backoff"]) < 0:
        raise ValidationError("retry backoff must be zero or more seconds")
    outputs = [s["output"]] if isinstance(s["output"], str) else list(s["output"])
    bad = [o for o in outputs if o not in ("html", "ipynb")]
    if bad:
        raise ValidationError(f"unknown output format(s) {bad}; choose html (ipynb is always kept)")
    s["output"] = sorted({o for o in outputs if o != "ipynb"})
    if s["keep"] is not None and (not isinstance(s["keep"], int) or s["keep"] < 1):
        raise ValidationError("keep must be a whole number of runs, 1 or more")
    if s["catchup"] not in CATCHUP:
        raise ValidationError(f"catchup must be one of {', '.join(CATCHUP)}")
    ex = str(s["executor"])
    if ex != "local" and not ex.startswith(("dask://", "tcp://")):
        raise ValidationError("executor must be 'local' or 'dask://HOST:PORT'")
    if s["notify"] is not None and not str(s["notify"]).startswith(("http://", "https://")):
        raise ValidationError("notify must be an http(s) URL")
    s["env"] = parse_env(s["env"])
    return s


def read_notebook(path: str | os.PathLike[str]) -> Any:
    """Read a notebook file with a clear error when it is missing or not a notebook."""
    import nbformat

    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"notebook {str(path)!r} not found")
    try:
        return nbformat.read(str(p), as_version=4)
    except Exception as exc:
        raise ValidationError(f"{path} is not a readable notebook: {exc}") from exc


# -- queries ---------------------------------------------------------------------------
def _row_to_job(conn: Connection, row: Any) -> Job:
    return _rows_to_jobs(conn, [row])[0]


def _rows_to_jobs(conn: Connection, rows: list[Any]) -> list[Job]:
    """Jobs from their rows, with state, last run and next fire time: four queries
    whatever the number of jobs (not three per job)."""
    if not rows:
        return []
    names = [r.name for r in rows]
    JS, R = schema.job_state, schema.runs
    states = {st.name: st for st in conn.execute(select(JS).where(JS.c.name.in_(names)))}
    last_ids = dict(
        conn.execute(
            select(R.c.job_name, func.max(R.c.id))
            .where(R.c.job_name.in_(names))
            .group_by(R.c.job_name)
        ).all()
    )
    lasts = {
        r.job_name: r
        for r in conn.execute(
            select(R.c.id, R.c.job_name, R.c.status).where(R.c.id.in_(list(last_ids.values())))
        )
    }
    firsts = dict(
        conn.execute(
            select(J.c.name, func.min(J.c.created_at)).where(J.c.name.in_(names)).group_by(J.c.name)
        ).all()
    )
    jobs = []
    for row in rows:
        state, last = states.get(row.name), lasts.get(row.name)
        job = Job(
            name=row.name,
            version=row.version,
            created_at=as_utc(row.created_at),  # type: ignore[arg-type]
            created_by=row.created_by,
            notebook_path=row.notebook_path,
            notebook_digest=row.notebook_digest,
            params=row.params,
            defaults=dict(row.defaults),
            settings={**DEFAULT_SETTINGS, **dict(row.settings)},
            enabled=bool(state.enabled) if state else True,
            last_status=last.status if last else None,
            last_run_id=last.id if last else None,
        )
        if job.schedule and job.enabled:
            base = as_utc(state.last_fire) if state and state.last_fire else job.created_at
            first = as_utc(firsts[row.name])
            assert base is not None and first is not None
            job.next_run = S.next_fire(job.schedule, job.timezone, max(base, first))
        jobs.append(job)
    return jobs


def _latest_row(conn: Connection, name: str, version: int | None = None) -> Any:
    query = select(J).where(J.c.name == name)
    query = query.where(J.c.version == version) if version else query.order_by(J.c.version.desc())
    row = conn.execute(query.limit(1)).first()
    if row is None:
        names = list(conn.execute(select(J.c.name).distinct().order_by(J.c.name)).scalars())
        if version and names and name in names:
            raise NotFoundError(f"job {name} has no version {version}")
        listing = f"jobs: {', '.join(names[:10])}" if names else "there are no jobs yet"
        raise NotFoundError(f"no job named {name!r} ({listing})")
    return row


def get_job(ws: Workspace, name: str, version: int | None = None) -> Job:
    """A job (its latest version unless ``version`` is given)."""
    if not ws.exists:
        raise NotFoundError(f"no job named {name!r} (there is no store here yet)")
    with ws.db.transaction() as conn:
        return _row_to_job(conn, _latest_row(conn, name, version))


def list_jobs(ws: Workspace) -> JobList:
    """The latest version of every job, by name."""
    if not ws.exists:
        return JobList()
    with ws.db.transaction() as conn:
        latest = (
            select(J.c.name, func.max(J.c.version).label("version")).group_by(J.c.name).subquery()
        )
        rows = conn.execute(
            select(J)
            .join(latest, (J.c.name == latest.c.name) & (J.c.version == latest.c.version))
            .order_by(J.c.name)
        ).all()
        return JobList(_rows_to_jobs(conn, list(rows)))


def notebook_of(ws: Workspace, job: Job) -> Any:
    """The job's stored notebook (hash-verified)."""
    import nbformat

    return nbformat.reads(ws.blobs.get(job.notebook_digest).decode("utf-8"), as_version=4)


# -- writes ----------------------------------------------------------------------------
def _store_notebook(ws: Workspace, nb: Any) -> tuple[str, list[dict[str, Any]] | None]:
    import nbformat

    job_nb, params = P.prepare_job_notebook(nb)
    digest, size, _ = ws.blobs.put(nbformat.writes(job_nb).encode("utf-8"))
    ws.db.register_blobs({digest: size})
    return digest, None if params is None else [p.to_dict() for p in params]


def _insert_version(
    ws: Workspace,
    name: str,
    notebook_path: str | None,
    digest: str,
    params: list[dict[str, Any]] | None,
    defaults: dict[str, Any],
    settings: dict[str, Any],
    expect_new: bool,
) -> Job:
    who = current_user()

    def write(conn: Connection) -> int:
        latest = conn.execute(select(func.max(J.c.version)).where(J.c.name == name)).scalar()
        if expect_new and latest is not None:
            raise ConflictError(
                f"job {name!r} exists (version {latest}); change it with: opx job update {name}"
            )
        if not expect_new and latest is None:
            raise NotFoundError(f"no job named {name!r}; create it with: opx job create {name}")
        version = (latest or 0) + 1
        now = utcnow()
        conn.execute(
            insert(J).values(
                name=name,
                version=version,
                created_at=now,
                created_by=who,
                notebook_path=notebook_path,
                notebook_digest=digest,
                params=params,
                defaults=defaults,
                settings=settings,
            )
        )
        st = schema.job_state
        if conn.execute(select(st.c.name).where(st.c.name == name)).first() is None:
            conn.execute(insert(st).values(name=name, enabled=1, last_fire=None, updated_at=now))
        Database.record_change(conn, "job", f"{name}/{version}")
        return version

    version = ws.db.run_write(write)
    return get_job(ws, name, version)


def create_job(
    ws: Workspace,
    name: str,
    notebook: str | os.PathLike[str] | None = None,
    *,
    notebook_content: Any = None,
    params: dict[str, Any] | None = None,
    **settings: Any,
) -> Job:
    """Create version 1 of a job from a notebook file (or a notebook object).

    ``params`` are the job's default values, converted and validated against
    the notebook's typed parameters cell; ``settings`` are the keys of
    :data:`DEFAULT_SETTINGS`.
    """
    check_name(name)
    nb = notebook_content if notebook_content is not None else read_notebook(notebook or "")
    s = _check_settings(settings)
    if not s.get("kernel"):
        s["kernel"] = (nb.metadata.get("kernelspec") or {}).get("name") or "python3"
    digest, parsed = _store_notebook(ws, nb)
    defaults = _validate_defaults(parsed, params)
    path = str(Path(notebook).resolve()) if notebook else None
    return _insert_version(ws, name, path, digest, parsed, defaults, s, expect_new=True)


def update_job(
    ws: Workspace,
    name: str,
    notebook: str | os.PathLike[str] | None = None,
    *,
    notebook_content: Any = None,
    params: dict[str, Any] | None = None,
    **settings: Any,
) -> Job:
    """Make version N+1 of a job: a new notebook copy and/or changed settings.

    Without ``notebook``, the notebook is read again from the path recorded
    at creation when it still exists, else the stored copy is kept.
    """
    current = get_job(ws, name)
    path = str(Path(notebook).resolve()) if notebook else current.notebook_path
    if notebook_content is not None:
        nb = notebook_content
    elif path and Path(path).is_file():
        nb = read_notebook(path)
    else:
        nb = notebook_of(ws, current)
    merged = {**current.settings, **{k: v for k, v in settings.items() if v is not None}}
    s = _check_settings(merged)
    digest, parsed = _store_notebook(ws, nb)
    # the current defaults carry over where the notebook still has the parameter; the
    # values given now are checked strictly (a misspelt name is an error, not dropped)
    defaults = {
        **_validate_defaults(parsed, current.defaults, keep_known=True),
        **_validate_defaults(parsed, params),
    }
    return _insert_version(ws, name, path, digest, parsed, defaults, s, expect_new=False)


def _validate_defaults(
    parsed: list[dict[str, Any]] | None, values: dict[str, Any] | None, keep_known: bool = False
) -> dict[str, Any]:
    if not values:
        return {}
    objs = None if parsed is None else [P.Param.from_dict(p) for p in parsed]
    if keep_known:
        # defaults of parameters the new notebook no longer has are dropped
        known = {p.name for p in objs or []}
        values = {k: v for k, v in values.items() if k in known}
    return P.validate(objs, values)


def set_enabled(ws: Workspace, name: str, enabled: bool) -> Job:
    """Enable or disable a job's schedule (manual runs stay possible)."""
    get_job(ws, name)

    def write(conn: Connection) -> None:
        conn.execute(
            update(schema.job_state)
            .where(schema.job_state.c.name == name)
            .values(enabled=1 if enabled else 0, updated_at=utcnow())
        )
        Database.record_change(conn, "job", name)

    ws.db.run_write(write)
    return get_job(ws, name)
