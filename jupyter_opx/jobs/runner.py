"""Executing one run: papermill in a fresh kernel, watched for timeout and cancel.

The same function runs a run in every executor: in the ``opx job run --wait``
process, in a subprocess started by the local executor, on a Dask worker.

papermill does the parameterising and executing; a small papermill engine
(``opx``) adds what papermill lacks: progress per cell, live logs, the kernel
handle (so that a whole-run timeout or a cancel can stop the kernel — papermill's
own timeout is per cell), and per-run environment and working directory passed
to the kernel instead of the process (runs may share a process on Dask).

Usage as a program (the local executor): ``python -m jupyter_opx.jobs.runner RUN_ID``
with ``OPX_HOME`` pointing at the store.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..exceptions import ConflictError, NotFoundError, OpxError
from ..store.db import utcnow
from ..workspace import Workspace, get_workspace
from . import runs as R
from .definitions import Job, get_job, notebook_of
from .warm import new_kernel_manager, start_kernel

HEARTBEAT_SECONDS = 2.0
LOG_FLUSH_SECONDS = 0.3
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def worker_id() -> str:
    """Who runs: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class _LogSink:
    """A file-like object papermill writes cell stdout/stderr to; flushed in batches."""

    def __init__(self, buffer: list[tuple[str, str]], lock: threading.Lock, stream: str) -> None:
        self._buffer, self._lock, self._stream = buffer, lock, stream

    def write(self, text: str) -> int:
        if text:
            with self._lock:
                self._buffer.append((self._stream, text))
        return len(text)

    def flush(self) -> None:  # batches are flushed by the run's watcher thread
        pass


class _Attempt:
    """State shared by the engine, the watcher thread and the runner for one attempt."""

    def __init__(self, ws: Workspace, run_id: int, deadline: float | None) -> None:
        self.ws, self.run_id, self.deadline = ws, run_id, deadline
        self.km: Any = None
        self.nb_man: Any = None
        self.stop_reason: str | None = None  # "timed_out" | "cancelled"
        self.killed_pid: int | None = None
        self.cells_done = 0
        self.cells_recorded = 0
        self.current_cell: int | None = None
        self.logs: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.done = threading.Event()

    def log(self, text: str, stream: str = "system") -> None:
        with self.lock:
            self.logs.append((stream, text if text.endswith("\n") else text + "\n"))

    def flush_logs(self) -> None:
        with self.lock:
            batch, self.logs[:] = list(self.logs), []
        if batch:
            R.append_logs(self.ws, self.run_id, batch)

    def cell_started(self, index: int) -> None:
        self.current_cell = index

    def cell_done(self, cell: Any) -> None:
        # recorded by the watcher thread with the logs: no database write between cells
        if cell.get("cell_type") == "code":
            self.cells_done += 1

    def flush_progress(self) -> None:
        done = self.cells_done
        if done != self.cells_recorded:
            R.set_fields(self.ws, self.run_id, f"#{self.run_id} progress", cells_done=done)
            self.cells_recorded = done

    def kill_kernel(self, reason: str) -> None:
        """Record why the attempt stops and kill its kernel, once it has a process.

        Called on every tick after the deadline or a cancel request: the kernel
        may still be starting (no pid yet) the first time.
        """
        self.stop_reason = self.stop_reason or reason
        pid = _kernel_pid(self.km)
        if pid is None or pid == self.killed_pid:
            return
        self.killed_pid = pid
        for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
            with contextlib.suppress(OSError):
                kill()

    def watch(self) -> None:
        """Heartbeats, logs and progress flushed, the whole-run deadline, cancel requests."""
        last_beat = 0.0
        while not self.done.wait(LOG_FLUSH_SECONDS):
            with contextlib.suppress(Exception):
                self.flush_logs()
                self.flush_progress()
            now = time.monotonic()
            if self.deadline is not None and now > self.deadline:
                if self.stop_reason is None:
                    self.log("whole-run timeout reached: stopping the kernel")
                self.kill_kernel("timed_out")
            if now - last_beat >= HEARTBEAT_SECONDS:
                last_beat = now
                with contextlib.suppress(Exception):
                    R.set_fields(self.ws, self.run_id, None, heartbeat_at=utcnow())
                    if R.get_run(self.ws, self.run_id).cancel_requested:
                        if self.stop_reason is None:
                            self.log("cancel requested: stopping the kernel")
                        self.kill_kernel("cancelled")


