"""Where runs execute: local subprocesses (bounded concurrency) or a Dask cluster.

Every executor calls the same :func:`~jupyter_opx.jobs.runner.execute_run`,
so a run behaves the same wherever it runs; only the process differs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from ..exceptions import ValidationError
from ..workspace import Workspace


def runner_command(run_id: int) -> list[str]:
    """The command line of a runner process for one run."""
    return [sys.executable, "-m", "jupyter_opx.jobs.runner", str(run_id)]


def spawn_runner(ws: Workspace, run_id: int, detach: bool = True) -> subprocess.Popen[bytes]:
    """Start ``python -m jupyter_opx.jobs.runner RUN_ID`` for the store ``ws``.

    Its own stdout/stderr (not the notebook's, which go to the run log) land
    in ``.opx/logs/runner-RUN_ID.log`` for post-mortems.
    """
    logs = ws.root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OPX_HOME": str(ws.root)}
    with open(logs / f"runner-{run_id}.log", "ab") as out:
        return subprocess.Popen(
            runner_command(run_id),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
        )


class LocalExecutor:
    """Runs in subprocesses, at most ``max_workers`` at a time."""

    def __init__(self, ws: Workspace, max_workers: int = 2) -> None:
        if max_workers < 1:
            raise ValidationError("concurrency must be at least 1")
        self.ws = ws
        self.max_workers = max_workers
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def free_slots(self) -> int:
        self.poll()
        return self.max_workers - len(self.procs)

    def submit(self, run_id: int) -> None:
        self.procs[run_id] = spawn_runner(self.ws, run_id, detach=False)

    def poll(self) -> list[int]:
        """Forget finished processes; returns their run ids."""
        done = [rid for rid, p in self.procs.items() if p.poll() is not None]
        for rid in done:
            del self.procs[rid]
        return done

    def shutdown(self, wait: bool = True) -> None:
        if wait:
            for p in self.procs.values():
                p.wait()


def parse_dask_address(executor: str) -> str:
    """``dask://host:8786`` → ``tcp://host:8786`` (what distributed expects)."""
    if executor.startswith("dask://"):
        return "tcp://" + executor[len("dask://") :]
    if executor.startswith("tcp://"):
        return executor
    raise ValidationError(f"not a Dask executor address: {executor!r} (use dask://HOST:PORT)")


def _execute_on_worker(store_root: str, run_id: int) -> str:
    """What a Dask worker runs: the same runner, against the same store."""
    from ..workspace import Workspace as _Workspace
    from .runner import execute_run

    return execute_run(_Workspace(store_root), run_id).status


class DaskExecutor:
    """Runs on a Dask distributed cluster (the scale-out path).

    The workers must reach the same store: a shared folder, or PostgreSQL plus
    an object store configured in ``.opx/config.toml``.
    """

    def __init__(self, ws: Workspace, address: str) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise ValidationError(
                "the Dask executor needs distributed: pip install 'jupyter_opx[dask]'"
            ) from None
        self.ws = ws
        self.address = parse_dask_address(address)
        try:
            self.client = Client(self.address, timeout=10, set_as_default=False)
        except OSError as exc:
            raise ValidationError(f"cannot reach the Dask scheduler at {self.address}: {exc}")
        self.futures: dict[int, Any] = {}

    def submit(self, run_id: int) -> Any:
        future = self.client.submit(
            _execute_on_worker, str(self.ws.root), run_id, key=f"opx-run-{run_id}", pure=False
        )
        self.futures[run_id] = future
        return future

    def poll(self) -> list[int]:
        done = [rid for rid, f in self.futures.items() if f.done()]
        for rid in done:
            del self.futures[rid]
        return done

    def wait(self, run_id: int) -> str:
        status: str = self.futures.pop(run_id).result()
        return status

    def shutdown(self, wait: bool = True) -> None:
        self.client.close()
