"""The base of every REST handler: auth first, core calls off the loop, one error mapping.

One base class, :class:`OpxHandler`, holds what every route shares:
authentication before anything else (:meth:`OpxHandler.required_scope`;
only ``opx serve``'s health check is public), running blocking core calls on
worker threads so the event loop stays responsive, reading requests into
the models of :mod:`.models`, and :meth:`OpxHandler.error_response`, the one
place that turns an exception into an HTTP status and a JSON body:
``OpxError`` → its ``status`` (400 bad input, 404 not found, 409 conflict …)
with ``{"code", "message", …fields}``; a tornado ``HTTPError`` keeps its
status; anything else → 500 with a generic message (the traceback goes to
the server log, not to the client).

The handlers take their :class:`~.app.ServerContext` as an ``initialize``
argument, so ``opx serve`` and the Jupyter server extension mount the same
classes with their own store, auth and limits. The resources' handlers live
in :mod:`.snapshots`, :mod:`.jobs`, :mod:`.runs`, :mod:`.feedback` and
:mod:`.stream`.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, TypeVar

from tornado import httputil
from tornado.ioloop import IOLoop
from tornado.web import HTTPError, RequestHandler

from .._version import __version__
from ..exceptions import NotFoundError, OpxError, ValidationError
from . import parsing

if TYPE_CHECKING:
    from .app import ServerContext

log = logging.getLogger("jupyter_opx.server")
T = TypeVar("T")
M = TypeVar("M")
_HTTP_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}
_READ_METHODS = ("GET", "HEAD", "OPTIONS")


class OpxHandler(RequestHandler):
    """Base of every jupyter_opx route (see the module docstring).

    Attributes
    ----------
    scope : str or None
        The token scope reading the route (GET) needs; ``None`` makes the route public.
    write_scope : str
        The scope its writing methods (POST, PATCH …) need.
    allow_query_token : bool
        Whether the token may come as ``?token=`` (for EventSource).
    allow_cookie_token : bool
        Whether the dashboard cookie counts, on GET only (the dashboard's routes).
    """

    scope: str | None = "read"
    write_scope = "admin"
    allow_query_token = False
    allow_cookie_token = False
    ctx: ServerContext

    def initialize(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.principal: Any = None

    def required_scope(self) -> str | None:
        """The scope this request needs (by method), or None for a public route."""
        if self.scope is None:
            return None
        return self.scope if self.request.method in _READ_METHODS else self.write_scope

    def auth_model(self) -> str | None:
        """The model a ``dashboard``-scoped read is about (None: no model's data)."""
        return None

    async def prepare(self) -> None:
        # inside Jupyter the next class is JupyterHandler: its prepare finds the user
        parent = super().prepare()
        if inspect.isawaitable(parent):
            await parent
        scope = self.required_scope()
        if scope is not None:
            self.principal = await self.ctx.auth.authorize(self, scope)

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

    # -- reading requests --------------------------------------------------------------
    def body(self, model: type[M]) -> M:
        """The JSON body as a request model (400 on anything malformed)."""
        return parsing.from_json(model, self.request.body)

    def query(self, model: type[M]) -> M:
        """The query arguments as a query model (the last value of a repeated one)."""
        args = {k: self.decode_argument(v[-1]) for k, v in self.request.query_arguments.items()}
        return parsing.from_query(model, args)

    def local_path(self, path: str, what: str = "notebook") -> Path:
        """A file path sent by a client, resolved under the server's root folder.

        Raises
        ------
        ValidationError
            An empty or absolute path, or one leading out of the root (``..``, symlinks).
        """
        root = self.ctx.root_dir.resolve()
        text = path.strip()
        if not text or "\x00" in text:
            raise ValidationError(f"a {what} path is required (relative to the server root)")
        if (
            PurePosixPath(text).is_absolute()
            or PureWindowsPath(text).is_absolute()
            or PureWindowsPath(text).drive
        ):
            raise ValidationError(
                f"{what} path {path!r} is absolute; give it relative to the server root",
                field=what,
            )
        full = (root / text).resolve()
        if not full.is_relative_to(root):
            raise ValidationError(
                f"{what} path {path!r} leads out of the server root; "
                "give a path inside the folder Jupyter serves",
                field=what,
            )
        return full

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
    """Any path no route matches: a JSON 404 (``opx serve``: public, nothing to protect)."""

    scope: str | None = None

    async def prepare(self) -> None:
        await super().prepare()
        raise NotFoundError(
            f"no route {self.request.method} {self.request.path} "
            "(references with a version travel URL-encoded: churn%2F3)"
        )


class AuthenticatedNotFoundHandler(NotFoundHandler):
    """The same 404 behind authentication: the extension's catch-all under ``/opx/api``,
    so that no path there answers a caller who is not logged in."""

    scope = "read"


class HealthHandler(OpxHandler):
    """``GET /health``: public and minimal, for load balancers (``opx serve`` only)."""

    scope = None

    def get(self) -> None:
        self.render_json({"status": "ok", "version": __version__})


class VersionHandler(OpxHandler):
    """``GET /version``: the server's jupyter_opx version (``Version``), for the panel's check."""

    def get(self) -> None:
        self.render_json({"version": __version__})


__all__ = [
    "AuthenticatedNotFoundHandler",
    "HealthHandler",
    "NotFoundHandler",
    "OpxHandler",
    "VersionHandler",
]
