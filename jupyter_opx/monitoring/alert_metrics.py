"""What an alert rule measures: the rule grammar and the metrics it may name.

A rule is ``METRIC OP NUMBER`` — ``"auc < 0.7"``, ``"drifted_share > 0.3"``,
``"psi:monthly_charges > 0.25"``, ``"freshness_hours > 26"`` — with OP one of
``<  <=  >  >=  ==  !=``. It is parsed by one regular expression and compared
with :mod:`operator`; nothing is ever evaluated as code. A feature name with
spaces or symbols is quoted: ``psi:"monthly charges" > 0.2``.

Every metric is read from the :class:`~.compute.Feedback` of the rule's window
(default ``"1d"``), together with *n*, the sample behind it; a rule with
``min_n`` only evaluates once *n* reaches it. See :data:`HELP` for the list.

Kept free of pandas at import time: the CLI reads :data:`HELP` when it builds
its parser.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..exceptions import ValidationError

if TYPE_CHECKING:
    from .compute import Feedback

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}

#: metrics of realized performance: the honest arm (``control`` when there are
#: treatments, else ``all``), latest window with labelled predictions
PERFORMANCE = (
    "auc",
    "accuracy",
    "precision",
    "recall",
    "brier",
    "log_loss",
    "mae",
    "rmse",
    "coverage",
    "n_labelled",
)
#: drift of the latest window with predictions
DRIFT = ("drifted_share", "drifted", "prediction_psi", "prediction_ks")
#: per-feature drift statistics, named ``KIND:FEATURE``
PER_FEATURE = ("psi", "ks", "js")
#: event counts of the latest window with predictions
VOLUME = ("predictions", "outcomes", "treatments")
#: campaign effect, cumulative over all treatments
CAMPAIGN = ("uplift", "uplift_ci_low", "uplift_ci_high", "kept")
FRESHNESS = "freshness_hours"
METRICS = (*PERFORMANCE, *DRIFT, *VOLUME, FRESHNESS, *CAMPAIGN)

HELP = """\
A rule is METRIC OP NUMBER, OP one of < <= > >= == !=, e.g. "auc < 0.7".
Metrics (from the latest window of --window that has data; n is the sample
that --min-n gates):
  performance, on the untreated (control) arm when there are treatments,
  latest window with labelled predictions (n = n_labelled):
    auc accuracy precision recall brier log_loss mae rmse coverage n_labelled
  drift, latest window with predictions (n = its predictions):
    drifted_share  drifted  prediction_psi  prediction_ks
    psi:FEATURE  ks:FEATURE (numeric)  js:FEATURE (categorical)
  volume, latest window with predictions (n = its predictions):
    predictions  outcomes  treatments
  freshness_hours: hours since the last prediction (also checked on the
    scheduler's timer, so a stopped scoring job alerts; n = all predictions)
  campaign, cumulative (n = treated entities with an outcome):
    uplift  uplift_ci_low  uplift_ci_high  kept
A rule fires when the comparison holds and resolves when it stops holding."""

_EXPR = re.compile(
    r"""^\s*
    (?P<metric>[A-Za-z][A-Za-z0-9_]*)
    (?::(?P<feature>"[^"]+"|'[^']+'|[^\s<>=!"']+))?
    \s*(?P<op><=|>=|==|!=|<|>)\s*
    (?P<number>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)
    \s*$""",
    re.VERBOSE,
)
_PLAIN_FEATURE = re.compile(r"^[^\s<>=!\"']+$")


@dataclass(frozen=True)
class Condition:
    """A parsed rule: ``metric`` (``psi:tenure`` for a feature), ``op``, ``threshold``.

    ``expr`` is the canonical text (``"psi:tenure > 0.25"``).
    """

    metric: str
    op: str
    threshold: float
    number: str

    @property
    def kind(self) -> str:
        """The metric without its feature (``psi`` for ``psi:tenure``)."""
        return self.metric.split(":", 1)[0]

    @property
    def feature(self) -> str | None:
        return self.metric.split(":", 1)[1] if ":" in self.metric else None

    @property
    def expr(self) -> str:
        return f"{metric_text(self.metric)} {self.op} {self.number}"

    def holds(self, value: float) -> bool:
        return OPS[self.op](value, self.threshold)


def metric_text(metric: str) -> str:
    """A metric as written in a rule (a feature with spaces or symbols quoted)."""
    kind, _, feature = metric.partition(":")
    if not feature or _PLAIN_FEATURE.match(feature):
        return metric
    quote = "'" if '"' in feature else '"'
    return f"{kind}:{quote}{feature}{quote}"


def metric_list() -> str:
    """The metric names for error messages."""
    per = ", ".join(f"{k}:<feature>" for k in PER_FEATURE)
    return f"{', '.join(METRICS)}; per feature: {per}"


def parse(expr: str) -> Condition:
    """Parse ``METRIC OP NUMBER`` (see the module docstring).

    Raises
    ------
    ValidationError
        The text does not follow the grammar, names an unknown metric, or
        the number is not finite.
    """
    if not isinstance(expr, str):
        raise ValidationError(f"an alert rule is a string such as 'auc < 0.7', got {expr!r}")
    match = _EXPR.match(expr)
    if match is None:
        raise ValidationError(
            f"alert rule {expr!r} not understood: write METRIC OP NUMBER, e.g. 'auc < 0.7' "
            "or 'psi:monthly_charges > 0.25', with OP one of < <= > >= == !=",
            metrics=[*METRICS, *(f"{k}:<feature>" for k in PER_FEATURE)],
        )
    kind = match["metric"].lower()
    feature = match["feature"]
    if feature and feature[0] in "\"'":
        feature = feature[1:-1]
    if kind in PER_FEATURE:
        if not feature:
            raise ValidationError(
                f"{kind} is measured per feature: write {kind}:<feature>, "
                f"e.g. '{kind}:tenure > 0.2'"
            )
        metric = f"{kind}:{feature}"
    elif kind in METRICS:
        if feature:
            raise ValidationError(f"{kind} takes no feature; remove ':{feature}'")
        metric = kind
    else:
        raise ValidationError(
            f"unknown metric {match['metric']!r} in alert rule {expr!r}; "
            f"the metrics are {metric_list()}",
            metrics=[*METRICS, *(f"{k}:<feature>" for k in PER_FEATURE)],
        )
    threshold = float(match["number"])
    if not math.isfinite(threshold):
        raise ValidationError(f"alert rule {expr!r}: the threshold must be a finite number")
    return Condition(metric, match["op"], threshold, match["number"])


def check_against(cond: Condition, summary: Mapping[str, Any] | None, ref: str) -> None:
    """Check that the snapshot ``ref`` can measure ``cond`` (its features, its scores).

    Raises
    ------
    ValidationError
        An unknown feature, a statistic that does not apply to the feature's
        kind, or prediction drift without a score summary.
    """
    features = dict((summary or {}).get("features") or {})
    if cond.feature is not None:
        ref_feature = features.get(cond.feature)
        testable = {n: _feature_kind(f) for n, f in features.items() if _feature_kind(f)}
        if ref_feature is None or cond.feature not in testable:
            known = ", ".join(sorted(testable)) or "none (the snapshot has no reference data)"
            raise ValidationError(
                f"{ref} has no feature {cond.feature!r} with a reference summary; "
                f"features: {known}",
                features=sorted(testable),
            )
        kind = testable[cond.feature]
        if cond.kind == "ks" and kind == "categorical":
            raise ValidationError(
                f"ks applies to numeric features and {cond.feature!r} is categorical: "
                f"use js:{metric_text(cond.feature)} or psi:{metric_text(cond.feature)}"
            )
        if cond.kind == "js" and kind == "numeric":
            raise ValidationError(
                f"js applies to categorical features and {cond.feature!r} is numeric: "
                f"use psi:{metric_text(cond.feature)} or ks:{metric_text(cond.feature)}"
            )
    if cond.metric in ("prediction_psi", "prediction_ks"):
        prediction = (summary or {}).get("prediction") or {}
        if prediction.get("kind") != "numeric" or "skipped" in prediction:
            raise ValidationError(
                f"{ref} has no summary of its model's scores on the reference data, so "
                f"{cond.metric} cannot be measured; snapshot the model with its training data"
            )


def _feature_kind(summary: Mapping[str, Any]) -> str | None:
    kind = summary.get("kind")
    if kind == "numeric":
        return "discrete" if summary.get("categories") else "numeric"
    return "categorical" if kind == "categorical" else None


# -- measuring -------------------------------------------------------------------------
@dataclass(frozen=True)
class Measure:
    """A metric's value (None when it cannot be computed yet), its sample size and
    the data window it comes from."""

    value: float | None
    n: int
    window: str | None = None


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def freshness(last_prediction: datetime | None, total: int, now: datetime) -> Measure:
    """Hours since the last prediction (None before the first one)."""
    if last_prediction is None:
        return Measure(None, total)
    return Measure((now - last_prediction).total_seconds() / 3600.0, total)


def measure(fb: Feedback, metric: str) -> Measure:
    """The value of ``metric`` (not freshness: see :func:`freshness`) in ``fb``."""
    kind, _, feature = metric.partition(":")
    if kind in PERFORMANCE:
        return _performance(fb, kind)
    if kind in CAMPAIGN:
        return _campaign(fb, kind)
    window, n = _latest_prediction_window(fb)
    if window is None:
        return Measure(None, 0)
    label = str(window)
    if kind in VOLUME:
        row = fb.volume[fb.volume["window"] == window]
        return Measure(_num(row[kind].iloc[0]) if len(row) else None, n, label)
    if kind in ("prediction_psi", "prediction_ks"):
        table = fb.prediction_drift
        stat = kind.split("_", 1)[1]
        rows = table[table["window"] == window] if len(table) else table
        return Measure(_num(rows[stat].iloc[0]) if len(rows) else None, n, label)
    table = fb.drift
    rows = table[table["window"] == window] if len(table) else table
    if kind in ("drifted_share", "drifted"):
        tested = rows[rows["p_value"].notna()] if len(rows) else rows
        if not len(tested):
            return Measure(None, n, label)
        drifted = int(tested["drifted"].astype(bool).sum())
        return Measure(drifted / len(tested) if kind == "drifted_share" else drifted, n, label)
    rows = rows[rows["feature"] == feature] if len(rows) else rows
    return Measure(_num(rows[kind].iloc[0]) if len(rows) else None, n, label)


def _latest_prediction_window(fb: Feedback) -> tuple[Any, int]:
    vol = fb.volume
    if not len(vol):
        return None, 0
    with_predictions = vol[vol["predictions"] > 0]
    if not len(with_predictions):
        return None, 0
    last = with_predictions.iloc[-1]
    return last["window"], int(last["predictions"])


def _performance(fb: Feedback, kind: str) -> Measure:
    perf = fb.performance
    if not len(perf) or kind not in perf:
        return Measure(None, 0)
    honest = perf[perf["arm"] == "control"] if (perf["arm"] == "control").any() else perf
    labelled = honest[honest["n_labelled"] > 0]
    if not len(labelled):
        return Measure(None, 0)
    row = labelled.iloc[-1]
    return Measure(_num(row[kind]), int(row["n_labelled"]), str(row["window"]))


def _campaign(fb: Feedback, kind: str) -> Measure:
    total = fb.uplift_total
    if not len(total) or "uplift" not in total:
        return Measure(None, 0)
    treated = total[total["uplift"].notna()]
    if not len(treated):
        return Measure(None, 0)
    row = treated.iloc[-1]
    column = {"uplift_ci_low": "ci_low", "uplift_ci_high": "ci_high"}.get(kind, kind)
    return Measure(_num(row[column]), int(row["n"]), f"cumulative ({row['arm']} vs control)")
