"""Snapshot routes: list, show, promote, alias history, diff.

References travel URL-encoded in the path (``churn%2F3``, ``churn@production``);
tornado decodes the path arguments after matching, so a ``/`` inside a ref
never splits the route.
"""

from __future__ import annotations

from typing import Any

from ..snapshots import catalog
from ..snapshots.diff import diff
from . import models as m
from .handlers import OpxHandler
from .parsing import page, page_of


class SnapshotsHandler(OpxHandler):
    """``GET /snapshots?name=`` (``ListSnapshotsQuery``): newest first
    (``ListSnapshotsResponse``)."""

    async def get(self) -> None:
        q = self.query(m.ListSnapshotsQuery)
        name = q.name or None

        def work() -> dict[str, Any]:
            ws = self.ctx.ws
            total = catalog.count_snapshots(ws, name)
            items = catalog.list_snapshots(ws, name, limit=q.limit, offset=q.offset)
            return page(items, total, q)

        self.render_json(await self.run_blocking(work))


class ModelsHandler(OpxHandler):
    """``GET /models`` (``ListModelsQuery``): every snapshot name with its number of
    versions, latest version and aliases, by name (``ListModelsResponse``)."""

    async def get(self) -> None:
        q = self.query(m.ListModelsQuery)

        def work() -> dict[str, Any]:
            ws = self.ctx.ws
            total = catalog.count_models(ws)
            items = catalog.list_models(ws, limit=q.limit, offset=q.offset)
            return page(items, total, q)

        self.render_json(await self.run_blocking(work))


class SnapshotHandler(OpxHandler):
    """``GET /snapshots/{ref}``: one snapshot (``DescribeSnapshot``)."""

    async def get(self, ref: str) -> None:
        snap = await self.run_blocking(catalog.get_snapshot, self.ctx.ws, ref)
        self.render_json(snap.to_dict())


class PromoteHandler(OpxHandler):
    """``POST /snapshots/{ref}/promote`` (``Promote``): move an alias, kept in the history.

    Answers the move (``DescribeAliasEvent``); promoting an older version is a rollback.
    """

    async def post(self, ref: str) -> None:
        req = self.body(m.Promote)
        event = await self.run_blocking(catalog.promote, self.ctx.ws, ref, req.alias)
        self.render_json(event.to_dict())


class AliasHistoryHandler(OpxHandler):
    """``GET /snapshots/{name}/history?alias=`` (``AliasHistoryQuery``): every alias move,
    newest first (``AliasHistoryResponse``)."""

    async def get(self, name: str) -> None:
        q = self.query(m.AliasHistoryQuery)
        events = await self.run_blocking(catalog.alias_history, self.ctx.ws, name, q.alias or None)
        self.render_json(page_of(events, q))


class DiffHandler(OpxHandler):
    """``GET /diff?a=&b=`` (``DiffQuery``): what differs from ``a`` to ``b`` (``DescribeDiff``)."""

    async def get(self) -> None:
        q = self.query(m.DiffQuery)
        result = await self.run_blocking(diff, self.ctx.ws, q.a, q.b)
        self.render_json(result.to_dict())


__all__ = [
    "AliasHistoryHandler",
    "DiffHandler",
    "ModelsHandler",
    "PromoteHandler",
    "SnapshotHandler",
    "SnapshotsHandler",
]
