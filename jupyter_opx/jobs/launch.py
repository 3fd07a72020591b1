"""Starting runs: queue, then execute here, hand to the scheduler, or spawn a runner."""

from __future__ import annotations

from typing import Any

from ..workspace import Workspace
from . import runs as R
from .executors import DaskExecutor, spawn_runner
from .lease import scheduler_active
from .runner import execute_run


def start_run(
    ws: Workspace,
    job_name: str,
    values: dict[str, Any] | None = None,
    *,
    wait: bool = False,
    trigger: str = "manual",
    executor: str | None = None,
) -> R.Run:
    """Queue a run (parameters validated first) and get it executed.

    ``wait=True`` executes it in this process (or waits for the Dask cluster)
    and returns the finished run. Otherwise an active scheduler picks it up;
    with no scheduler running, a background runner process is started.
    """
    run = R.create_run(ws, job_name, values, trigger=trigger, executor=executor)
    if run.executor.startswith(("dask://", "tcp://")):
        dask = DaskExecutor(ws, run.executor)
        dask.submit(run.id)
        if wait:
            dask.wait(run.id)
        else:
            from distributed import fire_and_forget

            fire_and_forget(dask.futures.pop(run.id))
        dask.shutdown()
        return R.get_run(ws, run.id)
    if wait:
        return execute_run(ws, run.id)
    if not scheduler_active(ws):
        spawn_runner(ws, run.id)
    return R.get_run(ws, run.id)
