"""Records of alert rules and of their state changes, rendered for notebooks and the CLI.

See :mod:`.alerts` for what the states mean and when rules are evaluated.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..snapshots.records import fields_html, fields_text, list_html, text_table
from ..store.db import as_utc
from . import alert_metrics as M


@dataclass
class Rule:
    """An alert rule on a model, with its current state."""

    id: int
    model: str
    expr: str
    metric: str
    op: str
    threshold: float
    min_n: int
    window: str
    webhook: str | None
    trigger_job: str | None
    enabled: bool
    state: str
    since: datetime | None
    value: float | None
    created_at: datetime
    created_by: str

    @property
    def condition(self) -> M.Condition:
        return M.parse(self.expr)

    def to_dict(self) -> dict[str, Any]:
        def iso(d: datetime | None) -> str | None:
            return d.isoformat() if d else None

        return {
            "id": self.id,
            "model": self.model,
            "expr": self.expr,
            "metric": self.metric,
            "op": self.op,
            "threshold": self.threshold,
            "min_n": self.min_n,
            "window": self.window,
            "webhook": self.webhook,
            "trigger_job": self.trigger_job,
            "enabled": self.enabled,
            "state": self.state,
            "since": iso(self.since),
            "value": self.value,
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
        }

    def _rows(self) -> list[list[Any]]:
        rows: list[list[Any]] = [
            ["alert", f"{self.id} on {self.model}: {self.expr}"],
            ["state", self.state + (f" since {_when(self.since)}" if self.since else "")],
            ["value", _fmt(self.value)],
            ["window", f"{self.window} (min n {self.min_n})"],
        ]
        if self.webhook:
            rows.append(["webhook", self.webhook])
        if self.trigger_job:
            rows.append(["on firing", f"run job {self.trigger_job}"])
        if not self.enabled:
            rows.append(["enabled", "no"])
        return rows

    def __str__(self) -> str:
        return fields_text(self._rows())

    def _repr_html_(self) -> str:
        return fields_html(self._rows(), "opx-alert")


class RuleList(list[Rule]):
    """Alert rules with their state, rendered as a table."""

    HEADERS = ("id", "model", "rule", "state", "since", "value", "min n", "window", "actions")

    def rows(self) -> list[list[Any]]:
        return [
            [
                r.id,
                r.model,
                r.expr,
                r.state if r.enabled else f"{r.state} (disabled)",
                _when(r.since) if r.since else "-",
                _fmt(r.value),
                r.min_n,
                r.window,
                _actions(r) or "-",
            ]
            for r in self
        ]

    def to_dict(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self]

    def __str__(self) -> str:
        if not self:
            return 'no alert rules yet — add one with: opx alert add MODEL "auc < 0.7"'
        return text_table(list(self.HEADERS), self.rows())

    def _repr_html_(self) -> str:
        return list_html(self.HEADERS, self.rows())


@dataclass
class Change:
    """A rule changing state: the event recorded and what was done about it."""

    event_id: int
    rule_id: int
    model: str
    expr: str
    previous: str
    state: str
    value: float | None
    n: int
    at: datetime
    notified: bool = False
    run_id: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "rule_id": self.rule_id,
            "model": self.model,
            "expr": self.expr,
            "previous": self.previous,
            "state": self.state,
            "value": self.value,
            "n": self.n,
            "at": self.at.isoformat(),
            "notified": self.notified,
            "run_id": self.run_id,
            "detail": self.detail,
        }

    def __str__(self) -> str:
        text = (
            f"alert {self.rule_id} on {self.model} ({self.expr}): {self.previous} -> "
            f"{self.state}, value {_fmt(self.value)} (n {self.n:,})"
        )
        hook = self.detail.get("webhook")
        if hook:
            text += f"; webhook {'sent' if self.notified else 'failed'} ({hook['result']})"
        trig = self.detail.get("trigger")
        if trig:
            text += (
                f"; started run {self.run_id} of {trig['job']}"
                if self.run_id is not None
                else f"; job {trig['job']} not started ({trig.get('error')})"
            )
        return text


class ChangeList(list[Change]):
    """The changes of one evaluation; ``errors`` maps a model to why it was not evaluated."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.errors: dict[str, str] = {}

    def to_dict(self) -> dict[str, Any]:
        return {"changes": [c.to_dict() for c in self], "errors": dict(self.errors)}

    def __str__(self) -> str:
        lines = [str(c) for c in self] or ["no alert changed state"]
        lines += [f"{model}: not evaluated: {why}" for model, why in self.errors.items()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return "<pre class='opx-alert-changes'>" + html.escape(str(self)) + "</pre>"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _when(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S}"


def _actions(rule: Rule) -> str:
    parts = []
    if rule.webhook:
        parts.append("webhook")
    if rule.trigger_job:
        parts.append(f"run {rule.trigger_job}")
    return ", ".join(parts)


def to_rule(row: Any) -> Rule:
    return Rule(
        id=row.id,
        model=row.model,
        expr=row.expr,
        metric=row.metric,
        op=row.op,
        threshold=float(row.threshold),
        min_n=int(row.min_n),
        window=row.window,
        webhook=row.webhook,
        trigger_job=row.trigger_job,
        enabled=bool(row.enabled),
        state=row.state,
        since=as_utc(row.since),
        value=None if row.value is None else float(row.value),
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        created_by=row.created_by,
    )
