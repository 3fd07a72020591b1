"""Where runs execute: local subprocesses (bounded concurrency) or a Dask cluster.

Every executor calls the same :func:`~jupyter_opx.jobs.runner.execute_run`,
so a run behaves the same wherever it runs; only the process differs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from datetime import datetime
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


def spawn_standby(ws: Workspace, job_name: str, fire: datetime) -> subprocess.Popen[bytes]:
    """Start ``python -m jupyter_opx.jobs.runner --standby JOB`` ahead of a fire time.

    The process imports what a run needs and starts a kernel for the job, then
    waits for a run id on its stdin (:func:`hand_over`); it exits, discarding
    its kernel, when its stdin closes without one (the scheduler stopped or no
    longer needs it).
    """
    logs = ws.root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OPX_HOME": str(ws.root)}
    name = f"runner-{job_name}-{fire:%Y%m%dT%H%M%S}.log"
    with open(logs / name, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "jupyter_opx.jobs.runner", "--standby", job_name],
            env=env,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def hand_over(proc: subprocess.Popen[bytes], run_id: int | None) -> bool:
    """Give a standby runner its run (or, with None, tell it to exit); False if it is gone."""
    assert proc.stdin is not None
    try:
        if run_id is not None and proc.poll() is None:
            proc.stdin.write(f"{run_id}\n".encode())
            proc.stdin.flush()
            return True
        return False
    except OSError:  # it died: its end of the pipe is closed
        return False
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()


class LocalExecutor:
    """Runs in subprocesses, at most ``max_workers`` at a time.

    A run's process can be started ahead of its run (:meth:`prepare`, for an
    imminent fire time of a job): it then already holds a started kernel when
    the run is handed to it, and the run starts without waiting for Python,
    papermill and a kernel to start.
    """

    def __init__(self, ws: Workspace, max_workers: int = 2) -> None:
        if max_workers < 1:
            raise ValidationError("concurrency must be at least 1")
        self.ws = ws
        self.max_workers = max_workers
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        #: runner processes started ahead: job name → (fire time, process)
        self.standby: dict[str, tuple[datetime, subprocess.Popen[bytes]]] = {}
        self._released: list[subprocess.Popen[bytes]] = []

    @property
    def free_slots(self) -> int:
        self.poll()
        return self.max_workers - len(self.procs)

    def submit(self, run_id: int, job_name: str | None = None) -> bool:
        """Start a run; True when a runner started ahead for ``job_name`` took it."""
        ahead = self.standby.pop(job_name, None) if job_name is not None else None
        if ahead is not None and hand_over(ahead[1], run_id):
            self.procs[run_id] = ahead[1]
            return True
        self.procs[run_id] = spawn_runner(self.ws, run_id, detach=False)
        return False

    def prepare(self, job_name: str, fire: datetime) -> None:
        """Start a runner for ``job_name`` ahead of its fire time (one per job)."""
        if job_name not in self.standby:
            self.standby[job_name] = (fire, spawn_standby(self.ws, job_name, fire))

    def release(self, job_name: str) -> None:
        """Let the runner started ahead for ``job_name`` go (it discards its kernel)."""
        ahead = self.standby.pop(job_name, None)
        if ahead is not None:
            hand_over(ahead[1], None)
            self._released.append(ahead[1])

    def release_all(self) -> None:
        for job_name in list(self.standby):
            self.release(job_name)

    def poll(self) -> list[int]:
        """Forget finished processes; returns their run ids."""
        done = [rid for rid, p in self.procs.items() if p.poll() is not None]
        for rid in done:
            del self.procs[rid]
        self._released = [p for p in self._released if p.poll() is None]
        return done

    def shutdown(self, wait: bool = True) -> None:
        self.release_all()
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
