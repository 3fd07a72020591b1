"""Feedback routes: ingest events, read the metrics per window, list the alert rules."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

from tornado.web import HTTPError, stream_request_body

from ..exceptions import NotFoundError, ValidationError
from . import models as m
from .handlers import OpxHandler
from .parsing import page_of

if TYPE_CHECKING:
    from ..monitoring.log import Logged
    from ..workspace import Workspace


def _gunzip(body: bytes, limit: int) -> bytes:
    out = bytearray()
    data = body
    try:
        while data:  # a gzip stream may hold several members
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += d.decompress(data, limit + 1 - len(out))
            if len(out) > limit or d.unconsumed_tail:
                raise _too_large(limit, "once decompressed")
            if not d.eof:
                raise ValidationError("the gzip body is truncated")
            data = d.unused_data
    except zlib.error as exc:
        raise ValidationError(f"the body is not valid gzip ({exc})") from None
    return bytes(out)


def _too_large(limit: int, how: str = "") -> HTTPError:
    size = f"{limit / 2**20:g} MiB" if limit >= 2**20 else f"{limit:,} bytes"
    return HTTPError(
        413,
        f"the body is larger{' ' + how if how else ''} than the limit of {size}; "
        "send smaller batches, or raise the limit (opx serve --max-body MB)",
    )


def ingest_body(
    ws: Workspace,
    model: str,
    kind: str,
    body: bytes,
    content_type: str,
    content_encoding: str,
    limit: int,
    resolved: tuple[str, int] | None = None,
) -> Logged:
    """Decode, validate and store one POSTed batch (blocking; all or nothing).

    ``resolved``: the model's ``(name, version)``, when already looked up."""
    from ..monitoring.ingest import parse_events
    from ..monitoring.log import log_events

    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        body = _gunzip(body, limit)
    elif encoding != "identity":
        raise ValidationError(f"unsupported Content-Encoding {encoding!r}; send gzip or none")
    events = parse_events(kind, body, content_type)
    return log_events(ws, model, kind, events, resolved=resolved)


@stream_request_body
class IngestHandler(OpxHandler):
    """``POST /feedback/{model}/{predictions|treatments|outcomes}``.

    The body (JSON array, NDJSON or CSV by ``Content-Type``; ``Content-Encoding:
    gzip`` allowed) is streamed in and capped at the server's limit: a larger
    declared ``Content-Length`` is refused before any of it is read. A ``201``
    answer means the batch is durable (:func:`~jupyter_opx.monitoring.log.log_events`
    returns only then). Refs with a version travel URL-encoded (``churn%2F3``).
    """

    scope = "feedback:write"
    write_scope = "feedback:write"

    async def prepare(self) -> None:
        from ..monitoring.ingest import KINDS
        from ..snapshots.catalog import resolve_version

        await super().prepare()  # authenticated first: strangers learn nothing
        self._chunks: list[bytes] = []
        self._size = 0
        limit = self.ctx.max_body
        kind = self.path_kwargs["kind"]
        if kind not in KINDS:
            raise NotFoundError(
                f"unknown event kind {kind!r}; POST to …/{'|'.join(KINDS)}", kind=kind
            )
        length = self.request.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > limit:
            raise _too_large(limit)
        # an unknown model is answered before its body is read
        self._resolved = await self.run_blocking(
            resolve_version, self.ctx.ws, self.path_kwargs["model"]
        )
        set_max = getattr(self.request.connection, "set_max_body_size", None)
        if set_max is not None:
            # chunked bodies: read (and drop) up to twice the limit to answer 413 cleanly
            set_max(2 * limit + 2**20)

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size <= self.ctx.max_body:
            self._chunks.append(chunk)
        else:
            self._chunks = []

    async def post(self, model: str, kind: str) -> None:
        if self._size > self.ctx.max_body:
            raise _too_large(self.ctx.max_body)
        body, self._chunks = b"".join(self._chunks), []
        logged = await self.run_blocking(
            ingest_body,
            self.ctx.ws,
            model,
            kind,
            body,
            self.request.headers.get("Content-Type", ""),
            self.request.headers.get("Content-Encoding", ""),
            self.ctx.max_body,
            self._resolved,
        )
        self.render_json(logged.to_dict(), status=201)


class FeedbackHandler(OpxHandler):
    """``GET /feedback/{model}?window=1d`` (``FeedbackQuery``): tables and KPIs (``Feedback``).

    Optional ``horizon`` (late-label join, e.g. ``30D``), ``threshold`` and
    ``control_arm`` are passed on to :func:`~jupyter_opx.monitoring.compute.compute`.
    Readable with a ``dashboard`` (or ``dashboard:MODEL``) token too.
    """

    scope = "dashboard"

    def auth_model(self) -> str | None:
        return str(self.path_kwargs["model"])

    async def get(self, model: str) -> None:
        from ..monitoring.compute import compute

        q = self.query(m.FeedbackQuery)

        def work() -> dict[str, Any]:
            return compute(self.ctx.ws, model, q.window, **q.options()).to_dict()

        self.render_json(await self.run_blocking(work))


class AlertsHandler(OpxHandler):
    """``GET /alerts?model=`` (``ListAlertsQuery``): alert rules with their state
    (``ListAlertsResponse``). A ``dashboard:MODEL`` token must name its model."""

    scope = "dashboard"

    def auth_model(self) -> str | None:
        from ..tokens import ALL_MODELS

        return self.get_query_argument("model", None) or ALL_MODELS

    async def get(self) -> None:
        from ..monitoring.alerts import list_rules

        q = self.query(m.ListAlertsQuery)
        rules = await self.run_blocking(list_rules, self.ctx.ws, q.model or None)
        self.render_json(page_of(rules, q))


__all__ = ["AlertsHandler", "FeedbackHandler", "IngestHandler", "ingest_body"]