def _kernel_pid(km: Any) -> int | None:
    if km is None:
        return None
    provisioner = getattr(km, "provisioner", None)
    for holder in (provisioner, getattr(provisioner, "process", None), getattr(km, "kernel", None)):
        pid = getattr(holder, "pid", None)
        if isinstance(pid, int):
            return pid
    return None


# -- the papermill engine ---------------------------------------------------------------
def _run_specific(env: dict[str, str]) -> dict[str, str]:
    """The variables a run adds to or changes in the environment of its process."""
    return {k: v for k, v in env.items() if os.environ.get(k) != v}


def _register_engine() -> None:
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines

    class OpxEngine(NBClientEngine):
        """NBClientEngine plus progress hooks, the kernel handle, env and cwd per run."""

        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man: Any,
            kernel_name: str,
            log_output: bool = False,
            stdout_file: Any = None,
            stderr_file: Any = None,
            start_timeout: int = 60,
            execution_timeout: int | None = None,
            **kwargs: Any,
        ) -> Any:
            attempt: _Attempt = kwargs.pop("opx_attempt")
            env: dict[str, str] = kwargs.pop("opx_env")
            cwd: str = kwargs.pop("opx_cwd")
            kernel_output: Any = kwargs.pop("opx_kernel_output")
            # a kernel started before papermill was called: by the runner (with this
            # run's env and cwd) or ahead of the run (pre-started: given them below)
            km: Any = kwargs.pop("opx_km", None)
            prestarted: bool = kwargs.pop("opx_prestarted", False)
            kwargs.pop("input_path", None)
            attempt.nb_man = nb_man
            started, completed = nb_man.cell_start, nb_man.cell_complete

            def cell_start(cell: Any, cell_index: int | None = None, **kw: Any) -> Any:
                attempt.cell_started(cell_index if cell_index is not None else -1)
                return started(cell, cell_index, **kw)

            def cell_complete(cell: Any, cell_index: int | None = None, **kw: Any) -> Any:
                result = completed(cell, cell_index, **kw)
                attempt.cell_done(cell)
                return result

            nb_man.cell_start, nb_man.cell_complete = cell_start, cell_complete
            attempt.km = km or new_kernel_manager(kernel_name)
            client = _Client(
                nb_man,
                km=attempt.km,
                timeout=execution_timeout,
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
                **kwargs,
            )
            if prestarted:
                # a kernel started before the run: give it this run's environment and
                # working directory before the first cell
                client.opx_setup = (
                    "import os as _opx_os\n"
                    f"_opx_os.environ.update({_run_specific(env)!r})\n"
                    f"_opx_os.chdir({cwd!r})\n"
                    "del _opx_os\n"
                )
            try:
                if km is not None:
                    return client.execute()
                # the kernel process's own stdout/stderr (not the cells'): kept out of the
                # terminal of `opx job run --wait`, logged when the kernel itself failed
                return client.execute(
                    env=env, cwd=cwd, stdout=kernel_output, stderr=subprocess.STDOUT
                )
            finally:
                # the client does not own the kernel manager, so it leaves its channels
                # (and their heartbeat thread) running: stop them
                if client.kc is not None:
                    with contextlib.suppress(Exception):
                        client.kc.stop_channels()

    class _Client(PapermillNotebookClient):
        """papermill's client, able to run a silent set-up snippet before the cells."""

        opx_setup: str | None = None

        def papermill_execute_cells(self) -> None:
            if self.opx_setup:
                msg_id = self.kc.execute(self.opx_setup, silent=True, store_history=False)
                reply = self.wait_for_reply(msg_id)
                if (reply or {}).get("content", {}).get("status") != "ok":
                    raise RuntimeError("could not prepare the pre-started kernel for the run")
            super().papermill_execute_cells()

    papermill_engines.register("opx", OpxEngine)


_engine_lock = threading.Lock()
_engine_ready = False


def _ensure_engine() -> None:
    global _engine_ready
    with _engine_lock:
        if not _engine_ready:
            _register_engine()
            _engine_ready = True


