"""``opx.feedback(model)``: the production picture of a model, as tables.

Reads the model's events (see :mod:`.store`), the reference summary of the
snapshot it is measured against, and returns a :class:`Feedback` with
DataFrames per window: volume, realized performance (on the untreated arm and
on everyone), feature and prediction drift, campaign uplift, plus freshness
and alert states. Pure metric functions do the work (windows, drift_table,
performance, uplift); this module only assembles them. A live view calls it
after every batch: for time windows it starts from what the previous call
left (:mod:`.incremental`) and folds in only the rows stored since, with the
same results as a computation from scratch.
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
from . import incremental, store
from .drift import EPS
from .drift_table import drift_table, prediction_drift
from .ingest import FEATURE_PREFIX, KINDS
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


def _serving_ref(ws: Workspace, model: str) -> str:
    """``model`` when it names a version or an alias; for a bare name, ``name/N`` of
    the version that logged the newest predictions (``model_version``), if any."""
    r = parse_ref(model)
    if r.version is not None or r.alias is not None or not ws.exists:
        return model
    preds = store.read(ws, r.name, "predictions")  # cached: the tables read it anyway
    if not len(preds) or "model_version" not in preds:
        return model
    last = preds["model_version"].last_valid_index()  # rows are in time order
    if last is None:
        return model
    return f"{r.name}/{int(preds.at[last, 'model_version'])}"


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

    Drift is measured against the snapshot ``model`` resolves to; for a bare
    name, against the version that made the newest predictions (the one
    serving: a challenger snapshotted since, not yet serving, is not the
    reference), else the latest version. Performance, uplift and volume cover
    all the model's events. Called again for the same model and time window, it
    starts from what the previous call left (:mod:`.incremental`): only the
    rows stored since are read and folded in, with the same results as a
    computation from scratch.
    """
    snap = get_snapshot(ws, _serving_ref(ws, model))
    name = snap.name
    options = (horizon, threshold, control_arm, missing_outcome)
    live = incremental.time_window(window)
    ref_key = snap.reference_key
    digest = snap.data[ref_key].summary_digest if ref_key and ref_key in snap.data else None
    key = (str(ws.root), name, snap.ref, digest, str(window), *map(repr, options))
    st = incremental.state_for(key) if live else incremental.State()
    with st.lock:
        try:
            tables = _tables(ws, snap, name, window, options, st, live)
        except BaseException:
            incremental.drop(key)  # a half-updated state must not be reused
            raise
    return Feedback(
        model=name,
        reference=snap.ref,
        window=str(window),
        alerts=_alerts(ws, name),
        **tables,
    )


def _tables(
    ws: Workspace,
    snap: Any,
    name: str,
    window: str | int,
    options: tuple[str, float, str, float | None],
    st: incremental.State,
    live: bool,
) -> dict[str, Any]:
    """The tables of a :class:`Feedback`, updated from ``st`` where it allows."""
    horizon, threshold, control_arm, missing_outcome = options
    reads = {k: store.read_delta(ws, name, k, st.since.get(k)) for k in KINDS}
    preds, treats, outs = (reads[k][0] for k in KINDS)
    dpred = reads["predictions"][2]
    known = bool(st.tables) and live and tuple(preds.columns) == st.columns
    unchanged = {k: known and _empty_delta(reads[k][2]) for k in KINDS}
    st.since = {k: reads[k][1] for k in KINDS}
    st.columns = tuple(preds.columns)
    if all(unchanged.values()):
        return _copies(st.tables)
    if not unchanged["outcomes"]:
        st.outcome_ids = None
    preds_only = known and dpred is not None and unchanged["treatments"] and unchanged["outcomes"]
    vol = None
    if preds_only:
        assert dpred is not None
        vol = incremental.volume_update(st.tables["volume"], dpred, window)
    if vol is None:
        vol = volume(window, predictions=preds["ts"], treatments=treats["ts"], outcomes=outs["ts"])
    labels = vol["window"] if len(vol) else None
    same_labels = (
        known
        and labels is not None
        and st.labels is not None
        and pd.Index(labels).equals(pd.Index(st.labels))
    )
    empty = pd.DataFrame()
    perf: pd.DataFrame | None = empty
    if len(preds) and len(outs):
        perf = None
        if preds_only and labels is not None:
            assert dpred is not None
            perf = incremental.predictions_only_update(
                st,
                st.tables["performance"],
                dpred,
                outs,
                treats,
                pd.Index(labels),
                window,
                horizon,
                control_arm,
            )
        if perf is None:
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
    summary = None
    if len(preds):
        summary = st.summary if known and st.summary is not None else reference_summary(ws, snap)
        st.summary = summary
    drift = pred_drift = empty
    if summary is not None and len(preds):
        width = sum(c.startswith(FEATURE_PREFIX) for c in preds.columns) + 1
        if live and incremental.fits(len(preds), width) and labels is not None:
            if preds_only and st.drift is not None and dpred is not None:
                st.drift.add(dpred, window)
            else:
                st.drift = incremental.new_drift(preds, summary, window, EPS)
            assert st.drift is not None
            drift, pred_drift = st.drift.tables(pd.Index(labels))
            if not st.drift.features:
                drift = empty
        else:
            st.drift = None
            drift, pred_drift = _drift_cold(preds, summary, window, labels)
    up = up_total = empty
    if same_labels and unchanged["treatments"] and unchanged["outcomes"]:
        up, up_total = st.tables["uplift"], st.tables["uplift_total"]
    else:
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
                last_w = up_total["window"].iloc[-1]
                up_total = up_total[up_total["window"] == last_w].reset_index(drop=True)
    tables = {
        "volume": vol,
        "performance": perf,
        "drift": drift,
        "prediction_drift": pred_drift,
        "uplift": up,
        "uplift_total": up_total,
        "last_prediction": preds["ts"].max().to_pydatetime() if len(preds) else None,
    }
    st.labels = labels
    st.tables = dict(tables) if live else {}
    # callers own what they get: the state keeps its tables unchanged
    return _copies(tables) if live else tables


def _copies(tables: dict[str, Any]) -> dict[str, Any]:
    return {k: v.copy() if isinstance(v, pd.DataFrame) else v for k, v in tables.items()}


def _empty_delta(delta: pd.DataFrame | None) -> bool:
    return delta is not None and len(delta) == 0


def _drift_cold(
    preds: pd.DataFrame, summary: dict[str, Any], window: str | int, labels: Any
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature and prediction drift from every prediction (count windows, huge models)."""
    drift = pred_drift = pd.DataFrame()
    feats = preds[[c for c in preds.columns if c.startswith(FEATURE_PREFIX)]]
    feats = feats.rename(columns=lambda c: c[len(FEATURE_PREFIX) :])
    if feats.shape[1]:
        drift = drift_table(feats, summary, ts=preds["ts"], window=window, windows=labels)
    prediction = summary.get("prediction") or {}
    if "score" in preds and prediction and "skipped" not in prediction:
        pred_drift = prediction_drift(
            preds["score"], summary, ts=preds["ts"], window=window, windows=labels
        )
    return drift, pred_drift


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
