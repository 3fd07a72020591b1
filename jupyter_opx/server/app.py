"""The route table, :func:`make_app` and the ``opx serve`` loop.

:data:`ROUTES` is the one list of handlers, written as OpenAPI path templates
(``api/openapi.yaml`` describes exactly these). ``opx serve`` mounts it at
``/api`` with :class:`~.auth.TokenAuth`; the Jupyter server extension mounts
the same list under ``/opx/api`` with :class:`~.auth.JupyterAuth` (Jupyter's
login). Token scopes: ``read`` for every GET, ``feedback:write`` to post
events, ``admin`` for the other writes (promote, jobs, runs); ``dashboard``
(or ``dashboard:MODEL``) reads only what the business dashboard shows: the
feedback metrics, the alerts and the stream. ``opx serve`` also mounts the
dashboard itself at ``/dashboard/{model}`` (:mod:`.dashboard`). Routes
(relative to the base path; ``{ref}`` and ``{model}`` URL-encoded):

=======  ====================================  =======================================
GET      ``/health``                           public, ``opx serve`` only
GET      ``/version``                          the server's jupyter_opx version
GET      ``/models``                           snapshot names: versions, latest, aliases
GET      ``/snapshots``                        ``?name=&limit=&offset=``
GET      ``/snapshots/{ref}``                  ``churn``, ``churn%2F3``, ``churn@production``
POST     ``/snapshots/{ref}/promote``          ``{"alias": "production"}``
GET      ``/snapshots/{name}/history``         alias moves
GET      ``/diff?a=&b=``                       two refs
GET      ``/jobs``, POST ``/jobs``             list; create from a notebook path
GET      ``/jobs/{name}``, PATCH               show; update (new version)
POST     ``/jobs/{name}/enable|disable``       schedule on/off
POST     ``/jobs/{name}/runs``                 run now (202)
GET      ``/notebook-params?path=``            a notebook's typed parameters
GET      ``/schedule-preview?cron=&tz=``       cron in words, next fire times
GET      ``/runs``, ``/runs/{id}``             ``?job=&status=``; one run
GET      ``/runs/{id}/logs?after=``            log entries after a sequence number
POST     ``/runs/{id}/cancel``                 cancel
GET      ``/runs/{id}/output``                 the output notebook as HTML
POST     ``/feedback/{model}/{kind}``          ingest events (``feedback:write``)
GET      ``/feedback/{model}?window=1d``       metrics per window (also ``dashboard``)
GET      ``/alerts?model=``                    alert rules and states (also ``dashboard``)
GET      ``/stream``                           the change sequence as SSE (also ``dashboard``)
=======  ====================================  =======================================
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from ..exceptions import ConflictError
from ..workspace import Workspace
from . import feedback, jobs, runs, snapshots
from . import handlers as h
from .auth import Auth, TokenAuth
from .dashboard import DASHBOARD_ROUTES
from .stream import ChangeFeed, StreamHandler

DEFAULT_MAX_BODY = 64 * 2**20
access_log = logging.getLogger("tornado.access")
_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&]*")


@dataclass
class ServerContext:
    """What the handlers share: the store, the auth, worker threads and limits.

    Attributes
    ----------
    max_body : int
        Largest accepted request body in bytes (after gzip decoding too).
    root_dir : Path
        The folder notebook paths of requests are relative to (and confined in).
    busy : int
        Core calls running on the worker threads now (a clean shutdown waits for them).
    """

    ws: Workspace
    auth: Auth
    executor: ThreadPoolExecutor
    max_body: int = DEFAULT_MAX_BODY
    root_dir: Path = field(default_factory=Path.cwd)
    feed: ChangeFeed = field(init=False)
    busy: int = 0

    def __post_init__(self) -> None:
        self.feed = ChangeFeed(self.ws.change_seq, self.executor)

    def close(self) -> None:
        """Stop the change feed and the worker threads (after running calls end)."""
        self.feed.close()
        self.executor.shutdown(wait=True)


#: ``(path template, handler, extra initialize arguments)``, in matching order
ROUTES: list[tuple[str, type[h.OpxHandler], dict[str, Any]]] = [
    ("/health", h.HealthHandler, {}),
    ("/version", h.VersionHandler, {}),
    ("/models", snapshots.ModelsHandler, {}),
    ("/snapshots", snapshots.SnapshotsHandler, {}),
    ("/snapshots/{ref}", snapshots.SnapshotHandler, {}),
    ("/snapshots/{ref}/promote", snapshots.PromoteHandler, {}),
    ("/snapshots/{name}/history", snapshots.AliasHistoryHandler, {}),
    ("/diff", snapshots.DiffHandler, {}),
    ("/jobs", jobs.JobsHandler, {}),
    ("/jobs/{name}", jobs.JobHandler, {}),
    ("/jobs/{name}/enable", jobs.JobStateHandler, {"enabled": True}),
    ("/jobs/{name}/disable", jobs.JobStateHandler, {"enabled": False}),
    ("/jobs/{name}/runs", jobs.RunNowHandler, {}),
    ("/notebook-params", jobs.NotebookParamsHandler, {}),
    ("/schedule-preview", jobs.SchedulePreviewHandler, {}),
    ("/runs", runs.RunsHandler, {}),
    ("/runs/{run_id}", runs.RunHandler, {}),
    ("/runs/{run_id}/logs", runs.RunLogsHandler, {}),
    ("/runs/{run_id}/cancel", runs.CancelRunHandler, {}),
    ("/runs/{run_id}/output", runs.RunOutputHandler, {}),
    ("/feedback/{model}/{kind}", feedback.IngestHandler, {}),
    ("/feedback/{model}", feedback.FeedbackHandler, {}),
    ("/alerts", feedback.AlertsHandler, {}),
    ("/stream", StreamHandler, {}),
]
_PARAM = re.compile(r"\\{(\w+)\\}")


def path_regex(template: str) -> str:
    """A tornado path pattern for an OpenAPI path template (a parameter is one segment)."""
    return _PARAM.sub(r"(?P<\1>[^/]+)", re.escape(template)) + "$"


def routes(
    ctx: ServerContext, base_path: str = "/api", public: bool = True
) -> list[tuple[str, type, dict[str, Any]]]:
    """The handlers, as tornado rules under ``base_path``.

    ``public=False`` leaves out the one unauthenticated route (``/health``) and
    ends the list with an authenticated JSON 404 for the rest of ``base_path``;
    the Jupyter server extension mounts it so.
    """
    base = re.escape(base_path.rstrip("/"))
    rules: list[tuple[str, type, dict[str, Any]]] = [
        (base + path_regex(template), handler, {"ctx": ctx, **extra})
        for template, handler, extra in ROUTES
        if public or handler.scope is not None
    ]
    if not public:
        rules.append((rf"{base}/.*", h.AuthenticatedNotFoundHandler, {"ctx": ctx}))
    return rules


def _log_request(handler: RequestHandler) -> None:
    # tornado's own access log, minus ?token= secrets (EventSource URLs carry them)
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    request = handler.request
    uri = _TOKEN_IN_QUERY.sub(r"\1…", request.uri or "")
    access_log.log(
        level,
        "%d %s %s (%s) %.1fms",
        status,
        request.method,
        uri,
        request.remote_ip,
        1000.0 * request.request_time(),
    )


def make_app(
    ws: Workspace,
    base_path: str = "/api",
    auth: Auth | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    workers: int = 4,
    root_dir: str | Path | None = None,
    dashboard: bool = True,
    **settings: Any,
) -> Application:
    """The tornado application of ``opx serve``.

    Parameters
    ----------
    ws : Workspace
        The store the routes read and write.
    base_path : str
        Where the routes are mounted.
    auth : Auth, optional
        Who may call what; default :class:`~.auth.TokenAuth` over ``ws``'s tokens.
    max_body : int
        Largest request body in bytes; larger ones get 413.
    workers : int
        Threads running the core calls (parsing, parquet, metrics) off the event loop.
    root_dir : path, optional
        The folder notebook paths in requests are relative to (default: the working directory).
    dashboard : bool
        Also serve the business dashboard at ``/dashboard/{model}`` (see :mod:`.dashboard`).

    Returns
    -------
    tornado.web.Application
        Its ``settings["opx"]`` is the :class:`ServerContext`; call
        ``ctx.close()`` when the server is done.
    """
    ctx = ServerContext(
        ws,
        auth if auth is not None else TokenAuth(ws),
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="opx-server"),
        max_body,
        Path(root_dir) if root_dir is not None else Path.cwd(),
    )
    rules = routes(ctx, base_path)
    if dashboard:
        rules += [(pattern, handler, {"ctx": ctx}) for pattern, handler in DASHBOARD_ROUTES]
    return Application(
        rules,
        default_handler_class=h.NotFoundHandler,
        default_handler_args={"ctx": ctx},
        log_function=_log_request,
        opx=ctx,
        **settings,
    )


#: glibc's ``mallopt`` parameters (``<malloc.h>``)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: blocks up to this size come from the heap, which keeps what it is given back
#: up to :data:`_HEAP_KEPT` (both well above a request's few bodies of 5 MB)
_MMAP_THRESHOLD = 32 << 20
_HEAP_KEPT = 256 << 20


def tune_malloc() -> bool:
    """Let glibc's allocator keep large freed blocks for the next request (``opx serve``).

    Each ingestion request allocates a few blocks of the body's size (tornado's
    read buffer, the body joined from its chunks). By default glibc maps a fresh
    block for each (its threshold adapts, but returns once the heap shrinks)
    and unmaps it when freed, so every request page-faults its bodies in
    again. Measured on 2 cores: a bare tornado handler taking 5.4 MB POSTs
    went from 2.3–4.3 ms of CPU per request to 8.7–10 ms (2,583 faults, 7 ms
    of it in the kernel) in one server start out of three or four; ``opx
    serve`` under 8 clients had 1,000–1,800 faults per 10,000-event batch in
    some runs. Served from the heap, with up to 256 MB of freed memory kept,
    it stays at 0–100. Returns whether it applied (glibc only; elsewhere
    nothing changes).
    """
    import ctypes
    import ctypes.util

    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _HEAP_KEPT)
    )


def listen(host: str, port: int, reuse_port: bool = False) -> list[Any]:
    """Listening sockets on ``host:port`` (``port=0``: a free one).

    ``reuse_port``: with ``SO_REUSEPORT`` (Linux), so that several processes
    each listen on the port and the kernel spreads new connections over them.

    Raises
    ------
    ConflictError
        The address is in use (or cannot be bound).
    """
    try:
        return list(bind_sockets(port, host, reuse_port=reuse_port))
    except OSError as exc:
        raise cannot_listen(host, port, exc) from None


def api_url(host: str, port: int) -> str:
    """The URL of the API served on ``host:port`` (an IPv6 address in brackets)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/api"


