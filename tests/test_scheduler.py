"""The scheduler: due runs with a controllable clock, catch-up policies, the lease
between two scheduler processes, stale runners, and the Dask executor for real."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

import jupyter_opx as opx
from jupyter_opx.jobs import runs as R
from jupyter_opx.jobs.lease import holder_of, try_acquire
from jupyter_opx.jobs.scheduler import Scheduler
from jupyter_opx.store.db import utcnow

JOBS = Path(__file__).resolve().parent / "notebooks" / "jobs"


@pytest.fixture
def ws(store):
    return opx.current_workspace()


#: the scheduling, lease and failover tests also run on PostgreSQL (see conftest.py)
both = pytest.mark.backends("sqlite", "postgresql")


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):
        return self.now


def wait_finished(sched: Scheduler, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        sched.step()
        if all(r.finished for r in opx.list_runs()):
            return
        time.sleep(0.2)
    raise AssertionError(f"runs still unfinished: {opx.list_runs()}")


@both
def test_due_runs_carry_their_fire_time_and_never_duplicate(ws):
    clock = Clock()
    job = opx.create_job("minutely", JOBS / "no_params.ipynb", schedule="* * * * *")
    sched = Scheduler(ws, clock=clock)
    assert sched.step() == []  # nothing due yet
    clock.now = job.next_run + timedelta(seconds=1)
    started = sched.step()
    assert len(started) == 1
    assert sched.step() == []  # the same fire time is not queued twice
    # a second scheduler (after a restart) with the same clock queues nothing new
    sched.close()
    again = Scheduler(ws, clock=clock)
    assert again.enqueue_due() == []
    wait_finished(again)
    [run] = opx.list_runs()
    assert run.status == "succeeded"
    assert run.trigger == "schedule"
    assert run.scheduled_for == job.next_run
    again.close()


@both
def test_catchup_latest_runs_once_after_downtime(ws):
    clock = Clock()
    job = opx.create_job("hourly", JOBS / "no_params.ipynb", schedule="0 * * * *")
    sched = Scheduler(ws, clock=clock)
    clock.now = job.next_run + timedelta(hours=5, minutes=3)  # five missed fire times
    queued = sched.enqueue_due()
    assert len(queued) == 1
    run = opx.get_run(queued[0])
    assert run.scheduled_for == job.next_run + timedelta(hours=5)
    assert sched.enqueue_due() == []
    R.request_cancel(ws, run.id)
    sched.close()


@both
def test_catchup_none_skips_missed_fire_times(ws):
    clock = Clock()
    job = opx.create_job("hourly", JOBS / "no_params.ipynb", schedule="0 * * * *", catchup="none")
    sched = Scheduler(ws, clock=clock)
    clock.now = job.next_run + timedelta(hours=2, minutes=30)
    assert sched.enqueue_due() == []  # missed by more than the grace period: skipped
    clock.now = job.next_run + timedelta(hours=3, seconds=5)  # the next one, on time
    assert len(sched.enqueue_due()) == 1
    for run in opx.list_runs():
        R.request_cancel(ws, run.id)
    sched.close()


def test_disabled_jobs_do_not_run_but_manual_runs_do(ws):
    clock = Clock()
    job = opx.create_job("daily", JOBS / "no_params.ipynb", schedule="0 6 * * *", tz="Europe/Paris")
    assert job.schedule_text == "every day at 06:00 Europe/Paris"
    from jupyter_opx.jobs.definitions import set_enabled

    set_enabled(ws, "daily", False)
    sched = Scheduler(ws, clock=clock)
    clock.now = job.next_run + timedelta(minutes=1)
    assert sched.enqueue_due() == []
    # a manual run queued while a scheduler is active is picked up by it
    assert try_acquire(ws, sched.holder, 15)
    sched.leader = True
    run = opx.run_job("daily")
    assert opx.get_run(run.id).status == "queued"
    assert sched.dispatch() == [run.id]
    wait_finished(sched)
    assert opx.get_run(run.id).status == "succeeded"
    sched.close()


@both
def test_stale_running_run_is_failed_not_left_running(ws):
    opx.create_job("lost", JOBS / "no_params.ipynb")
    run = R.create_run(ws, "lost")
    assert R.claim(ws, run.id, "gone:1")
    R.set_fields(ws, run.id, None, heartbeat_at=utcnow() - timedelta(minutes=5))
    sched = Scheduler(ws, stale_after=30)
    sched.step()
    lost = opx.get_run(run.id)
    assert lost.status == "failed"
    assert lost.error["ename"] == "RunnerLost"
    sched.close()


SCHEDULER_SCRIPT = textwrap.dedent(
    """
    import sys
    from jupyter_opx.workspace import get_workspace
    from jupyter_opx.jobs.scheduler import Scheduler
    Scheduler(get_workspace(), ttl=float(sys.argv[1]), tick=0.1,
              log=lambda m: print(m, flush=True)).run()
    """
)


def _start_scheduler(ws, ttl: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SCHEDULER_SCRIPT, str(ttl)],
        env={**os.environ, "OPX_HOME": str(ws.root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(predicate, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


@both
def test_two_scheduler_processes_one_active_and_failover(ws):
    opx.create_job("minutely", JOBS / "no_params.ipynb", schedule="* * * * *")
    first = _start_scheduler(ws, ttl=2.0)
    try:
        _wait_for(lambda: holder_of(ws) is not None, 20)
        first_holder = holder_of(ws)[0]
        second = _start_scheduler(ws, ttl=2.0)
        try:
            time.sleep(1.5)
            assert holder_of(ws)[0] == first_holder  # the second one stands by
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            _wait_for(lambda: holder_of(ws) is not None and holder_of(ws)[0] != first_holder, 20)
            # the lease expired and the standby took over
            assert holder_of(ws)[0].split(":")[1] == str(second.pid)
        finally:
            second.terminate()
            out, _ = second.communicate(timeout=20)
        assert "active (holds the lease)" in out
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    # every scheduled fire time ran at most once
    fires = [r.scheduled_for for r in opx.list_runs(limit=None) if r.scheduled_for]
    assert len(fires) == len(set(fires))
    for run in opx.list_runs(limit=None):
        if not run.finished:
            R.request_cancel(ws, run.id)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster(tmp_path):
    pytest.importorskip("distributed")
    port = _free_port()
    dask = str(Path(sys.executable).with_name("dask"))
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    sched = subprocess.Popen(
        [
            dask,
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dashboard-address",
            ":0",
            "--no-show",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    worker = subprocess.Popen(
        [
            dask,
            "worker",
            f"tcp://127.0.0.1:{port}",
            "--nthreads",
            "2",
            "--nworkers",
            "1",
            "--host",
            "127.0.0.1",
            "--dashboard-address",
            ":0",
            "--local-directory",
            str(tmp_path / "dw"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        from distributed import Client

        end = time.monotonic() + 60
        while True:
            try:
                with Client(f"tcp://127.0.0.1:{port}", timeout=5) as client:
                    client.wait_for_workers(1, timeout=30)
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.5)
        yield f"dask://127.0.0.1:{port}"
    finally:
        for proc in (worker, sched):
            proc.terminate()
        for proc in (worker, sched):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_dask_executor_runs_a_job_on_a_real_cluster(ws, dask_cluster):
    opx.create_job("on-dask", JOBS / "typed_params.ipynb", executor=dask_cluster)
    snap_data = __import__("pandas").DataFrame({"a": [1.0, 2.0]})
    opx.snapshot("churn", data=snap_data)
    opx.promote("churn", "production")
    run = opx.run_job("on-dask", {"repeats": "2"}, wait=True)
    assert run.status == "succeeded", run.error
    assert run.executor == dask_cluster
    assert run.worker is not None and run.worker.split(":")[1] != str(os.getpid())
    assert run.resolved == {"model": "churn/1"}
    assert "line 1 threshold=0.5" in opx.run_logs(run.id)
    # and through the scheduler
    queued = R.create_run(ws, "on-dask")
    sched = Scheduler(ws)
    assert sched.step() == [queued.id]
    wait_finished(sched)
    assert opx.get_run(queued.id).status == "succeeded"
    sched.close()


def test_prestarted_kernel_serves_one_run_with_its_own_env(ws, tmp_path):
    opx.create_job("warm", JOBS / "no_params.ipynb", env=["OPX_TEST_FIXED=7"])
    sched = Scheduler(ws, prestart=1)
    try:
        _wait_for(lambda: sched.pool is not None and sched.pool.ready() == 1, 60)
        run = R.create_run(ws, "warm")
        assert sched.step() == [run.id]
        _wait_for(lambda: opx.get_run(run.id).finished, 60)
        done = opx.get_run(run.id)
        assert done.status == "succeeded", done.error
        logs = opx.run_logs(run.id)
        assert "using a pre-started kernel" in logs
        assert "fixed 7" in logs  # the run's env reached the kernel started before it
        assert done.worker.split(":")[1] == str(os.getpid())
        # the pool refills with a fresh kernel; the used one is gone
        _wait_for(lambda: sched.pool.ready() == 1, 60)
    finally:
        sched.close()


def test_scheduler_command_once(ws, capsys):
    from jupyter_opx.cli import main

    opx.create_job("once", JOBS / "no_params.ipynb")
    run = R.create_run(ws, "once")
    assert main(["scheduler", "--once"]) == 0
    assert f"dispatched 1 run(s): [{run.id}]" in capsys.readouterr().out
    assert opx.get_run(run.id).status == "succeeded"


# -- runs readied ahead of their fire time ----------------------------------------------
def test_scheduler_readies_a_runner_before_the_fire_time(ws):
    """A runner started ahead takes the fire's run: on time, with its scheduled time."""
    clock = Clock()
    job = opx.create_job(
        "minutely", JOBS / "no_params.ipynb", schedule="* * * * *", env=["OPX_TEST_FIXED=7"]
    )
    sched = Scheduler(ws, clock=clock, ready_ahead=10)
    try:
        clock.now = job.next_run - timedelta(seconds=5)
        assert sched.step() == []
        assert sched.next_fire == job.next_run
        fire, proc = sched.local.standby["minutely"]
        assert fire == job.next_run
        sched.step()  # a fire time is readied once
        assert sched.local.standby["minutely"][1] is proc
        assert opx.list_runs() == []  # nothing is queued before the fire time
        clock.now = job.next_run + timedelta(milliseconds=100)
        [run_id] = sched.step()
        assert sched.local.procs[run_id] is proc  # handed to the runner started ahead
        assert sched.local.standby == {}  # the next fire time is a minute away
        assert proc.wait(60) == 0
        run = opx.get_run(run_id)
        assert run.status == "succeeded", run.error
        assert run.trigger == "schedule"
        assert run.scheduled_for == job.next_run
        assert run.worker.split(":")[1] == str(proc.pid)
        logs = opx.run_logs(run_id)
        assert "using a pre-started kernel" in logs
        assert "fixed 7" in logs  # the run's env reached the kernel started before it
        assert sched.enqueue_due() == []  # and the fire time is not queued again
    finally:
        sched.close()


