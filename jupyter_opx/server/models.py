"""Request and response models of the REST API (mirrored by ``api/openapi.yaml``).

Names follow one pattern, shared with the OpenAPI file and the lab extension's
TypeScript interfaces: a request body is named for its action (``CreateJob``,
``UpdateJob``, ``RunNow``, ``Promote``), query parameters for their route
(``ListRunsQuery``), a single resource ``Describe<Thing>`` and a page of them
``List<Things>Response`` (``{items, total, limit, offset}``).

Requests are dataclasses, read and type-checked by :mod:`.parsing` (a JSON
body or query strings). Responses are TypedDicts: the ``to_dict()`` of the
core's records, typed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypedDict

from ..exceptions import ValidationError

#: the largest page a list endpoint returns: 500 full snapshots (1 MB of JSON) took
#: a p95 of 100-170 ms to serve on 2 cores (bench/bench_api.py); pages of 200 keep
#: every list request well inside 100 ms, and the panel asks for 200 at most
MAX_LIMIT = 200


# -- requests --------------------------------------------------------------------------
@dataclass(kw_only=True)
class Promote:
    """``POST /snapshots/{ref}/promote``: point ``name@alias`` at the ref's version."""

    alias: str = "production"


@dataclass(kw_only=True)
class JobSettings:
    """How a job runs (see :data:`jupyter_opx.jobs.definitions.DEFAULT_SETTINGS`).

    ``null`` (or leaving a field out) keeps the default, or the current value
    on update; an empty ``schedule`` or ``notify`` clears it.
    """

    schedule: str | None = None
    timezone: str | None = None
    timeout: float | None = None
    retries: int | None = None
    retry_backoff: float | None = None
    output: list[str] | None = None
    keep: int | None = None
    env: dict[str, str | None] | None = None
    notify: str | None = None
    notify_on_success: bool | None = None
    kernel: str | None = None
    catchup: str | None = None
    executor: str | None = None

    def settings(self) -> dict[str, Any]:
        """The settings given (not ``None``), as the core's keyword arguments."""
        names = {f.name for f in fields(JobSettings)}
        return {n: getattr(self, n) for n in sorted(names) if getattr(self, n) is not None}


@dataclass(kw_only=True)
class CreateJob(JobSettings):
    """``POST /jobs``: a job from a notebook under the server's root."""

    name: str
    notebook: str
    params: dict[str, Any] | None = None


@dataclass(kw_only=True)
class UpdateJob(JobSettings):
    """``PATCH /jobs/{name}``: version N+1 (the notebook is re-read when omitted)."""

    notebook: str | None = None
    params: dict[str, Any] | None = None


@dataclass(kw_only=True)
class RunNow:
    """``POST /jobs/{name}/runs``: parameter values over the job's defaults."""

    params: dict[str, Any] | None = None


# -- queries ---------------------------------------------------------------------------
@dataclass(kw_only=True)
class Page:
    """``?limit=&offset=`` of every list endpoint."""

    limit: int = 50
    offset: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValidationError(f"limit must be from 1 to {MAX_LIMIT}", field="limit")
        if self.offset < 0:
            raise ValidationError("offset must be 0 or more", field="offset")


@dataclass(kw_only=True)
class ListSnapshotsQuery(Page):
    name: str | None = None


@dataclass(kw_only=True)
class ListModelsQuery(Page):
    pass


@dataclass(kw_only=True)
class AliasHistoryQuery(Page):
    alias: str | None = None


@dataclass(kw_only=True)
class ListJobsQuery(Page):
    pass


@dataclass(kw_only=True)
class ListRunsQuery(Page):
    job: str | None = None
    status: str | None = None


@dataclass(kw_only=True)
class ListAlertsQuery(Page):
    model: str | None = None


@dataclass(kw_only=True)
class DiffQuery:
    a: str
    b: str


@dataclass(kw_only=True)
class DescribeJobQuery:
    version: int | None = None


@dataclass(kw_only=True)
class RunLogsQuery:
    after: int = 0


@dataclass(kw_only=True)
class RunOutputQuery:
    format: str = "html"

    def __post_init__(self) -> None:
        if self.format not in ("html", "ipynb"):
            raise ValidationError("format must be html or ipynb", field="format")


@dataclass(kw_only=True)
class FeedbackQuery:
    window: str = "1d"
    horizon: str | None = None
    threshold: float | None = None
    control_arm: str | None = None

    def options(self) -> dict[str, Any]:
        """The optional settings given, as keyword arguments of ``compute``."""
        given = {"horizon": self.horizon, "threshold": self.threshold}
        given["control_arm"] = self.control_arm
        return {k: v for k, v in given.items() if v not in (None, "")}


