"""``opx demo``: the churn example end to end, in simulated time, through the real paths.

In a folder of its own (its store is ``DIR/.opx``, the example notebooks are
copied to ``DIR/notebooks``) the demo:

1. runs ``01_train_churn`` as a job (a papermill run): the champion is trained
   on the simulated customer history, snapshotted and promoted;
2. creates the scoring job from ``02_score_customers`` and the retraining job
   from ``04_retrain_churn``, and a drift alert on ``monthly_charges`` whose
   trigger is the retraining job;
3. for each simulated day: logs the outcomes that became known overnight
   (churned or not, ``delay`` days after the customer was scored; the world is
   :mod:`jupyter_opx.simulate`, and a customer's outcome depends on whether
   the job emailed them), then runs the scoring job for that day (a real
   papermill run in a fresh kernel, resolving ``churn@production``), then
   evaluates the alerts. From the price-change day the charges drift, the
   alert fires and starts the retraining job (trigger ``alert``); the demo
   waits for it: it snapshots a challenger, compares it with the champion on
   the same recent labelled customers and promotes it if better, and the
   following days are scored by the new champion;
4. writes ``DIR/report.html`` and prints a summary: AUC per week, the drifted
   features, the emails' uplift with its 95% interval and the customers they
   kept (beside the simulator's truth), and the promotion.

Every event carries its simulated time (predictions at 06:00 UTC, outcomes
known overnight at 05:00), so the feedback windows are simulated days.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import api
from .exceptions import ConflictError, OpxError, ValidationError
from .jobs.runs import get_run, run_metrics
from .monitoring import store
from .monitoring.alerts import flush
from .simulate import DELAY, PRICE_CHANGE, daily_customers, date_of, email_effect, outcomes_for
from .workspace import STORE_DIRNAME, Workspace, get_workspace

MODEL = "churn"
TRAIN_JOB, SCORE_JOB, RETRAIN_JOB = "train_churn", "score_customers", "retrain_churn"
NOTEBOOKS = {
    TRAIN_JOB: "01_train_churn.ipynb",
    SCORE_JOB: "02_score_customers.ipynb",
    "monitor": "03_monitor.ipynb",
    RETRAIN_JOB: "04_retrain_churn.ipynb",
}
MARKER = ".opx-demo"
ALERT = "psi:monthly_charges > 0.2"
# one thread per kernel: the models are small and the machine may have 2 cores
JOB_ENV = {"OMP_NUM_THREADS": "1"}


@dataclass
class Settings:
    """What ``opx demo`` simulates (the CLI's options)."""

    days: int = 30
    customers: int = 2000
    seed: int = 7
    price_change_day: int | None = None  # default: the middle of the run
    delay: tuple[int, int] = DELAY
    threshold: float = 0.5
    holdout_share: float = 0.2
    alert: str = ALERT
    database: str | None = None  # SQLAlchemy URL of the store's metadata (default SQLite)

    def check(self) -> Settings:
        if self.days < 1:
            raise ValidationError("--days must be 1 or more")
        if self.customers < 50:
            raise ValidationError("--customers must be 50 or more (a model needs examples)")
        lo, hi = self.delay
        if lo < 1 or hi < lo:
            raise ValidationError(
                "--outcome-delay MIN-MAX: whole days with 1 <= MIN <= MAX (e.g. 7-14)"
            )
        if self.price_change_day is None:
            self.price_change_day = max(1, self.days // 2)
        return self

    @property
    def history(self) -> int:
        """Customers of the history the champion learns from."""
        return int(min(10_000, max(1500, 3 * self.customers)))

    @property
    def min_labelled(self) -> int:
        """Fewest labelled customers the retraining job accepts."""
        return int(max(100, min(300, self.customers // 2)))


def _prepare(workdir: Path, say: Callable[[str], None], database: str | None = None) -> Workspace:
    """A fresh store in ``workdir`` and the notebooks copied beside it.

    ``database``: an SQLAlchemy URL for the store's metadata (written to its
    ``config.toml``, so the jobs' processes use it too); the database must hold
    no opx data yet, since removing the store folder does not empty it.
    """
    import json

    from .demo import notebooks_dir
    from .workspace import CONFIG_NAME, forget_workspace

    source = notebooks_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / STORE_DIRNAME
    if root.exists() and not (workdir / MARKER).exists():
        raise ConflictError(
            f"{root} exists and was not made by opx demo; use another --workspace "
            "(the demo starts from an empty store)"
        )
    # closes the connections this process may hold to the old store, whose
    # configuration is about to change
    forget_workspace(root)
    if root.exists():
        say(f"removing the previous demo's store {root}")
        shutil.rmtree(root)
    (workdir / MARKER).write_text("made by opx demo: its store is removed when it runs again\n")
    target = workdir / "notebooks"
    target.mkdir(exist_ok=True)
    for name in NOTEBOOKS.values():
        shutil.copyfile(source / name, target / name)
    if database:
        root.mkdir(parents=True)
        # a JSON string is a valid TOML basic string
        (root / CONFIG_NAME).write_text(f"database = {json.dumps(database)}\n")
    ws = get_workspace(root)
    if database:
        _check_empty(ws)
    return ws


def _check_empty(ws: Workspace) -> None:
    """Refuse a database that already holds snapshots, jobs or feedback."""
    from sqlalchemy import func, select

    from .store import schema

    with ws.db.transaction() as conn:
        held = {
            what: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for what, table in (
                ("snapshots", schema.snapshots),
                ("jobs", schema.jobs),
                ("feedback segments", schema.feedback_segments),
            )
        }
    if any(held.values()):
        shown = ", ".join(f"{n:,} {what if n != 1 else what[:-1]}" for what, n in held.items() if n)
        label = ws.db.url.render_as_string(hide_password=True)
        ws.close()
        raise ConflictError(
            f"the database {label} already holds opx data ({shown}); the demo "
            "starts from an empty store: give it an empty database (e.g. createdb opx_demo)"
        )


class _Demo:
    def __init__(self, workdir: Path, settings: Settings, say: Callable[[str], None]) -> None:
        self.workdir, self.s, self.say = workdir, settings, say
        self.start = time.perf_counter()
        self.ws = _prepare(workdir, say, settings.database)
        self.pending: list[pd.DataFrame] = []
        self.outcomes: list[pd.DataFrame] = []  # those logged, with the arm and truth
        self.retrains: list[dict[str, Any]] = []
        self.scoring_seconds: list[float] = []

    def log(self, text: str) -> None:
        self.say(f"[{time.perf_counter() - self.start:6.1f}s] {text}")

    def notebook(self, job: str) -> Path:
        return self.workdir / "notebooks" / NOTEBOOKS[job]

    # -- set-up --------------------------------------------------------------------
    def setup(self) -> None:
        s, ws = self.s, self.ws
        self.log(f"store {ws.root}; notebooks in {self.workdir / 'notebooks'}")
        api.create_job(
            TRAIN_JOB,
            self.notebook(TRAIN_JOB),
            params={"n_history": s.history, "seed": s.seed},
            env=JOB_ENV,
            workspace=ws,
        )
        run = self._finished(api.run_job(TRAIN_JOB, wait=True, workspace=ws), "training")
        champion = api.show(f"{MODEL}@production", workspace=ws)
        self.log(
            f"run #{run.id} {TRAIN_JOB} ({run.duration:.1f}s): {champion.ref} trained on "
            f"{s.history:,} past customers, test AUC {champion.metrics['auc']:.3f}, "
            f"promoted to {MODEL}@production"
        )
        price_date = date_of(s.price_change_day or 0).isoformat()
        api.create_job(
            SCORE_JOB,
            self.notebook(SCORE_JOB),
            params={
                "n_customers": s.customers,
                "seed": s.seed,
                "threshold": s.threshold,
                "holdout_share": s.holdout_share,
                "price_change_date": price_date,
            },
            env=JOB_ENV,
            workspace=ws,
        )
        api.create_job(
            RETRAIN_JOB,
            self.notebook(RETRAIN_JOB),
            params={"min_labelled": s.min_labelled, "seed": s.seed},
            env=JOB_ENV,
            timeout=600,
            workspace=ws,
        )
        rule = api.add_alert(
            MODEL,
            s.alert,
            min_n=min(200, s.customers // 2),
            window="1d",
            trigger_job=RETRAIN_JOB,
            workspace=ws,
        )
        self.log(
            f"jobs {SCORE_JOB} (daily, {s.customers:,} customers) and {RETRAIN_JOB}; "
            f"alert #{rule.id} {rule.expr} (window 1d) starts {RETRAIN_JOB}"
        )
        when = (
            f"day {s.price_change_day} ({price_date})"
            if (s.price_change_day or 0) < s.days
            else "never, in this run"
        )
        self.log(
            f"simulating {s.days} days from {date_of(0)}: prices rise "
            f"{PRICE_CHANGE:.0%} {when}; outcomes known {s.delay[0]}-{s.delay[1]} days "
            f"after scoring"
        )

    def _finished(self, run: Any, what: str) -> Any:
        if run.status != "succeeded":
            err = run.error or {}
            raise OpxError(
                f"the {what} run #{run.id} {run.status}: {err.get('ename', '')}: "
                f"{err.get('evalue', '')} (see: opx --workspace {self.workdir} run logs {run.id})"
            )
        return run

    # -- one simulated day ---------------------------------------------------------
    def day(self, day: int) -> None:
        s, ws = self.s, self.ws
        when = date_of(day)
        arrived = self._deliver_outcomes(day)
        t0 = time.perf_counter()
        run = api.run_job(SCORE_JOB, {"batch_date": when.isoformat()}, wait=True, workspace=ws)
        self._finished(run, "scoring")
        self.scoring_seconds.append(time.perf_counter() - t0)
        m = run_metrics(ws, run.id)
        self._answer(day)
        flush()  # the evaluations this process's outcomes asked for
        api.evaluate_alerts(MODEL, workspace=ws)
        retrain = self._retrains(day)
        [rule] = [r for r in api.alerts(MODEL, workspace=ws) if r.expr == s.alert]
        auc, n = self._auc_so_far()
        marks = []
        if day == s.price_change_day:
            marks.append(f"prices +{PRICE_CHANGE:.0%} from today")
        state = f"ALERT {rule.state.upper()}" if rule.state == "firing" else ""
        line = (
            f"day {day:>2} {when} run #{run.id:<3} {run.resolved.get('model', '')}: "
            f"{m.get('scored', 0):,} scored, {m.get('emailed', 0):,} emailed, "
            f"{m.get('targeted', 0) - m.get('emailed', 0):,} control | "
            f"{arrived:,} outcomes in, AUC so far {_f(auc)} (n={n:,}) | "
            f"PSI charges {_f(rule.value, 2)} {state}"
        ).rstrip()
        self.log(line + ("  <- " + "; ".join(marks) if marks else ""))
        for r in retrain:
            self.log("    " + r["text"])

    def _deliver_outcomes(self, day: int) -> int:
        """Log the outcomes known by the morning of ``day`` (at 05:00 UTC that day)."""
        if not self.pending:
            return 0
        pending = pd.concat(self.pending, ignore_index=True)
        due = pending[pending["known_day"] <= day]
        self.pending = [pending[pending["known_day"] > day]]
        if len(due):
            ts = pd.Timestamp(date_of(day), tz="UTC") + pd.Timedelta(hours=5)
            api.log_outcomes(MODEL, due["customer_id"], due["churned"], ts=ts, workspace=self.ws)
            self.outcomes.append(due)
        return len(due)

    def _answer(self, day: int) -> None:
        """How the day's customers respond: depends on the arm the job gave each."""
        s = self.s
        people = daily_customers(day, s.customers, s.seed, price_change_day=s.price_change_day)
        treats = store.read(self.ws, MODEL, "treatments")
        arm_of = dict(zip(treats["id"], treats["arm"], strict=True)) if len(treats) else {}
        arms = [arm_of.get(c) for c in people["customer_id"]]
        out = outcomes_for(people, arms, s.seed, delay=s.delay)
        out["effect"] = email_effect(people)
        self.pending.append(out)

    def _retrains(self, day: int) -> list[dict[str, Any]]:
        """Wait for the retraining runs the alert started; describe each."""
        seen = {r["run"] for r in self.retrains}
        found = []
        for run in api.list_runs(RETRAIN_JOB, limit=None, workspace=self.ws):
            if run.trigger != "alert" or run.id in seen:
                continue
            deadline = time.monotonic() + 900
            while not run.finished and time.monotonic() < deadline:
                time.sleep(0.2)
                run = get_run(self.ws, run.id)
            m = run_metrics(self.ws, run.id) if run.status == "succeeded" else {}
            info: dict[str, Any] = {"run": run.id, "day": day, "status": run.status, **m}
            if run.status != "succeeded":
                err = run.error or {}
                info["text"] = (
                    f"retraining run #{run.id} (trigger alert) {run.status}: "
                    f"{err.get('evalue', '')}"
                )
            else:
                verdict = (
                    f"PROMOTED {m['challenger']} to {MODEL}@production"
                    if m.get("promoted")
                    else f"champion {m.get('champion')} kept"
                )
                info["text"] = (
                    f"retraining run #{run.id} (trigger alert, {run.duration:.1f}s): challenger "
                    f"{m.get('challenger')} trained on {m.get('n_train', 0):,} recent labelled "
                    f"customers; on {m.get('n_compare', 0):,} others AUC "
                    f"{_f(m.get('challenger_auc'))} vs champion {m.get('champion')} "
                    f"{_f(m.get('champion_auc'))} (gain 95% interval "
                    f"{m.get('gain_low', 0):+.3f} to {m.get('gain_high', 0):+.3f}) -> {verdict}"
                )
            found.append(info)
        self.retrains.extend(found)
        return found

    def _versions_per_week(self) -> dict[str, list[str]]:
        preds = store.read(self.ws, MODEL, "predictions")
        week = preds["ts"].dt.tz_localize(None).dt.to_period("W-SUN").dt.start_time.dt.date
        return {
            str(w): [f"{MODEL}/{v}" for v in sorted(set(g))]
            for w, g in preds["model_version"].groupby(week)
        }

    def _auc_by_model(self) -> list[dict[str, Any]]:
        from sklearn.metrics import roc_auc_score

        from .demo import labelled_feedback

        got = labelled_feedback(MODEL, workspace=self.ws)
        out = []
        for version, rows in got.groupby("model_version"):
            ok = rows["churned"].nunique() == 2
            out.append(
                {
                    "model": f"{MODEL}/{int(version)}",
                    "auc": float(roc_auc_score(rows["churned"], rows["score"])) if ok else None,
                    "n": len(rows),
                }
            )
        return out

    def _auc_so_far(self) -> tuple[float | None, int]:
        from sklearn.metrics import roc_auc_score

        from .demo import labelled_feedback

        got = labelled_feedback(MODEL, workspace=self.ws)
        if len(got) < 2 or got["churned"].nunique() < 2:
            return None, len(got)
        return float(roc_auc_score(got["churned"], got["score"])), len(got)

    # -- the end -------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        from .monitoring.compute import compute
        from .monitoring.report import write_report

        ws, say = self.ws, self.say
        # drift against the current champion; the other figures cover all the events
        production = f"{MODEL}@production"
        report = write_report(ws, production, self.workdir / "report.html", window="1d")
        daily = compute(ws, production, "1d")
        weekly = compute(ws, production, "1w")
        say("")
        say(f"Summary of {self.s.days} simulated days ({time.perf_counter() - self.start:.0f}s)")
        n_runs = len(self.scoring_seconds)
        say(
            f"  scoring runs: {n_runs} succeeded, {np.mean(self.scoring_seconds):.1f}s each "
            f"on average; {daily.kpis()['predictions']:,} predictions, "
            f"{daily.kpis()['treatments']:,} treatments, {daily.kpis()['outcomes']:,} outcomes"
        )
        weeks = _weekly_auc(weekly, self._versions_per_week())
        say("  AUC per week of scoring (untreated customers whose outcome arrived):")
        for w in weeks:
            figure = (
                f"AUC {_f(w['auc'])}  labelled {w['n_labelled']:>6,} ({w['coverage']:.0%})"
                if w["n_labelled"]
                else "no outcomes yet"
            )
            say(f"    week of {w['week']}: {figure}  scored by {', '.join(w['models'])}")
        by_model = self._auc_by_model()
        say(
            "  AUC by scoring model: "
            + "; ".join(f"{m['model']} {_f(m['auc'])} (n={m['n']:,})" for m in by_model)
        )
        drifted = _drifted(daily)
        say(f"  drifted features (daily windows, against the reference of {daily.reference}):")
        for d in drifted or [{"feature": "none", "first": "-", "days": 0, "max_psi": None}]:
            say(
                f"    {d['feature']}: from {d['first']}, {d['days']} day(s), "
                f"PSI up to {_f(d['max_psi'], 2)}"
            )
        uplift = _uplift(daily, self.outcomes)
        if uplift:
            say(
                f"  emails: churn {uplift['rate_email']:.1%} with the email vs "
                f"{uplift['rate_control']:.1%} in control (n={uplift['n_email']:,} / "
                f"{uplift['n_control']:,}); uplift {uplift['uplift']:+.3f} "
                f"(95% CI {uplift['ci_low']:+.3f} to {uplift['ci_high']:+.3f})"
            )
            say(
                f"  customers kept by the emails: {uplift['kept']:,.0f} "
                f"(95% CI {uplift['kept_low']:,.0f} to {uplift['kept_high']:,.0f}); "
                f"the simulator's truth: {uplift['kept_true']:,.0f}"
            )
        promotions = [
            f"{MODEL}@production: {r['champion']} -> {r['challenger']} on day {r['day']} "
            f"({date_of(r['day'])}), by retraining run #{r['run']} started by the drift alert"
            for r in self.retrains
            if r.get("promoted")
        ]
        say("  promotions: " + ("; ".join(promotions) if promotions else "none"))
        say(f"  report: {report}")
        say("")
        say("Explore it:  make lab   (JupyterLab on this workspace, with the panel)")
        say(f"             opx --workspace {self.workdir} runs")
        say(f"             opx --workspace {self.workdir} feedback {MODEL}")
        return {
            "workspace": str(self.workdir),
            "report": str(report),
            "runs": n_runs,
            "weeks": weeks,
            "auc_by_model": by_model,
            "drifted": drifted,
            "uplift": uplift,
            "retrains": self.retrains,
            "promotions": promotions,
            "seconds": time.perf_counter() - self.start,
        }


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def _weekly_auc(fb: Any, versions: dict[str, list[str]]) -> list[dict[str, Any]]:
    perf = fb.performance
    if not len(perf):
        return []
    honest = perf[(perf["arm"] == "control") & (perf["predictions"] > 0)]
    out = []
    for r in honest.itertuples():
        week = str(pd.Timestamp(r.window).date())
        out.append(
            {
                "week": week,
                "auc": None if pd.isna(r.auc) else float(r.auc),
                "n_labelled": int(r.n_labelled),
                "coverage": float(r.coverage) if not pd.isna(r.coverage) else 0.0,
                "models": versions.get(week, []),
            }
        )
    return out


def _drifted(fb: Any) -> list[dict[str, Any]]:
    drift = fb.drift
    if not len(drift):
        return []
    flagged = drift[drift["drifted"].astype(bool)]
    out = []
    for feature, rows in flagged.groupby("feature", sort=False):
        out.append(
            {
                "feature": str(feature),
                "first": str(pd.Timestamp(rows["window"].min()).date()),
                "days": len(rows),
                "max_psi": float(rows["psi"].max()),
            }
        )
    return sorted(out, key=lambda d: d["first"])


def _uplift(fb: Any, logged: list[pd.DataFrame]) -> dict[str, Any] | None:
    total = fb.uplift_total
    if not len(total):
        return None
    rows = {r["arm"]: r for r in total.to_dict(orient="records")}
    email, control = rows.get("email"), rows.get("control")
    if email is None or control is None or pd.isna(email.get("uplift")):
        return None
    known = pd.concat(logged, ignore_index=True) if logged else pd.DataFrame()
    emailed = known[known["arm"] == "email"] if len(known) else known
    n_email = int(email["n"])
    return {
        "n_email": n_email,
        "n_control": int(control["n"]),
        "rate_email": float(email["outcome_rate"]),
        "rate_control": float(control["outcome_rate"]),
        "uplift": float(email["uplift"]),
        "ci_low": float(email["ci_low"]),
        "ci_high": float(email["ci_high"]),
        "kept": -float(email["uplift"]) * n_email,
        "kept_low": -float(email["ci_high"]) * n_email,
        "kept_high": -float(email["ci_low"]) * n_email,
        # what the emails really did to the emailed customers whose outcome is in
        "kept_true": float(-emailed["effect"].sum()) if len(emailed) else 0.0,
    }


def run_demo(
    workdir: str | Path,
    *,
    days: int = 30,
    customers: int = 2000,
    seed: int = 7,
    price_change_day: int | None = None,
    delay: tuple[int, int] = DELAY,
    database: str | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the churn example end to end in ``workdir`` (its store is ``workdir/.opx``).

    Parameters
    ----------
    workdir : path
        The demo's folder; a store there not made by a previous demo is refused.
    days : int
        Simulated days of production.
    customers : int
        Customers scored per day.
    seed : int
        Seed of the simulated world.
    price_change_day : int, optional
        The day prices rise (default: the middle, ``days // 2``, at least 1;
        ``>= days``: never).
    delay : (int, int)
        Fewest and most days until a customer's outcome is known.
    database : str, optional
        SQLAlchemy URL of an *empty* database for the store's metadata (e.g.
        ``postgresql+psycopg://user@host/opx_demo``); default SQLite in the store.
    say : callable
        Where the progress lines go.

    Returns
    -------
    dict
        The figures of the summary (weeks, drifted, uplift, retrains, promotions …).

    Raises
    ------
    OpxError
        A run failed (the message says which and how to see its log), or the
        folder holds a store the demo did not make.
    """
    settings = Settings(
        days=days,
        customers=customers,
        seed=seed,
        price_change_day=price_change_day,
        delay=delay,
        database=database,
    ).check()
    demo = _Demo(Path(workdir).resolve(), settings, say)
    demo.setup()
    for day in range(settings.days):
        demo.day(day)
    return demo.summary()
