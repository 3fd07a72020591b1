"""The job surfaces: `opx job|jobs|runs|run ...` and `%opx job ...` (real kernels)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import jupyter_opx as opx
from jupyter_opx.cli import main
from jupyter_opx.exceptions import OpxError
from jupyter_opx.jobs import runs as R

FIXTURES = Path(__file__).resolve().parent / "notebooks" / "jobs"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A store in tmp_path (the cwd), with the fixture notebooks copied into it."""
    monkeypatch.setenv("OPX_HOME", str(tmp_path / ".opx"))
    monkeypatch.setenv("OPX_USER", "ada")
    monkeypatch.chdir(tmp_path)
    shutil.copytree(FIXTURES, tmp_path / "nb")
    return tmp_path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_job_params(project, capsys):
    code, out, _ = run(capsys, "job", "params", "nb/typed_params.ipynb")
    assert code == 0
    assert out.splitlines()[0].split() == ["NAME", "TYPE", "DEFAULT", "HELP"]
    assert "threshold   float  0.5" in out and "decision threshold" in out
    assert "model       ref    'churn@production'" in out
    code, out, _ = run(capsys, "job", "params", "nb/typed_params.ipynb", "--json")
    params = json.loads(out)
    assert [(p["name"], p["type"]) for p in params] == [
        ("threshold", "float"),
        ("batch_date", "str"),
        ("repeats", "int"),
        ("model", "ref"),
    ]
    code, out, _ = run(capsys, "job", "params", "nb/no_params.ipynb")
    assert code == 0 and "no parameters cell" in out
    assert json.loads(run(capsys, "job", "params", "nb/no_params.ipynb", "--json")[1]) is None
    code, _, err = run(capsys, "job", "params", "nb/missing.ipynb")
    assert code == 1 and "not found" in one_line_error(err)


def test_job_create_show_update_enable(project, capsys):
    code, out, err = run(
        capsys,
        "job",
        "create",
        "daily",
        "--notebook",
        "nb/typed_params.ipynb",
        "--schedule",
        "0 6 * * *",
        "--tz",
        "Europe/Paris",
        "-p",
        "threshold=0.7",
        "--timeout",
        "60",
        "--retries",
        "1",
        "--retry-backoff",
        "2",
        "--output",
        "html",
        "--keep",
        "3",
        "--env",
        "A=1",
        "--env",
        "SECRET",
        "--notify",
        "http://127.0.0.1:9/hook",
        "--notify-on-success",
        "--kernel",
        "python3",
        "--catchup",
        "none",
        "--executor",
        "local",
        "--json",
    )
    assert code == 0, err
    job = json.loads(out)
    assert job["version"] == 1 and job["defaults"] == {"threshold": 0.7}
    assert (job["schedule"], job["timezone"]) == ("0 6 * * *", "Europe/Paris")
    assert job["schedule_text"] == "every day at 06:00 Europe/Paris"
    assert (job["timeout"], job["retries"], job["retry_backoff"]) == (60, 1, 2)
    assert (job["output"], job["keep"], job["catchup"]) == (["html"], 3, "none")
    assert job["env"] == {"A": "1", "SECRET": None}
    assert job["notify"] == "http://127.0.0.1:9/hook" and job["notify_on_success"] is True
    assert job["next_run"] is not None
    assert job["notebook_path"] == str(project / "nb" / "typed_params.ipynb")

    code, out, _ = run(capsys, "job", "show", "daily")
    assert code == 0
    assert "daily v1" in out and "every day at 06:00 Europe/Paris" in out
    assert "threshold: float" in out and "timeout 60s" in out

    code, out, _ = run(
        capsys, "job", "update", "daily", "--schedule", "", "--no-notify-on-success", "--json"
    )
    v2 = json.loads(out)
    assert (v2["version"], v2["schedule"], v2["schedule_text"]) == (2, None, "manual")
    assert v2["notify_on_success"] is False and v2["timeout"] == 60  # the rest is unchanged
    first = json.loads(run(capsys, "job", "show", "daily", "--version", "1", "--json")[1])
    assert (first["version"], first["schedule"]) == (1, "0 6 * * *")  # versions stay

    code, out, _ = run(capsys, "job", "update", "daily", "--schedule", "30 7 * * 1-5")
    assert code == 0 and "daily v3" in out
    code, out, _ = run(capsys, "job", "disable", "daily")
    assert code == 0 and out.startswith("job daily: schedule disabled")
    listing = json.loads(run(capsys, "jobs", "--json")[1])
    assert [(j["name"], j["version"], j["enabled"], j["next_run"]) for j in listing] == [
        ("daily", 3, False, None)
    ]
    code, out, _ = run(capsys, "job", "enable", "daily")
    assert code == 0 and "schedule enabled; next run" in out
    code, out, _ = run(capsys, "jobs")
    header, row = out.strip().splitlines()
    assert header.split()[:3] == ["job", "version", "schedule"]
    assert row.split()[:3] == ["daily", "3", "at"] and row.split()[-1] == "yes"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--schedule", "61 * * * *"], "invalid cron schedule"),
        (["--tz", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        (["--timeout", "-1"], "timeout must be a positive number"),
        (["-p", "threshold=abc"], "parameter threshold: expected a float, got 'abc'"),
        (["-p", "nope"], "invalid parameter assignment 'nope'"),
        (["--executor", "ssh://box"], "executor must be 'local' or 'dask://HOST:PORT'"),
    ],
)
def test_job_create_errors_are_one_line(project, capsys, argv, message):
    code, out, err = run(
        capsys, "job", "create", "bad", "--notebook", "nb/typed_params.ipynb", *argv
    )
    assert code == 1 and out == ""
    line = one_line_error(err)
    assert line.startswith("opx: error: ") and message in line
    assert run(capsys, "jobs")[1].startswith("no jobs yet")


