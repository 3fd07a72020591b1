"""The ``%opx`` / ``%%opx`` IPython magics (a surface: parse, delegate, render).

Load with ``%load_ext jupyter_opx``. Every command calls the same core
functions as the Python API and the CLI; an :class:`~jupyter_opx.OpxError` or
a misused magic is shown as one line, never a traceback, and still marks the
cell as failed so a notebook run as a job stops there.

How ``%%opx snapshot NAME`` finds what to store, after running the cell:

* **model** — ``--model VAR`` if given; otherwise the one fitted estimator the
  cell assigned (``clf = ...``) or fitted in place (``clf.fit(...)``). An
  estimator is an object with ``fit`` and ``predict``/``predict_proba``/
  ``transform`` that is fitted (scikit-learn's ``check_is_fitted``, else
  attributes whose names end in ``_``). When the
  cell leaves several, name one with ``--model``.
* **data** — ``--data VAR ...`` if given; otherwise every pandas DataFrame or
  Series the cell assigned, stored under its variable name.
* **metrics** — ``--metrics VAR`` if given; otherwise a dict named
  ``metrics`` that the cell assigned.

Jobs: ``%opx job create NAME`` makes a job from the current notebook (the
saved file, found through the kernel's session; give ``--notebook PATH`` when
the kernel does not know it) with the same options as ``opx job create``;
``%opx job run NAME [-p k=v ...] [--wait]``, ``%opx job runs [NAME]`` (or
``%opx runs``), ``%opx job logs ID``, ``%opx job show NAME`` and ``%opx jobs``.

Feedback: ``%opx feedback MODEL [--window 1d]`` shows the live dashboard
(:class:`~jupyter_opx.widgets.FeedbackDashboard`): KPI tiles, charts over
time, drift table and alerts, updated within a second of new events without
re-running the cell, until the dashboard is closed.
"""

from __future__ import annotations

import argparse
import ast
import html
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display

HELP = """\
%opx snapshot NAME --model VAR [--data [KEY=]VAR ...] [--metrics VAR] [-m MESSAGE]
%%opx snapshot NAME [--model VAR] [-m MESSAGE]   run the cell, snapshot what it made
%%opx params                                     the job's parameters cell
%opx list [NAME]                                 snapshots, newest first
%opx show REF                                    one snapshot (churn, churn/3, churn@production)
%opx promote REF ALIAS                           point NAME@ALIAS at REF's version
%opx history NAME                                alias moves of NAME
%opx diff REF_A REF_B                            what changed between two snapshots
%opx status                                      where the store is and what it holds
%opx job create NAME [--notebook PATH] [--schedule CRON] [--tz TZ] [-p NAME=VALUE ...]
     [--timeout S] [--retries N] [--output html] [--keep N] [--env KEY[=VALUE] ...]
     [--notify URL] ...                          a job from this notebook (the saved file)
%opx job run NAME [-p NAME=VALUE ...] [--wait]   start a run (--wait: run here, show the end)
%opx job runs [NAME]   (or %opx runs [NAME])     runs, newest first
%opx job logs ID                                 a run's log so far
%opx job show NAME  /  %opx jobs                 one job  /  all jobs
%opx feedback MODEL [--window 1d]                live dashboard: volume, AUC, drift, uplift …"""


class OpxUsageError(UsageError):
    """A misused magic: shown as one line, and (unlike UsageError) sent to the
    notebook as an error output, so a job's output notebook shows it too."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31mUsageError\x1b[0m: {self}"]


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting the kernel."""

    def error(self, message: str) -> NoReturn:
        raise OpxUsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise OpxUsageError(message or self.format_usage())


def _parser(prog: str, *args: tuple[tuple[str, ...], dict[str, Any]]) -> _Parser:
    parser = _Parser(prog=f"%opx {prog}", add_help=False)
    for flags, kwargs in args:
        parser.add_argument(*flags, **kwargs)
    return parser


