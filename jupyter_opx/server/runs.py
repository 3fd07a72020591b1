"""Run routes: list, show, follow the log, cancel, and the output notebook as HTML.

Run ids are matched as any path segment and checked by the core, so ``/runs/abc``
is a 400 that names the problem rather than a bare 404.
"""

from __future__ import annotations

from typing import Any

from ..jobs import runs as R
from ..jobs.runner import read_output
from . import models as m
from .handlers import OpxHandler
from .parsing import page

#: sandboxes the output page: the notebook's own HTML and scripts run in an
#: opaque origin, with no access to the server's cookies or API
OUTPUT_CSP = "sandbox allow-scripts allow-popups allow-downloads; frame-ancestors 'self'"


class RunsHandler(OpxHandler):
    """``GET /runs?job=&status=`` (``ListRunsQuery``): newest first (``ListRunsResponse``)."""

    async def get(self) -> None:
        q = self.query(m.ListRunsQuery)
        job, status = q.job or None, q.status or None

        def work() -> dict[str, Any]:
            ws = self.ctx.ws
            total = R.count_runs(ws, job, status=status)
            items = R.list_runs(ws, job, status=status, limit=q.limit, offset=q.offset)
            return page(items, total, q)

        self.render_json(await self.run_blocking(work))


class RunHandler(OpxHandler):
    """``GET /runs/{id}``: status, progress, error, lineage and logged metrics (``DescribeRun``)."""

    async def get(self, run_id: str) -> None:
        def work() -> dict[str, Any]:
            run = R.get_run(self.ctx.ws, run_id)
            return {**run.to_dict(), "metrics": R.run_metrics(self.ctx.ws, run.id)}

        self.render_json(await self.run_blocking(work))


class RunLogsHandler(OpxHandler):
    """``GET /runs/{id}/logs?after=SEQ`` (``RunLogsQuery``): the log entries after ``SEQ``
    (``RunLogs``); follow a run by passing back ``last_seq`` until ``status`` is final."""

    async def get(self, run_id: str) -> None:
        q = self.query(m.RunLogsQuery)

        def work() -> dict[str, Any]:
            run = R.get_run(self.ctx.ws, run_id)
            entries = R.read_logs(self.ctx.ws, run.id, q.after)
            return {
                "run_id": run.id,
                "status": run.status,
                "items": [{"seq": s, "stream": st, "text": t} for s, st, t in entries],
                "last_seq": entries[-1][0] if entries else q.after,
            }

        self.render_json(await self.run_blocking(work))


class CancelRunHandler(OpxHandler):
    """``POST /runs/{id}/cancel``: a queued run at once, a running one by stopping its
    kernel (``DescribeRun``); 409 when it already finished."""

    async def post(self, run_id: str) -> None:
        run = await self.run_blocking(R.request_cancel, self.ctx.ws, run_id)
        self.render_json(run.to_dict())


class RunOutputHandler(OpxHandler):
    """``GET /runs/{id}/output?format=html|ipynb`` (``RunOutputQuery``): the output notebook,
    as an HTML page (default) or the ``.ipynb``; 404 when pruned, 409 while running."""

    async def get(self, run_id: str) -> None:
        q = self.query(m.RunOutputQuery)
        html = q.format == "html"
        data = await self.run_blocking(read_output, self.ctx.ws, run_id, html=html)
        if html:
            self.set_header("Content-Type", "text/html; charset=UTF-8")
            self.set_header("Content-Security-Policy", OUTPUT_CSP)
        else:
            self.set_header("Content-Type", "application/x-ipynb+json")
            self.set_header(
                "Content-Disposition", f'attachment; filename="run-{int(run_id)}.ipynb"'
            )
        self.finish(data)


__all__ = [
    "CancelRunHandler",
    "RunHandler",
    "RunLogsHandler",
    "RunOutputHandler",
    "RunsHandler",
]