def test_duplicate_and_unknown_jobs(project, capsys):
    assert run(capsys, "job", "create", "plain", "--notebook", "nb/no_params.ipynb")[0] == 0
    code, _, err = run(capsys, "job", "create", "plain", "--notebook", "nb/no_params.ipynb")
    assert code == 1 and "opx job update plain" in one_line_error(err)
    for argv in (["job", "show", "ghost"], ["job", "run", "ghost"], ["runs", "ghost"]):
        code, _, err = run(capsys, *argv)
        assert code == 1 and "no job named 'ghost'" in one_line_error(err)
    code, _, err = run(capsys, "job", "run", "plain", "-p", "x=1")
    assert code == 1 and "no parameters cell" in one_line_error(err)
    assert json.loads(run(capsys, "runs", "--json")[1]) == []  # refused before any run


def test_job_run_wait_and_the_run_commands(project, capsys):
    run(capsys, "job", "create", "nap", "--notebook", "nb/sleeps.ipynb")
    code, out, err = run(capsys, "job", "run", "nap", "-p", "seconds=0.1", "--wait")
    assert code == 0, err
    assert err == ""
    run_id = int(out.strip().splitlines()[-1])  # the last line is the run id
    assert f"{run_id} of nap v1 (manual)" in out and "succeeded" in out

    shown = json.loads(run(capsys, "run", "show", str(run_id), "--json")[1])
    assert (shown["id"], shown["status"], shown["trigger"]) == (run_id, "succeeded", "manual")
    assert shown["params"] == {"seconds": 0.1} and shown["job_version"] == 1
    code, out, _ = run(capsys, "run", "show", str(run_id))
    assert code == 0 and "seconds=0.1" in out

    code, out, _ = run(capsys, "run", "logs", str(run_id))
    assert code == 0 and "sleeping\n" in out and "woke\n" in out
    code, followed, err = run(capsys, "run", "logs", str(run_id), "--follow")
    assert (code, followed, err) == (0, out, "")

    listing = json.loads(run(capsys, "runs", "nap", "--json")[1])
    assert [r["id"] for r in listing] == [run_id]
    assert json.loads(run(capsys, "runs", "--status", "failed", "--json")[1]) == []
    code, out, _ = run(capsys, "runs", "--limit", "1")
    assert code == 0 and "nap v1" in out and "succeeded" in out

    target = project / "out.ipynb"
    code, out, _ = run(capsys, "run", "output", str(run_id), "-o", str(target))
    assert code == 0 and out.startswith(f"wrote {target}")
    output = nbformat.read(target, as_version=4)
    assert any("woke" in o.get("text", "") for c in output.cells for o in c.get("outputs", []))
    # no html stored for this job: rendered on demand
    page = project / "out.html"
    assert run(capsys, "run", "output", str(run_id), "-o", str(page), "--html")[0] == 0
    assert "woke" in page.read_text()
    code, out, _ = run(capsys, "run", "output", str(run_id), "-o", "-")
    assert code == 0 and json.loads(out)["nbformat"] == 4

    code, _, err = run(capsys, "run", "cancel", str(run_id))
    assert code == 1 and "already succeeded" in one_line_error(err)
    code, _, err = run(capsys, "run", "show", "999")
    assert code == 1 and "no run 999" in one_line_error(err)
    code, _, err = run(capsys, "run", "logs", "abc")
    assert code == 1 and "a run id is a number" in one_line_error(err)


