"""Jobs through the Python API: real kernels through the real runner, one fixture
notebook per behaviour (tests/notebooks/jobs/).

Each notebook is copied into the test's tmp_path first: a job's kernel runs in
its notebook's folder, and nothing a run writes may land in the repository.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from sqlalchemy import select

import jupyter_opx as opx
from jupyter_opx.exceptions import ConflictError, NotFoundError, ValidationError
from jupyter_opx.jobs import runner
from jupyter_opx.jobs import runs as R
from jupyter_opx.jobs.definitions import get_job, set_enabled
from jupyter_opx.store import schema

FIXTURES = Path(__file__).resolve().parent / "notebooks" / "jobs"

#: the tests of jobs and runs that also run on PostgreSQL (see conftest.py)
both = pytest.mark.backends("sqlite", "postgresql")


@pytest.fixture
def notebook(tmp_path: Path) -> Callable[[str], Path]:
    """Copy a fixture notebook into tmp_path and return the copy's path."""
    folder = tmp_path / "notebooks"
    folder.mkdir()

    def copy(name: str) -> Path:
        target = folder / f"{name}.ipynb"
        shutil.copy(FIXTURES / f"{name}.ipynb", target)
        return target

    return copy


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, every: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


def kernel_pids(store: Path, run_id: int) -> list[int]:
    """Live kernel processes started for run ``run_id`` of the store ``store``."""
    wanted = {f"OPX_RUN_ID={run_id}", f"OPX_HOME={store.resolve()}"}
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with ipykernel
        psutil = None
    found = []
    if psutil is not None:
        for proc in psutil.process_iter(["cmdline", "status"]):
            try:
                if "ipykernel_launcher" not in " ".join(proc.info["cmdline"] or []):
                    continue
                if proc.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                env = {f"{k}={v}" for k, v in proc.environ().items()}
            except psutil.Error:
                continue
            if wanted <= env:
                found.append(proc.pid)
        return found
    for entry in Path("/proc").iterdir():  # pragma: no cover
        try:
            if not entry.name.isdigit() or b"ipykernel_launcher" not in (
                (entry / "cmdline").read_bytes()
            ):
                continue
            if (entry / "stat").read_text().rsplit(") ", 1)[-1].startswith("Z"):
                continue
            env = set((entry / "environ").read_bytes().decode("utf-8", "replace").split("\0"))
        except OSError:
            continue
        if wanted <= env:
            found.append(int(entry.name))
    return found


def logs(run: R.Run) -> str:
    return opx.run_logs(run.id)


# -- typed parameters ----------------------------------------------------------------------
@both
def test_typed_params_defaults_override_ref_and_metrics(store, notebook):
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    opx.snapshot("churn", data={"train": frame})
    opx.snapshot("churn", data={"train": frame.assign(y=1)})
    opx.promote("churn/1", "production")  # the alias, not the latest version, is what runs
    job = opx.create_job("score", notebook("typed_params"))
    assert [p["name"] for p in job.params] == ["threshold", "batch_date", "repeats", "model"]
    assert {p["name"]: p["type"] for p in job.params}["model"] == "ref"

    run = opx.run_job("score", {"repeats": "3"}, wait=True)

    assert run.status == "succeeded", run.error
    assert run.params == {"repeats": 3}  # converted from "-p" text before the run
    assert run.resolved == {"model": "churn/1"}
    assert (run.job_name, run.job_version, run.trigger, run.attempt) == ("score", 1, "api", 1)
    assert run.cells_done == run.cells_total > 0
    text = logs(run)
    assert [line for line in text.splitlines() if line.startswith("line ")] == [
        "line 0 threshold=0.5",  # the default
        "line 1 threshold=0.5",
        "line 2 threshold=0.5",
    ]
    # the ref parameter is injected resolved; opx.current_run() finds this run
    assert f"model churn/1 run {run.id}" in text
    assert R.run_metrics(opx.current_workspace(), run.id) == {"rows_scored": 42}
    assert run.output_digest is not None