def test_runner_readied_for_a_skipped_fire_time_is_released(ws):
    from jupyter_opx.jobs.definitions import set_enabled

    clock = Clock()
    job = opx.create_job("minutely", JOBS / "no_params.ipynb", schedule="* * * * *")
    sched = Scheduler(ws, clock=clock, ready_ahead=10)
    try:
        clock.now = job.next_run - timedelta(seconds=5)
        sched.step()
        _, proc = sched.local.standby["minutely"]
        set_enabled(ws, "minutely", False)
        clock.now = job.next_run + timedelta(seconds=1)
        assert sched.step() == []
        assert sched.local.standby == {}
        assert proc.wait(60) == 0  # it discarded its kernel unused and exited
        assert opx.list_runs() == []
    finally:
        sched.close()


def test_only_the_lease_holder_readies_and_queues(ws):
    clock = Clock()
    job = opx.create_job("minutely", JOBS / "no_params.ipynb", schedule="* * * * *")
    active = Scheduler(ws, clock=clock, ready_ahead=10)
    other = Scheduler(ws, clock=clock, ready_ahead=10)
    try:
        clock.now = job.next_run - timedelta(seconds=5)
        active.step()
        other.step()
        assert active.leader and not other.leader
        assert "minutely" in active.local.standby
        assert other.local.standby == {}  # a scheduler on standby readies nothing
        clock.now = job.next_run + timedelta(milliseconds=100)
        assert len(active.step()) == 1
        assert other.step() == []
        assert other.enqueue_due() == []  # even past the lease: no second run
        wait_finished(active)
        [run] = opx.list_runs()
        assert run.status == "succeeded", run.error
        assert run.scheduled_for == job.next_run
    finally:
        other.close()
        active.close()


