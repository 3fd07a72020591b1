"""The ``opx`` command (a surface: parse, delegate to the core, render).

Every listing takes ``--json``; every error exits non-zero with one line on
stderr. Heavy libraries are imported only by the command that needs them, so
``opx --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._version import __version__

DESCRIPTION = """\
jupyter_opx: snapshot notebook models and data, promote them, run notebooks as jobs.

The store is $OPX_HOME, else the nearest folder holding .opx/, else ./.opx
(created by the first snapshot). References: NAME (latest), NAME/3, NAME@production.
"""
# job settings the `job create` / `job update` options set (argparse dest → core setting)
JOB_SETTINGS = (
    "schedule",
    "timezone",
    "timeout",
    "retries",
    "retry_backoff",
    "output",
    "keep",
    "env",
    "notify",
    "notify_on_success",
    "kernel",
    "catchup",
    "executor",
)


def _json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _workspace(args: argparse.Namespace) -> Any:
    from .workspace import STORE_DIRNAME, Workspace, get_workspace

    if args.workspace:
        return Workspace(Path(args.workspace) / STORE_DIRNAME)
    return get_workspace()


# -- commands ------------------------------------------------------------------------
def cmd_snapshots(args: argparse.Namespace) -> int:
    from .snapshots.catalog import list_snapshots

    snaps = list_snapshots(_workspace(args), args.name, limit=args.limit)
    if args.json:
        _json([s.to_dict() for s in snaps])
    else:
        print(snaps)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .snapshots.catalog import get_snapshot

    snap = get_snapshot(_workspace(args), args.ref)
    if args.json:
        _json(snap.to_dict())
    else:
        print(snap)
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from .snapshots.catalog import promote

    event = promote(_workspace(args), args.ref, args.alias)
    if args.json:
        _json(event.to_dict())
    else:
        print(event)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from .snapshots.catalog import alias_history

    events = alias_history(_workspace(args), args.name, args.alias)
    if args.json:
        _json([e.to_dict() for e in events])
    else:
        print("\n".join(str(e) for e in events) or f"{args.name} has no aliases yet")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from .snapshots.diff import diff

    result = diff(_workspace(args), args.a, args.b)
    if args.json:
        _json(result.to_dict())
    else:
        print(result)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .snapshots.catalog import verify_store

    ws = _workspace(args)
    report = verify_store(ws)
    if args.json:
        _json(report)
    else:
        print(f"checked {report['checked']} blobs in {ws.root}")
        for digest in report["corrupt"]:
            print(f"corrupt: {digest}")
        for digest in report["missing"]:
            print(f"missing: {digest}")
        if not report["corrupt"] and not report["missing"]:
            print("all blobs intact")
    return 1 if report["corrupt"] or report["missing"] else 0


def cmd_status(args: argparse.Namespace) -> int:
    from .snapshots.catalog import list_snapshots

    ws = _workspace(args)
    snaps = list_snapshots(ws) if ws.exists else []
    info = {
        "store": str(ws.root),
        "exists": ws.exists,
        "database": ws.database_url if ws.config.get("database") is None else "(configured)",
        "artifacts": ws.artifacts_url,
        "snapshots": len(snaps),
        "names": sorted({s.name for s in snaps}),
        "change_seq": ws.change_seq(),
    }
    if args.json:
        _json(info)
    else:
        for key, value in info.items():
            print(f"{key:11} {', '.join(value) if isinstance(value, list) else value}")
    return 0


# -- jobs ----------------------------------------------------------------------------
def add_job_options(p: argparse.ArgumentParser, *, update: bool = False) -> None:
    """The options of ``opx job create|update`` (also used by ``%opx job create``)."""
    unchanged = " (default: unchanged)" if update else ""
    p.add_argument(
        "--schedule",
        metavar="CRON",
        help="cron schedule 'minute hour day month weekday', e.g. '0 6 * * *'"
        + ("; '' makes the job manual-only" if update else " (default: manual runs only)"),
    )
    p.add_argument(
        "--tz",
        dest="timezone",
        metavar="TZ",
        help="time zone of the schedule, e.g. Europe/Paris" + (unchanged or " (default: UTC)"),
    )
    p.add_argument(
        "-p",
        "--param",
        dest="params",
        action="append",
        metavar="NAME=VALUE",
        help="default value of a notebook parameter (repeatable), checked against its type",
    )
    p.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="stop a whole run after this long"
    )
    p.add_argument("--retries", type=int, metavar="N", help="retry a failed run N times")
    p.add_argument(
        "--retry-backoff",
        type=float,
        metavar="SECONDS",
        help="wait before the first retry, doubled after each (default 10)",
    )
    p.add_argument(
        "--output",
        action="append",
        choices=("html", "ipynb"),
        help="html: also store each output as HTML (the .ipynb is always kept)"
        + ("; ipynb: only the notebook" if update else ""),
    )
    p.add_argument(
        "--keep", type=int, metavar="N", help="keep the outputs of the last N runs (records stay)"
    )
    p.add_argument(
        "--env",
        action="append",
        metavar="KEY[=VALUE]",
        help="environment variable of the runs (repeatable); KEY alone passes the runner's "
        "own value through, so secrets stay out of the store"
        + ("; replaces the job's list" if update else ""),
    )
    p.add_argument(
        "--notify",
        metavar="URL",
        help="webhook POSTed when a run fails, times out or is cancelled"
        + ("; '' removes it" if update else ""),
    )
    p.add_argument(
        "--notify-on-success",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="notify on success too",
    )
    p.add_argument("--kernel", metavar="NAME", help="kernelspec (default: the notebook's)")
    p.add_argument(
        "--catchup",
        choices=("latest", "none"),
        help="after scheduler downtime: one run for the missed times (latest, the default) or none",
    )
    p.add_argument(
        "--executor",
        metavar="local|dask://HOST:PORT",
        help="where runs execute (default: local)",
    )


def job_options(args: argparse.Namespace) -> tuple[dict[str, str] | None, dict[str, Any]]:
    """``(default parameter values, settings)`` from parsed job options (unset ones left out)."""
    from .jobs.params import parse_assignments

    values = parse_assignments(args.params) if args.params else None
    settings = {k: getattr(args, k) for k in JOB_SETTINGS if getattr(args, k) is not None}
    return values, settings


def run_summary(run: Any) -> str:
    """One line saying how a run ended, e.g. ``run 7 failed: ValueError: boom (cell 3)``."""
    text = f"run {run.id} {run.status}"
    if run.error:
        text += f": {run.error.get('ename')}: {run.error.get('evalue')}"
        from .jobs.runs import where_text

        text += where_text(run.error)
    return " ".join(text.split())


def _print_job(args: argparse.Namespace, job: Any) -> None:
    if args.json:
        _json(job.to_dict())
    else:
        print(job)


def cmd_job_create(args: argparse.Namespace) -> int:
    from .jobs.definitions import create_job

    values, settings = job_options(args)
    job = create_job(_workspace(args), args.name, args.notebook, params=values, **settings)
    _print_job(args, job)
    if not args.json:
        print(f"run it with: opx job run {job.name}")
    return 0


def cmd_job_update(args: argparse.Namespace) -> int:
    from .jobs.definitions import update_job

    values, settings = job_options(args)
    job = update_job(_workspace(args), args.name, args.notebook, params=values, **settings)
    _print_job(args, job)
    return 0


def cmd_job_show(args: argparse.Namespace) -> int:
    from .jobs.definitions import get_job

    _print_job(args, get_job(_workspace(args), args.name, args.version))
    return 0


def cmd_job_params(args: argparse.Namespace) -> int:
    from .jobs.definitions import read_notebook
    from .jobs.params import format_params, notebook_params

    params = notebook_params(read_notebook(args.notebook))
    if args.json:
        _json(None if params is None else [p.to_dict() for p in params])
    else:
        print(format_params(params))
    return 0


def cmd_job_enable(args: argparse.Namespace) -> int:
    from .jobs.definitions import set_enabled

    job = set_enabled(_workspace(args), args.name, args.verb == "enable")
    state = "enabled" if job.enabled else "disabled (manual runs stay possible)"
    nxt = f"; next run {job.next_run:%Y-%m-%d %H:%M} UTC" if job.next_run else ""
    print(f"job {job.name}: schedule {state}{nxt}")
    return 0


def cmd_job_run(args: argparse.Namespace) -> int:
    from .jobs.launch import start_run
    from .jobs.params import parse_assignments

    values = parse_assignments(args.params) if args.params else None
    run = start_run(_workspace(args), args.name, values, wait=args.wait, trigger="manual")
    if args.json:
        _json(run.to_dict())
    else:
        print(run)
        if not run.finished:
            print(f"follow it with: opx run logs {run.id} --follow")
        print(run.id)  # last line: scripts capture the id
    if args.wait and run.status != "succeeded":
        print(f"opx: {run_summary(run)}", file=sys.stderr)
        return 1
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from .jobs.definitions import list_jobs

    jobs = list_jobs(_workspace(args))
    if args.json:
        _json([j.to_dict() for j in jobs])
    else:
        print(jobs)
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    from datetime import datetime

    from .jobs.scheduler import Scheduler

    ws = _workspace(args)
    ws.db  # noqa: B018 - create and migrate the store before announcing anything

    def log(message: str) -> None:
        print(f"{datetime.now():%Y-%m-%d %H:%M:%S} {message}", flush=True)

    scheduler = Scheduler(
        ws,
        concurrency=args.concurrency,
        ttl=args.lease,
        tick=args.tick,
        prestart=args.prestart,
        ready_ahead=0 if args.once else args.ready_ahead,
        log=log,
    )
    if args.once:
        try:
            started = scheduler.step()
            log(f"dispatched {len(started)} run(s)" + (f": {started}" if started else ""))
            scheduler.local.shutdown(wait=True)
        finally:
            scheduler.close()
        return 0
    scheduler.run()
    log("scheduler stopped")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from .jobs.runs import list_runs

    runs = list_runs(_workspace(args), args.job, status=args.status, limit=args.limit)
    if args.json:
        _json([r.to_dict() for r in runs])
    else:
        print(runs)
    return 0


def cmd_run_show(args: argparse.Namespace) -> int:
    from .jobs.runs import get_run

    run = get_run(_workspace(args), args.id)
    if args.json:
        _json(run.to_dict())
    else:
        print(run)
    return 0


def cmd_run_logs(args: argparse.Namespace) -> int:
    import time

    from .jobs.runs import get_run, read_logs

    ws = _workspace(args)
    run = get_run(ws, args.id)
    seq = 0
    while True:
        finished = run.finished  # read before the logs, so none written after are missed
        for entry_seq, _stream, text in read_logs(ws, run.id, after=seq):
            sys.stdout.write(text)
            seq = entry_seq
        sys.stdout.flush()
        if not args.follow:
            return 0
        if finished:
            break
        time.sleep(0.3)
        run = get_run(ws, run.id)
    if run.status != "succeeded":
        print(f"opx: {run_summary(run)}", file=sys.stderr)
        return 1
    return 0


def cmd_run_cancel(args: argparse.Namespace) -> int:
    from .jobs.runs import request_cancel

    run = request_cancel(_workspace(args), args.id)
    if run.finished:
        print(f"run {run.id} {run.status}")
    else:
        print(f"run {run.id}: cancel requested; its kernel is stopped within a few seconds")
    return 0


def cmd_run_output(args: argparse.Namespace) -> int:
    from .jobs.runner import read_output

    data = read_output(_workspace(args), args.id, html=args.html)
    if args.output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    target = Path(args.output)
    try:
        target.write_bytes(data)
    except OSError as exc:
        from .exceptions import StoreError

        raise StoreError(f"cannot write {target}: {exc.strerror or exc}") from None
    print(f"wrote {target} ({len(data):,} bytes)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(
        Path(args.workspace or "demo-workspace"),
        days=args.days,
        customers=args.customers,
        seed=args.seed,
        price_change_day=args.price_change_day,
        delay=args.outcome_delay,
        database=args.database,
    )
    return 0


def _day_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    try:
        return (int(lo), int(hi if sep else lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write MIN-MAX days, e.g. 7-14") from None


# -- parser --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opx", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"jupyter_opx {__version__}")
    parser.add_argument(
        "--workspace",
        metavar="DIR",
        help="project folder whose .opx store to use (default: $OPX_HOME or the nearest .opx)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> Any:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    def json_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print JSON")

    p = add("snapshots", cmd_snapshots, "list snapshots, newest first")
    p.add_argument("name", nargs="?", help="only the versions of this name")
    p.add_argument("--limit", type=int, default=None, help="at most this many")
    json_flag(p)

    p = add("show", cmd_show, "show one snapshot (NAME, NAME/N or NAME@ALIAS)")
    p.add_argument("ref")
    json_flag(p)

    p = add("promote", cmd_promote, "point NAME@ALIAS at the version REF resolves to")
    p.add_argument("ref")
    p.add_argument("alias", help="e.g. production, staging")
    json_flag(p)

    p = add("history", cmd_history, "list the alias moves of a snapshot name")
    p.add_argument("name")
    p.add_argument("--alias", default=None, help="only this alias")
    json_flag(p)

    p = add("diff", cmd_diff, "show what differs between two snapshots")
    p.add_argument("a", metavar="REF_A")
    p.add_argument("b", metavar="REF_B")
    json_flag(p)

    p = add("verify", cmd_verify, "re-hash every blob; exit 1 if any is corrupt or missing")
    json_flag(p)

    p = add("status", cmd_status, "where the store is and what it holds")
    json_flag(p)

    p = add(
        "demo",
        cmd_demo,
        "the churn example end to end in simulated days: train, daily scoring job, "
        "feedback, drift alert, retraining, promotion, report (in --workspace DIR, "
        "default demo-workspace)",
    )
    p.add_argument("--days", type=int, default=30, help="simulated days (default 30)")
    p.add_argument(
        "--customers",
        type=int,
        default=2000,
        metavar="N",
        help="customers scored per day (default 2000)",
    )
    p.add_argument(
        "--price-change-day",
        type=int,
        default=None,
        metavar="DAY",
        help="the day prices rise 15%% (default: the middle; >= --days: never)",
    )
    p.add_argument(
        "--outcome-delay",
        type=_day_range,
        default=(7, 14),
        metavar="MIN-MAX",
        help="days until a customer's outcome is known (default 7-14)",
    )
    p.add_argument(
        "--database",
        metavar="URL",
        help="SQLAlchemy URL of an empty database for the store's metadata, e.g. "
        "postgresql+psycopg://me@localhost/opx_demo (default: SQLite in the store)",
    )
    p.add_argument("--seed", type=int, default=7, help="seed of the simulated world")

    # jobs: `opx job VERB`, `opx jobs`, `opx runs`, `opx run VERB`
    job = add("job", _needs_verb, "create, change and run notebook jobs (opx job -h)")
    job.set_defaults(group="job")
    verbs = job.add_subparsers(dest="verb", metavar="VERB")

    def verb(group: Any, name: str, func: Callable[[argparse.Namespace], int], help: str) -> Any:
        v = group.add_parser(name, help=help, description=help)
        v.set_defaults(func=func)
        return v

    p = verb(verbs, "create", cmd_job_create, "make a job from a notebook (version 1)")
    p.add_argument("name")
    p.add_argument("--notebook", required=True, metavar="PATH", help="the notebook to run")
    add_job_options(p)
    json_flag(p)

    p = verb(verbs, "update", cmd_job_update, "make version N+1 of a job")
    p.add_argument("name")
    p.add_argument(
        "--notebook", metavar="PATH", help="a new notebook (default: re-read the job's path)"
    )
    add_job_options(p, update=True)
    json_flag(p)

    p = verb(verbs, "show", cmd_job_show, "show a job: schedule, parameters, settings")
    p.add_argument("name")
    p.add_argument("--version", type=int, metavar="N", help="this version (default: latest)")
    json_flag(p)

    p = verb(verbs, "params", cmd_job_params, "list the typed parameters of a notebook")
    p.add_argument("notebook", metavar="NOTEBOOK")
    json_flag(p)

    p = verb(verbs, "enable", cmd_job_enable, "let the scheduler run a job again")
    p.add_argument("name")
    p = verb(verbs, "disable", cmd_job_enable, "stop scheduled runs (manual runs stay possible)")
    p.add_argument("name")

    p = verb(verbs, "run", cmd_job_run, "start a run now; prints the run id as the last line")
    p.add_argument("name")
    p.add_argument(
        "-p",
        "--param",
        dest="params",
        action="append",
        metavar="NAME=VALUE",
        help="parameter value for this run (repeatable)",
    )
    p.add_argument(
        "--wait", action="store_true", help="run here and wait; exit 1 unless it succeeds"
    )
    json_flag(p)

    p = add("jobs", cmd_jobs, "list jobs: version, schedule, next run, last status")
    json_flag(p)

    p = add("runs", cmd_runs, "list runs, newest first")
    p.add_argument("job", nargs="?", help="only the runs of this job")
    p.add_argument(
        "--status",
        choices=("queued", "running", "succeeded", "failed", "timed_out", "cancelled"),
    )
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    json_flag(p)

    p = add(
        "scheduler",
        cmd_scheduler,
        "run due jobs and queued runs until stopped (one active scheduler per store; "
        "others wait on standby)",
    )
    p.add_argument("--concurrency", type=int, default=2, help="local runs at once (default 2)")
    p.add_argument(
        "--prestart",
        type=int,
        default=0,
        metavar="N",
        help="keep N kernels started and ready in the scheduler, each used by one run "
        "(default 0); runs then start within a few hundredths of a second of their request",
    )
    p.add_argument(
        "--ready-ahead",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="start a scheduled run's process and kernel this long before its fire time, "
        "so that it starts on time; its kernel serves that run only (default 10; 0: at "
        "the fire time)",
    )
    p.add_argument("--tick", type=float, default=0.25, help="seconds between passes")
    p.add_argument(
        "--lease", type=float, default=15.0, metavar="SECONDS", help="lease duration (default 15)"
    )
    p.add_argument("--once", action="store_true", help="one pass, wait for its runs, then exit")

    run = add("run", _needs_verb, "inspect, follow or cancel one run (opx run -h)")
    run.set_defaults(group="run")
    verbs = run.add_subparsers(dest="verb", metavar="VERB")
    p = verb(verbs, "show", cmd_run_show, "show a run: status, progress, parameters, error")
    p.add_argument("id", metavar="ID")
    json_flag(p)
    p = verb(verbs, "logs", cmd_run_logs, "print a run's log (cell output and lifecycle)")
    p.add_argument("id", metavar="ID")
    p.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing until the run ends; exit 1 unless it succeeded",
    )
    p = verb(verbs, "cancel", cmd_run_cancel, "cancel a queued or running run")
    p.add_argument("id", metavar="ID")
    p = verb(verbs, "output", cmd_run_output, "write a finished run's output notebook")
    p.add_argument("id", metavar="ID")
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="where to write it ('-': stdout)"
    )
    p.add_argument("--html", action="store_true", help="write the notebook as an HTML page")
    # feedback, serving and alerts keep their commands in modules of their own
    from . import cli_alerts, cli_feedback, cli_serve

    for module in (cli_feedback, cli_serve, cli_alerts):
        module.register(sub, add)
    return parser


def _needs_verb(args: argparse.Namespace) -> int:
    print(f"opx: error: {args.group} needs a VERB; see: opx {args.group} -h", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``opx`` command; returns the exit status."""
    status = _main(argv)
    if argv is None:
        # the `opx` process exits next: spare the interpreter's shutdown a garbage
        # collection over every object left (0.2-0.4 s after a run)
        import gc

        gc.freeze()
    return status


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    # `opx demo --workspace DIR` reads naturally: accept the global flag after it too
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--workspace" in argv[1:] and argv and argv[0] != "--workspace":
        i = argv.index("--workspace")
        argv = argv[i : i + 2] + argv[:i] + argv[i + 2 :]
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .exceptions import OpxError

    try:
        return int(args.func(args))
    except OpxError as exc:
        print(f"opx: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("opx: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output piped into `head` and closed: not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