def cannot_listen(host: str, port: int, exc: OSError) -> ConflictError:
    """The error for an address that cannot be bound, saying what to do."""
    return ConflictError(
        f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another port with --port",
        host=host,
        port=port,
    )


async def serve_until_stopped(
    app: Application,
    host: str = "127.0.0.1",
    port: int = 8765,
    on_ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    drain: float = 30.0,
    sockets: list[Any] | None = None,
) -> None:
    """Serve ``app`` (from :func:`make_app`) on ``host:port`` until SIGINT/SIGTERM or ``stop``.

    ``on_ready`` gets the API's URL once the port is bound (``port=0`` picks a
    free one). ``sockets``: listening sockets bound already (by the parent of
    ``opx serve --workers``, see :mod:`.workers`); ``host`` and ``port`` then
    only name them. Shutdown is clean: no new connections, core calls in flight
    finish (up to ``drain`` seconds, so a batch being stored is answered),
    then open connections (event streams) are closed and the worker threads
    stopped. Signal handlers are installed only when run in the main thread.

    Raises
    ------
    ConflictError
        The address is in use.
    """
    ctx: ServerContext = app.settings["opx"]
    if sockets is None:
        try:
            sockets = listen(host, port)
        except ConflictError:
            ctx.close()
            raise
    # bodies of the ingest route are capped by its handler (413); others by this
    server = HTTPServer(app, max_body_size=ctx.max_body)
    server.add_sockets(sockets)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                signals.append(sig)
    if on_ready is not None:
        on_ready(api_url(host, sockets[0].getsockname()[1]))
    try:
        await stop.wait()
    finally:
        server.stop()
        deadline = time.monotonic() + drain
        while ctx.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.close_all_connections(), 5)
        ctx.close()
        for sig in signals:
            loop.remove_signal_handler(sig)


__all__ = [
    "DEFAULT_MAX_BODY",
    "ROUTES",
    "ServerContext",
    "listen",
    "make_app",
    "path_regex",
    "routes",
    "serve_until_stopped",
]