@dataclass(kw_only=True)
class NotebookParamsQuery:
    path: str


@dataclass(kw_only=True)
class SchedulePreviewQuery:
    cron: str = ""
    tz: str = "UTC"


# -- responses -------------------------------------------------------------------------
class Error(TypedDict):
    """Every error: ``code`` (stable), ``message`` (what to do next), and fields."""

    code: str
    message: str


class Version(TypedDict):
    version: str


class Health(TypedDict):
    status: str
    version: str


class DescribeSnapshot(TypedDict):
    name: str
    version: int
    ref: str
    created_at: str
    created_by: str
    message: str
    parent: str | None
    aliases: list[str]
    model: dict[str, Any] | None
    data: dict[str, dict[str, Any]]
    reference_key: str | None
    metrics: dict[str, Any]
    params: dict[str, Any]
    tags: dict[str, Any]
    input_schema: list[dict[str, Any]]
    environment: dict[str, Any]
    provenance: dict[str, Any]
    source_digest: str | None


class DescribeAliasEvent(TypedDict):
    name: str
    alias: str
    version: int
    previous_version: int | None
    at: str
    by: str


class DescribeDiff(TypedDict):
    a: str
    b: str
    identical: bool
    model: dict[str, Any]
    data: dict[str, Any]
    metrics: dict[str, Any]
    params: dict[str, Any]
    tags: dict[str, Any]
    input_schema: dict[str, Any]
    environment: dict[str, Any]


class ParamSpec(TypedDict):
    name: str
    type: str
    default: Any
    help: str
    source_line: int
    nullable: bool
    default_source: str | None


class DescribeJob(TypedDict):
    name: str
    version: int
    created_at: str
    created_by: str
    notebook_path: str | None
    notebook_digest: str
    params: list[ParamSpec] | None
    defaults: dict[str, Any]
    schedule: str | None
    timezone: str
    timeout: float | None
    retries: int
    retry_backoff: float
    output: list[str]
    keep: int | None
    env: dict[str, str | None]
    notify: str | None
    notify_on_success: bool
    kernel: str | None
    catchup: str
    executor: str
    schedule_text: str
    enabled: bool
    next_run: str | None
    last_status: str | None
    last_run_id: int | None


class DescribeRun(TypedDict, total=False):
    id: int
    job: str
    job_version: int
    status: str
    trigger: str
    scheduled_for: str | None
    params: dict[str, Any]
    resolved: dict[str, Any]
    created_at: str
    created_by: str
    started_at: str | None
    finished_at: str | None
    duration: float | None
    attempt: int
    cells_done: int
    cells_total: int
    error: dict[str, Any] | None
    output_digest: str | None
    html_digest: str | None
    executor: str
    worker: str | None
    cancel_requested: bool
    metrics: dict[str, Any]  # only in GET /runs/{id}


class LogEntry(TypedDict):
    seq: int
    stream: str
    text: str


class RunLogs(TypedDict):
    run_id: int
    status: str
    items: list[LogEntry]
    last_seq: int


class NotebookParams(TypedDict):
    path: str
    params: list[ParamSpec] | None


class SchedulePreview(TypedDict):
    cron: str | None
    timezone: str
    text: str
    next: list[str]


class Feedback(TypedDict):
    model: str
    reference: str | None
    window: str
    kpis: dict[str, Any]
    volume: list[dict[str, Any]]
    performance: list[dict[str, Any]]
    drift: list[dict[str, Any]]
    prediction_drift: list[dict[str, Any]]
    uplift: list[dict[str, Any]]
    uplift_total: list[dict[str, Any]]
    alerts: list[dict[str, Any]]


class Logged(TypedDict):
    model: str
    version: int | None
    kind: str
    rows: int
    segment: int


class DescribeAlert(TypedDict):
    id: int
    model: str
    expr: str
    metric: str
    op: str
    threshold: float
    min_n: int
    window: str
    webhook: str | None
    trigger_job: str | None
    enabled: bool
    state: str
    since: str | None
    value: float | None
    created_at: str
    created_by: str


class ListSnapshotsResponse(TypedDict):
    items: list[DescribeSnapshot]
    total: int
    limit: int
    offset: int


class AliasHistoryResponse(TypedDict):
    items: list[DescribeAliasEvent]
    total: int
    limit: int
    offset: int


class ListJobsResponse(TypedDict):
    items: list[DescribeJob]
    total: int
    limit: int
    offset: int


class ListRunsResponse(TypedDict):
    items: list[DescribeRun]
    total: int
    limit: int
    offset: int


class ListAlertsResponse(TypedDict):
    items: list[DescribeAlert]
    total: int
    limit: int
    offset: int