def _show(obj: Any) -> None:
    """Display with an HTML view and a plain-text fallback."""
    html_view = obj._repr_html_() if hasattr(obj, "_repr_html_") else None
    bundle = {"text/plain": str(obj)}
    if html_view:
        bundle["text/html"] = html_view
    display(bundle, raw=True)


def _message(text: str) -> None:
    display({"text/plain": text, "text/html": f"<div>{html.escape(text)}</div>"}, raw=True)


def _is_estimator(obj: Any) -> bool:
    if isinstance(obj, type) or not hasattr(obj, "fit"):
        return False
    if not any(hasattr(obj, m) for m in ("predict", "predict_proba", "transform")):
        return False
    validation = sys.modules.get("sklearn.utils.validation")
    if validation is not None:
        try:
            validation.check_is_fitted(obj)
        except Exception:  # NotFittedError, or not an sklearn-style estimator
            return False
        return True
    try:
        attrs = vars(obj)
    except TypeError:
        return False
    return any(k.endswith("_") and not k.startswith("__") for k in attrs)


def _is_frame(obj: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(obj, (pd.DataFrame, pd.Series))


def _fitted_in_place(cell: str) -> set[str]:
    """Names ``x`` for which the cell calls ``x.fit(...)`` (or ``fit_transform``)."""
    try:
        tree = ast.parse(cell)
    except SyntaxError:
        return set()
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("fit", "fit_transform", "partial_fit")
            and isinstance(node.func.value, ast.Name)
        ):
            names.add(node.func.value.id)
    return names


