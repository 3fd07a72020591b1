"""Alert rules: the grammar, min_n gating, firing/resolved with one event and one
webhook POST per change (against a local HTTP receiver), evaluation after
ingestion and on the scheduler's timer, freshness, job triggers, the CLI."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import event

import jupyter_opx as opx
from jupyter_opx.cli import main
from jupyter_opx.exceptions import NotFoundError, ValidationError
from jupyter_opx.jobs.lease import try_acquire
from jupyter_opx.jobs.scheduler import Scheduler
from jupyter_opx.monitoring import alert_metrics as M
from jupyter_opx.monitoring import alerts
from jupyter_opx.monitoring.compute import compute
from jupyter_opx.store.db import utcnow

JOBS = Path(__file__).resolve().parent / "notebooks" / "jobs"

#: these tests run on SQLite and on PostgreSQL (see conftest.py)
pytestmark = pytest.mark.backends("sqlite", "postgresql")
DAY0 = pd.Timestamp("2026-03-02T06:00:00Z")


def customers(n: int, seed: int, shift: float = 0.0) -> tuple[pd.DataFrame, np.ndarray]:
    """Two numeric features that drive the outcome, and a categorical one."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "a": rng.normal(shift, 1.0, n),
            "b": rng.normal(0.0, 1.0, n),
            "plan": rng.choice(["basic", "pro"], n),
        }
    )
    y = (frame["a"] - shift + 0.5 * frame["b"] + rng.normal(0, 0.7, n) > 0).astype(int)
    return frame, y.to_numpy()


@pytest.fixture(scope="module")
def fitted() -> Any:
    from sklearn.linear_model import LogisticRegression

    frame, y = customers(400, seed=0)
    return LogisticRegression().fit(frame[["a", "b"]], y), frame.assign(churned=y)


@pytest.fixture
def ws(store: Path, fitted: Any) -> Iterator[Any]:
    model, train = fitted
    opx.snapshot("churn", model=model, data={"train": train})
    yield opx.current_workspace()
    assert alerts.flush(timeout=30), "alert evaluations after ingestion still pending"


@pytest.fixture
def manual(monkeypatch: pytest.MonkeyPatch) -> None:
    """No evaluation after ingestion: the test evaluates when it wants."""
    monkeypatch.setattr(alerts, "evaluate_after_ingest", lambda ws, model: None)


def log_day(
    fitted: Any,
    day: int,
    n: int = 300,
    *,
    shift: float = 0.0,
    outcomes: bool = True,
    flip: bool = False,
    ts: pd.Timestamp | None = None,
) -> None:
    """Log a day of predictions (and their outcomes an hour later)."""
    model, _ = fitted
    frame, y = customers(n, seed=100 + day, shift=shift)
    ids = [f"d{day}-{i}" for i in range(n)]
    when = ts if ts is not None else DAY0 + pd.Timedelta(days=day)
    scores = model.predict_proba(frame[["a", "b"]])[:, 1]
    opx.log_predictions("churn", ids, scores, features=frame, ts=when)
    if outcomes:
        opx.log_outcomes("churn", ids, 1 - y if flip else y, ts=when + pd.Timedelta(hours=1))


class Receiver:
    """A local webhook receiver recording the JSON bodies POSTed to it."""

    def __init__(self, status: int = 200) -> None:
        self.posts: list[dict[str, Any]] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append(json.loads(body))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# -- grammar ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expr", "metric", "op", "threshold", "canonical"),
    [
        ("auc < 0.7", "auc", "<", 0.7, "auc < 0.7"),
        ("AUC>=1e-3", "auc", ">=", 0.001, "auc >= 1e-3"),
        ("  drifted_share > .3 ", "drifted_share", ">", 0.3, "drifted_share > .3"),
        ("psi:monthly_charges > 0.25", "psi:monthly_charges", ">", 0.25, None),
        ('psi:"monthly charges" > 0.25', "psi:monthly charges", ">", 0.25, None),
        ("freshness_hours > 26", "freshness_hours", ">", 26.0, None),
        ("uplift > -0.01", "uplift", ">", -0.01, None),
        ("predictions != 0", "predictions", "!=", 0.0, None),
        ("drifted == 2", "drifted", "==", 2.0, None),
        ("brier <= 0.2", "brier", "<=", 0.2, None),
    ],
)
def test_grammar_accepts_metric_op_number(expr, metric, op, threshold, canonical):
    cond = M.parse(expr)
    assert (cond.metric, cond.op, cond.threshold) == (metric, op, threshold)
    assert cond.expr == (canonical or expr)
    assert M.parse(cond.expr) == cond  # the canonical text parses back to the same rule


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("auc", "not understood"),
        ("auc < ", "not understood"),
        ("auc =< 0.7", "not understood"),
        ("auc < 0.7 and 1", "not understood"),
        ("auc < abc", "not understood"),
        ("auc < nan", "not understood"),
        ("auc < 1e999", "finite"),
        ("__import__('os').system('true') < 1", "not understood"),
        ("0.7 > auc", "not understood"),
        ("", "not understood"),
        ("auk < 0.7", "unknown metric 'auk'.*auc, accuracy"),
        ("psi > 0.2", "psi:<feature>"),
        ("auc:a < 0.7", "takes no feature"),
    ],
)
def test_grammar_rejects_everything_else(expr, message):
    with pytest.raises(ValidationError, match=message):
        M.parse(expr)


def test_add_validates_against_the_model(ws, tmp_path):
    with pytest.raises(ValidationError, match="unknown metric 'auk'") as info:
        opx.add_alert("churn", "auk < 0.7")
    assert "freshness_hours" in info.value.fields["metrics"]
    with pytest.raises(ValidationError, match=r"no feature 'tenure'.*: a, b, churned, plan"):
        opx.add_alert("churn", "psi:tenure > 0.2")
    with pytest.raises(ValidationError, match="'plan' is categorical"):
        opx.add_alert("churn", "ks:plan > 0.2")
    with pytest.raises(ValidationError, match="'a' is numeric"):
        opx.add_alert("churn", "js:a > 0.2")
    with pytest.raises(NotFoundError):
        opx.add_alert("nochurn", "auc < 0.7")
    with pytest.raises(NotFoundError):
        opx.add_alert("churn", "auc < 0.7", trigger_job="retrain")
    with pytest.raises(ValidationError, match="window"):
        opx.add_alert("churn", "auc < 0.7", window="fortnight")
    with pytest.raises(ValidationError, match="min_n"):
        opx.add_alert("churn", "auc < 0.7", min_n=-1)
    with pytest.raises(ValidationError, match="http"):
        opx.add_alert("churn", "auc < 0.7", webhook="ftp://example.org")
    assert opx.alerts() == []

    rule = opx.add_alert("churn/1", "psi:plan > 0.2")
    assert (rule.model, rule.state, rule.metric) == ("churn", "ok", "psi:plan")
    assert opx.add_alert("churn", "psi:plan>0.2").id == rule.id  # the same rule again
    assert opx.add_alert("churn", "psi:plan > 0.2", min_n=5).id != rule.id
    assert [r.id for r in opx.alerts("churn")] == [rule.id, rule.id + 1]


# -- evaluation ------------------------------------------------------------------------
def test_min_n_gates_the_judgement(ws, fitted, manual):
    log_day(fitted, 0, n=150)
    rule = opx.add_alert("churn", "auc < 0.99", min_n=200)
    assert opx.evaluate_alerts() == []
    kept = alerts.get_rule(ws, rule.id)
    assert kept.state == "ok" and kept.value is not None  # measured, not judged

    log_day(fitted, 0, n=300)  # the same day gets 150 more labelled (ids d0-150 …)
    (change,) = opx.evaluate_alerts()
    assert (change.rule_id, change.previous, change.state) == (rule.id, "ok", "firing")
    assert change.n == 300


def test_firing_resolved_one_event_and_one_post_per_change(ws, fitted, manual, receiver):
    rule = opx.add_alert("churn", "predictions < 100", webhook=receiver.url)
    assert opx.evaluate_alerts() == []  # no predictions yet: nothing to judge

    log_day(fitted, 0, n=50, outcomes=False)
    (fired,) = opx.evaluate_alerts()
    assert (fired.previous, fired.state, fired.value, fired.n) == ("ok", "firing", 50.0, 50)
    assert fired.notified
    assert opx.evaluate_alerts() == []  # still firing: no new event, no new POST
    assert opx.alerts()[0].state == "firing"

    log_day(fitted, 1, n=200, outcomes=False)  # a new day with enough predictions
    (resolved,) = opx.evaluate_alerts()
    assert (resolved.previous, resolved.state, resolved.value) == ("firing", "resolved", 200.0)
    assert opx.evaluate_alerts() == []

    log_day(fitted, 2, n=10, outcomes=False)
    (again,) = opx.evaluate_alerts()
    assert (again.previous, again.state) == ("resolved", "firing")

    assert [p["state"] for p in receiver.posts] == ["firing", "resolved", "firing"]
    first = receiver.posts[0]
    assert {k: first[k] for k in ("model", "rule_id", "expr", "value", "n", "window")} == {
        "model": "churn",
        "rule_id": rule.id,
        "expr": "predictions < 100",
        "value": 50.0,
        "n": 50,
        "window": "1d",
    }
    assert first["event"] == "alert.firing" and first["at"].startswith(str(utcnow().year))
    assert first["data_window"].startswith("2026-03-02")
    history = alerts.events(ws, rule.id)
    assert [e["state"] for e in history] == ["firing", "resolved", "firing"]
    assert all(e["notified"] for e in history)


def test_performance_is_judged_on_the_untreated(ws, fitted, manual):
    """Emailed customers stay (their outcome flips): AUC on everyone drops, the
    model is still right on the control arm, and the rule reads the latter."""
    model, _ = fitted
    frame, y = customers(600, seed=7)
    ids = [f"c{i}" for i in range(600)]
    scores = model.predict_proba(frame[["a", "b"]])[:, 1]
    arm = np.where(np.arange(600) % 2 == 0, "email", "control")
    outcome = np.where(arm == "email", 0, y)
    opx.log_predictions("churn", ids, scores, features=frame, ts=DAY0)
    opx.log_treatments("churn", ids, arm, ts=DAY0 + pd.Timedelta(minutes=5))
    opx.log_outcomes("churn", ids, outcome, ts=DAY0 + pd.Timedelta(hours=2))
    rule = opx.add_alert("churn", "auc < 0.7")
    churn_kept = opx.add_alert("churn", "uplift < -0.2", min_n=100)
    changes = opx.evaluate_alerts()
    assert [c.rule_id for c in changes] == [churn_kept.id]  # emails keep churners

    perf = opx.feedback("churn").performance
    honest = perf[perf["arm"] == "control"].iloc[-1]
    everyone = perf[perf["arm"] == "all"].iloc[-1]
    assert everyone["auc"] < honest["auc"]
    assert alerts.get_rule(ws, rule.id).value == pytest.approx(honest["auc"])
    assert alerts.get_rule(ws, rule.id).state == "ok"


def test_a_change_is_recorded_once_even_by_racing_evaluators(ws, fitted, manual, receiver):
    log_day(fitted, 0, n=50, outcomes=False)
    opx.add_alert("churn", "predictions < 100", webhook=receiver.url)
    stale = opx.alerts()[0]  # both evaluators read the rule in state "ok"
    got = M.Measure(50.0, 50, "2026-03-02")
    first = alerts._apply(ws, stale, got, utcnow())
    second = alerts._apply(ws, stale, got, utcnow())
    assert first is not None and second is None
    assert len(alerts.events(ws)) == 1 and len(receiver.posts) == 1


def test_webhook_down_records_the_event_unnotified_and_ingestion_goes_on(ws, fitted):
    rule = opx.add_alert("churn", "predictions > 0", webhook=closed_port_url())
    log_day(fitted, 0, n=20, outcomes=False)  # does not raise, does not wait for the webhook
    assert alerts.flush(timeout=30)
    (evt,) = alerts.events(ws, rule.id)
    assert evt["state"] == "firing" and evt["notified"] is False
    assert evt["detail"]["webhook"]["ok"] is False
    assert "Connection" in evt["detail"]["webhook"]["result"]
    assert opx.alerts()[0].state == "firing"


def test_errors_in_alerts_never_fail_ingestion(ws, fitted, monkeypatch):
    opx.add_alert("churn", "predictions > 0")

    def broken(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(alerts, "has_rules", broken)
    log_day(fitted, 0, n=20, outcomes=False)
    assert opx.feedback("churn").kpis()["predictions"] == 20


def test_a_model_without_rules_costs_one_indexed_query(ws, fitted):
    opx.add_alert("churn", "predictions > 0")  # rules exist, but on another model
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if statement.strip().upper() not in ("BEGIN", "COMMIT", "ROLLBACK"):
            statements.append(statement)

    event.listen(ws.db.engine, "before_cursor_execute", count)
    try:
        alerts.evaluate_after_ingest(ws, "other")
    finally:
        event.remove(ws.db.engine, "before_cursor_execute", count)
    assert len(statements) == 1 and "alert_rules" in statements[0]
    assert not alerts._debouncer.pending


def test_after_ingest_a_drift_rule_fires_on_shifted_data(ws, fitted):
    share = opx.add_alert("churn", "drifted_share > 0.3", min_n=100)
    psi = opx.add_alert("churn", "psi:a > 0.25", min_n=100)
    log_day(fitted, 0, n=400, outcomes=False)
    assert alerts.flush()
    assert [r.state for r in opx.alerts()] == ["ok", "ok"]

    log_day(fitted, 1, n=400, shift=1.5, outcomes=False)  # a price change moved "a"
    assert alerts.flush()
    rules = {r.id: r for r in opx.alerts()}
    assert rules[share.id].state == "firing" and rules[share.id].value > 0.3
    assert rules[psi.id].state == "firing" and rules[psi.id].value > 0.25
    drift = opx.feedback("churn").drift
    latest = drift[(drift["feature"] == "a")].iloc[-1]
    assert rules[psi.id].value == pytest.approx(latest["psi"])


def test_ingestion_bursts_are_debounced(ws, monkeypatch):
    calls: list[float] = []
    real = alerts.evaluate

    def counting(ws_: Any, model: str | None = None, now: Any = None) -> Any:
        import time

        calls.append(time.monotonic())
        return real(ws_, model, now)

    monkeypatch.setattr(alerts, "evaluate", counting)
    opx.add_alert("churn", "predictions > 0")
    for _ in range(20):
        alerts.evaluate_after_ingest(ws, "churn")
    assert alerts.flush()
    assert 1 <= len(calls) <= 2  # the first at once, the rest coalesced into one after it
    if len(calls) == 2:
        assert calls[1] - calls[0] >= alerts.DEBOUNCE * 0.9


def test_freshness_fires_when_predictions_stop(ws, fitted, manual, monkeypatch):
    now = utcnow()
    log_day(fitted, 0, n=30, outcomes=False, ts=pd.Timestamp(now))
    rule = opx.add_alert("churn", "freshness_hours > 26")

    def no_compute(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("freshness is read from the catalog, not from computed feedback")

    monkeypatch.setattr("jupyter_opx.monitoring.compute.compute", no_compute)
    ws_ = opx.current_workspace()
    assert alerts.evaluate(ws_, now=now + pd.Timedelta(hours=1)) == []
    assert alerts.get_rule(ws_, rule.id).value == pytest.approx(1.0, abs=0.01)
    (stale,) = alerts.evaluate(ws_, now=now + pd.Timedelta(hours=27))
    assert stale.state == "firing" and stale.value == pytest.approx(27.0, abs=0.01)
    (fresh,) = alerts.evaluate(ws_, now=now + pd.Timedelta(minutes=30))
    assert fresh.state == "resolved"


@pytest.mark.backends("sqlite")  # runs a job: kept off the PostgreSQL time budget
def test_firing_starts_the_trigger_job_once(ws, fitted, manual, tmp_path):
    notebook = tmp_path / "retrain.ipynb"
    shutil.copy(JOBS / "no_params.ipynb", notebook)
    opx.create_job("retrain", notebook)
    # a scheduler holds the lease: the run is queued for it, no runner process starts
    assert try_acquire(ws, "test-scheduler", ttl=120)
    log_day(fitted, 0, n=30, outcomes=False)
    rule = opx.add_alert("churn", "predictions > 10", trigger_job="retrain")

    (change,) = opx.evaluate_alerts("churn")
    assert change.run_id is not None
    run = opx.get_run(change.run_id)
    assert (run.job_name, run.trigger, run.status) == ("retrain", "alert", "queued")
    (evt,) = alerts.events(ws, rule.id)
    assert evt["run_id"] == run.id and evt["detail"]["trigger"]["job"] == "retrain"
    assert opx.evaluate_alerts() == []  # still firing: no second run
    assert len(opx.list_runs("retrain")) == 1
    assert opx.cancel_run(run.id).status == "cancelled"


def test_the_scheduler_evaluates_alerts_on_its_timer(ws, fitted, manual):
    log_day(fitted, 0, n=30, outcomes=False)
    rule = opx.add_alert("churn", "predictions > 10")
    sched = Scheduler(ws, alert_interval=3600)
    try:
        sched.step()
        sched.alerts.join(timeout=30)
        assert alerts.get_rule(ws, rule.id).state == "firing"
        assert sched.alerts.tick() is None  # not due again for an hour
    finally:
        sched.close()
    assert [e["state"] for e in alerts.events(ws, rule.id)] == ["firing"]


def test_remove_deletes_the_rule_and_its_history(ws, fitted, manual):
    log_day(fitted, 0, n=30, outcomes=False)
    rule = opx.add_alert("churn", "predictions > 10")
    opx.evaluate_alerts()
    removed = opx.remove_alert(rule.id)
    assert removed.id == rule.id
    assert opx.alerts() == [] and alerts.events(ws) == []
    with pytest.raises(NotFoundError, match="no alert rule"):
        opx.remove_alert(rule.id)


def test_records_render_and_feedback_shows_alerts(ws, fitted, manual):
    log_day(fitted, 0, n=30)
    rule = opx.add_alert("churn", "predictions > 10", webhook=None, min_n=5)
    changes = opx.evaluate_alerts()
    assert "ok -> firing" in str(changes) and "<pre" in changes._repr_html_()
    assert changes.to_dict()["changes"][0]["state"] == "firing"
    rules = opx.alerts()
    assert "predictions > 10" in str(rules) and "firing" in rules._repr_html_()
    assert json.dumps(rules.to_dict())
    one = rules[0]
    assert "firing since" in str(one) and "<table" in one._repr_html_()
    assert one.to_dict()["state"] == "firing"
    fb = compute(ws, "churn")
    assert fb.alerts.loc[0, "state"] == "firing" and fb.kpis()["alerts_firing"] == 1
    assert opx.evaluate_alerts(rule.model) == []


def test_a_regressor_with_treatments_still_has_feedback(store, manual):
    """Uplift needs 0/1 outcomes; a regressor's campaign has none, and that must
    not make the whole feedback (and every alert on the model) fail."""
    from sklearn.linear_model import LinearRegression

    frame, _ = customers(200, seed=3)
    target = 3 * frame["a"]
    opx.snapshot("spend", model=LinearRegression().fit(frame[["a", "b"]], target), data=frame)
    ids = [f"s{i}" for i in range(200)]
    opx.log_predictions("spend", ids, 3 * frame["a"] + 0.5, features=frame, ts=DAY0)
    opx.log_treatments("spend", ids, np.where(np.arange(200) % 2, "email", "control"), ts=DAY0)
    opx.log_outcomes("spend", ids, target, ts=DAY0 + pd.Timedelta(hours=1))
    rule = opx.add_alert("spend", "mae > 0.4")
    fb = opx.feedback("spend")
    assert fb.uplift_total.empty and fb.kpis()["predictions"] == 200
    (change,) = opx.evaluate_alerts()
    assert change.rule_id == rule.id and change.value == pytest.approx(0.5)


# -- CLI -------------------------------------------------------------------------------
def test_cli_alert_commands(ws, fitted, manual, capsys):
    log_day(fitted, 0, n=30, outcomes=False)
    assert main(["alert", "add", "churn", "predictions > 10", "--min-n", "5", "--json"]) == 0
    rule = json.loads(capsys.readouterr().out)
    assert (rule["expr"], rule["min_n"], rule["state"]) == ("predictions > 10", 5, "ok")

    assert main(["alerts", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [rule["id"]]
    assert main(["alert", "check", "churn"]) == 0
    assert "ok -> firing" in capsys.readouterr().out
    assert main(["alert", "check"]) == 0
    assert "no alert changed state" in capsys.readouterr().out
    assert main(["alerts", "churn"]) == 0
    assert "firing" in capsys.readouterr().out

    assert main(["alert", "add", "churn", "auk < 0.7"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("opx: error: unknown metric 'auk'") and err.count("\n") == 1
    assert main(["alert", "add", "churn", "psi:nope > 1"]) == 1
    assert "features: a, b, churned, plan" in capsys.readouterr().err

    assert main(["alert", "remove", str(rule["id"])]) == 0
    assert f"removed alert {rule['id']}" in capsys.readouterr().out
    assert main(["alert", "remove", str(rule["id"])]) == 1
    assert "no alert rule" in capsys.readouterr().err
    assert main(["alerts"]) == 0
    assert "no alert rules yet" in capsys.readouterr().out


def test_cli_help_lists_the_metrics(capsys):
    with pytest.raises(SystemExit):
        main(["alert", "add", "--help"])
    out = capsys.readouterr().out
    for metric in ("auc", "drifted_share", "psi:FEATURE", "freshness_hours", "uplift", "kept"):
        assert metric in out


def test_rules_from_config_toml_are_added_once(tmp_path, monkeypatch):
    import numpy as np
    import pandas as pd

    import jupyter_opx as opx
    from jupyter_opx.monitoring import alerts as alerts_mod

    store_dir = tmp_path / ".opx"
    monkeypatch.setenv("OPX_HOME", str(store_dir))
    opx.snapshot("cfg", data={"train": pd.DataFrame({"x": np.arange(100.0)})})
    (store_dir / "config.toml").write_text(
        '[[alerts]]\nmodel = "cfg"\nrule = "predictions < 5"\nmin_n = 0\n'
    )
    ws = opx.current_workspace()
    alerts_mod.evaluate(ws)
    alerts_mod.evaluate(ws)
    rules = opx.alerts("cfg")
    assert [r.expr for r in rules] == ["predictions < 5"]
    (store_dir / "config.toml").write_text('[[alerts]]\nmodel = "cfg"\nrule = "nonsense"\n')
    result = alerts_mod.evaluate(ws)
    assert "config.toml" in result.errors