# -- one attempt ------------------------------------------------------------------------
def _where(error: dict[str, Any], attempt: _Attempt) -> dict[str, Any]:
    """Add where the failing cell is in the *job's* notebook, as its author counts.

    ``cell_index`` (0-based) points into the executed notebook, which holds the
    parameters cell papermill injected; ``cell`` is the 1-based position of the
    same cell in the notebook the job runs, without that injected cell, and
    ``in_parameters`` says the error came from the injected cell itself.
    """
    index = error.get("cell_index")
    nb = getattr(attempt.nb_man, "nb", None)
    if not isinstance(index, int) or index < 0 or nb is None:
        return error

    def tags(cell: Any) -> list[str]:
        return list(cell.get("metadata", {}).get("tags") or [])

    # the cells as executed: without the banner and anchor papermill adds on error
    cells = [c for c in nb.cells if "papermill-error-cell-tag" not in tags(c)]
    injected = [i for i, cell in enumerate(cells) if "injected-parameters" in tags(cell)]
    if index in injected:
        return {**error, "cell": None, "in_parameters": True}
    return {**error, "cell": index + 1 - sum(1 for i in injected if i < index)}


def _error_from(exc: BaseException, attempt: _Attempt, timeout: float | None) -> dict[str, Any]:
    return _where(_error_kind(exc, attempt, timeout), attempt)


def _error_kind(exc: BaseException, attempt: _Attempt, timeout: float | None) -> dict[str, Any]:
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    cell = attempt.current_cell
    if attempt.stop_reason == "timed_out":
        return {
            "ename": "Timeout",
            "evalue": f"the run exceeded its timeout of {timeout:g}s; the kernel was stopped",
            "cell_index": cell,
        }
    if attempt.stop_reason == "cancelled":
        return {"ename": "Cancelled", "evalue": "cancelled on request", "cell_index": cell}
    if isinstance(exc, PapermillExecutionError):
        return {
            "ename": exc.ename,
            "evalue": exc.evalue,
            "cell_index": exc.cell_index,
            "exec_count": exc.exec_count,
            "source": exc.source,
            "traceback": [_ANSI.sub("", line) for line in (exc.traceback or [])],
        }
    if isinstance(exc, DeadKernelError):
        return {
            "ename": "DeadKernelError",
            "evalue": "the kernel died while running the notebook (it exited, e.g. "
            "os._exit, or was killed, e.g. out of memory)",
            "cell_index": cell,
        }
    name = type(exc).__name__
    if name == "NoSuchKernel":
        return {"ename": name, "evalue": f"kernel not installed: {exc}", "cell_index": None}
    return {"ename": name, "evalue": str(exc)[:2000], "cell_index": cell}


