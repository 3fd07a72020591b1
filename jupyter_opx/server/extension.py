"""The Jupyter server extension of jupyter_opx (enabled on install by ``jupyter-config/``).

It serves the REST API of the store that the server's ``root_dir`` resolves
to (:func:`~jupyter_opx.workspace.find_store_dir`) under ``{base_url}opx/api``:
the same handlers as ``opx serve`` (:data:`~jupyter_opx.server.app.ROUTES`),
each one mounted with Jupyter's ``JupyterHandler`` beneath it and every
method behind ``@tornado.web.authenticated``, and :class:`~.auth.JupyterAuth`
as the auth strategy (Jupyter's login and authorizer instead of opx tokens).
Notebook paths in requests are relative to ``root_dir``.

When ``c.OpxServer.scheduler = True`` it also runs the jobs scheduler of that
store in a daemon thread, so due jobs run while JupyterLab is open. The
store's lease keeps it to one active scheduler, whether other Jupyter
servers or an ``opx scheduler`` process run too; the scheduler releases it
when the server process exits.

Configuration (``jupyter_server_config.py`` or the command line)::

    c.OpxServer.scheduler = True          # default False
    c.OpxServer.scheduler_concurrency = 2
    c.OpxServer.scheduler_prestart = 0
    c.OpxServer.workers = 4               # threads running the API's core calls
"""

from __future__ import annotations

import atexit
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tornado.web import RequestHandler
from traitlets import Bool, Int
from traitlets.config import Configurable

API_PATH = "opx/api"


class OpxServer(Configurable):
    """Settings of the jupyter_opx server extension."""

    scheduler = Bool(
        False,
        config=True,
        help="Run the jobs scheduler inside the Jupyter server (one active per store: "
        "the store's lease keeps others on standby).",
    )
    scheduler_concurrency = Int(2, config=True, help="Local runs executing at once.")
    scheduler_prestart = Int(
        0, config=True, help="Kernels started ahead of time, each used by one run (0: none)."
    )
    workers = Int(4, config=True, help="Threads running the REST API's calls into the store.")


@functools.cache
def _jupyter_route() -> type:
    """What goes beneath every opx handler in Jupyter: JupyterHandler, set up as an API."""
    from jupyter_server.base.handlers import JupyterHandler
    from tornado import web

    from .auth import JupyterAuth

    class JupyterRoute(JupyterHandler):
        auth_resource = JupyterAuth.resource

        async def prepare(self) -> None:  # type: ignore[override]
            await super().prepare(_redirect_to_login=False)
            if not self.check_origin():  # as Jupyter's APIHandler
                raise web.HTTPError(404)

        def get_login_url(self) -> str:
            raise web.HTTPError(403)  # an API does not redirect to a login page

    return JupyterRoute


def jupyter_handler(cls: type[RequestHandler]) -> type:
    """``cls`` (an :class:`~.handlers.OpxHandler`) with Jupyter's handler beneath it.

    Jupyter's ``prepare`` finds the user (without redirecting to a login page:
    an API answers 403) and checks the request's origin, host and XSRF token;
    each HTTP method is wrapped in ``@tornado.web.authenticated``, which is
    also how Jupyter's own audit of extension endpoints recognises them. The
    opx handler comes first in the MRO, so its ``prepare`` (which awaits
    Jupyter's, then asks :class:`~.auth.JupyterAuth`) and its JSON errors win.
    """
    from tornado import web

    methods = {
        name.lower(): web.authenticated(getattr(cls, name.lower()))
        for name in cls.SUPPORTED_METHODS
        if getattr(cls, name.lower()) is not getattr(web.RequestHandler, name.lower())
    }
    return type(cls.__name__, (cls, _jupyter_route()), {"__module__": cls.__module__, **methods})


def mount_api(serverapp: Any, workers: int = 4) -> Any:
    """Mount the REST API under ``{base_url}opx/api``; returns its ServerContext."""
    from jupyter_server.utils import url_path_join

    from ..workspace import find_store_dir, get_workspace
    from .app import ServerContext, routes
    from .auth import JupyterAuth

    ctx = ServerContext(
        get_workspace(find_store_dir(start=serverapp.root_dir)),
        JupyterAuth(),
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="opx-api"),
        root_dir=Path(serverapp.root_dir),
    )
    base = url_path_join(serverapp.base_url, API_PATH)
    rules = [
        (pattern, jupyter_handler(handler), kwargs)
        for pattern, handler, kwargs in routes(ctx, base, public=False)
    ]
    serverapp.web_app.add_handlers(".*$", rules)
    serverapp.web_app.settings["opx"] = ctx
    return ctx


class SchedulerThread:
    """A :class:`~jupyter_opx.jobs.scheduler.Scheduler` in a daemon thread, stoppable."""

    def __init__(self, scheduler: Any, log: Any) -> None:
        self.scheduler = scheduler
        self.log = log
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="opx-scheduler", daemon=True)

    def _run(self) -> None:
        try:
            self.scheduler.run(self.stop_event)
        except Exception:  # the server goes on without the scheduler
            self.log.exception("jupyter_opx: the scheduler stopped on an error")

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop passes and release the lease (running runs go on in their processes)."""
        if self.thread.is_alive():
            self.stop_event.set()
            self.thread.join(timeout)
            self.log.info("jupyter_opx: scheduler stopped")


_running: list[SchedulerThread] = []


def _stop_all() -> None:
    while _running:
        _running.pop().stop()


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Mount the REST API; start the scheduler when ``OpxServer.scheduler`` is set."""
    from ..exceptions import OpxError

    config = OpxServer(parent=serverapp)
    log = serverapp.log
    try:
        ctx = mount_api(serverapp, config.workers)
    except OpxError as exc:  # e.g. an unreadable .opx/config.toml
        log.error("jupyter_opx: the REST API is not mounted: %s", exc.message)
    else:
        log.info(
            "jupyter_opx: REST API at %s%s (store %s)", serverapp.base_url, API_PATH, ctx.ws.root
        )
    if not config.scheduler:
        log.info("jupyter_opx: scheduler off (enable it with c.OpxServer.scheduler = True)")
        return
    from ..jobs.scheduler import Scheduler
    from ..workspace import Workspace, find_store_dir

    try:
        ws = Workspace(find_store_dir(start=serverapp.root_dir))
        ws.db  # noqa: B018 - create and migrate the store now, so errors show at start-up
        scheduler = Scheduler(
            ws,
            concurrency=config.scheduler_concurrency,
            prestart=config.scheduler_prestart,
            log=lambda message: log.info("jupyter_opx: %s", message),
        )
    except OpxError as exc:
        log.error("jupyter_opx: the scheduler cannot start: %s", exc.message)
        return
    runner = SchedulerThread(scheduler, log)
    runner.start()
    if not _running:
        # module-based extensions get no shutdown hook from jupyter_server; the
        # process exit is the server's shutdown, and the lease is released then
        atexit.register(_stop_all)
    _running.append(runner)
    log.info(
        "jupyter_opx: scheduler started for %s (concurrency %d, prestart %d)",
        ws.root,
        config.scheduler_concurrency,
        config.scheduler_prestart,
    )


__all__ = ["OpxServer", "_load_jupyter_server_extension", "jupyter_handler", "mount_api"]
