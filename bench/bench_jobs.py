"""Benchmark: opx jobs against the bare papermill CLI, and the scheduler's latencies.

Run from the repository root (``make bench`` does, with ``--jitter``)::

    .venv/bin/python bench/bench_jobs.py                    # parts 1, 2, 4; 5 reps
    .venv/bin/python bench/bench_jobs.py --jitter           # plus part 3 (about 8 min)
    .venv/bin/python bench/bench_jobs.py --reps 2 --batch 4 # smoke run, about a minute

Measured side by side in one run, as medians over ``--reps`` repetitions, on the
same 3-cell notebook (a first cell that records ``time.time()``, a parameters
cell tagged ``parameters``, a cell that uses the parameters and, when the
``stamp`` parameter names a file, writes the first cell's time into it):

1. ``opx job run bench -p x=1 --wait``, whole process (spawn to exit; job created
   beforehand in a store already used) against ``papermill in.ipynb out.ipynb
   -p x 1``, whole process (goal ≤ 1.1×);
2. with ``opx scheduler --prestart 1`` running: from the run request
   (``jupyter_opx.api.run_job`` without ``wait``, which queues the run for the
   scheduler) to the first cell executing (goal < 0.2 s);
3. (``--jitter``) scheduler jitter: a job scheduled ``* * * * *``, from the fire
   time (the run's ``scheduled_for``) to its first cell executing, with
   ``opx scheduler`` and with ``opx scheduler --prestart 1`` (goal: median ≤ 1 s).
   In both, the scheduled run goes to the runner the scheduler starts
   ``--ready-ahead`` (10) seconds before the fire time; the ``--prestart`` pool
   serves runs requested at any time. Cron has minute granularity, so each
   sample is a real minute;
4. 20 runs queued at once to ``opx scheduler --concurrency 2``, from queueing to
   the last run finished, against 20 sequential ``papermill`` CLI runs
   (goal ≤ 0.6×).

Every store is a new temporary folder (``OPX_HOME``); every scheduler this
script starts is stopped by it (SIGTERM, then SIGKILL; kernels left behind are
killed by pid). The two sides take turns going first, and untimed warm-up runs
precede the timed ones. Before each repetition the script waits for the
machine to be quiet and runs a repetition again when other processes used more
than 0.15 cores during it (``idle.py``; the CPU of this script's own process tree
— schedulers, runners, kernels — is not counted as "other").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import idle  # noqa: E402
from idle import cpu_ticks, descendants  # noqa: E402
from idle import proc_stat as _stat  # noqa: E402

RESULTS = HERE / "results"
BIN = Path(sys.executable).parent  # the venv's bin: opx, papermill
JOB = "bench"
#: the environment of every process started here (see ``bytecode_cache``)
ENV: dict[str, str] = dict(os.environ)

# goals from the issue
GOAL_CLI_VS_PAPERMILL = 1.1
GOAL_PRESTART_LATENCY = 0.2  # strictly below
GOAL_JITTER = 1.0
GOAL_BATCH_VS_SEQUENTIAL = 0.6
BUSY_LIMIT = 0.15  # cores used by other processes that make a repetition suspect

CELLS = [
    # 1: the first cell executing records when it did
    "import time\n\nt_first = time.time()  # when the first cell executed",
    # 2: the parameters cell (papermill's tag; opx reads names, types, help from it)
    'x: int = 0  # any number\nstamp: str = ""  # a file to write t_first into ("": none)',
    # 3: uses the parameters
    'y = x + 1\nif stamp:\n    with open(stamp, "w") as fh:\n        fh.write(repr(t_first))',
]


def write_notebook(path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [new_code_cell(src) for src in CELLS]
    nb.cells[1].metadata["tags"] = ["parameters"]
    nbformat.write(nb, str(path))


def bytecode_cache(folder: Path) -> None:
    """Let the processes started here cache compiled bytecode in ``folder``.

    With ``PYTHONDONTWRITEBYTECODE`` set (as in some sandboxes and CI images), the
    editable ``jupyter_opx`` has no ``__pycache__`` and every ``opx`` process would
    compile it from source, while pip compiled papermill's packages at install. A
    private ``PYTHONPYCACHEPREFIX`` (filled by the warm-up runs) puts both sides on
    compiled bytecode, as in an ordinary installation, without writing to the tree.
    """
    ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    ENV["PYTHONPYCACHEPREFIX"] = str(folder)


# -- processes: CPU of our own tree, and cleaning up ---------------------------------------
def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


#: processes this script waits for itself (never reaped by ``reap_orphans``)
OWN_POPEN: set[int] = set()


def become_subreaper() -> None:
    """Adopt orphaned descendants instead of letting init reap them.

    A process that exits without waiting for its child (``opx job run --wait``
    and the runner leave their killed kernel unreaped) hands that child to init,
    and its CPU time would then count as another process's. As a subreaper this
    script adopts and reaps such orphans (``reap_orphans``), so their CPU stays
    in this process tree's account (``TreeLoad``). Linux only; a no-op elsewhere.
    """
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def reap_orphans() -> int:
    """Reap adopted zombie children (not our own Popen objects); returns how many."""
    reaped = 0
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in OWN_POPEN:
            continue
        fields = _stat(int(name))
        if fields is not None and fields[0] == "Z" and int(fields[1]) == me:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(int(name), os.WNOHANG)[0]:
                    reaped += 1
    return reaped


class TreeLoad(idle.TreeLoad):
    """:class:`idle.TreeLoad`, orphans adopted and reaped first.

    Schedulers, runners and kernels started here are part of what is measured.
    A descendant's CPU is read from /proc while it lives (or lingers as a zombie)
    and reaches its parent's ``cutime`` once reaped (ours, for orphans we adopted:
    see ``become_subreaper``), so the sum stays continuous.
    """

    def _own(self) -> float:
        reap_orphans()
        return super()._own()


def wait_quiet(limit: float, timeout: float, label: str = "bench") -> float | None:
    """``idle.wait_idle`` with :class:`TreeLoad` (our idle scheduler is not "other")."""
    return idle.wait_idle(limit, timeout, label, load=TreeLoad)


class Scheduler:
    """``opx scheduler ARGS`` as a subprocess on one store; stopped by :meth:`stop`."""

    def __init__(self, store: Path, *args: str) -> None:
        self.store = store
        self.args = args
        self.log_path = store.parent / f"scheduler-{int(time.time() * 1000)}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(BIN / "opx"), "scheduler", *args],
            env={**ENV, "OPX_HOME": str(store)},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=store.parent,
        )
        OWN_POPEN.add(self.proc.pid)
        self.seen: dict[int, str] = {}  # every descendant seen: pid → start time

    def remember(self) -> list[int]:
        pids = descendants(self.proc.pid)
        for pid in pids:
            fields = _stat(pid)
            if fields is not None:
                self.seen.setdefault(pid, fields[19])  # field 22: start time
        return pids

    def kernels(self) -> list[int]:
        return [p for p in self.remember() if "ipykernel" in cmdline(p)]

    def wait_active(self, ws: Any, timeout: float = 60) -> None:
        from jupyter_opx.jobs.lease import scheduler_active

        deadline = time.monotonic() + timeout
        while not scheduler_active(ws):
            if self.proc.poll() is not None:
                raise SystemExit(f"opx scheduler exited:\n{self.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise SystemExit("opx scheduler did not take the lease in time")
            time.sleep(0.1)

    def wait_kernel_ready(self, count: int = 1, timeout: float = 60, calm: float = 0.5) -> None:
        """Until exactly ``count`` kernels run under the scheduler and none uses CPU.

        The pool counts a kernel as ready once its process is spawned; a kernel
        whose CPU time stopped growing has finished starting (imports, sockets).
        """
        deadline = time.monotonic() + timeout
        last: dict[int, int] = {}
        still_since = time.monotonic()
        while time.monotonic() < deadline:
            pids = self.kernels()
            ticks = {pid: cpu_ticks(pid, children=False) for pid in pids}
            if len(pids) != count or ticks != last:
                last, still_since = ticks, time.monotonic()
            elif time.monotonic() - still_since >= calm:
                return
            time.sleep(0.05)
        raise SystemExit(f"the scheduler's kernel pool did not settle at {count} in {timeout} s")

    def stop(self) -> None:
        self.remember()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # kernels start in sessions of their own: kill those the scheduler left behind
        for pid, start in self.seen.items():
            fields = _stat(pid)
            if fields is not None and fields[19] == start and fields[0] != "Z":
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        reap_orphans()  # what we just killed was adopted by this process
        OWN_POPEN.discard(self.proc.pid)
        self._log.close()


# -- the store and the job ---------------------------------------------------------------
class Store:
    """A temporary folder with the notebook and a store holding job ``bench``."""

    def __init__(self, base: Path, name: str, **settings: Any) -> None:
        from jupyter_opx.workspace import Workspace

        self.dir = base / name
        self.dir.mkdir(parents=True)
        self.notebook = self.dir / "in.ipynb"
        self.output = self.dir / "out.ipynb"
        write_notebook(self.notebook)
        self.root = self.dir / "store"
        self.ws = Workspace(self.root)
        self.settings = settings
        self.env = {**ENV, "OPX_HOME": str(self.root)}

    def create_job(self, params: dict[str, Any] | None = None) -> None:
        import jupyter_opx as opx

        opx.create_job(JOB, self.notebook, params=params, workspace=self.ws, **self.settings)

    def close(self) -> None:
        self.ws.close()


def papermill_cli(store: Store) -> float:
    cmd = [str(BIN / "papermill"), str(store.notebook), str(store.output), "-p", "x", "1"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=store.dir, env=store.env, capture_output=True, check=False)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"papermill failed:\n{proc.stderr.decode()[-3000:]}")
    return secs


def opx_cli(store: Store) -> dict[str, float]:
    """``opx job run bench -p x=1 --wait``: whole process, plus where its time went."""
    from jupyter_opx.jobs.runs import get_run

    cmd = [str(BIN / "opx"), "job", "run", JOB, "-p", "x=1", "--wait"]
    wall0 = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=store.dir, env=store.env, capture_output=True, check=False)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"opx job run failed:\n{proc.stdout.decode()}{proc.stderr.decode()}")
    run = get_run(store.ws, int(proc.stdout.decode().split()[-1]))
    assert run.started_at is not None and run.finished_at is not None
    return {
        "total": secs,
        # spawn → run claimed: interpreter, imports, store open, parameter checks, queueing
        "to_start": run.started_at.timestamp() - wall0,
        # claimed → finished: kernel start, cells, output stored
        "run": (run.finished_at - run.started_at).total_seconds(),
        # finished → process exit: retention, notifications, printing, interpreter exit
        "after": wall0 + secs - run.finished_at.timestamp(),
    }


def wait_run(ws: Any, run_id: int, timeout: float = 120) -> Any:
    from jupyter_opx.jobs.runs import get_run

    deadline = time.monotonic() + timeout
    while True:
        run = get_run(ws, run_id)
        if run.finished:
            if run.status != "succeeded":
                raise SystemExit(f"run {run_id} {run.status}: {run.error}")
            return run
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run_id} did not finish in {timeout} s ({run.status})")
        time.sleep(0.05)


def read_stamp(path: Path) -> float:
    value = float(path.read_text())
    path.unlink()
    return value


# -- repetitions on a quiet machine ------------------------------------------------------
def quiet_reps(
    label: str,
    reps: int,
    args: argparse.Namespace,
    one: Callable[[int], dict[str, float]],
    describe: Callable[[dict[str, float]], str],
) -> list[dict[str, float]]:
    runs = []
    for rep in range(reps):
        for attempt in range(1 + args.retries):
            wait_quiet(BUSY_LIMIT, args.idle_timeout)
            load = TreeLoad()
            r = one(rep)
            other = load.cores()
            if other is not None:
                r["other_load"] = other
            r["attempt"] = attempt + 1
            print(
                f"bench: {label} rep {rep + 1}/{reps}: {describe(r)}; "
                f"other processes {r.get('other_load', 0):.2f} cores",
                file=sys.stderr,
                flush=True,
            )
            if r.get("other_load", 0) <= BUSY_LIMIT:
                break
            if attempt < args.retries:
                print("bench: disturbed by other processes; running it again", file=sys.stderr)
        runs.append(r)
    return runs


# -- part 1: opx job run --wait against the papermill CLI -----------------------------------
def part_cli(base: Path, args: argparse.Namespace) -> list[dict[str, float]]:
    store = Store(base, "cli")
    try:
        store.create_job()
        opx_cli(store)  # warm-up (untimed): store, page cache
        papermill_cli(store)

        def one(rep: int) -> dict[str, float]:
            out: dict[str, float] = {}

            def pm() -> None:
                out["papermill"] = papermill_cli(store)

            def ox() -> None:
                for key, value in opx_cli(store).items():
                    out["opx" if key == "total" else f"opx_{key}"] = value

            for op in (pm, ox) if rep % 2 == 0 else (ox, pm):
                op()
            return out

        return quiet_reps(
            "cli",
            args.reps,
            args,
            one,
            lambda r: f"papermill {r['papermill']:.3f} s, opx job run --wait {r['opx']:.3f} s",
        )
    finally:
        store.close()


# -- part 2: pre-started kernels: run request → first cell --------------------------------
def part_prestart(base: Path, args: argparse.Namespace) -> list[dict[str, float]]:
    import jupyter_opx as opx

    store = Store(base, "prestart")
    store.create_job()
    sched = Scheduler(store.root, "--prestart", "1")
    stamp = store.dir / "stamp"
    try:
        sched.wait_active(store.ws)

        def one(_rep: int) -> dict[str, float]:
            sched.wait_kernel_ready(1)
            t0 = time.time()
            run = opx.run_job(JOB, {"x": 1, "stamp": str(stamp)}, workspace=store.ws)
            t1 = time.time()
            done = wait_run(store.ws, run.id)
            first = read_stamp(stamp)
            if "using a pre-started kernel" not in opx.run_logs(run.id, workspace=store.ws):
                raise SystemExit(f"run {run.id} did not use a pre-started kernel")
            return {
                "latency": first - t0,
                "request": t1 - t0,  # run_job's call: validation, insert, lease check
                "to_claim": done.started_at.timestamp() - t0,  # the scheduler saw and claimed it
                "claim_to_first": first - done.started_at.timestamp(),
                "run": (done.finished_at - done.started_at).total_seconds(),
            }

        for _ in range(2):  # warm-up: the scheduler imports papermill on its first run
            one(0)
        return quiet_reps(
            "prestart",
            args.reps,
            args,
            one,
            lambda r: (
                f"request → first cell {r['latency']:.3f} s (claimed after {r['to_claim']:.3f} s)"
            ),
        )
    finally:
        sched.stop()
        store.close()


# -- part 3: scheduler jitter (real minute fires) ----------------------------------------
def part_jitter(base: Path, args: argparse.Namespace, prestart: int) -> list[dict[str, float]]:
    import jupyter_opx as opx
    from jupyter_opx.jobs.runs import list_runs

    label = f"jitter{' --prestart 1' if prestart else ''}"
    store = Store(base, f"jitter-{prestart}", schedule="* * * * *")
    stamp = store.dir / "stamp"
    warm = store.dir / "warm"
    # the job is created just before its scheduler starts, so no fire time is missed
    store.create_job({"x": 1, "stamp": str(stamp)})
    sched = Scheduler(store.root, *(["--prestart", str(prestart)] if prestart else []))
    runs: list[dict[str, float]] = []
    disturbed: list[dict[str, float]] = []
    try:
        sched.wait_active(store.ws)
        # warm-up (untimed): a manual run; with --prestart it must take a pre-started
        # kernel, as the scheduler imports papermill & co. only on its first such run
        if prestart:
            sched.wait_kernel_ready(prestart)
        wait_run(store.ws, opx.run_job(JOB, {"stamp": str(warm)}, workspace=store.ws).id)
        read_stamp(warm)
        attempts = skipped = 0
        skip_budget = int(args.idle_timeout // 60)  # minutes
        while len(runs) < args.jitter_reps and attempts < args.jitter_reps + args.retries:
            # nothing may be running at the fire time: let earlier fires finish
            for r in list_runs(store.ws, JOB, limit=5):
                if not r.finished:
                    wait_run(store.ws, r.id)
            with contextlib.suppress(FileNotFoundError):
                stamp.unlink()
            if prestart:
                sched.wait_kernel_ready(prestart)
            wait_quiet(BUSY_LIMIT, args.idle_timeout)
            fire = (int(time.time() + 6) // 60 + 1) * 60  # the next minute ≥ 6 s ahead
            print(
                f"bench: {label}: waiting for the fire at "
                f"{datetime.fromtimestamp(fire):%H:%M:%S} ({fire - time.time():.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            # the fire time cannot wait for a quiet machine: a minute that starts busy
            # is skipped (its run still executes, unmeasured) while the budget lasts
            time.sleep(max(0.0, fire - 4.5 - time.time()))
            probe = TreeLoad()
            time.sleep(1.5)
            busy = probe.cores() or 0.0
            if busy > BUSY_LIMIT and skipped < skip_budget:
                skipped += 1
                print(
                    f"bench: {label}: busy before the fire ({busy:.2f} cores); skipping it",
                    file=sys.stderr,
                )
                continue
            load = TreeLoad()
            attempts += 1
            run = None
            deadline = time.time() + 60
            while run is None:
                run = next(
                    (
                        r
                        for r in list_runs(store.ws, JOB, limit=5)
                        if r.scheduled_for is not None and r.scheduled_for.timestamp() == fire
                    ),
                    None,
                )
                if run is None:
                    if time.time() > deadline:
                        raise SystemExit(f"{label}: no run was queued for the fire time {fire}")
                    time.sleep(0.05)
            done = wait_run(store.ws, run.id)
            first = read_stamp(stamp)
            warm_used = "using a pre-started kernel" in opx.run_logs(run.id, workspace=store.ws)
            r = {
                "jitter": first - fire,
                "prestarted_kernel": float(warm_used),
                "to_queue": done.created_at.timestamp() - fire,
                "to_claim": done.started_at.timestamp() - fire,
                "claim_to_first": first - done.started_at.timestamp(),
                "attempt": attempts,
            }
            other = load.cores()
            if other is not None:
                r["other_load"] = other
            print(
                f"bench: {label}: fire {datetime.fromtimestamp(fire):%H:%M} → first cell "
                f"{r['jitter']:.3f} s (queued {r['to_queue']:.3f} s, claimed "
                f"{r['to_claim']:.3f} s); other processes {r.get('other_load', 0):.2f} cores",
                file=sys.stderr,
                flush=True,
            )
            if r.get("other_load", 0) <= BUSY_LIMIT:
                runs.append(r)
            else:
                disturbed.append(r)
                print("bench: disturbed by other processes; taking another minute", file=sys.stderr)
        # out of retries: the least disturbed minutes fill up (the footer warns)
        disturbed.sort(key=lambda r: r.get("other_load", 0))
        return runs + disturbed[: args.jitter_reps - len(runs)]
    finally:
        sched.stop()
        store.close()


# -- part 4: 20 queued runs at concurrency 2 against 20 sequential papermill runs ------------
def part_batch(base: Path, args: argparse.Namespace) -> list[dict[str, float]]:
    import jupyter_opx as opx
    from jupyter_opx.jobs.runs import get_run

    store = Store(base, "batch")
    store.create_job()
    sched = Scheduler(store.root, "--concurrency", "2")
    try:
        sched.wait_active(store.ws)

        def queued() -> float:
            t0 = time.time()
            ids = [opx.run_job(JOB, {"x": 1}, workspace=store.ws).id for _ in range(args.batch)]
            # runs finish about in order: look at the first unfinished one only (cheap)
            ends = []
            for run_id in ids:
                while not (run := get_run(store.ws, run_id)).finished:
                    time.sleep(0.2)
                if run.status != "succeeded":
                    raise SystemExit(f"run {run_id} {run.status}: {run.error}")
                ends.append(run.finished_at.timestamp())
            # and until the scheduler's runner processes have exited
            while sched.remember():
                time.sleep(0.05)
            return max(ends) - t0

        def sequential() -> float:
            return sum(papermill_cli(store) for _ in range(args.batch))

        wait_run(store.ws, opx.run_job(JOB, {"x": 1}, workspace=store.ws).id)  # warm-up
        papermill_cli(store)

        def one(rep: int) -> dict[str, float]:
            out: dict[str, float] = {}

            def pm() -> None:
                out["papermill"] = sequential()

            def ox() -> None:
                out["opx"] = queued()

            for op in (pm, ox) if rep % 2 == 0 else (ox, pm):
                op()
            return out

        return quiet_reps(
            "batch",
            args.reps,
            args,
            one,
            lambda r: (
                f"{args.batch} sequential papermill {r['papermill']:.2f} s, "
                f"{args.batch} queued at concurrency 2 {r['opx']:.2f} s"
            ),
        )
    finally:
        sched.stop()
        store.close()


# -- report ---------------------------------------------------------------------------------
def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def spread(runs: list[dict[str, float]], key: str) -> str:
    values = [r[key] for r in runs]
    return f"{min(values):.3f}–{max(values):.3f}"


def build_table(parts: dict[str, list[dict[str, float]]], batch: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if "cli" in parts:
        runs = parts["cli"]
        pm, ox = median(runs, "papermill"), median(runs, "opx")
        rows += [
            {
                "op": "papermill in out -p x 1 (whole process)",
                "s": pm,
                "range": spread(runs, "papermill"),
            },
            {
                "op": "opx job run --wait (whole process)",
                "s": ox,
                "range": spread(runs, "opx"),
                "anchor": "papermill CLI",
                "ratio": ox / pm,
                "goal": f"≤ {GOAL_CLI_VS_PAPERMILL}×",
                "ok": ox / pm <= GOAL_CLI_VS_PAPERMILL,
            },
        ]
    if "prestart" in parts:
        runs = parts["prestart"]
        lat = median(runs, "latency")
        rows.append(
            {
                "op": "--prestart 1: run request → first cell",
                "s": lat,
                "range": spread(runs, "latency"),
                "goal": f"< {GOAL_PRESTART_LATENCY} s",
                "ok": lat < GOAL_PRESTART_LATENCY,
            }
        )
    for key, what in (("jitter0", "opx scheduler"), ("jitter1", "opx scheduler --prestart 1")):
        if key in parts:
            runs = parts[key]
            jit = median(runs, "jitter")
            rows.append(
                {
                    "op": f"jitter, {what}: fire time → first cell ({len(runs)} fires)",
                    "s": jit,
                    "range": spread(runs, "jitter"),
                    "goal": f"≤ {GOAL_JITTER:g} s",
                    "ok": jit <= GOAL_JITTER,
                }
            )
    if "batch" in parts:
        runs = parts["batch"]
        pm, ox = median(runs, "papermill"), median(runs, "opx")
        rows += [
            {
                "op": f"{batch} sequential papermill CLI runs",
                "s": pm,
                "range": spread(runs, "papermill"),
            },
            {
                "op": f"{batch} runs queued, scheduler --concurrency 2",
                "s": ox,
                "range": spread(runs, "opx"),
                "anchor": "sequential papermill",
                "ratio": ox / pm,
                "goal": f"≤ {GOAL_BATCH_VS_SEQUENTIAL}×",
                "ok": ox / pm <= GOAL_BATCH_VS_SEQUENTIAL,
            },
        ]
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    head = ("operation", "median s", "min–max s", "vs", "ratio", "goal", "result")
    body = []
    for r in rows:
        body.append(
            (
                r["op"],
                f"{r['s']:.3f}",
                r.get("range", ""),
                r.get("anchor", ""),
                f"{r['ratio']:.2f}×" if "ratio" in r else "",
                r.get("goal", ""),
                ("PASS" if r["ok"] else "FAIL") if "ok" in r else "",
            )
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(b) for b in body)])


def breakdown(parts: dict[str, list[dict[str, float]]]) -> list[str]:
    """Where the time went (medians), one line per part."""
    lines = []

    def fmt(runs: list[dict[str, float]], keys: list[tuple[str, str]]) -> str:
        return ", ".join(f"{what} {median(runs, key):.3f}" for key, what in keys)

    if "cli" in parts:
        lines.append(
            "opx job run --wait (median s): "
            + fmt(
                parts["cli"],
                [
                    ("opx_to_start", "spawn → run claimed"),
                    ("opx_run", "claimed → finished (kernel, cells, output)"),
                    ("opx_after", "finished → exit"),
                ],
            )
        )
    if "prestart" in parts:
        lines.append(
            "--prestart 1 (median s): "
            + fmt(
                parts["prestart"],
                [
                    ("request", "run_job call"),
                    ("to_claim", "request → claimed"),
                    ("claim_to_first", "claimed → first cell"),
                ],
            )
        )
    for key, what in (("jitter0", "jitter"), ("jitter1", "jitter --prestart 1")):
        if key in parts:
            lines.append(
                f"{what} (median s): "
                + fmt(
                    parts[key],
                    [
                        ("to_queue", "fire → queued"),
                        ("to_claim", "fire → claimed"),
                        ("claim_to_first", "claimed → first cell"),
                    ],
                )
            )
    return lines


def machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    from jupyter_opx import __version__

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if "model name" in ln), cpu)
    except OSError:
        pass
    git = subprocess.run(
        ["git", "-C", str(HERE.parent), "describe", "--always", "--dirty", "--exclude=*"],
        capture_output=True,
        text=True,
        check=False,
    )
    names = ("papermill", "nbclient", "nbformat", "jupyter_client", "ipykernel", "pyzmq")
    # jsonschema's optional format checkers are imported with nbformat (papermill, runner):
    # rfc3987-syntax (pulled in by jupyter_server → jupyter_events) alone costs ~0.9 s
    names += ("jsonschema", "rfc3987-syntax", "jupyter_server", "SQLAlchemy")
    packages = {}
    for name in names:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "commit": git.stdout.strip() or None,
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jupyter_opx": __version__,
        "packages": packages,
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
    }


@contextlib.contextmanager
def temp_base(parent: str | None) -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="opx-bench-jobs-", dir=parent))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (median)")
    parser.add_argument("--batch", type=int, default=20, help="runs queued at once (part 4)")
    parser.add_argument(
        "--jitter", action="store_true", help="also measure scheduler jitter (real minute fires)"
    )
    parser.add_argument(
        "--jitter-reps",
        type=int,
        default=3,
        help="fire times (minutes) per scheduler mode for the jitter (default 3)",
    )
    parser.add_argument(
        "--only",
        default="cli,prestart,batch",
        help="comma-separated parts among cli, prestart, batch (default: all; "
        "--jitter adds the jitter)",
    )
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="leave PYTHONDONTWRITEBYTECODE/PYTHONPYCACHEPREFIX as they are (see bytecode_cache)",
    )
    parser.add_argument("--json", default=None, help="write results here (default: results/)")
    parser.add_argument("--no-json", action="store_true", help="write no JSON file")
    parser.add_argument("--tmp", default=None, help="parent folder of the temporary stores")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=120.0,
        help="wait up to this many seconds for a quiet machine before each rep (0: never)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=3,
        help="run a repetition again (up to this many times) when other processes disturbed it",
    )
    args = parser.parse_args(argv)
    only = {p.strip() for p in args.only.split(",") if p.strip()}
    if not only <= {"cli", "prestart", "batch"}:
        parser.error("--only takes cli, prestart and batch")
    if args.reps < 1 or args.batch < 1 or args.jitter_reps < 1:
        parser.error("--reps, --batch and --jitter-reps must be ≥ 1")

    # a SIGTERM unwinds like Ctrl-C: schedulers stopped, temporary stores removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    become_subreaper()
    started = datetime.now(timezone.utc)
    parts: dict[str, list[dict[str, float]]] = {}
    with temp_base(args.tmp) as base:
        if not args.no_bytecode_cache:
            bytecode_cache(base / "pycache")
        if "cli" in only:
            print("bench: part 1, opx job run --wait against papermill", file=sys.stderr)
            parts["cli"] = part_cli(base, args)
        if "prestart" in only:
            print("bench: part 2, --prestart 1: run request → first cell", file=sys.stderr)
            parts["prestart"] = part_prestart(base, args)
        if args.jitter:
            for prestart in (0, 1):
                print(f"bench: part 3, scheduler jitter, prestart {prestart}", file=sys.stderr)
                parts[f"jitter{prestart}"] = part_jitter(base, args, prestart)
        if "batch" in only:
            print(f"bench: part 4, {args.batch} queued runs against papermill", file=sys.stderr)
            parts["batch"] = part_batch(base, args)

    rows = build_table(parts, args.batch)
    info = machine()
    print()
    print(
        f"3-cell notebook; medians of {args.reps} reps"
        + (f", jitter {args.jitter_reps} fires per mode" if args.jitter else "")
        + f"; {info['cpus']} CPUs ({info['cpu']}); {started:%Y-%m-%d}; commit {info['commit']}"
    )
    print(format_table(rows))
    print()
    print(", ".join(f"{k} {v}" for k, v in info["packages"].items() if v) + "\n")
    for line in breakdown(parts):
        print(line)
    busy = [r["other_load"] for runs in parts.values() for r in runs if "other_load" in r]
    if busy:
        print(f"\nother processes used {max(busy):.2f} cores at most (per repetition)")
        if max(busy) > BUSY_LIMIT:
            print(
                "WARNING: the machine was busy with other work during the run; "
                "these figures are suspect: run again on an idle machine"
            )
    failed = [r["op"] for r in rows if r.get("ok") is False]
    print("\nall goals met" if not failed else f"\ngoals missed: {'; '.join(failed)}")

    if not args.no_json:
        path = Path(args.json) if args.json else RESULTS / f"jobs-{started:%Y%m%d-%H%M%S}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "started": started.isoformat(),
            "args": vars(args),
            "machine": info,
            "table": rows,
            "runs": parts,
        }
        path.write_text(json.dumps(result, indent=2, default=str))
        print(f"results written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
