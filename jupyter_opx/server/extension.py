"""The Jupyter server extension of jupyter_opx (enabled on install by ``jupyter-config/``).

What it does now: it reads the ``OpxServer`` configuration and, when
``c.OpxServer.scheduler = True``, runs the jobs scheduler of the store that
the server's ``root_dir`` resolves to (:func:`~jupyter_opx.workspace.find_store_dir`)
in a daemon thread, so due jobs run while JupyterLab is open. The store's
lease keeps it to one active scheduler, whether other Jupyter servers or an
``opx scheduler`` process run too; the scheduler releases it when the server
process exits. It mounts no HTTP routes yet: the REST API is served by
``opx serve`` (:mod:`jupyter_opx.server.app`), whose handlers the extension
will mount under ``/opx/api`` behind Jupyter's authentication.

Configuration (``jupyter_server_config.py`` or the command line)::

    c.OpxServer.scheduler = True          # default False
    c.OpxServer.scheduler_concurrency = 2
    c.OpxServer.scheduler_prestart = 0
"""

from __future__ import annotations

import atexit
import threading
from typing import Any

from traitlets import Bool, Int
from traitlets.config import Configurable


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
    """Read ``OpxServer`` settings and start the scheduler when enabled."""
    config = OpxServer(parent=serverapp)
    log = serverapp.log
    if not config.scheduler:
        log.info("jupyter_opx: scheduler off (enable it with c.OpxServer.scheduler = True)")
        return
    from ..exceptions import OpxError
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


__all__ = ["OpxServer", "_load_jupyter_server_extension"]
