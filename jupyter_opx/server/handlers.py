"""The REST handlers: parse the request, delegate to the core, render JSON.

One base class, :class:`OpxHandler`, holds what every route shares:
authentication before anything else (:attr:`OpxHandler.scope`, ``None`` only
for the health check), running blocking core calls on worker threads so the
event loop stays responsive, and :meth:`OpxHandler.error_response`, the one
place that turns an exception into an HTTP status and a JSON body:
``OpxError`` → its ``status`` with ``{"code", "message", …fields}``; a tornado
``HTTPError`` keeps its status; anything else → 500 with a generic message (the
traceback goes to the server log, not to the client).

The handlers take their :class:`~.app.ServerContext` as an ``initialize``
argument, so ``opx serve`` and the Jupyter server extension mount the same
classes with their own store, auth and limits.
"""

from __future__ import annotations

import functools
import json
import logging
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from tornado import httputil
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.web import HTTPError, RequestHandler, stream_request_body

from .._version import __version__
from ..exceptions import NotFoundError, OpxError, ValidationError

if TYPE_CHECKING:
    from ..monitoring.log import Logged
    from ..workspace import Workspace
    from .app import ServerContext

log = logging.getLogger("jupyter_opx.server")
T = TypeVar("T")
_HTTP_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}


class OpxHandler(RequestHandler):
    """Base of every jupyter_opx route (see the module docstring).

    Attributes
    ----------
    scope : str or None
        The token scope a request needs; ``None`` makes the route public.
    allow_query_token : bool
        Whether the token may come as ``?token=`` (for EventSource).
    """

    scope: str | None = "read"
    allow_query_token = False
    ctx: ServerContext

    def initialize(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.principal: Any = None

    async def prepare(self) -> None:
        if self.scope is not None:
            self.principal = await self.ctx.auth.authorize(self, self.scope)

    async def run_blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the server's worker threads."""
        self.ctx.busy += 1
        try:
            return await IOLoop.current().run_in_executor(
                self.ctx.executor, functools.partial(fn, *args, **kwargs)
            )
        finally:
            self.ctx.busy -= 1

    def render_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(obj, default=str))

    # -- errors: the one mapping -------------------------------------------------------
    @staticmethod
    def error_response(exc: BaseException | None, status: int) -> tuple[int, dict[str, Any]]:
        """``(status, JSON body)`` answering ``exc`` (``None``: a bare ``send_error(status)``)."""
        if isinstance(exc, OpxError):
            return exc.status, exc.to_dict()
        if isinstance(exc, HTTPError) or exc is None:
            message = None
            if isinstance(exc, HTTPError):
                status = exc.status_code
                if exc.log_message:
                    message = exc.log_message % exc.args if exc.args else exc.log_message
            message = message or httputil.responses.get(status, "Unknown")
            return status, {"code": _HTTP_CODES.get(status, "http_error"), "message": message}
        return 500, {
            "code": "internal",
            "message": "internal server error; the server log has the details",
        }

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        status, body = self.error_response(exc, status_code)
        self.set_status(status)
        if status == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="opx"')
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(body, default=str))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, OpxError):  # an answer, not a server fault: no traceback
            level = logging.WARNING if value.status >= 500 else logging.DEBUG
            log.log(
                level, "%s %s: %s %s", self.request.method, self.request.path, value.status, value
            )
        else:
            super().log_exception(typ, value, tb)


class NotFoundHandler(OpxHandler):
    """Any path no route matches: a JSON 404 (nothing to protect, so no auth)."""

    scope = None

    async def prepare(self) -> None:
        raise NotFoundError(f"no route {self.request.method} {self.request.path}")


class HealthHandler(OpxHandler):
    """``GET /health``: public and minimal, for load balancers and the panel."""

    scope = None

    def get(self) -> None:
        self.render_json({"status": "ok", "version": __version__})


# -- feedback ------------------------------------------------------------------------------
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
) -> Logged:
    """Decode, validate and store one POSTed batch (blocking; all or nothing)."""
    from ..monitoring.ingest import parse_body
    from ..monitoring.log import log_events

    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        body = _gunzip(body, limit)
    elif encoding != "identity":
        raise ValidationError(f"unsupported Content-Encoding {encoding!r}; send gzip or none")
    frame = parse_body(kind, body, content_type)
    return log_events(ws, model, kind, frame)


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

    async def prepare(self) -> None:
        from ..monitoring.ingest import KINDS
        from ..snapshots.catalog import get_snapshot

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
        await self.run_blocking(get_snapshot, self.ctx.ws, self.path_kwargs["model"])
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
        )
        self.render_json(logged.to_dict(), status=201)


class FeedbackHandler(OpxHandler):
    """``GET /feedback/{model}?window=1d``: the model's feedback tables and KPIs.

    Optional ``horizon`` (late-label join, e.g. ``30D``), ``threshold`` and
    ``control_arm`` are passed on to :func:`~jupyter_opx.monitoring.compute.compute`.
    """

    scope = "read"

    async def get(self, model: str) -> None:
        from ..monitoring.compute import compute

        options: dict[str, Any] = {}
        for name in ("horizon", "control_arm"):
            value = self.get_query_argument(name, None)
            if value:
                options[name] = value
        threshold = self.get_query_argument("threshold", None)
        if threshold:
            try:
                options["threshold"] = float(threshold)
            except ValueError:
                raise ValidationError(f"threshold must be a number, not {threshold!r}") from None
        window = self.get_query_argument("window", "1d")

        def work() -> dict[str, Any]:
            return compute(self.ctx.ws, model, window, **options).to_dict()

        self.render_json(await self.run_blocking(work))


class StreamHandler(OpxHandler):
    """``GET /stream``: server-sent events carrying the store's change sequence.

    Sends ``event: change`` with ``data: {"seq": N}`` at once (the current
    sequence) and then whenever it moves, and a comment line every
    :attr:`heartbeat` seconds so proxies keep the connection open.
    """

    scope = "read"
    allow_query_token = True
    heartbeat = 15.0

    def initialize(self, ctx: ServerContext) -> None:
        super().initialize(ctx)
        self._gone = False

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # no buffering in nginx
        feed = self.ctx.feed
        loop = IOLoop.current()
        try:
            seq = await feed.current()
            await self._send(f"retry: 1000\n{self._event(seq)}")
            beat = loop.time() + self.heartbeat
            while not self._gone:
                left = beat - loop.time()
                if left <= 0:
                    await self._send(": heartbeat\n\n")
                    beat = loop.time() + self.heartbeat
                    continue
                # wake at least once a second to notice a closed connection
                new = await feed.wait(seq, min(left, 1.0))
                if new != seq:
                    seq = new
                    await self._send(self._event(seq))
        except StreamClosedError:
            pass

    @staticmethod
    def _event(seq: int) -> str:
        return f"id: {seq}\nevent: change\ndata: {json.dumps({'seq': seq})}\n\n"

    async def _send(self, text: str) -> None:
        self.write(text)
        await self.flush()

    def on_connection_close(self) -> None:
        self._gone = True


__all__ = [
    "FeedbackHandler",
    "HealthHandler",
    "IngestHandler",
    "NotFoundHandler",
    "OpxHandler",
    "StreamHandler",
    "ingest_body",
]