def test_bad_values_are_refused_before_any_run(store, notebook):
    opx.create_job("score", notebook("typed_params"))
    opx.create_job("plain", notebook("no_params"))

    with pytest.raises(ValidationError, match=r"parameter threshold: expected a float") as err:
        opx.run_job("score", {"threshold": "abc"})
    assert err.value.fields == {"param": "threshold", "expected": "float"}
    with pytest.raises(ValidationError, match=r"unknown parameter 'treshold'.*'threshold'"):
        opx.run_job("score", {"treshold": "0.3"})
    with pytest.raises(ValidationError, match="no parameters cell"):
        opx.run_job("plain", {"x": "1"})
    with pytest.raises(ValidationError, match="parameter repeats: expected an int"):
        opx.create_job("score2", notebook("typed_params"), params={"repeats": "many"})
    assert opx.list_runs() == []
    assert [j.name for j in opx.list_jobs()] == ["plain", "score"]


@both
def test_outside_a_job_there_is_no_current_run(store):
    assert opx.current_run() is None
    opx.log_metric("loose", 1.5)  # recorded, attached to no run
    with pytest.raises(ValidationError, match="JSON"):
        opx.log_metric("bad", object())


# -- failures ------------------------------------------------------------------------------
@both
def test_error_in_cell_3_is_recorded_with_its_cell(store, notebook):
    opx.create_job("broken", notebook("raises_in_cell_3"))
    run = opx.run_job("broken", wait=True)

    assert run.status == "failed"
    assert run.error["ename"] == "ValueError"
    assert run.error["evalue"] == "boom in cell 3"
    assert run.error["cell_index"] == 3  # 0-based, in the executed notebook
    assert run.error["cell"] == 4  # as the author counts (markdown cells too)
    assert "(cell 4)" in str(run)
    assert any("ValueError" in line for line in run.error["traceback"])
    assert not any("\x1b[" in line for line in run.error["traceback"])
    text = logs(run)
    assert "before the error" in text and "never" not in text
    # the output notebook is kept, with the cells that ran before the error
    out = nbformat.reads(opx.current_workspace().blobs.get(run.output_digest).decode(), 4)
    code = {c.source: c.outputs for c in out.cells if c.cell_type == "code"}
    assert [o.get("text") for o in code["print('before the error')"]] == ["before the error\n"]
    assert [o.output_type for o in code["raise ValueError('boom in cell 3')"]] == ["error"]
    assert code["print('never')"] == []
    assert any("papermill-error-cell" in c.source for c in out.cells)  # papermill's banner