def _run_attempt(
    ws: Workspace,
    job: Job,
    run_id: int,
    values: dict[str, Any],
    env: dict[str, str],
    warm_km: Any = None,
) -> tuple[str, dict[str, Any] | None, Any]:
    """Execute the notebook once; returns ``(status, error, output notebook)``.

    Without a pre-started kernel, the run's kernel is launched first, with the
    run's environment and working directory, and boots while papermill and
    nbformat are imported and the notebook is prepared.
    """
    timeout = job.settings.get("timeout")
    deadline = time.monotonic() + float(timeout) if timeout else None
    attempt = _Attempt(ws, run_id, deadline)
    workdir = tempfile.mkdtemp(prefix=f"opx-run-{run_id}-")
    src = os.path.join(workdir, "input.ipynb")
    cwd = job.notebook_path and str(Path(job.notebook_path).parent)
    if not cwd or not os.path.isdir(cwd):
        cwd = workdir
    kernel = job.settings.get("kernel")
    watcher = threading.Thread(target=attempt.watch, name=f"opx-run-{run_id}", daemon=True)
    watcher.start()
    attempt.log(
        f"{'using a pre-started' if warm_km is not None else 'starting'} kernel "
        f"{kernel} for {job.name} v{job.version}"
    )
    status, error = "succeeded", None
    kernel_output = open(os.path.join(workdir, "kernel.log"), "w+b")  # noqa: SIM115
    try:
        km = warm_km
        if km is None and kernel:
            # the kernel process's own stdout/stderr (not the cells'): kept out of the
            # terminal of `opx job run --wait`, logged when the kernel itself failed
            km = attempt.km = start_kernel(
                kernel, env=env, cwd=cwd, stdout=kernel_output, stderr=subprocess.STDOUT
            )
        import nbformat
        import papermill as pm

        _ensure_engine()
        nb = notebook_of(ws, job)
        nbformat.write(nb, src)
        total = sum(1 for c in nb.cells if c.cell_type == "code") + (1 if values else 0)
        R.set_fields(ws, run_id, f"#{run_id} start", cells_total=total, cells_done=0)
        pm.execute_notebook(
            src,
            os.path.join(workdir, "output.ipynb"),
            parameters=values or None,
            engine_name="opx",
            kernel_name=kernel or None,
            progress_bar=False,
            request_save_on_cell_execute=False,
            stdout_file=_LogSink(attempt.logs, attempt.lock, "stdout"),
            stderr_file=_LogSink(attempt.logs, attempt.lock, "stderr"),
            opx_attempt=attempt,
            opx_env=env,
            opx_cwd=cwd,
            opx_kernel_output=kernel_output,
            opx_km=km,
            opx_prestarted=warm_km is not None,
        )
    except Exception as exc:
        error = _error_from(exc, attempt, timeout)
        status = attempt.stop_reason or "failed"
        attempt.log(f"{error['ename']}: {error['evalue']}")
        if "traceback" not in error and attempt.stop_reason is None:
            # not a cell's error (the kernel died or did not start): its own words help
            _log_tail(attempt, kernel_output)
    finally:
        kernel_output.close()
        attempt.done.set()
        watcher.join(timeout=5)
        attempt.flush_logs()
        with contextlib.suppress(Exception):
            attempt.flush_progress()
        # nbclient leaves the kernel it did not start running; nothing outlives the run
        pid = _kernel_pid(attempt.km)
        if pid is not None:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)
    output = attempt.nb_man.nb if attempt.nb_man is not None else None
    return status, error, output


def _log_tail(attempt: _Attempt, output: Any, limit: int = 20_000) -> None:
    with contextlib.suppress(OSError):
        output.seek(0, os.SEEK_END)
        output.seek(max(0, output.tell() - limit))
        text = output.read().decode("utf-8", "replace")
        if text.strip():
            attempt.log(text, stream="kernel")


