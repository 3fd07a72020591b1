"""Job routes: list, create from a notebook, update, enable/disable, run now, and the
two helpers of the panel's job form (a notebook's typed parameters, a cron preview).

Notebook paths are relative to the server's root folder (Jupyter's
``root_dir``; the working directory of ``opx serve``) and never lead out of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..jobs import definitions as D
from ..jobs import schedule as S
from ..jobs.launch import start_run
from ..jobs.params import notebook_params
from . import models as m
from .handlers import OpxHandler
from .parsing import page_of

if TYPE_CHECKING:
    from .app import ServerContext


class JobsHandler(OpxHandler):
    """``GET /jobs`` (``ListJobsQuery`` → ``ListJobsResponse``) and
    ``POST /jobs`` (``CreateJob`` → 201 ``DescribeJob``; 409 when the name exists)."""

    async def get(self) -> None:
        q = self.query(m.ListJobsQuery)
        jobs = await self.run_blocking(D.list_jobs, self.ctx.ws)
        self.render_json(page_of(jobs, q))

    async def post(self) -> None:
        req = self.body(m.CreateJob)
        path = self.local_path(req.notebook)
        job = await self.run_blocking(
            D.create_job, self.ctx.ws, req.name, path, params=req.params, **req.settings()
        )
        self.render_json(job.to_dict(), status=201)


class JobHandler(OpxHandler):
    """``GET /jobs/{name}?version=`` (``DescribeJob``) and ``PATCH /jobs/{name}``
    (``UpdateJob``): a new version, the notebook re-read unless another is given."""

    async def get(self, name: str) -> None:
        q = self.query(m.DescribeJobQuery)
        job = await self.run_blocking(D.get_job, self.ctx.ws, name, q.version)
        self.render_json(job.to_dict())

    async def patch(self, name: str) -> None:
        req = self.body(m.UpdateJob)
        path = self.local_path(req.notebook) if req.notebook is not None else None
        job = await self.run_blocking(
            D.update_job, self.ctx.ws, name, path, params=req.params, **req.settings()
        )
        self.render_json(job.to_dict())


class JobStateHandler(OpxHandler):
    """``POST /jobs/{name}/enable`` and ``…/disable``: the schedule on or off (``DescribeJob``)."""

    def initialize(self, ctx: ServerContext, enabled: bool = True) -> None:
        super().initialize(ctx)
        self.enabled = enabled

    async def post(self, name: str) -> None:
        job = await self.run_blocking(D.set_enabled, self.ctx.ws, name, self.enabled)
        self.render_json(job.to_dict())


class RunNowHandler(OpxHandler):
    """``POST /jobs/{name}/runs`` (``RunNow``): 202 with the queued run (``DescribeRun``).

    Parameter values are validated before anything starts (400 naming the
    parameter). An active scheduler picks the run up; without one a runner
    process is started for it.
    """

    async def post(self, name: str) -> None:
        req = self.body(m.RunNow)
        run = await self.run_blocking(
            start_run, self.ctx.ws, name, req.params or None, wait=False, trigger="api"
        )
        self.render_json(run.to_dict(), status=202)


class NotebookParamsHandler(OpxHandler):
    """``GET /notebook-params?path=`` (``NotebookParamsQuery``): the typed parameters of
    a notebook under the root, for the job form (``NotebookParams``; ``params`` is
    ``null`` when the notebook has no parameters cell)."""

    async def get(self) -> None:
        q = self.query(m.NotebookParamsQuery)
        path = self.local_path(q.path)

        def work() -> dict[str, Any]:
            params = notebook_params(D.read_notebook(path))
            return {
                "path": q.path,
                "params": None if params is None else [p.to_dict() for p in params],
            }

        self.render_json(await self.run_blocking(work))


class SchedulePreviewHandler(OpxHandler):
    """``GET /schedule-preview?cron=&tz=`` (``SchedulePreviewQuery``): a cron expression
    in words and its next three fire times (``SchedulePreview``); 400 when invalid."""

    async def get(self) -> None:
        q = self.query(m.SchedulePreviewQuery)
        S.check_timezone(q.tz)
        if not q.cron.strip():
            self.render_json({"cron": None, "timezone": q.tz, "text": "manual", "next": []})
            return
        cron = S.check_cron(q.cron)
        self.render_json(
            {
                "cron": cron,
                "timezone": q.tz,
                "text": S.describe(cron, q.tz),
                "next": [t.isoformat() for t in S.upcoming(cron, q.tz, 3)],
            }
        )


__all__ = [
    "JobHandler",
    "JobStateHandler",
    "JobsHandler",
    "NotebookParamsHandler",
    "RunNowHandler",
    "SchedulePreviewHandler",
]
