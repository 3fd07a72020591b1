"""The scheduler: runs due jobs, one active scheduler per store.

Each pass (every ``tick`` seconds, 0.25 by default):

1. **Lease** — take or renew the database lease; without it the scheduler is
   on standby and does nothing else (it takes over once the holder's lease
   expires, e.g. because that process was killed).
2. **Due runs** — for every enabled job with a schedule, compare its next cron
   fire time with now. A due fire time becomes one queued run that carries its
   ``scheduled_for``; the job's ``last_fire`` moves in the same transaction, and
   a unique key on ``(job, scheduled_for)`` makes a duplicate impossible, so a
   restart or a failover never runs a fire time twice. After downtime the
   job's policy decides: ``catchup = "latest"`` (default) runs the most recent
   missed fire time once; ``"none"`` skips fire times older than the grace
   period and waits for the next one.
3. **Dispatch** — queued runs (scheduled or manual) go to the executor, at
   most ``concurrency`` at a time locally, or to their Dask cluster.
4. **Reap** — running runs whose runner stopped sending heartbeats (the
   process died) are marked failed, never left ``running``.
5. **Alerts** — every ``alert_interval`` seconds the store's alert rules are
   evaluated in a background thread (freshness rules need the timer: a job
   that stopped sends no events to react to).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from ..monitoring.alerts import AlertTimer
from ..store import schema
from ..store.db import as_utc, utcnow
from ..workspace import Workspace
from . import runs as R
from . import schedule as S
from .definitions import Job, get_job, list_jobs
from .executors import DaskExecutor, LocalExecutor
from .lease import release, try_acquire
from .runner import execute_run
from .warm import KernelPool, discard

#: a fire time older than this counts as missed (for catchup = "none")
GRACE = timedelta(seconds=60)
#: how often the loop looks at the change sequence between passes
WAKE = 0.05


class Scheduler:
    """Runs due jobs of one store; see the module docstring for one pass.

    Parameters
    ----------
    ws : Workspace
        The store.
    concurrency : int
        Local runs executing at once (default 2).
    ttl : float
        Lease duration in seconds; it is renewed every ``ttl / 3``.
    tick : float
        Seconds between passes.
    clock : callable, optional
        Returns the current aware UTC time (tests pass a controllable one).
    stale_after : float
        Seconds without a heartbeat after which a running run is failed.
    prestart : int
        Pre-started kernels to keep ready (0: none). A local run then executes
        in this process on one of them (a kernel per run, discarded after it)
        instead of starting a runner process and a kernel.
    alert_interval : float
        Seconds between evaluations of the alert rules (0: never).
    """

    def __init__(
        self,
        ws: Workspace,
        *,
        concurrency: int = 2,
        ttl: float = 15.0,
        tick: float = 0.25,
        clock: Callable[[], datetime] | None = None,
        stale_after: float = 30.0,
        prestart: int = 0,
        log: Callable[[str], None] | None = None,
        alert_interval: float = 30.0,
    ) -> None:
        self.ws = ws
        self.ttl = ttl
        self.tick = tick
        self.clock = clock or utcnow
        self.stale_after = stale_after
        self.log = log or (lambda _msg: None)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.local = LocalExecutor(ws, concurrency)
        self.dask: dict[str, DaskExecutor] = {}
        self.leader = False
        self._renewed_at: datetime | None = None
        self._dispatched: set[int] = set()
        self.pool: KernelPool | None = KernelPool(prestart) if prestart > 0 else None
        self._threads: dict[int, threading.Thread] = {}
        self.alerts = AlertTimer(ws, alert_interval, log=self.log)

    # -- one pass --------------------------------------------------------------------
    def step(self) -> list[int]:
        """One pass; returns the ids of the runs dispatched."""
        if not self._hold_lease():
            return []
        self.enqueue_due()
        started = self.dispatch()
        self.reap()
        self.alerts.tick()
        return started

    def _hold_lease(self) -> bool:
        now = utcnow()
        if (
            self.leader
            and self._renewed_at is not None
            and (now - self._renewed_at).total_seconds() < self.ttl / 3
        ):
            return True
        was = self.leader
        self.leader = try_acquire(self.ws, self.holder, self.ttl)
        self._renewed_at = now if self.leader else None
        if self.leader and not was:
            self.log(f"scheduler {self.holder}: active (holds the lease)")
        elif was and not self.leader:
            self.log(f"scheduler {self.holder}: lost the lease, standing by")
        return self.leader

    def enqueue_due(self) -> list[int]:
        """Queue one run per due fire time (per the job's catch-up policy)."""
        now = self.clock()
        queued = []
        for job in list_jobs(self.ws):
            if not job.enabled or not job.schedule:
                continue
            run_id = self._enqueue_job(job, now)
            if run_id is not None:
                queued.append(run_id)
        return queued

    def _enqueue_job(self, job: Job, now: datetime) -> int | None:
        st = schema.job_state

        def write(conn: Connection) -> int | None:
            state = conn.execute(select(st).where(st.c.name == job.name)).first()
            base = as_utc(state.last_fire) if state and state.last_fire else None
            if base is None:
                first = conn.execute(
                    select(schema.jobs.c.created_at)
                    .where(schema.jobs.c.name == job.name)
                    .order_by(schema.jobs.c.version)
                    .limit(1)
                ).scalar()
                base = as_utc(first)
            assert base is not None
            nxt = S.next_fire(job.schedule or "", job.timezone, base)
            if nxt > now:
                return None
            fire = S.latest_fire(job.schedule or "", job.timezone, now)
            conn.execute(update(st).where(st.c.name == job.name).values(last_fire=fire))
            if job.settings.get("catchup") == "none" and now - fire > GRACE:
                self.log(f"{job.name}: skipped the fire time {fire:%Y-%m-%d %H:%M} (catchup none)")
                return None
            exists = conn.execute(
                select(schema.runs.c.id).where(
                    schema.runs.c.job_name == job.name, schema.runs.c.scheduled_for == fire
                )
            ).first()
            if exists is not None:
                return None
            if nxt < fire:
                self.log(
                    f"{job.name}: missed fire times since {nxt:%Y-%m-%d %H:%M}; running the latest"
                )
            return R.insert_run(conn, job, dict(job.defaults), "schedule", scheduled_for=fire)

        run_id: int | None = self.ws.db.run_write(write)
        if run_id is not None:
            self.log(f"{job.name}: queued run {run_id} (scheduled)")
        return run_id

    def dispatch(self) -> list[int]:
        """Hand queued runs to their executor while slots are free."""
        self.local.poll()
        for dask in self.dask.values():
            dask.poll()
        with self.ws.db.transaction() as conn:
            queued = conn.execute(
                select(schema.runs.c.id, schema.runs.c.executor)
                .where(schema.runs.c.status == "queued")
                .order_by(schema.runs.c.id)
            ).all()
        live = set(self.local.procs) | {k for k, t in self._threads.items() if t.is_alive()}
        for dask in self.dask.values():
            live |= set(dask.futures)
        self._dispatched &= live | {r.id for r in queued}
        started = []
        for row in queued:
            if row.id in self._dispatched:
                continue
            if row.executor.startswith(("dask://", "tcp://")):
                if row.executor not in self.dask:
                    try:
                        self.dask[row.executor] = DaskExecutor(self.ws, row.executor)
                    except Exception as exc:
                        self.log(f"run {row.id}: {exc}")
                        continue
                self.dask[row.executor].submit(row.id)
            else:
                self._threads = {k: t for k, t in self._threads.items() if t.is_alive()}
                if self.local.free_slots - len(self._threads) <= 0:
                    continue
                if not self._run_warm(row.id):
                    self.local.submit(row.id)
            self._dispatched.add(row.id)
            started.append(row.id)
            self.log(f"run {row.id}: dispatched to {row.executor}")
        return started

    def _run_warm(self, run_id: int) -> bool:
        """Execute a run here, in a thread, on a pre-started kernel if one is ready."""
        if self.pool is None:
            return False
        run = R.get_run(self.ws, run_id)
        kernel = get_job(self.ws, run.job_name, run.job_version).settings.get("kernel") or "python3"
        km = self.pool.take(kernel)
        if km is None:
            return False

        def work() -> None:
            try:
                execute_run(self.ws, run_id, warm_km=km)
            except Exception as exc:  # claimed by someone else, or the store failed
                self.log(f"run {run_id}: {type(exc).__name__}: {exc}")
            finally:
                discard(km)  # one run per kernel: nothing leaks into the next

        thread = threading.Thread(target=work, name=f"opx-run-{run_id}", daemon=True)
        self._threads[run_id] = thread
        thread.start()
        return True

    def reap(self) -> list[int]:
        """Fail running runs whose runner stopped sending heartbeats."""
        stale = R.stale_running(self.ws, self.stale_after)
        for run_id in stale:
            R.finish(
                self.ws,
                run_id,
                "failed",
                error={
                    "ename": "RunnerLost",
                    "evalue": "the runner process stopped "
                    f"(no heartbeat for {self.stale_after:g}s)",
                },
            )
            self.log(f"run {run_id}: runner lost, marked failed")
        return stale

    # -- the loop --------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> None:
        """Pass after pass until ``stop`` is set (or SIGTERM/SIGINT in the main thread)."""
        stop = stop or threading.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(ValueError):
                    signal.signal(sig, lambda *_: stop.set())
        self.log(f"scheduler {self.holder}: watching {self.ws.root}")
        seen = -1
        next_pass = 0.0
        try:
            while not stop.is_set():
                # a cheap look at the change sequence between passes: a run queued
                # by `opx job run` is picked up at once, not at the next tick
                seq = self.ws.change_seq() if self.leader else seen
                now = time.monotonic()
                if seq != seen or now >= next_pass:
                    seen, next_pass = seq, now + self.tick
                    try:
                        self.step()
                    except Exception as exc:  # keep scheduling through transient store errors
                        self.log(f"scheduler pass failed: {type(exc).__name__}: {exc}")
                stop.wait(min(WAKE, self.tick))
        finally:
            self.close()

    def close(self) -> None:
        """Release the lease (a standby takes over at once); running runs go on."""
        if self.leader:
            with contextlib.suppress(Exception):
                release(self.ws, self.holder)
            self.leader = False
        for executor in self.dask.values():
            with contextlib.suppress(Exception):
                executor.shutdown()
        for thread in self._threads.values():
            thread.join(timeout=60)
        self.alerts.join(timeout=30)
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def status(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "leader": self.leader,
            "running_local": sorted(self.local.procs),
        }