def test_failed_run_exit_codes(project, capsys):
    run(capsys, "job", "create", "broken", "--notebook", "nb/raises_in_cell_3.ipynb")
    code, out, err = run(capsys, "job", "run", "broken", "--wait")
    assert code == 1
    run_id = int(out.strip().splitlines()[-1])
    assert one_line_error(err) == (f"opx: run {run_id} failed: ValueError: boom in cell 3 (cell 4)")
    code, out, err = run(capsys, "run", "logs", str(run_id), "--follow")
    assert code == 1 and "before the error" in out
    assert "ValueError" in one_line_error(err)
    code, out, err = run(capsys, "job", "run", "broken", "--wait", "--json")
    assert code == 1 and json.loads(out)["error"]["cell_index"] == 3


def test_run_cancel_and_missing_outputs(project, capsys):
    run(capsys, "job", "create", "plain", "--notebook", "nb/no_params.ipynb", "--keep", "1")
    ws = opx.current_workspace()
    queued = R.create_run(ws, "plain")  # queued, not started: cancelled at once
    code, out, _ = run(capsys, "run", "cancel", str(queued.id))
    assert code == 0 and out.strip() == f"run {queued.id} cancelled"
    code, _, err = run(capsys, "run", "output", str(queued.id), "-o", "x.ipynb")
    assert code == 1 and "has no stored output" in one_line_error(err)

    first = int(run(capsys, "job", "run", "plain", "--wait")[1].strip().splitlines()[-1])
    second = int(run(capsys, "job", "run", "plain", "--wait")[1].strip().splitlines()[-1])
    code, _, err = run(capsys, "run", "output", str(first), "-o", "old.ipynb")
    assert code == 1 and "pruned by retention" in one_line_error(err)
    assert not (project / "old.ipynb").exists()
    assert run(capsys, "run", "output", str(second), "-o", "new.ipynb")[0] == 0
    statuses = [r["status"] for r in json.loads(run(capsys, "runs", "plain", "--json")[1])]
    assert statuses == ["succeeded", "succeeded", "cancelled"]


def test_opx_job_run_wait_as_a_process(project, capsys):
    """The real command: exit status, the run id last on stdout, a quiet stderr."""
    run(capsys, "job", "create", "nap", "--notebook", "nb/sleeps.ipynb")
    script = Path(sys.executable).with_name("opx")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "jupyter_opx.cli"]
    done = subprocess.run(
        [*command, "job", "run", "nap", "-p", "seconds=0", "--wait"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OPX_HOME": str(project / ".opx")},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    run_id = int(done.stdout.strip().splitlines()[-1])
    assert opx.get_run(run_id).status == "succeeded"
    assert "woke" in opx.run_logs(run_id)


# -- magics ------------------------------------------------------------------------------
@pytest.fixture
def ip(project):
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jupyter_opx")
    return shell


def test_magic_job_create_run_runs_logs(ip, project, capsys, monkeypatch):
    with pytest.raises(UsageError, match="give it with --notebook PATH"):
        ip.run_line_magic("opx", "job create nap")
    ip.run_line_magic("opx", "job create nap --notebook nb/sleeps.ipynb --timeout 30")
    out = capsys.readouterr().out
    assert "nap v1" in out and "run it with: %opx job run nap" in out
    assert opx.get_job("nap").settings["timeout"] == 30

    # the current notebook, when the kernel knows its path
    monkeypatch.setenv("OPX_NOTEBOOK_PATH", str(project / "nb" / "no_params.ipynb"))
    ip.run_line_magic("opx", "job create plain")
    assert opx.get_job("plain").notebook_path == str(project / "nb" / "no_params.ipynb")

    ip.run_line_magic("opx", "job run nap -p seconds=0 --wait")
    out = capsys.readouterr().out
    assert "of nap v1 (manual)" in out and "succeeded" in out
    [finished] = opx.list_runs("nap")
    assert finished.status == "succeeded" and finished.params == {"seconds": 0.0}

    ip.run_line_magic("opx", "job runs")
    assert f"{finished.id}    nap v1" in capsys.readouterr().out
    ip.run_line_magic("opx", "runs nap")
    assert "succeeded" in capsys.readouterr().out
    ip.run_line_magic("opx", f"job logs {finished.id}")
    assert "woke" in capsys.readouterr().out
    ip.run_line_magic("opx", "jobs")
    assert "plain" in capsys.readouterr().out

    with pytest.raises(OpxError, match="parameter seconds: expected a float"):
        ip.run_line_magic("opx", "job run nap -p seconds=abc")
    with pytest.raises(UsageError, match="unknown verb 'frob'"):
        ip.run_line_magic("opx", "job frob")
    result = ip.run_cell("%opx job logs 999")
    assert not result.success and "no run 999" in str(result.error_in_exec)
