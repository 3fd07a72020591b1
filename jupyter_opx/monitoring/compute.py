"""``opx.feedback(model)``: the production picture of a model, as tables.

Reads the model's events (see :mod:`.store`), the reference summary of the
snapshot it is measured against, and returns a :class:`Feedback` with
DataFrames per window: volume, realized performance (on the untreated arm and
on everyone), feature and prediction drift, campaign uplift, plus freshness
and alert states. Pure metric functions do the work (windows, drift_table,
performance, uplift); this module only assembles them.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from ..snapshots.catalog import get_snapshot, reference_summary
from ..snapshots.refs import parse_ref
from ..store.db import utcnow
from ..workspace import Workspace
from . import store
from .drift_table import drift_table, prediction_drift
from .ingest import FEATURE_PREFIX
from .performance import performance_table
from .uplift import uplift_table
from .windows import volume


@dataclass
class Feedback:
    """Production feedback of one model, per window (all times UTC).

    Attributes
    ----------
    volume : DataFrame
        ``window, predictions, treatments, outcomes``.
    performance : DataFrame
        ``window, arm, predictions, n_labelled, coverage, auc, accuracy,
        precision, recall, brier, log_loss …`` (``arm`` is ``control`` — the
        untreated, the honest figure — and ``all``).
    drift : DataFrame
        ``window, feature, psi, ks, p_value, drifted …`` against the snapshot's
        reference summaries; ``prediction_drift`` the same for the scores.
    uplift : DataFrame
        ``window, arm, n, outcome_rate, uplift, ci_low, ci_high, p_value …``
        (cumulative over the campaign in ``uplift_total``).
    alerts : DataFrame
        Rules on this model with their state.
    """

    model: str
    reference: str | None
    window: str
    volume: pd.DataFrame
    performance: pd.DataFrame
    drift: pd.DataFrame
    prediction_drift: pd.DataFrame
    uplift: pd.DataFrame
    uplift_total: pd.DataFrame
    alerts: pd.DataFrame
    last_prediction: datetime | None
    computed_at: datetime = field(default_factory=utcnow)

    @property
    def freshness(self) -> pd.Timedelta | None:
        """Time since the last prediction."""
        if self.last_prediction is None:
            return None
        return pd.Timestamp(self.computed_at) - pd.Timestamp(self.last_prediction)

    def kpis(self) -> dict[str, Any]:
        """Headline figures: the latest window's volume, AUC and drift, and the
        campaign's cumulative uplift with its 95% interval."""
        out: dict[str, Any] = {
            "model": self.model,
            "reference": self.reference,
            "predictions": int(self.volume["predictions"].sum()) if len(self.volume) else 0,
            "outcomes": int(self.volume["outcomes"].sum()) if len(self.volume) else 0,
            "treatments": int(self.volume["treatments"].sum()) if len(self.volume) else 0,
            "freshness_seconds": self.freshness.total_seconds()
            if self.freshness is not None
            else None,
        }
        perf = self.performance
        if len(perf) and "auc" in perf:
            honest = perf[perf["arm"] == "control"] if (perf["arm"] == "control").any() else perf
            labelled = honest[honest["n_labelled"] > 0]
            if len(labelled):
                last = labelled.iloc[-1]
                out.update(
                    auc=_num(last.get("auc")),
                    coverage=_num(last.get("coverage")),
                    auc_window=str(last["window"]),
                )
        tested = self.drift[self.drift["n"] > 0] if len(self.drift) else self.drift
        if len(tested):
            # the latest window that had predictions (outcomes may run later)
            last_w = tested["window"].iloc[-1] if "window" in tested else None
            latest = tested[tested["window"] == last_w] if last_w is not None else tested
            out.update(
                drifted_features=sorted(
                    latest.loc[latest["drifted"].astype(bool), "feature"].tolist()
                ),
                drift_window=str(last_w),
            )
        total = self.uplift_total
        if len(total):
            treated = total[total["uplift"].notna()]
            if len(treated):
                row = treated.iloc[-1]
                out.update(
                    uplift=_num(row["uplift"]),
                    uplift_ci=[_num(row["ci_low"]), _num(row["ci_high"])],
                    uplift_arm=str(row["arm"]),
                    kept=_num(row.get("kept")),
                )
        if len(self.alerts):
            out["alerts_firing"] = int((self.alerts["state"] == "firing").sum())
        return out

    def to_dict(self) -> dict[str, Any]:
        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return _jsonable(frame.to_dict(orient="records"))

        return {
            "model": self.model,
            "reference": self.reference,
            "window": self.window,
            "kpis": self.kpis(),
            "volume": records(self.volume),
            "performance": records(self.performance),
            "drift": records(self.drift),
            "prediction_drift": records(self.prediction_drift),
            "uplift": records(self.uplift),
            "uplift_total": records(self.uplift_total),
            "alerts": records(self.alerts),
        }

    def __str__(self) -> str:
        k = self.kpis()
        lines = [f"feedback of {self.model} (reference {self.reference}, windows of {self.window})"]
        lines.append(
            f"  events: {k['predictions']:,} predictions, {k['treatments']:,} treatments, "
            f"{k['outcomes']:,} outcomes"
        )
        if k.get("freshness_seconds") is not None:
            lines.append(f"  last prediction: {k['freshness_seconds'] / 3600:.1f} h ago")
        if "auc" in k:
            lines.append(
                f"  AUC (untreated, window {k['auc_window']}): {_fmt(k['auc'])}, "
                f"label coverage {_fmt(k['coverage'])}"
            )
        if "drifted_features" in k:
            drifted = ", ".join(k["drifted_features"]) or "none"
            lines.append(f"  drifted features (window {k['drift_window']}): {drifted}")
        if "uplift" in k:
            lo, hi = k["uplift_ci"]
            lines.append(
                f"  uplift {k['uplift_arm']} vs control: {_fmt(k['uplift'])} "
                f"(95% CI {_fmt(lo)} to {_fmt(hi)}), kept {_fmt(k['kept'])}"
            )
        if "alerts_firing" in k:
            lines.append(f"  alerts firing: {k['alerts_firing']}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return "<pre class='opx-feedback'>" + html.escape(str(self)) + "</pre>"


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        clean = {}
        for k, v in row.items():
            if isinstance(v, pd.Timestamp):
                clean[k] = v.isoformat()
            elif isinstance(v, float) and not math.isfinite(v):
                clean[k] = None
            elif hasattr(v, "item"):
                item = v.item()
                clean[k] = None if isinstance(item, float) and not math.isfinite(item) else item
            else:
                clean[k] = v
        out.append(clean)
    return out


def model_name(ref: str) -> str:
    """The snapshot name of a reference (``churn@production`` → ``churn``)."""
    return parse_ref(ref).name


def compute(
    ws: Workspace,
    model: str,
    window: str | int = "1d",
    *,
    horizon: str = "30D",
    threshold: float = 0.5,
    control_arm: str = "control",
    missing_outcome: float | None = None,
) -> Feedback:
    """Build the :class:`Feedback` of ``model`` (a name or a ref; see module docstring).

    Drift is measured against the snapshot ``model`` resolves to (the latest
    version for a bare name); performance, uplift and volume cover all the
    model's events.
    """
    snap = get_snapshot(ws, model)
    name = snap.name
    preds = store.read(ws, name, "predictions")
    treats = store.read(ws, name, "treatments")
    outs = store.read(ws, name, "outcomes")
    vol = volume(window, predictions=preds["ts"], treatments=treats["ts"], outcomes=outs["ts"])
    labels = vol["window"] if len(vol) else None
    empty = pd.DataFrame()
    perf = empty
    if len(preds) and len(outs):
        perf = performance_table(
            preds,
            outs,
            treats if len(treats) else None,
            window=window,
            windows=labels,
            horizon=horizon,
            threshold=threshold,
            control_arm=control_arm,
        )
    summary = reference_summary(ws, snap)
    drift = pred_drift = empty
    if summary is not None and len(preds):
        feats = preds[[c for c in preds.columns if c.startswith(FEATURE_PREFIX)]]
        feats = feats.rename(columns=lambda c: c[len(FEATURE_PREFIX) :])
        if feats.shape[1]:
            drift = drift_table(feats, summary, ts=preds["ts"], window=window, windows=labels)
        prediction = summary.get("prediction") or {}
        if "score" in preds and prediction and "skipped" not in prediction:
            pred_drift = prediction_drift(
                preds["score"], summary, ts=preds["ts"], window=window, windows=labels
            )
    up = up_total = empty
    # uplift compares rates of a 0/1 outcome; a regressor's campaign has none
    # (and uplift_table would reject its outcomes, failing the whole picture)
    binary = len(outs) > 0 and bool(outs["value"].isin((0.0, 1.0)).all())
    if len(treats) and binary:
        up = uplift_table(
            treats,
            outs,
            window=window,
            windows=labels,
            horizon=horizon,
            control_arm=control_arm,
            missing_outcome=missing_outcome,
        )
        up_total = uplift_table(
            treats,
            outs,
            window=window,
            cumulative=True,
            horizon=horizon,
            control_arm=control_arm,
            missing_outcome=missing_outcome,
        )
        if len(up_total):
            up_total = up_total[up_total["window"] == up_total["window"].iloc[-1]].reset_index(
                drop=True
            )
    alerts = _alerts(ws, name)
    last = preds["ts"].max().to_pydatetime() if len(preds) else None
    return Feedback(
        model=name,
        reference=snap.ref,
        window=str(window),
        volume=vol,
        performance=perf,
        drift=drift,
        prediction_drift=pred_drift,
        uplift=up,
        uplift_total=up_total,
        alerts=alerts,
        last_prediction=last,
    )


def _alerts(ws: Workspace, model: str) -> pd.DataFrame:
    from sqlalchemy import select

    from ..store import schema

    A = schema.alert_rules
    with ws.db.transaction() as conn:
        rows = conn.execute(
            select(A.c.id, A.c.expr, A.c.min_n, A.c.window, A.c.state, A.c.since, A.c.value)
            .where(A.c.model == model)
            .order_by(A.c.id)
        ).all()
    return pd.DataFrame(
        [dict(r._mapping) for r in rows],
        columns=["id", "expr", "min_n", "window", "state", "since", "value"],
    )