def test_error_cell_is_counted_without_the_injected_parameters(store, tmp_path):
    """papermill injects a parameters cell; the error names the cell of the job's notebook."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("n = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# scoring"),
        params,
        nbformat.v4.new_code_cell("print('n is', n)"),
        nbformat.v4.new_code_cell("raise ValueError(f'n={n}')"),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "injected.ipynb"
    nbformat.write(nb, path)
    opx.create_job("inj", path)
    run = opx.run_job("inj", {"n": 7}, wait=True)
    assert run.status == "failed" and run.error["evalue"] == "n=7"
    assert run.error["cell_index"] == 4  # the executed notebook holds the injected cell
    assert run.error["cell"] == 4 and "in_parameters" not in run.error
    assert "(cell 4)" in str(run)


def test_where_an_error_is_reported() -> None:
    """The injected cell itself, and errors recorded without ``cell`` (older runs)."""
    from types import SimpleNamespace

    nb = nbformat.v4.new_notebook()
    injected = nbformat.v4.new_code_cell("n = 'x'")
    injected.metadata["tags"] = ["injected-parameters"]
    banner = nbformat.v4.new_markdown_cell("error banner")
    banner.metadata["tags"] = ["papermill-error-cell-tag"]
    nb.cells = [banner, nbformat.v4.new_code_cell("n = 1"), injected, nbformat.v4.new_code_cell("")]
    attempt = SimpleNamespace(nb_man=SimpleNamespace(nb=nb))
    assert runner._where({"cell_index": 1}, attempt)["in_parameters"] is True  # type: ignore[arg-type]
    assert runner._where({"cell_index": 2}, attempt)["cell"] == 2  # type: ignore[arg-type]
    assert runner._where({"cell_index": 0}, attempt)["cell"] == 1  # type: ignore[arg-type]
    assert runner._where({"cell_index": None}, attempt) == {"cell_index": None}  # type: ignore[arg-type]
    assert R.where_text({"in_parameters": True, "cell": None}).startswith(" (in the injected")
    assert R.where_text({"cell_index": 3}) == " (cell index 3 of the executed notebook)"
    assert R.where_text({}) == ""


def test_whole_run_timeout_stops_the_kernel(store, notebook):
    opx.create_job("nap", notebook("sleeps"), timeout=2)
    started = time.monotonic()
    run = opx.run_job("nap", wait=True)  # seconds defaults to 30

    assert time.monotonic() - started < 15
    assert run.status == "timed_out"
    assert run.error["ename"] == "Timeout"
    assert "timeout of 2s" in run.error["evalue"]
    assert "sleeping" in logs(run)
    wait_for(lambda: not kernel_pids(store, run.id), timeout=5)


@both
def test_cancel_a_background_run(store, notebook):
    opx.create_job("nap", notebook("sleeps"))
    run = opx.run_job("nap", {"seconds": 60}, wait=False)  # a runner process of its own
    assert run.status == "queued"
    wait_for(lambda: "sleeping" in logs(run))
    assert opx.get_run(run.id).status == "running"
    assert kernel_pids(store, run.id), "the kernel of the run should be found while it runs"

    assert opx.cancel_run(run.id).cancel_requested
    final = wait_for(lambda: (r := opx.get_run(run.id)).finished and r, timeout=20)
    assert final.status == "cancelled"
    assert final.error["ename"] == "Cancelled"
    wait_for(lambda: not kernel_pids(store, run.id), timeout=5)
    with pytest.raises(ConflictError, match="already cancelled"):
        opx.cancel_run(run.id)


@both
def test_cancel_a_queued_run(store, notebook):
    opx.create_job("nap", notebook("sleeps"))
    ws = opx.current_workspace()
    queued = R.create_run(ws, "nap")
    assert opx.cancel_run(queued.id).status == "cancelled"
    with pytest.raises(ConflictError, match="not queued"):
        runner.execute_run(ws, queued.id)


@pytest.mark.parametrize(
    ("name", "ename", "printed"),
    [("sys_exit", "SystemExit", "about to exit"), ("os_exit", "DeadKernelError", "about to die")],
)
def test_exits_fail_the_run(store, notebook, name, ename, printed):
    opx.create_job("exits", notebook(name))
    run = opx.run_job("exits", wait=True)

    assert run.status == "failed"
    assert run.error["ename"] == ename
    assert run.error["cell_index"] == 1
    assert run.finished_at is not None
    assert printed in logs(run) and "never" not in logs(run)
    assert opx.list_runs(status="running") == []
    wait_for(lambda: not kernel_pids(store, run.id), timeout=5)


def test_a_kernel_that_is_not_installed_fails_the_run(store, notebook):
    opx.create_job("nokernel", notebook("no_params"), kernel="no-such-kernel-opx")
    run = opx.run_job("nokernel", wait=True)

    assert run.status == "failed"
    assert run.error["ename"] == "NoSuchKernel"
    assert "kernel not installed" in run.error["evalue"]
    assert opx.list_runs(status="running") == []


def test_retries_with_backoff(store, notebook, tmp_path):
    marker = tmp_path / "attempts.txt"
    opx.create_job(
        "flaky",
        notebook("flaky"),
        params={"marker": str(marker), "fail_until": 2},
        retries=2,
        retry_backoff=0.1,
    )
    run = opx.run_job("flaky", wait=True)

    assert run.status == "succeeded"
    assert run.attempt == 3
    assert marker.read_text() == "3"
    text = logs(run)
    assert "RuntimeError: failing attempt 1" in text
    assert "attempt 1 failed; retrying in 0.1s" in text
    assert "attempt 2 failed; retrying in 0.2s" in text
    assert "attempt 3 succeeded" in text


def test_interrupted_runner_never_leaves_a_run_running(store, notebook, monkeypatch):
    opx.create_job("plain", notebook("no_params"))
    ws = opx.current_workspace()
    run = R.create_run(ws, "plain")

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_run_attempt", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.execute_run(ws, run.id)
    final = R.get_run(ws, run.id)
    assert final.status == "cancelled"
    assert final.error["ename"] == "Interrupted"


def test_timeout_kills_a_kernel_that_starts_after_the_deadline(store, notebook):
    """The deadline may pass while the kernel is still starting (no pid yet)."""
    opx.create_job("plain", notebook("no_params"))
    ws = opx.current_workspace()
    run = R.create_run(ws, "plain")
    attempt = runner._Attempt(ws, run.id, deadline=time.monotonic() - 1)
    late = subprocess.Popen(  # stands in for a kernel that appears after the deadline
        [sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True
    )

    class Provisioner:
        pid = late.pid

    class KernelManager:
        provisioner = Provisioner()

    watcher = threading.Thread(target=attempt.watch, daemon=True)
    watcher.start()
    try:
        wait_for(lambda: attempt.stop_reason == "timed_out", timeout=5)
        assert late.poll() is None  # nothing to kill yet
        attempt.km = KernelManager()
        wait_for(lambda: late.poll() is not None, timeout=5)
        assert late.returncode == -signal.SIGKILL
    finally:
        attempt.done.set()
        watcher.join(timeout=5)
        if late.poll() is None:  # pragma: no cover - only when the test fails
            late.kill()
            late.wait()


# -- environment and notifications -----------------------------------------------------
def test_env_values_and_pass_through(store, notebook, monkeypatch):
    monkeypatch.setenv("OPX_TEST_SECRET", "s3cr3t-value")
    job = opx.create_job("envy", notebook("no_params"), env=["OPX_TEST_FIXED=1", "OPX_TEST_SECRET"])
    assert job.settings["env"] == {"OPX_TEST_FIXED": "1", "OPX_TEST_SECRET": None}

    run = opx.run_job("envy", wait=True)

    assert run.status == "succeeded"
    assert "secret s3cr3t-value fixed 1" in logs(run)
    ws = opx.current_workspace()
    with ws.db.transaction() as conn:
        stored = [dict(row._mapping) for row in conn.execute(select(schema.jobs))]
    assert "s3cr3t" not in json.dumps(stored, default=str)
    with pytest.raises(ValidationError, match="set by jupyter_opx"):
        opx.create_job("bad-env", notebook("no_params"), env=["OPX_RUN_ID=7"])
    with pytest.raises(ValidationError, match="invalid environment variable name"):
        opx.create_job("bad-env", notebook("no_params"), env=["1X=2"])


@pytest.fixture
def receiver(monkeypatch) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local webhook receiver: ``(url, bodies received)``."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_notify_on_failure_and_on_success_when_asked(store, notebook, receiver):
    url, received = receiver
    opx.create_job("broken", notebook("raises_in_cell_3"), notify=url)
    opx.create_job("plain", notebook("no_params"), notify=url)

    failed = opx.run_job("broken", wait=True)
    assert [b["status"] for b in received] == ["failed"]
    body = received[0]
    assert (body["job"], body["run_id"], body["event"]) == ("broken", failed.id, "run.finished")
    assert body["error"]["ename"] == "ValueError"
    assert "notification to" in logs(failed) and "sent" in logs(failed)

    opx.run_job("plain", wait=True)
    assert len(received) == 1  # success is not notified unless asked

    opx.update_job("plain", notify_on_success=True)
    ok = opx.run_job("plain", wait=True)
    assert [b["status"] for b in received] == ["failed", "succeeded"]
    assert received[1]["run_id"] == ok.id and received[1]["job_version"] == 2


# -- outputs ---------------------------------------------------------------------------
@both
def test_retention_keeps_the_newest_outputs_and_all_records(store, notebook):
    opx.create_job("plain", notebook("no_params"), keep=1)
    first = opx.run_job("plain", wait=True)
    assert first.output_digest is not None
    second = opx.run_job("plain", wait=True)

    ws = opx.current_workspace()
    older, newer = opx.get_run(first.id), opx.get_run(second.id)
    assert older.output_digest is None and older.html_digest is None
    assert newer.output_digest is not None
    assert [r.id for r in opx.list_runs("plain")] == [second.id, first.id]
    assert older.status == "succeeded" and logs(older)  # record and log stay
    assert not ws.blobs.exists(first.output_digest)
    nbformat.reads(runner.read_output(ws, newer.id).decode(), 4)
    with pytest.raises(NotFoundError, match="pruned by retention"):
        runner.read_output(ws, older.id)


def test_html_output(store, notebook):
    opx.create_job("plain", notebook("no_params"), output=["html"])
    run = opx.run_job("plain", wait=True)

    assert run.html_digest is not None
    page = opx.current_workspace().blobs.get(run.html_digest).decode()
    assert page.lstrip().lower().startswith("<!doctype html")
    assert "secret None fixed None" in page


# -- definitions -----------------------------------------------------------------------
@both
def test_versions_and_lineage(store, notebook):
    path = notebook("typed_params")
    v1 = opx.create_job("score", path, params={"threshold": "0.7"}, schedule="0 6 * * *")
    assert (v1.version, v1.defaults) == (1, {"threshold": 0.7})
    assert v1.schedule_text == "every day at 06:00 UTC"
    assert v1.next_run is not None and v1.enabled

    v2 = opx.update_job("score", timeout=30, params={"repeats": "4"})
    assert v2.version == 2
    assert v2.defaults == {"threshold": 0.7, "repeats": 4}
    assert v2.settings["timeout"] == 30 and v2.schedule == "0 6 * * *"
    assert opx.get_job("score").version == 2
    ws = opx.current_workspace()
    assert get_job(ws, "score", 1).settings["timeout"] is None  # earlier versions stay

    # a new notebook without parameters: the old defaults no longer apply
    v3 = opx.update_job("score", notebook("no_params"), schedule="")
    assert (v3.version, v3.params, v3.defaults, v3.schedule) == (3, None, {}, None)
    assert v3.schedule_text == "manual" and v3.next_run is None

    old = R.create_run(ws, "score", version=1)
    new = R.create_run(ws, "score")
    assert [(r.id, r.job_version) for r in opx.list_runs("score")] == [(new.id, 3), (old.id, 1)]
    assert old.params == {"threshold": 0.7}  # the defaults of the version that runs
    for r in (old, new):
        opx.cancel_run(r.id)

    assert set_enabled(ws, "score", False).enabled is False
    with pytest.raises(ConflictError, match="opx job update score"):
        opx.create_job("score", path)
    with pytest.raises(NotFoundError, match="no job named 'ghost'"):
        opx.update_job("ghost", timeout=3)
    with pytest.raises(NotFoundError, match="has no version 9"):
        get_job(ws, "score", 9)
    with pytest.raises(ValidationError, match="unknown parameter 'treshold'"):
        opx.update_job("score", path, params={"treshold": "1"})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"schedule": "every morning"}, "invalid cron schedule 'every morning'"),
        ({"schedule": "61 * * * *"}, "invalid cron schedule"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"timeout": -5}, "timeout must be a positive number of seconds"),
        ({"retries": -1}, "retries must be a whole number"),
        ({"output": ["pdf"]}, "unknown output format"),
        ({"keep": 0}, "keep must be a whole number"),
        ({"catchup": "all"}, "catchup must be one of latest, none"),
        ({"executor": "ssh://box"}, "executor must be 'local' or 'dask://HOST:PORT'"),
        ({"notify": "mailto:me"}, "notify must be an http"),
        ({"colour": "red"}, "unknown job setting"),
    ],
)
def test_invalid_settings_are_refused(store, notebook, settings, message):
    with pytest.raises(ValidationError, match=message):
        opx.create_job("bad", notebook("no_params"), **settings)
    assert opx.list_jobs() == []


def test_missing_or_broken_notebook(store, tmp_path):
    with pytest.raises(NotFoundError, match="not found"):
        opx.create_job("ghost", tmp_path / "nope.ipynb")
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    with pytest.raises(ValidationError, match="not a readable notebook"):
        opx.create_job("ghost", broken)
    assert opx.list_jobs() == []
