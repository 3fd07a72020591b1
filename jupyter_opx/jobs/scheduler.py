"""The scheduler: runs due jobs, one active scheduler per store.

Each pass (every ``tick`` seconds, 0.25 by default; at once when the store's
change sequence moves, e.g. a run was queued; and exactly at the next fire
time of a scheduled job, which the loop sleeps until):

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
4. **Ready ahead** — ``ready_ahead`` seconds (10 by default) before a local
   job's fire time, its runner process is started: it imports papermill and
   starts a kernel for the job, then waits. At the fire time the run is queued
   as in 2 (so it has its scheduled time, once) and handed to that process,
   which claims it like any runner; the kernel gets the run's environment and
   working directory before the first cell and serves that run only. A
   runner whose fire time passed without a run (skipped, job disabled) or
   whose scheduler lost the lease or stopped discards its kernel unused.
5. **Reap** — running runs whose runner stopped sending heartbeats (the
   process died) are marked failed, never left ``running``.
6. **Alerts** — every ``alert_interval`` seconds the store's alert rules are
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

from sqlalchemy import Connection, func, select, update

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
#: how often the loop looks at the SQLite write-ahead log (a stat) for writes
LOOK = 0.01
#: seconds before a fire time at which the run's process and kernel are started
READY_AHEAD = 10.0


def _wal_path(ws: Workspace) -> str | None:
    """The SQLite write-ahead log of the store (every commit writes it), or None."""
    db = ws.db
    name = db.url.database if db.is_sqlite else None
    return f"{name}-wal" if name and name != ":memory:" else None


def _stamp(path: str | None) -> tuple[int, int] | None:
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size) if st else None


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
    ready_ahead : float
        Seconds before a local job's fire time at which its runner process is
        started (papermill imported, a kernel started and answering), so that
        the run starts on time: the run is still queued at the fire time, with
        that time, and handed to this process. 0: runners start at the fire time.
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
        ready_ahead: float = READY_AHEAD,
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
        self._waiting: set[str] = set()  # jobs with queued runs (at the last dispatch)
        self._pass_time: datetime | None = None
        self.pool: KernelPool | None = KernelPool(prestart) if prestart > 0 else None
        self.ready_ahead = ready_ahead
        #: the next fire time of every enabled scheduled job (see :meth:`enqueue_due`)
        self.upcoming: dict[str, datetime] = {}
        self.next_fire: datetime | None = None
        self._local_jobs: set[str] = set()
        self._readied: dict[str, datetime] = {}  # job → the fire a runner was started for
        self._threads: dict[int, threading.Thread] = {}
        self.alerts = AlertTimer(ws, alert_interval, log=self.log)

    # -- one pass --------------------------------------------------------------------
    def step(self) -> list[int]:
        """One pass; returns the ids of the runs dispatched."""
        if not self._hold_lease():
            self.local.release_all()  # a standby scheduler readies nothing
            self._readied.clear()
            return []
        self.enqueue_due()
        started = self.dispatch()
        self.ready()
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
        """Queue one run per due fire time (per the job's catch-up policy).

        Also notes every scheduled job's next fire time (:attr:`upcoming`), from
        which the loop wakes on time and runners are started ahead.
        """
        now = self._pass_time = self.clock()
        queued = []
        upcoming: dict[str, datetime] = {}
        jobs = [job for job in list_jobs(self.ws) if job.enabled and job.schedule]
        bases = self._fire_bases() if jobs else {}
        for job in jobs:
            assert job.schedule is not None
            # read without the write lock (most passes queue nothing); _enqueue_job
            # decides again inside its write transaction
            nxt = S.next_fire(job.schedule, job.timezone, bases[job.name])
            if nxt <= now:
                run_id = self._enqueue_job(job, now)
                if run_id is not None:
                    queued.append(run_id)
                nxt = S.next_fire(job.schedule, job.timezone, now)
            upcoming[job.name] = nxt
            if not str(job.settings.get("executor") or "local").startswith(("dask:", "tcp:")):
                self._local_jobs.add(job.name)
            else:
                self._local_jobs.discard(job.name)
        self.upcoming = upcoming
        self.next_fire = min(upcoming.values(), default=None)
        return queued

    def _fire_bases(self) -> dict[str, datetime]:
        """Per job, the time its next fire follows: its last fire, else its creation."""
        st, jobs = schema.job_state, schema.jobs
        with self.ws.db.transaction() as conn:
            last = {r.name: r.last_fire for r in conn.execute(select(st.c.name, st.c.last_fire))}
            first = {
                r.name: r.created
                for r in conn.execute(
                    select(jobs.c.name, func.min(jobs.c.created_at).label("created")).group_by(
                        jobs.c.name
                    )
                )
            }
        out = {}
        for name, created in first.items():
            base = as_utc(last.get(name)) or as_utc(created)
            assert base is not None
            out[name] = base
        return out

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
                select(
                    schema.runs.c.id,
                    schema.runs.c.executor,
                    schema.runs.c.job_name,
                    schema.runs.c.trigger,
                )
                .where(schema.runs.c.status == "queued")
                .order_by(schema.runs.c.id)
            ).all()
        self._waiting = {r.job_name for r in queued}
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
                # a scheduled run goes to the runner started ahead of its fire time
                ahead = row.trigger == "schedule" and row.job_name in self.local.standby
                if ahead or not self._run_warm(row.id):
                    self.local.submit(row.id, row.job_name if ahead else None)
            self._dispatched.add(row.id)
            started.append(row.id)
            self.log(f"run {row.id}: dispatched to {row.executor}")
        return started

    def ready(self) -> None:
        """Start runners ahead of imminent fire times; let unneeded ones go.

        A runner started for a fire time that passed without a queued run of
        its job (skipped by the catch-up policy, the job disabled) is released:
        it discards its kernel unused. At most ``concurrency`` wait at a time.
        """
        now = self._pass_time or self.clock()  # the time the due runs were queued at
        for job_name, (fire, proc) in list(self.local.standby.items()):
            gone = proc.poll() is not None
            if gone or (fire <= now and job_name not in self._waiting):
                self.local.release(job_name)
        if self.ready_ahead <= 0:
            return
        for job_name, fire in sorted(self.upcoming.items(), key=lambda item: item[1]):
            soon = (fire - now).total_seconds() <= self.ready_ahead
            if not soon or len(self.local.standby) >= self.local.max_workers:
                break
            if job_name not in self._local_jobs or self._readied.get(job_name) == fire:
                continue
            self._readied[job_name] = fire  # once per fire time, even if it fails
            self.local.release(job_name)  # one for an earlier fire time still waiting
            try:
                self.local.prepare(job_name, fire)
            except OSError as exc:
                self.log(f"{job_name}: could not start a runner ahead: {exc}")
                continue
            self.log(f"{job_name}: runner started ahead of {fire:%Y-%m-%d %H:%M:%S} UTC")

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
        next_pass = next_look = 0.0
        wal = _wal_path(self.ws)
        mark: tuple[int, int] | None = None
        try:
            while not stop.is_set():
                # a cheap look at the change sequence between passes, so that a run
                # queued by `opx job run` is picked up at once, not at the next tick:
                # on SQLite as soon as its write-ahead log changes (a stat every LOOK
                # seconds; the sequence itself every tick, in case a change hid in the
                # file's coarse timestamps), elsewhere every WAKE seconds
                now = time.monotonic()
                seq = seen
                if self.leader:
                    stamp = _stamp(wal)
                    if stamp != mark or now >= next_look:
                        mark, next_look = stamp, now + (self.tick if wal else WAKE)
                        seq = self.ws.change_seq()
                due = self._until_fire() == 0.0
                if seq != seen or now >= next_pass or due:
                    seen, next_pass = seq, now + self.tick
                    try:
                        self.step()
                    except Exception as exc:  # keep scheduling through transient store errors
                        self.log(f"scheduler pass failed: {type(exc).__name__}: {exc}")
                        self.next_fire = None
                    if due and self._until_fire() == 0.0:
                        self.next_fire = None  # not queued (e.g. a standby): no busy loop
                # sleep until the next look, or to the next fire time if it comes first
                wait = min(LOOK if wal else WAKE, self.tick)
                if self.leader:
                    wait = min(wait, self._until_fire())
                stop.wait(wait)
        finally:
            self.close()

    def _until_fire(self) -> float:
        """Seconds until the earliest next fire time (0 when due; inf when none)."""
        if self.next_fire is None:
            return float("inf")
        return max(0.0, (self.next_fire - self.clock()).total_seconds())

    def close(self) -> None:
        """Release the lease (a standby takes over at once); running runs go on."""
        if self.leader:
            with contextlib.suppress(Exception):
                release(self.ws, self.holder)
            self.leader = False
        self.local.release_all()
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