def test_loop_wakes_at_the_fire_time_not_at_the_next_tick(ws):
    job = opx.create_job("minutely", JOBS / "no_params.ipynb", schedule="* * * * *")
    # a clock running 4 s before the fire time when the loop starts
    offset = job.next_run - utcnow() - timedelta(seconds=4)
    sched = Scheduler(ws, clock=lambda: utcnow() + offset, tick=30.0, ready_ahead=0)
    stop = threading.Event()
    loop = threading.Thread(target=sched.run, args=(stop,), daemon=True)
    loop.start()
    try:
        _wait_for(lambda: opx.list_runs() != [], 20)
        [run] = opx.list_runs()
        assert run.scheduled_for == job.next_run
        # queued when the clock reached the fire time, not a 30 s tick later
        late = (run.created_at + offset - job.next_run).total_seconds()
        assert 0 <= late < 1.0
        _wait_for(lambda: opx.get_run(run.id).finished, 60)
        assert opx.get_run(run.id).status == "succeeded"
    finally:
        stop.set()
        loop.join(30)


def test_standby_runner_serves_one_run_then_discards_its_kernel(ws, monkeypatch):
    import io

    from jupyter_opx.jobs import runner, warm

    discarded = []
    real_discard = warm.discard

    def discard(km):
        discarded.append(km)
        real_discard(km)

    monkeypatch.setattr(warm, "discard", discard)
    opx.create_job("plain", JOBS / "no_params.ipynb")
    # told nothing (the scheduler stopped): the kernel goes unused
    assert runner.standby(ws, "plain", io.StringIO("")) is None
    assert len(discarded) == 1
    run = R.create_run(ws, "plain")
    done = runner.standby(ws, "plain", io.StringIO(f"{run.id}\n"))
    assert done is not None and done.status == "succeeded", done.error
    assert "using a pre-started kernel" in opx.run_logs(run.id)
    assert len(discarded) == 2 and discarded[0] is not discarded[1]