@magics_class
class OpxMagics(Magics):
    """``%opx`` line magic and ``%%opx`` cell magic."""

    @property
    def _sh(self) -> Any:
        assert self.shell is not None, "the magics are used inside IPython"
        return self.shell

    @line_cell_magic
    def opx(self, line: str = "", cell: str | None = None) -> None:
        """Snapshot models and data, promote, diff (``%opx help`` lists the commands)."""
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise OpxUsageError(f"%opx: {exc}") from None
        if not argv or argv[0] in ("help", "-h", "--help"):
            print(HELP)
            return
        command, rest = argv[0], argv[1:]
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None:
            raise OpxUsageError(f"%opx: unknown command {command!r}; run %opx help")
        handler(rest, cell)  # an OpxError renders itself as one line

    # -- snapshots -------------------------------------------------------------------
    def _cmd_snapshot(self, argv: list[str], cell: str | None) -> None:
        from . import api

        args = _parser(
            "snapshot",
            (("name",), {}),
            (("--model",), {"metavar": "VAR"}),
            (("--data",), {"metavar": "[KEY=]VAR", "nargs": "+", "action": "extend"}),
            (("--metrics",), {"metavar": "VAR"}),
            (("--params",), {"metavar": "VAR"}),
            (("--tags",), {"metavar": "VAR"}),
            (("--reference",), {"metavar": "KEY"}),
            (("-m", "--message"), {"default": ""}),
            (("--allow-pickle",), {"action": "store_true"}),
        ).parse_args(argv)
        ns = self._sh.user_ns
        if cell is not None:
            before = {k: id(v) for k, v in ns.items()}
            result = self._sh.run_cell(cell, store_history=False)
            if not result.success:
                raise OpxUsageError("the cell failed, so nothing was snapshotted")
            changed = {
                k
                for k, v in ns.items()
                if not k.startswith("_") and k not in ("In", "Out") and before.get(k) != id(v)
            } | (_fitted_in_place(cell) & set(ns))
        else:
            changed = set()
            if args.model is None and not args.data:
                raise OpxUsageError(
                    "%opx snapshot NAME needs --model VAR and/or --data VAR "
                    "(or use %%opx snapshot NAME as a cell magic)"
                )
        model = self._pick_model(args.model, changed)
        data = self._pick_data(args.data, changed)
        metrics = self._var(args.metrics, "--metrics") if args.metrics else None
        if metrics is None and "metrics" in changed and isinstance(ns.get("metrics"), dict):
            metrics = ns["metrics"]
        if model is None and not data:
            raise OpxUsageError(
                "nothing to snapshot: the cell defined no fitted model or DataFrame; "
                "name them with --model VAR / --data VAR"
            )
        snap = api.snapshot(
            args.name,
            model=model,
            data=data or None,
            metrics=metrics,
            params=self._var(args.params, "--params") if args.params else None,
            tags=self._var(args.tags, "--tags") if args.tags else None,
            message=args.message,
            allow_pickle=args.allow_pickle,
            reference=args.reference,
        )
        _show(snap)

    def _var(self, name: str, flag: str) -> Any:
        if name not in self._sh.user_ns:
            raise OpxUsageError(f"{flag} {name}: no variable named {name!r} in the notebook")
        return self._sh.user_ns[name]

    def _pick_model(self, name: str | None, changed: set[str]) -> Any:
        if name is not None:
            return self._var(name, "--model")
        ns = self._sh.user_ns
        found = sorted(k for k in changed if _is_estimator(ns[k]))
        predictors = [k for k in found if hasattr(ns[k], "predict")] or found
        if len(predictors) > 1:
            raise OpxUsageError(
                f"the cell made several models ({', '.join(predictors)}); pick one with --model VAR"
            )
        return ns[predictors[0]] if predictors else None

    def _pick_data(self, specs: list[str] | None, changed: set[str]) -> dict[str, Any]:
        if specs:
            data = {}
            for spec in specs:
                key, _, var = spec.rpartition("=")
                data[key or var] = self._var(var, "--data")
            return data
        ns = self._sh.user_ns
        return {k: ns[k] for k in sorted(changed) if _is_frame(ns[k])}

    def _cmd_list(self, argv: list[str], cell: str | None) -> None:
        from . import api

        args = _parser("list", (("name",), {"nargs": "?"})).parse_args(argv)
        _show(api.list_snapshots(args.name))

    def _cmd_show(self, argv: list[str], cell: str | None) -> None:
        from . import api

        args = _parser("show", (("ref",), {})).parse_args(argv)
        _show(api.show(args.ref))

    def _cmd_promote(self, argv: list[str], cell: str | None) -> None:
        from . import api

        args = _parser("promote", (("ref",), {}), (("alias",), {})).parse_args(argv)
        _show(api.promote(args.ref, args.alias))

    def _cmd_history(self, argv: list[str], cell: str | None) -> None:
        from . import api

        args = _parser("history", (("name",), {}), (("--alias",), {"default": None})).parse_args(
            argv
        )
        events = api.alias_history(args.name, args.alias)
        _message("\n".join(str(e) for e in events) or f"{args.name} has no aliases yet")

    def _cmd_diff(self, argv: list[str], cell: str | None) -> None:
        from . import api

        args = _parser("diff", (("a",), {}), (("b",), {})).parse_args(argv)
        _show(api.diff(args.a, args.b))

    def _cmd_status(self, argv: list[str], cell: str | None) -> None:
        from . import api

        _parser("status").parse_args(argv)
        ws = api.current_workspace()
        if not ws.exists:
            _message(f"store: {ws.root} (not created yet; the first snapshot creates it)")
            return
        snaps = api.list_snapshots()
        names = sorted({s.name for s in snaps})
        _message(
            f"store: {ws.root}\ndatabase: {ws.db.url.render_as_string(hide_password=True)}\n"
            f"snapshots: {len(snaps)} version(s) of {len(names)} name(s)"
            + (f" ({', '.join(names)})" if names else "")
            + f"\nchange sequence: {ws.change_seq()}"
        )

    # -- jobs ------------------------------------------------------------------------
    def _cmd_params(self, argv: list[str], cell: str | None) -> None:
        """``%%opx params``: run the cell; jobs read their typed parameters from it."""
        if cell is None:
            raise OpxUsageError("%%opx params is a cell magic: put it on the first line of a cell")
        result = self._sh.run_cell(cell, store_history=False)
        if not result.success:
            raise OpxUsageError("the parameters cell failed")

    def _cmd_job(self, argv: list[str], cell: str | None) -> None:
        verbs = {
            "create": self._job_create,
            "run": self._job_run,
            "runs": self._cmd_runs,
            "logs": self._job_logs,
            "show": self._job_show,
            "list": self._cmd_jobs,
        }
        if not argv or argv[0] not in verbs:
            given = f" {argv[0]!r}" if argv else ""
            raise OpxUsageError(
                f"%opx job: unknown verb{given}; use one of {', '.join(verbs)} (see %opx help)"
            )
        verbs[argv[0]](argv[1:], cell)

    def _current_notebook(self) -> str | None:
        from .snapshots.provenance import notebook_path_from_env

        path = notebook_path_from_env(self._sh.user_ns)
        if path is None or Path(path).is_file():
            return path
        # a session path relative to the server root: the kernel runs in the notebook's folder
        here = Path.cwd() / Path(path).name
        return str(here) if here.is_file() else None

    def _job_create(self, argv: list[str], cell: str | None) -> None:
        from . import api
        from .cli import add_job_options, job_options

        parser = _parser("job create", (("name",), {}), (("--notebook",), {"metavar": "PATH"}))
        add_job_options(parser)
        args = parser.parse_args(argv)
        notebook = args.notebook or self._current_notebook()
        if notebook is None:
            raise OpxUsageError(
                "%opx job create: this kernel does not know its notebook's path; "
                "give it with --notebook PATH"
            )
        values, settings = job_options(args)
        _show(api.create_job(args.name, notebook, params=values, **settings))
        _message(f"run it with: %opx job run {args.name}")

    def _job_run(self, argv: list[str], cell: str | None) -> None:
        from . import api
        from .jobs.params import parse_assignments

        args = _parser(
            "job run",
            (("name",), {}),
            (("-p", "--param"), {"dest": "params", "action": "append", "metavar": "NAME=VALUE"}),
            (("--wait",), {"action": "store_true"}),
        ).parse_args(argv)
        values = parse_assignments(args.params) if args.params else None
        run = api.run_job(args.name, values, wait=args.wait, trigger="manual")
        _show(run)
        if not run.finished:
            _message(f"follow it with: %opx job logs {run.id}  (or opx run logs {run.id} -f)")

    def _job_logs(self, argv: list[str], cell: str | None) -> None:
        from . import api

        args = _parser("job logs", (("id",), {"metavar": "ID"})).parse_args(argv)
        run = api.get_run(args.id)
        text = api.run_logs(run.id)
        if text:
            print(text, end="" if text.endswith("\n") else "\n")
        else:
            _message(f"run {run.id} ({run.status}) has no log yet")

    def _job_show(self, argv: list[str], cell: str | None) -> None:
        from . import api

        args = _parser("job show", (("name",), {})).parse_args(argv)
        _show(api.get_job(args.name))

    def _cmd_runs(self, argv: list[str], cell: str | None) -> None:
        from . import api

        args = _parser(
            "runs",
            (("name",), {"nargs": "?"}),
            (("--status",), {"default": None}),
            (("--limit",), {"type": int, "default": 20}),
        ).parse_args(argv)
        _show(api.list_runs(args.name, status=args.status, limit=args.limit))

    def _cmd_jobs(self, argv: list[str], cell: str | None) -> None:
        from . import api

        _parser("jobs").parse_args(argv)
        _show(api.list_jobs())

    # -- feedback --------------------------------------------------------------------
    def _cmd_feedback(self, argv: list[str], cell: str | None) -> None:
        """``%opx feedback MODEL [--window 1d]``: display the live feedback dashboard."""
        from . import api
        from .widgets import FeedbackDashboard

        args = _parser(
            "feedback",
            (("model",), {}),
            (("--window",), {"default": "1d", "metavar": "1h|1d|1w|N"}),
            (("--interval",), {"type": float, "default": 0.25, "metavar": "SECONDS"}),
        ).parse_args(argv)
        dashboard = FeedbackDashboard(
            args.model,
            window=args.window,
            workspace=api.current_workspace(),
            interval=args.interval,
        )
        display(dashboard)


def register(ipython: Any) -> None:
    """Register the magics with an IPython shell."""
    ipython.register_magics(OpxMagics)
