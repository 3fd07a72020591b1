"""The parts of the feedback views: KPI tiles, charts over time, drift and alert tables.

Each is a pure function of a :class:`~.compute.Feedback` returning HTML (or a
:class:`Tile`), shared by the offline report (:mod:`.report`) and the live
notebook dashboard (:mod:`jupyter_opx.widgets`), so both always show the same
figures in the same words. All text is HTML-escaped; class names start with
``opx-`` so the styles in :data:`CSS` cannot leak into a notebook page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Any

import pandas as pd

from . import charts
from .compute import Feedback
from .drift_table import drift_summary
from .windows import parse_window

CSS = """
.opx-report{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;
 line-height:1.45;max-width:1180px;margin:0 auto;padding:0 16px 32px}
.opx-report h1{font-size:1.6rem;margin:20px 0 4px}.opx-report h2{font-size:1.2rem;margin:28px 0 8px}
.opx-meta{opacity:.75;font-size:.9rem}
.opx-tiles{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.opx-tile{flex:1 1 190px;border:1px solid rgba(127,127,127,.35);border-left-width:5px;
 border-radius:6px;padding:10px 12px;min-width:170px}
.opx-tile .opx-label{font-size:.8rem;text-transform:uppercase;letter-spacing:.04em;opacity:.75}
.opx-tile .opx-value{font-size:1.7rem;font-weight:650;margin:2px 0}
.opx-tile .opx-detail{font-size:.82rem;opacity:.85}
.opx-tone-ok{border-left-color:#16a34a}.opx-tone-warn{border-left-color:#d97706}
.opx-tone-bad{border-left-color:#dc2626}.opx-tone-neutral{border-left-color:#64748b}
.opx-charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:16px}
.opx-charts figure{margin:0;border:1px solid rgba(127,127,127,.25);border-radius:6px;padding:6px}
.opx-table{border-collapse:collapse;font-size:.86rem;width:100%}
.opx-table th,.opx-table td{padding:4px 8px;border-bottom:1px solid rgba(127,127,127,.25);
 text-align:right}
.opx-table th:first-child,.opx-table td:first-child{text-align:left}
.opx-table th{font-weight:600}
.opx-level-1{color:#b45309;font-weight:600}.opx-level-2{color:#dc2626;font-weight:700}
.opx-firing td{background:rgba(220,38,38,.10)}
.opx-note{border-left:4px solid rgba(127,127,127,.5);padding:4px 14px;font-size:.92rem}
.opx-muted{opacity:.7}
"""


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _has(frame: pd.DataFrame, *columns: str) -> bool:
    return len(frame) > 0 and all(c in frame.columns for c in columns)


def _f(value: Any, digits: int = 3) -> str:
    v = _num(value)
    return "n/a" if v is None else f"{v:.{digits}f}"


def _pct(value: Any, digits: int = 0) -> str:
    v = _num(value)
    return "n/a" if v is None else f"{v * 100:.{digits}f}%"


def _pts(value: Any) -> str:
    """An uplift in percentage points, with a real minus sign."""
    v = _num(value)
    return "n/a" if v is None else f"{v * 100:+.1f}".replace("-", "−") + " pts"


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.1f} days ago"


def window_label(value: Any) -> str:
    """A window as a reader names it: ``Mar 07``, ``Mar 07 06:00`` or the chunk number."""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%b %d %H:%M" if (value.hour, value.minute) != (0, 0) else "%b %d")
    return str(value)


def _x_label(fb: Feedback) -> str:
    spec = parse_window(fb.window)
    if spec.kind == "count":
        return f"chunk of {spec.size:,} predictions"
    return "window start (UTC)"


def period(fb: Feedback) -> str:
    """The span the figures cover, e.g. ``2026-03-02 to 2026-03-10 UTC (8 windows of 1d)``."""
    windows = list(fb.volume["window"]) if _has(fb.volume, "window") else []
    if not windows:
        return "no events yet"
    spec = parse_window(fb.window)
    count = f"{len(windows)} window{'s' if len(windows) != 1 else ''} of {fb.window}"
    if spec.kind == "count":
        return f"{count} predictions"
    start, end = windows[0], windows[-1] + pd.Timedelta(spec.size, unit="ns")
    fmt = "%Y-%m-%d" if spec.size % 86_400_000_000_000 == 0 else "%Y-%m-%d %H:%M"
    return f"{start.strftime(fmt)} to {end.strftime(fmt)} UTC ({count})"


# -- KPI tiles ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Tile:
    """One headline figure: ``label``, big ``value``, a ``detail`` line, a ``tone``
    (``ok``, ``warn``, ``bad`` or ``neutral``) that colours its edge."""

    key: str
    label: str
    value: str
    detail: str
    tone: str = "neutral"


def kpi_tiles(fb: Feedback) -> list[Tile]:
    """The five headline tiles: predictions, AUC (untreated), drifted features,
    campaign uplift ± 95% CI, alerts firing."""
    k = fb.kpis()
    tiles = [
        Tile(
            "predictions",
            "Predictions",
            f"{k['predictions']:,}",
            f"{k['treatments']:,} in the campaign · {k['outcomes']:,} outcomes · "
            f"last prediction {_ago(k.get('freshness_seconds'))}",
        )
    ]
    if k.get("auc") is not None:
        row = _last_labelled(fb)
        counts = f" ({int(row['n_labelled']):,} of {int(row['predictions']):,})" if row else ""
        tiles.append(
            Tile(
                "auc",
                "AUC (untreated)",
                _f(k["auc"]),
                f"window {window_label(_window_of(fb, k['auc_window']))} · "
                f"label coverage {_pct(k.get('coverage'))}{counts}",
            )
        )
    else:
        tiles.append(Tile("auc", "AUC (untreated)", "n/a", "no outcomes joined to predictions yet"))
    if "drifted_features" in k:
        drifted = k["drifted_features"]
        latest = _latest_drift(fb)
        tested = int(latest["p_value"].notna().sum()) if len(latest) else 0
        names = ", ".join(drifted) if drifted else "none"
        tiles.append(
            Tile(
                "drift",
                "Drifted features",
                f"{len(drifted)} of {tested}",
                f"{names} · window {window_label(_window_of(fb, k['drift_window']))}",
                "warn" if drifted else "ok",
            )
        )
    else:
        tiles.append(Tile("drift", "Drifted features", "n/a", "no features logged to compare"))
    if k.get("uplift") is not None:
        lo, hi = k["uplift_ci"]
        tone = "neutral"
        if hi is not None and hi < 0:
            tone = "ok"
        elif lo is not None and lo > 0:
            tone = "bad"
        kept = _num(k.get("kept"))
        kept_text = f" · ≈{kept:,.0f} customers kept" if kept is not None else ""
        kept_text += _arm_counts(fb, str(k["uplift_arm"]))
        tiles.append(
            Tile(
                "uplift",
                f"Campaign uplift ({k['uplift_arm']} − control)",
                _pts(k["uplift"]),
                f"95% CI {_pts(lo)} to {_pts(hi)}{kept_text}",
                tone,
            )
        )
    else:
        tiles.append(Tile("uplift", "Campaign uplift", "n/a", "no treatments with outcomes yet"))
    rules = len(fb.alerts)
    firing = int(k.get("alerts_firing", 0))
    tiles.append(
        Tile(
            "alerts",
            "Alerts firing",
            str(firing),
            f"of {rules} rule{'s' if rules != 1 else ''}" if rules else "no alert rules",
            "bad" if firing else ("ok" if rules else "neutral"),
        )
    )
    return tiles


def _arm_counts(fb: Feedback, arm: str) -> str:
    """`` · 2,700 email vs 2,683 control``: the campaign's size behind its uplift."""
    total = fb.uplift_total
    if not _has(total, "arm", "n"):
        return ""
    n = dict(zip(total["arm"].astype(str), total["n"], strict=True))
    if arm not in n or "control" not in n:
        return ""
    return f" · {int(n[arm]):,} {arm} vs {int(n['control']):,} control"


def _window_of(fb: Feedback, text: str) -> Any:
    """The window label (a Timestamp for time windows) that ``kpis()`` gave as text."""
    if _has(fb.volume, "window"):
        for w in fb.volume["window"]:
            if str(w) == text:
                return w
    return text


def _last_labelled(fb: Feedback) -> dict[str, Any] | None:
    perf = fb.performance
    if not _has(perf, "arm", "n_labelled", "predictions"):
        return None
    arm = "control" if (perf["arm"] == "control").any() else perf["arm"].iloc[0]
    rows = perf[(perf["arm"] == arm) & (perf["n_labelled"] > 0)]
    return dict(rows.iloc[-1]) if len(rows) else None


def _latest_drift(fb: Feedback) -> pd.DataFrame:
    """The drift rows of the latest window with predictions, most shifted first."""
    drift = fb.drift
    if not _has(drift, "window", "feature", "n", "psi", "p_value", "drifted"):
        return pd.DataFrame(columns=["window", "feature", "n", "psi", "p_value", "drifted"])
    tested = drift[drift["n"] > 0]
    latest = tested[tested["window"] == tested["window"].max()] if len(tested) else tested
    return latest.sort_values("psi", ascending=False, na_position="last")


def tile_html(tile: Tile) -> str:
    return (
        f'<div class="opx-tile opx-tone-{_e(tile.tone)}" data-kpi="{_e(tile.key)}">'
        f'<div class="opx-label">{_e(tile.label)}</div>'
        f'<div class="opx-value">{_e(tile.value)}</div>'
        f'<div class="opx-detail">{_e(tile.detail)}</div></div>'
    )


# -- charts ------------------------------------------------------------------------------
def _by_arm(frame: pd.DataFrame, windows: list[Any], column: str) -> dict[str, list[Any]]:
    out = {}
    for arm, rows in frame.groupby("arm", sort=True):
        values = dict(zip(rows["window"], rows[column], strict=True))
        out[str(arm)] = [values.get(w) for w in windows]
    return out


def feedback_charts(fb: Feedback, *, width: int = 640) -> dict[str, str]:
    """The charts over time, as SVG strings: ``volume``, ``auc``, ``drift_share``,
    ``psi_features``, ``psi_over_time``, ``uplift``, ``arms``."""
    windows = list(fb.volume["window"]) if _has(fb.volume, "window") else []
    x_label = _x_label(fb)
    out: dict[str, str] = {}
    vol = fb.volume
    out["volume"] = charts.line_chart(
        windows,
        {c: list(vol[c]) for c in ("predictions", "treatments", "outcomes") if c in vol},
        title="Events per window",
        y_label="events",
        x_label=x_label,
        y_range=(0, None),
        width=width,
    )
    perf = fb.performance
    auc: dict[str, list[Any]] = {}
    if _has(perf, "arm", "auc"):
        arms = _by_arm(perf, windows, "auc")
        names = {"control": "untreated (control)", "all": "everyone"}
        auc = {names.get(arm, arm): arms[arm] for arm in ("control", "all") if arm in arms}
    out["auc"] = charts.line_chart(
        windows,
        auc or {"AUC": [None] * len(windows)},
        title="Model quality: AUC per window",
        y_label="AUC",
        x_label=x_label,
        guides=[(0.5, "0.5 = chance")],
        y_range=(0.5, 1.0),
        width=width,
    )
    drift = fb.drift
    share: list[Any] = [None] * len(windows)
    top: dict[str, list[Any]] = {}
    if _has(drift, "window", "feature", "psi", "p_value", "drifted"):
        summary = drift_summary(drift)
        shares = dict(zip(summary["window"], summary["drifted_share"], strict=True))
        share = [shares.get(w) for w in windows]
        for name in list(_latest_drift(fb)["feature"])[:4]:
            rows = drift[drift["feature"] == name]
            values = dict(zip(rows["window"], rows["psi"], strict=True))
            top[str(name)] = [values.get(w) for w in windows]
    pred = fb.prediction_drift
    if _has(pred, "window", "psi"):
        values = dict(zip(pred["window"], pred["psi"], strict=True))
        top["score (prediction)"] = [values.get(w) for w in windows]
    out["drift_share"] = charts.line_chart(
        windows,
        {"drifted share": share},
        title="Share of features drifted",
        y_label="features drifted",
        x_label=x_label,
        y_range=(0, 1),
        percent=True,
        width=width,
    )
    out["psi_over_time"] = charts.line_chart(
        windows,
        top or {"PSI": [None] * len(windows)},
        title="Drift over time: PSI of the most shifted features",
        y_label="PSI",
        x_label=x_label,
        guides=charts.PSI_GUIDES,
        y_range=(0, None),
        width=width,
    )
    latest = _latest_drift(fb)
    when = f", window {window_label(latest['window'].iloc[0])}" if len(latest) else ""
    out["psi_features"] = charts.bar_chart(
        list(latest["feature"]),
        list(latest["psi"]),
        title=f"Drift per feature (PSI{when})",
        x_label="PSI against the training data",
        width=width,
    )
    out.update(_uplift_charts(fb, windows, x_label, width))
    return out


def _uplift_charts(fb: Feedback, windows: list[Any], x_label: str, width: int) -> dict[str, str]:
    up = fb.uplift
    series: dict[str, list[Any]] = {}
    band = None
    rates: dict[str, list[Any]] = {}
    errors: dict[str, tuple[list[Any], list[Any]]] = {}
    groups: list[str] = []
    if _has(up, "window", "arm", "uplift", "ci_low", "ci_high", "outcome_rate"):
        treated = [a for a in up.loc[up["uplift"].notna(), "arm"].unique()]
        for i, arm in enumerate(treated):
            rows = up[up["arm"] == arm]
            by_w = rows.set_index("window")
            series[f"{arm} − control"] = [by_w["uplift"].get(w) for w in windows]
            if i == 0:
                band = (
                    [by_w["ci_low"].get(w) for w in windows],
                    [by_w["ci_high"].get(w) for w in windows],
                )
        # outcome rate per arm: the last 12 windows with outcomes, and the whole campaign
        active = [w for w in windows if (up.loc[up["window"] == w, "n"] > 0).any()][-12:]
        total = fb.uplift_total
        groups = [window_label(w) for w in active] + (["total"] if len(total) else [])
        for arm, rows in up.groupby("arm", sort=True):
            by_w = rows.set_index("window")
            trow = total[total["arm"] == arm] if len(total) else total
            extra = [trow.iloc[0] if len(trow) else None] if len(total) else []
            picks = [by_w.loc[w] if w in by_w.index else None for w in active] + extra
            rates[str(arm)] = [None if r is None else r["outcome_rate"] for r in picks]
            errors[str(arm)] = (
                [None if r is None else r["rate_low"] for r in picks],
                [None if r is None else r["rate_high"] for r in picks],
            )
    return {
        "uplift": charts.line_chart(
            windows,
            series or {"uplift": [None] * len(windows)},
            title="Campaign uplift per window, with 95% CI",
            y_label="uplift in outcome rate",
            x_label=x_label,
            band=band,
            guides=[(0.0, "0 = no effect")],
            percent=True,
            width=width,
        ),
        "arms": charts.grouped_bar_chart(
            groups,
            rates,
            title="Outcome rate per arm among the targeted, with 95% CI",
            y_label="outcome rate",
            x_label=x_label,
            errors=errors,
            percent=True,
            width=width,
        ),
    }


# -- tables ------------------------------------------------------------------------------
def _psi_cell(value: Any) -> str:
    v = _num(value)
    level = 0 if v is None else sum(v > g for g, _ in charts.PSI_GUIDES)
    cls = f' class="opx-level-{level}"' if level else ""
    return f"<td{cls}>{_f(v)}</td>"


def drift_table_html(fb: Feedback) -> str:
    """The latest window's drift per feature (and of the scores), most shifted first."""
    latest = _latest_drift(fb)
    if not len(latest):
        return '<p class="opx-muted">No feature drift measured yet: log predictions with '
        "their features (<code>features=df</code>).</p>"
    rows = latest.sort_values(["drifted", "psi"], ascending=[False, False], na_position="last")
    pred = fb.prediction_drift
    if _has(pred, "window", "n"):
        pred = pred[(pred["window"] == latest["window"].iloc[0]) & (pred["n"] > 0)]
        rows = pd.concat([rows, pred.assign(feature="score (prediction)")], ignore_index=True)
    head = (
        "<tr><th>Feature</th><th>Type</th><th>Rows</th><th>PSI</th><th>KS</th><th>JS</th>"
        "<th>p-value</th><th>Test</th><th>Drifted</th><th>Missing</th>"
        "<th>Out of range / unseen</th></tr>"
    )
    body = []
    for _, r in rows.iterrows():
        odd = _num(r.get("out_of_range_share"))
        unseen = _num(r.get("unseen_share"))
        p = _num(r.get("p_value"))
        body.append(
            f"<tr><td>{_e(r['feature'])}</td><td>{_e(r.get('kind', ''))}</td>"
            f"<td>{int(r['n']):,}</td>{_psi_cell(r.get('psi'))}<td>{_f(r.get('ks'))}</td>"
            f"<td>{_f(r.get('js'))}</td><td>{'n/a' if p is None else f'{p:.2g}'}</td>"
            f"<td>{_e(r.get('test', ''))}</td><td>{'yes' if bool(r['drifted']) else 'no'}</td>"
            f"<td>{_pct(r.get('missing_share'), 1)}</td>"
            f"<td>{_pct(odd if odd is not None else unseen, 1)}</td></tr>"
        )
    caption = f"Window {_e(window_label(latest['window'].iloc[0]))}, against the training data"
    return (
        f'<table class="opx-table"><caption class="opx-muted">{caption}</caption>'
        f"<thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"
    )


def alerts_html(fb: Feedback) -> str:
    """The model's alert rules and their states (firing first)."""
    alerts = fb.alerts
    if not len(alerts):
        return (
            '<p class="opx-muted">No alert rules. Add one with, e.g., '
            f"<code>opx alert add {_e(fb.model)} &quot;auc &lt; 0.7&quot; --min-n 500</code>.</p>"
        )
    alerts = alerts.assign(_f=(alerts["state"] != "firing")).sort_values(["_f", "id"])
    body = []
    for _, r in alerts.iterrows():
        firing = r.get("state") == "firing"
        since = r.get("since")
        since_text = (
            ""
            if since is None or pd.isna(since)
            else pd.Timestamp(since).strftime("%Y-%m-%d %H:%M")
        )
        value = _num(r.get("value"))
        row_class = ' class="opx-firing"' if firing else ""
        body.append(
            f"<tr{row_class}><td>{_e(r.get('expr', ''))}</td>"
            f"<td>{_e(r.get('state') or 'unknown')}</td><td>{_e(since_text)}</td>"
            f"<td>{'' if value is None else f'{value:.4g}'}</td>"
            f"<td>{_e(r.get('min_n') if r.get('min_n') is not None else '')}</td>"
            f"<td>{_e(r.get('window') or '')}</td></tr>"
        )
    return (
        '<table class="opx-table"><thead><tr><th>Rule</th><th>State</th><th>Since (UTC)</th>'
        "<th>Value</th><th>Min n</th><th>Window</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )
