"""Alert rules on a model's production feedback: firing, resolved, notified.

A rule is ``METRIC OP NUMBER`` on one model (``"auc < 0.7"``,
``"drifted_share > 0.3"``, ``"psi:monthly_charges > 0.25"``,
``"freshness_hours > 26"``, ``"uplift > 0"``, ``"predictions < 100"``), with
a minimum sample ``min_n``, the window its metric is read from (default
``"1d"``), an optional webhook and an optional job to start when it fires
(e.g. a retraining notebook). The grammar and the metrics are in
:mod:`.alert_metrics`:

- performance on the honest arm (``control`` when there are treatments,
  else everyone), latest window with labelled predictions: ``auc``,
  ``accuracy``, ``precision``, ``recall``, ``brier``, ``log_loss``, ``mae``,
  ``rmse``, ``coverage``, ``n_labelled`` (n: labelled predictions);
- drift in the latest window with predictions: ``drifted_share``,
  ``drifted``, ``psi:<feature>``, ``ks:<feature>``, ``js:<feature>``,
  ``prediction_psi``, ``prediction_ks`` (n: the window's predictions);
- volume of that window: ``predictions``, ``outcomes``, ``treatments``;
- ``freshness_hours``: hours since the last prediction (n: all predictions);
- the campaign, cumulative: ``uplift``, ``uplift_ci_low``,
  ``uplift_ci_high``, ``kept`` (n: treated entities with an outcome).

States. A new rule is ``ok`` (never fired). When its comparison holds it
becomes ``firing``; when it stops holding, ``resolved``; when it holds again,
``firing`` again. While the metric cannot be computed, or its sample is
below ``min_n``, the rule keeps its state. Each change writes one
``alert_events`` row and the rule's new state in one transaction, guarded by
the state it was read in, so two evaluators (a server and the scheduler) never
record or notify the same change twice; after the commit the webhook gets one
POST (retried, see :func:`jupyter_opx.jobs.notify.post_json`) and, on firing,
the ``trigger_job`` gets a run with trigger ``alert``; both outcomes are
written back to the event (``notified`` 1/0, ``run_id``).

When. After every ingested batch (:func:`evaluate_after_ingest`: one indexed
query when the model has no rules; otherwise a background worker evaluates
the model at most once per :data:`DEBOUNCE` seconds, a burst of batches
coalescing into one evaluation after it) and on the scheduler's timer
(:class:`AlertTimer`), which also catches staleness — a scoring job that
stopped sends no batch to react to.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from ..exceptions import NotFoundError, OpxError, ValidationError
from ..store import schema
from ..store.db import Database, as_utc, utcnow
from ..workspace import Workspace
from . import alert_metrics as M
from .alert_records import Change, ChangeList, Rule, RuleList, to_rule

__all__ = [
    "AlertTimer",
    "Change",
    "ChangeList",
    "Rule",
    "RuleList",
    "add_rule",
    "evaluate",
    "evaluate_after_ingest",
    "events",
    "flush",
    "get_rule",
    "has_rules",
    "list_rules",
    "remove_rule",
]

A = schema.alert_rules
E = schema.alert_events
STATES = ("ok", "firing", "resolved")
#: seconds between two evaluations of one model triggered by ingestion (per process)
DEBOUNCE = 0.5
log = logging.getLogger("jupyter_opx.alerts")


# -- rules -----------------------------------------------------------------------------
def add_rule(
    ws: Workspace,
    model: str,
    expr: str,
    *,
    min_n: int = 0,
    window: str = "1d",
    webhook: str | None = None,
    trigger_job: str | None = None,
) -> Rule:
    """Add an alert rule on ``model`` (a name or a ref; rules belong to the name).

    Adding a rule identical to an existing one returns that one (re-running a
    notebook cell does not double the notifications).

    Raises
    ------
    ValidationError
        A rule outside the grammar, an unknown metric or feature, a bad
        window, ``min_n`` or webhook URL.
    NotFoundError
        Unknown model or trigger job.
    """
    from ..jobs.definitions import get_job
    from ..snapshots.capture import current_user
    from ..snapshots.catalog import get_snapshot, reference_summary
    from .windows import parse_window

    cond = M.parse(expr)
    if len(cond.expr) > 256 or len(cond.metric) > 128:
        raise ValidationError("an alert rule is at most 256 characters (a feature name 120)")
    name = get_snapshot(ws, model).name
    latest = get_snapshot(ws, name)  # what evaluation measures against
    M.check_against(cond, reference_summary(ws, latest), latest.ref)
    if isinstance(min_n, bool) or not isinstance(min_n, int) or not 0 <= min_n < 2**31:
        raise ValidationError(f"min_n must be a whole number from 0 to 2**31-1, got {min_n!r}")
    window = str(window).strip()
    parse_window(window)
    if len(window) > 32:
        raise ValidationError(f"window {window!r}: at most 32 characters, e.g. '1d' or '1000'")
    if webhook is not None and not str(webhook).startswith(("http://", "https://")):
        raise ValidationError(f"webhook {webhook!r}: give an http:// or https:// URL")
    if trigger_job is not None:
        trigger_job = get_job(ws, trigger_job).name
    values = {
        "model": name,
        "expr": cond.expr,
        "metric": cond.metric,
        "op": cond.op,
        "threshold": cond.threshold,
        "min_n": min_n,
        "window": window,
        "webhook": webhook or None,
        "trigger_job": trigger_job,
    }

    def write(conn: Connection) -> int:
        same = conn.execute(select(A).where(A.c.model == name, A.c.expr == cond.expr)).all()
        for row in same:
            if all(getattr(row, k) == v for k, v in values.items()):
                return int(row.id)
        now = utcnow()
        inserted = conn.execute(
            insert(A).values(
                **values,
                enabled=1,
                state="ok",
                since=now,
                value=None,
                created_at=now,
                created_by=current_user(),
            )
        ).inserted_primary_key
        assert inserted is not None
        Database.record_change(conn, "alert", f"{name}#{inserted[0]} added")
        return int(inserted[0])

    return get_rule(ws, ws.db.run_write(write))


def get_rule(ws: Workspace, rule_id: int | str) -> Rule:
    """An alert rule by id."""
    try:
        rid = int(rule_id)
    except (TypeError, ValueError):
        raise ValidationError(f"an alert id is a number, got {rule_id!r}") from None
    row = None
    if ws.exists:
        with ws.db.transaction() as conn:
            row = conn.execute(select(A).where(A.c.id == rid)).first()
    if row is None:
        raise NotFoundError(f"no alert rule {rid}; list them with: opx alerts")
    return to_rule(row)


def list_rules(ws: Workspace, model: str | None = None) -> RuleList:
    """Alert rules (of ``model``, a name or ref, if given) with their state, by id."""
    if not ws.exists:
        return RuleList()
    query = select(A).order_by(A.c.id)
    if model is not None:
        from ..snapshots.catalog import get_snapshot

        query = query.where(A.c.model == get_snapshot(ws, model).name)
    with ws.db.transaction() as conn:
        return RuleList(to_rule(r) for r in conn.execute(query))


def remove_rule(ws: Workspace, rule_id: int | str) -> Rule:
    """Delete an alert rule and its event history; returns the rule as it was."""
    rule = get_rule(ws, rule_id)

    def write(conn: Connection) -> None:
        conn.execute(delete(E).where(E.c.rule_id == rule.id))
        conn.execute(delete(A).where(A.c.id == rule.id))
        Database.record_change(conn, "alert", f"{rule.model}#{rule.id} removed")

    ws.db.run_write(write)
    return rule


def events(ws: Workspace, rule_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """State changes recorded (of one rule if given), newest first."""
    if not ws.exists:
        return []
    query = select(E).order_by(E.c.id.desc()).limit(limit)
    if rule_id is not None:
        query = query.where(E.c.rule_id == int(rule_id))
    with ws.db.transaction() as conn:
        rows = conn.execute(query).all()
    return [{**dict(r._mapping), "at": as_utc(r.at), "notified": bool(r.notified)} for r in rows]


def has_rules(ws: Workspace, model: str | None = None) -> bool:
    """Whether any enabled rule exists (on ``model``): one indexed query."""
    if not ws.exists:
        return False
    query = select(A.c.id).where(A.c.enabled == 1).limit(1)
    if model is not None:
        query = query.where(A.c.model == model)
    with ws.db.transaction() as conn:
        return conn.execute(query).first() is not None


# -- evaluation ------------------------------------------------------------------------
def sync_config(ws: Workspace) -> list[Rule]:
    """Add the rules listed under ``[[alerts]]`` in ``.opx/config.toml`` (once each).

    A rule identical to a stored one is not added again, so this is safe to
    run before every evaluation; removing a rule from the file does not delete
    it from the store (``opx alert remove ID`` does).
    """
    from ..workspace import _read_config

    added = []
    for entry in _read_config(ws.root / "config.toml").get("alerts", []):
        unknown = set(entry) - {"model", "rule", "min_n", "window", "webhook", "trigger_job"}
        if unknown:
            raise ValidationError(
                f"config.toml [[alerts]]: unknown key(s) {', '.join(sorted(unknown))}"
            )
        added.append(
            add_rule(
                ws,
                entry["model"],
                entry["rule"],
                min_n=int(entry.get("min_n", 0)),
                window=str(entry.get("window", "1d")),
                webhook=entry.get("webhook"),
                trigger_job=entry.get("trigger_job"),
            )
        )
    return added


def evaluate(ws: Workspace, model: str | None = None, now: datetime | None = None) -> ChangeList:
    """Evaluate every enabled rule (of ``model``) now; returns the state changes.

    The feedback of a model is computed once per window its rules use, and
    not at all when its only rules are on ``freshness_hours`` (read from the
    event catalog). A model whose feedback cannot be computed keeps its rules'
    states and is named in ``.errors``.
    """
    now = as_utc(now) or utcnow()
    out = ChangeList()
    if not ws.exists:
        return out
    try:
        sync_config(ws)
    except OpxError as exc:  # a bad entry in the file must not silence the stored rules
        out.errors["config.toml"] = exc.message
    query = select(A).where(A.c.enabled == 1).order_by(A.c.id)
    if model is not None:
        from ..snapshots.catalog import get_snapshot

        query = query.where(A.c.model == get_snapshot(ws, model).name)
    with ws.db.transaction() as conn:
        rules = [to_rule(r) for r in conn.execute(query)]
    feedbacks: dict[tuple[str, str], Any] = {}
    for rule in rules:
        if rule.model in out.errors:
            continue
        try:
            got = _measure(ws, rule, now, feedbacks)
        except Exception as exc:  # one model's bad data must not stop the others
            out.errors[rule.model] = f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
            continue
        change = _apply(ws, rule, got, now)
        if change is not None:
            out.append(change)
    return out


def _measure(
    ws: Workspace, rule: Rule, now: datetime, feedbacks: dict[tuple[str, str], Any]
) -> M.Measure:
    if rule.metric == M.FRESHNESS:
        from . import store

        rows = store.segments(ws, rule.model, "predictions")
        last = as_utc(max(r.max_ts for r in rows)) if rows else None
        return M.freshness(last, sum(int(r.rows) for r in rows), now)
    key = (rule.model, rule.window)
    if key not in feedbacks:
        from .compute import compute

        feedbacks[key] = compute(ws, rule.model, rule.window)
    return M.measure(feedbacks[key], rule.metric)


def _apply(ws: Workspace, rule: Rule, got: M.Measure, now: datetime) -> Change | None:
    if got.value is None:
        return None
    value = float(got.value)
    if got.n < rule.min_n:
        state = rule.state  # too few to judge: keep the state, show the value
    elif M.OPS[rule.op](value, rule.threshold):
        state = "firing"
    else:
        state = "resolved" if rule.state == "firing" else rule.state
    if state == rule.state:
        if rule.value != value:
            _set_value(ws, rule, value)
        return None
    return _transition(ws, rule, state, got, value, now)


def _set_value(ws: Workspace, rule: Rule, value: float) -> None:
    def write(conn: Connection) -> None:
        done = conn.execute(
            update(A).where(A.c.id == rule.id, A.c.state == rule.state).values(value=value)
        )
        if done.rowcount:
            Database.record_change(conn, "alert", f"{rule.model}#{rule.id} value")

    ws.db.run_write(write)


def _transition(
    ws: Workspace, rule: Rule, state: str, got: M.Measure, value: float, now: datetime
) -> Change | None:
    detail: dict[str, Any] = {
        "previous": rule.state,
        "expr": rule.expr,
        "threshold": rule.threshold,
        "window": rule.window,
        "data_window": got.window,
    }

    def write(conn: Connection) -> int | None:
        # guarded by the state we read: a concurrent evaluator that got there
        # first already recorded (and will notify) this change
        moved = conn.execute(
            update(A)
            .where(A.c.id == rule.id, A.c.state == rule.state, A.c.enabled == 1)
            .values(state=state, since=now, value=value)
        )
        if moved.rowcount != 1:
            return None
        inserted = conn.execute(
            insert(E).values(
                rule_id=rule.id,
                state=state,
                value=value,
                n=got.n,
                at=now,
                notified=0,
                run_id=None,
                detail=detail,
            )
        ).inserted_primary_key
        assert inserted is not None
        Database.record_change(conn, "alert", f"{rule.model}#{rule.id} {state}")
        return int(inserted[0])

    event_id = ws.db.run_write(write)
    if event_id is None:
        return None
    change = Change(event_id, rule.id, rule.model, rule.expr, rule.state, state, value, got.n, now)
    change.detail = dict(detail)
    _act(ws, rule, change)
    return change


def _act(ws: Workspace, rule: Rule, change: Change) -> None:
    """Start the trigger job (on firing) and POST the webhook; record both on the event."""
    if change.state == "firing" and rule.trigger_job:
        trig: dict[str, Any] = {"job": rule.trigger_job}
        try:
            from ..jobs.launch import start_run

            change.run_id = start_run(ws, rule.trigger_job, None, trigger="alert").id
            trig["run_id"] = change.run_id
        except Exception as exc:  # the event stays recorded; say why nothing ran
            trig["error"] = f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
            log.info("alert %s: job %s not started: %s", rule.id, rule.trigger_job, exc)
        change.detail["trigger"] = trig
    if rule.webhook:
        from ..jobs.notify import post_json

        try:
            ok, result = post_json(rule.webhook, payload(rule, change))
        except Exception as exc:
            ok, result = False, f"{type(exc).__name__}: {exc}"
        change.notified = ok
        change.detail["webhook"] = {"url": rule.webhook, "ok": ok, "result": result}
        if not ok:
            log.info("alert %s: webhook %s failed: %s", rule.id, rule.webhook, result)

    if rule.webhook or "trigger" in change.detail:

        def write(conn: Connection) -> None:
            conn.execute(
                update(E)
                .where(E.c.id == change.event_id)
                .values(notified=int(change.notified), run_id=change.run_id, detail=change.detail)
            )
            Database.record_change(conn, "alert", f"{rule.model}#{rule.id} notified")

        ws.db.run_write(write)


def payload(rule: Rule, change: Change) -> dict[str, Any]:
    """The JSON body POSTed to a rule's webhook on a change."""
    return {
        "event": f"alert.{change.state}",
        "model": rule.model,
        "rule_id": rule.id,
        "event_id": change.event_id,
        "expr": rule.expr,
        "metric": rule.metric,
        "threshold": rule.threshold,
        "state": change.state,
        "previous_state": change.previous,
        "value": change.value,
        "n": change.n,
        "window": rule.window,
        "data_window": change.detail.get("data_window"),
        "at": change.at.isoformat(),
        "run_id": change.run_id,
    }


# -- after ingestion -------------------------------------------------------------------
class _Debouncer:
    """One background worker per process: each requested (store, model) is
    evaluated at most once per ``interval`` seconds after the previous
    evaluation ended; requests in between coalesce into one evaluation."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.cond = threading.Condition()
        self.pending: dict[tuple[str, str], Workspace] = {}
        self.ended: dict[tuple[str, str], float] = {}
        self.busy = 0
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()

    def request(self, ws: Workspace, model: str) -> None:
        if self.pid != os.getpid():  # a forked child: the worker thread stayed behind
            self._reset()
        with self.cond:
            self.pending[(str(ws.root), model)] = ws
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._work, name="opx-alerts", daemon=True)
                self.thread.start()
            self.cond.notify_all()

    def _next(self) -> tuple[Workspace, str] | None:
        with self.cond:
            while True:
                if not self.pending:
                    if not self.cond.wait(timeout=60):
                        self.thread = None  # idle: let the thread end
                        return None
                    continue
                now = time.monotonic()
                ready = {k: self.ended.get(k, -math.inf) + DEBOUNCE - now for k in self.pending}
                key = min(ready, key=lambda k: ready[k])
                if ready[key] > 0:
                    self.cond.wait(timeout=ready[key])
                    continue
                self.busy += 1
                return self.pending.pop(key), key[1]

    def _work(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            ws, model = job
            try:
                for why in evaluate(ws, model).errors.values():
                    log.warning("alerts on %s not evaluated after ingestion: %s", model, why)
            except Exception:
                log.exception("alerts on %s not evaluated after ingestion", model)
            finally:
                with self.cond:
                    self.ended[(str(ws.root), model)] = time.monotonic()
                    self.busy -= 1
                    self.cond.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every requested evaluation is done; False on timeout."""
        end = time.monotonic() + timeout
        with self.cond:
            while self.pending or self.busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(timeout=min(left, 0.05))
        return True


_debouncer = _Debouncer()
# a job's kernel or a CLI that logged events exits only after their alerts went out
atexit.register(lambda: _debouncer.flush(timeout=15.0))


def evaluate_after_ingest(ws: Workspace, model: str) -> None:
    """Evaluate ``model``'s rules after a batch was stored; never raises.

    Called by :func:`.log.log_events` for every batch: one indexed query when
    the model has no rules, else a request to the background worker
    (see :class:`_Debouncer`), so ingestion never waits for feedback to be
    computed or a webhook to answer.
    """
    try:
        if has_rules(ws, model):
            _debouncer.request(ws, model)
    except Exception:  # the batch is stored; alerts must never fail ingestion
        log.exception("alerts on %s not scheduled after ingestion", model)


def flush(timeout: float = 30.0) -> bool:
    """Wait for evaluations requested by ingestion in this process (tests, shutdown)."""
    return _debouncer.flush(timeout)


# -- on a timer ------------------------------------------------------------------------
class AlertTimer:
    """Evaluates every rule of a store at most every ``interval`` seconds, in a
    thread of its own so a slow webhook or a large model never delays the
    scheduler's pass (see :class:`jupyter_opx.jobs.scheduler.Scheduler`).
    ``interval`` <= 0 disables it."""

    def __init__(
        self, ws: Workspace, interval: float = 30.0, log: Callable[[str], None] | None = None
    ) -> None:
        self.ws = ws
        self.interval = interval
        self.log = log or (lambda _msg: None)
        self.due = 0.0
        self.thread: threading.Thread | None = None

    def tick(self) -> threading.Thread | None:
        """Start an evaluation if one is due and none is running; returns its thread."""
        now = time.monotonic()
        if self.interval <= 0 or now < self.due:
            return None
        if self.thread is not None and self.thread.is_alive():
            return None
        self.due = now + self.interval
        if not has_rules(self.ws):
            return None
        self.thread = threading.Thread(target=self._run, name="opx-alert-timer", daemon=True)
        self.thread.start()
        return self.thread

    def _run(self) -> None:
        try:
            changes = evaluate(self.ws)
        except Exception as exc:
            self.log(f"alert evaluation failed: {type(exc).__name__}: {exc}")
            return
        for change in changes:
            self.log(str(change))
        for model, why in changes.errors.items():
            self.log(f"alerts on {model} not evaluated: {why}")

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            with contextlib.suppress(RuntimeError):
                self.thread.join(timeout)