def test_ready_client_does_not_wait_for_iopub_silence():
    """jupyter_client's readiness check ends with 0.2 s of IOPub silence; ours does not."""
    from jupyter_opx.jobs import warm

    km = warm.start_kernel("python3", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        warm.wait_ready(km)  # booted
        took = []
        for _ in range(3):
            start = time.monotonic()
            warm.wait_ready(km)  # a new client: connect, kernel_info, IOPub proven
            took.append(time.monotonic() - start)
        assert min(took) < warm.IOPUB_WAIT
    finally:
        warm.discard(km)


def _standby_pids(store_root: Path, marker: bytes = b"--standby") -> list[int]:
    """Processes of the store at ``store_root`` with ``marker`` in their command line:
    runners started ahead (``--standby``), or their kernels (``ipykernel``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(marker in part for part in cmd) and f"OPX_HOME={store_root}".encode() in env:
            pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_runner_readied_by_a_killed_scheduler_exits(ws):
    opx.create_job("minutely", JOBS / "no_params.ipynb", schedule="* * * * *")
    script = (
        "from jupyter_opx.workspace import get_workspace\n"
        "from jupyter_opx.jobs.scheduler import Scheduler\n"
        "Scheduler(get_workspace(), ttl=2.0, tick=0.1, ready_ahead=120).run()\n"
    )
    sched = subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, "OPX_HOME": str(ws.root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: _standby_pids(ws.root) != [], 30)
        [pid] = _standby_pids(ws.root)
        _wait_for(lambda: _standby_pids(ws.root, b"ipykernel") != [], 30)  # its kernel
        sched.kill()
        sched.wait(10)
        # its stdin closed with the scheduler: it discards its kernel and exits
        _wait_for(lambda: _standby_pids(ws.root) == [], 60)
        _wait_for(lambda: _standby_pids(ws.root, b"ipykernel") == [], 30)
    finally:
        if sched.poll() is None:
            sched.kill()
            sched.wait()
    for run in opx.list_runs(limit=None):  # a fire time may have come meanwhile
        if not run.finished:
            R.request_cancel(ws, run.id)
    assert pid > 0