# -- a whole run ------------------------------------------------------------------------
def _resolve(
    ws: Workspace, job: Job, values: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Snapshot references (``churn@production``) → exact versions (``churn/7``)."""
    from ..snapshots.catalog import get_snapshot

    resolved: dict[str, str] = {}
    out = dict(values)
    for param in job.params or []:
        if param.get("type") != "ref":
            continue
        # the run's value, else the notebook's default: both are resolved and injected
        value = values.get(param["name"], param.get("default"))
        if isinstance(value, str):
            exact = get_snapshot(ws, value).ref
            resolved[param["name"]] = exact
            out[param["name"]] = exact
    return out, resolved


def _run_env(ws: Workspace, job: Job, run_id: int) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in (job.settings.get("env") or {}).items():
        if value is None:  # pass the executor's own value through (secrets stay out of the store)
            if key in os.environ:
                env[key] = os.environ[key]
        else:
            env[key] = value
    env["OPX_RUN_ID"] = str(run_id)
    env["OPX_HOME"] = str(ws.root)
    if job.notebook_path:
        env["OPX_NOTEBOOK_PATH"] = job.notebook_path
    return env


def execute_run(ws: Workspace, run_id: int, *, claimed: bool = False, warm_km: Any = None) -> R.Run:
    """Run a queued run to its end and return its final record.

    ``warm_km`` is a kernel started ahead of time (see :mod:`jupyter_opx.jobs.warm`)
    for the first attempt; it is used by this run only and discarded after it.

    Raises
    ------
    ConflictError
        The run is not queued (another runner took it, or it was cancelled).
    """
    if not claimed and not R.claim(ws, run_id, worker_id()):
        run = R.get_run(ws, run_id)
        raise ConflictError(f"run {run_id} is {run.status}, not queued; it was not started again")
    run = R.get_run(ws, run_id)
    job = get_job(ws, run.job_name, run.job_version)
    try:
        values, resolved = _resolve(ws, job, run.params)
    except OpxError as exc:
        R.finish(ws, run_id, "failed", error={"ename": type(exc).__name__, "evalue": exc.message})
        return R.get_run(ws, run_id)
    if resolved:  # (a run starts with none recorded)
        R.set_fields(ws, run_id, f"#{run_id} resolved", resolved=resolved)
    env = _run_env(ws, job, run_id)
    try:
        status, error, output = _attempts(ws, job, run_id, values, env, warm_km)
    except BaseException as exc:
        # e.g. Ctrl-C in `opx job run --wait`: the kernel is already stopped (see
        # _run_attempt); never leave the run "running" until its heartbeat goes stale
        interrupted = isinstance(exc, KeyboardInterrupt)
        with contextlib.suppress(Exception):
            R.finish(
                ws,
                run_id,
                "cancelled" if interrupted else "failed",
                error={
                    "ename": "Interrupted" if interrupted else type(exc).__name__,
                    "evalue": "the runner was interrupted; the kernel was stopped"
                    if interrupted
                    else f"the runner failed: {exc}"[:2000],
                    "cell_index": None,
                },
            )
        raise
    digests = _store_outputs(ws, job, output)
    R.finish(ws, run_id, status, error=error, **digests)
    final = R.get_run(ws, run_id)
    _after_run(ws, job, final)
    return final


def _attempts(
    ws: Workspace,
    job: Job,
    run_id: int,
    values: dict[str, Any],
    env: dict[str, str],
    warm_km: Any = None,
) -> tuple[str, dict[str, Any] | None, Any]:
    """The first attempt and the retries the job allows, with exponential backoff."""
    retries = int(job.settings.get("retries") or 0)
    backoff = float(job.settings.get("retry_backoff") or 0)
    status, error, output = "failed", None, None
    for attempt in range(1, retries + 2):
        if attempt > 1:  # claiming the run recorded attempt 1
            R.set_fields(ws, run_id, None, attempt=attempt)
        # a pre-started kernel serves the first attempt only: retries get fresh ones
        km = warm_km if attempt == 1 else None
        status, error, output = _run_attempt(ws, job, run_id, values, env, km)
        if status in ("succeeded", "cancelled") or attempt > retries:
            break
        wait = backoff * 2 ** (attempt - 1)
        R.append_logs(
            ws, run_id, [("system", f"attempt {attempt} {status}; retrying in {wait:g}s\n")]
        )
        if _sleep_unless_cancelled(ws, run_id, wait):
            error = {"ename": "Cancelled", "evalue": "cancelled on request", "cell_index": None}
            return "cancelled", error, output
    return status, error, output


def _sleep_unless_cancelled(ws: Workspace, run_id: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if R.get_run(ws, run_id).cancel_requested:
            return True
        time.sleep(min(0.5, max(0.0, end - time.monotonic())))
    return False


def _store_outputs(ws: Workspace, job: Job, output: Any) -> dict[str, Any]:
    if output is None:
        return {}
    import nbformat

    digests: dict[str, Any] = {}
    text = nbformat.writes(output)
    digest, size, _ = ws.blobs.put(text.encode("utf-8"))
    digests["output_digest"] = digest
    sizes = {digest: size}
    if "html" in (job.settings.get("output") or []):
        html_bytes = render_html(output)
        h_digest, h_size, _ = ws.blobs.put(html_bytes)
        digests["html_digest"] = h_digest
        sizes[h_digest] = h_size
    ws.db.register_blobs(sizes)
    return digests


def render_html(nb: Any) -> bytes:
    """A notebook as a self-contained HTML page (nbconvert)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    return body.encode("utf-8")


def read_output(ws: Workspace, run_id: int | str, html: bool = False) -> bytes:
    """A finished run's output notebook (``.ipynb`` bytes), or its HTML page.

    The HTML is the one stored with the run (``output=["html"]``), else it is
    rendered now from the stored notebook.

    Raises
    ------
    ConflictError
        The run has not finished yet.
    NotFoundError
        The run stored no output: pruned by retention, or it stopped before the
        notebook ran.
    """
    run = R.get_run(ws, run_id)
    if not run.finished:
        raise ConflictError(
            f"run {run.id} is {run.status}; its output is stored when it finishes "
            f"(follow it with: opx run logs {run.id} --follow)"
        )
    if html and run.html_digest:
        return ws.blobs.get(run.html_digest)
    if run.output_digest is None:
        keep = get_job(ws, run.job_name).settings.get("keep")
        why = (
            f"it was pruned by retention (job {run.job_name} keeps the outputs of its "
            f"last {keep} run(s); the run's record and logs stay)"
            if keep
            else "the run stopped before the notebook ran"
        )
        raise NotFoundError(f"run {run.id} has no stored output: {why}")
    data = ws.blobs.get(run.output_digest)
    if not html:
        return data
    import nbformat

    return render_html(nbformat.reads(data.decode("utf-8"), as_version=4))


def _after_run(ws: Workspace, job: Job, run: R.Run) -> None:
    from .notify import notify_run
    from .retention import prune_outputs

    with contextlib.suppress(Exception):
        notify_run(ws, job, run)
    keep = job.settings.get("keep")
    if keep:
        with contextlib.suppress(Exception):
            prune_outputs(ws, job.name, int(keep))


def standby(ws: Workspace, job_name: str, stdin: Any = None) -> R.Run | None:
    """Get ready for a run of ``job_name``, wait for its id on ``stdin``, execute it.

    What the scheduler starts a few seconds before a fire time (see
    :meth:`~jupyter_opx.jobs.executors.LocalExecutor.prepare`): papermill and
    nbformat are imported and a kernel for the job is started and answering
    while the fire time comes; the scheduler then queues the run as usual and
    writes its id here. The kernel serves that run only (it gets the run's
    environment and working directory before the first cell, as a pre-started
    kernel) and is discarded after it. An empty line or a closed ``stdin``
    (the scheduler stopped, or the fire time was skipped) discards it unused.
    """
    from .warm import discard, wait_ready

    stdin = stdin or sys.stdin
    job = get_job(ws, job_name)
    kernel = job.settings.get("kernel") or "python3"
    km = None
    try:  # launched first: the kernel boots while papermill is imported
        km = start_kernel(kernel, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except Exception as exc:  # e.g. not installed: the run reports it with a cold start
        print(f"opx runner: no kernel started ahead: {type(exc).__name__}: {exc}", flush=True)
    try:
        _ensure_engine()
        with contextlib.suppress(Exception):  # only a warm-up: the run reports real problems
            _prepare_ahead(ws, job)
        if km is not None:
            try:
                wait_ready(km)
            except Exception as exc:
                print(f"opx runner: the kernel started ahead did not answer: {exc}", flush=True)
                discard(km)
                km = None
        line = stdin.readline().strip()
        if not line.isdigit():
            return None
        run = R.get_run(ws, int(line))
        if km is not None and get_job(ws, run.job_name, run.job_version).settings.get(
            "kernel"
        ) not in (None, kernel):
            discard(km)  # the job was updated to another kernel since
            km = None
        return execute_run(ws, run.id, warm_km=km)
    finally:
        if km is not None:
            discard(km)  # one run per kernel


def _prepare_ahead(ws: Workspace, job: Job) -> None:
    """What a process's first run would pay for at its start: the blob store opened,
    nbformat's schema compiled, papermill's parameterising loaded (a dry run)."""
    import papermill as pm

    nb = notebook_of(ws, job)
    pm.execute_notebook(
        nb,
        None,
        parameters=dict(job.defaults) or None,
        prepare_only=True,
        kernel_name=job.settings.get("kernel") or None,
        progress_bar=False,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m jupyter_opx.jobs.runner RUN_ID``: execute one run; exit 0 if it succeeded.

    ``python -m jupyter_opx.jobs.runner --standby JOB``: see :func:`standby`.
    """
    args = sys.argv[1:] if argv is None else argv
    ahead = len(args) == 2 and args[0] == "--standby"
    if not ahead and (len(args) != 1 or not args[0].isdigit()):
        print("usage: python -m jupyter_opx.jobs.runner RUN_ID | --standby JOB", file=sys.stderr)
        return 2
    try:
        if ahead:
            run = standby(get_workspace(), args[1])
            if run is None:
                return 0
        else:
            run = execute_run(get_workspace(), int(args[0]))
    except OpxError as exc:
        print(f"opx runner: {exc.message}", file=sys.stderr)
        return 1
    finally:
        if argv is None:
            import gc

            gc.freeze()  # the process exits next: no collection over every object left
    return 0 if run.status == "succeeded" else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
