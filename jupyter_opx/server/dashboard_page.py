"""The HTML of the business dashboard (``opx serve``'s ``/dashboard/{model}``).

Pure functions of a :class:`~jupyter_opx.monitoring.compute.Feedback`: the KPI
tiles, charts and tables come from :mod:`jupyter_opx.monitoring.panels` (the
same figures, in the same words, as ``opx report`` and the notebook
dashboard); this module adds the page around them, a plain-language line
under each tile, the campaign's cumulative effect per arm, a window selector
(the error pages are in :mod:`.dashboard`, which answers them without
importing pandas). Nothing is fetched from the network: styles are inline,
charts are inline SVG and the one script (``dashboard.js``, which follows the
change stream) is served by the same server from the package.

Imported by the dashboard's handlers on first use, not when ``opx serve``
starts (it imports pandas).
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote

import pandas as pd

from .._version import __version__
from ..monitoring.compute import Feedback
from ..monitoring.panels import (
    CSS,
    Tile,
    alerts_html,
    drift_table_html,
    feedback_charts,
    kpi_tiles,
    period,
    tile_html,
)

#: the windows the selector offers: (value, label)
WINDOWS = (("1h", "By hour"), ("1d", "By day"), ("1w", "By week"))
SCRIPT = "/dashboard/static/dashboard.js"

#: what each tile means, for a reader who is not a data scientist
TILE_HELP = {
    "predictions": "How many customers the model scored in this period.",
    "freshness": "Time since the newest prediction arrived: a long gap means the "
    "scoring job may have stopped.",
    "auc": "How well the model ranks customers who leave above those who stay: 0.5 is a "
    "coin toss, 1.0 is perfect. Measured on customers who were not contacted.",
    "drift": "Inputs that no longer look like the data the model learned from. "
    "Drifted inputs make predictions less reliable.",
    "uplift": "Change in the outcome rate of contacted customers compared with the "
    "control group. For churn, below zero means the campaign keeps customers.",
    "alerts": "Automatic checks on these figures that are raising an alarm now.",
}

DASHBOARD_CSS = """
body{margin:0;background:#f8fafc;color:#0f172a}
.opx-dashboard header{display:flex;flex-wrap:wrap;align-items:flex-end;
 justify-content:space-between;gap:8px 24px;border-bottom:1px solid rgba(127,127,127,.25);
 padding-bottom:10px}
.opx-dashboard h1{margin:18px 0 2px}
.opx-controls{display:flex;align-items:center;gap:14px;flex-wrap:wrap}
.opx-windows{display:inline-flex;border:1px solid rgba(127,127,127,.45);border-radius:6px;
 overflow:hidden}
.opx-windows a{padding:5px 12px;text-decoration:none;color:inherit;font-size:.9rem}
.opx-windows a+a{border-left:1px solid rgba(127,127,127,.45)}
.opx-windows a[aria-current="true"]{background:#2563eb;color:#fff}
.opx-live{font-size:.85rem;white-space:nowrap}
.opx-live::before{content:"";display:inline-block;width:9px;height:9px;border-radius:50%;
 background:#94a3b8;margin-right:6px;vertical-align:middle}
.opx-live[data-state="live"]::before{background:#16a34a;box-shadow:0 0 0 3px rgba(22,163,74,.2)}
.opx-live[data-state="error"]::before{background:#dc2626}
.opx-banner{display:none;margin:12px 0;padding:8px 12px;border-radius:6px;
 background:rgba(220,38,38,.12);border:1px solid rgba(220,38,38,.4)}
.opx-banner.opx-show{display:block}
.opx-dashboard .opx-tiles{display:grid;grid-template-columns:repeat(3,minmax(0,1fr))}
@media (max-width:820px){.opx-dashboard .opx-tiles{grid-template-columns:1fr}}
.opx-dashboard .opx-charts svg{width:100%;height:auto}
.opx-tile{background:#fff}
.opx-tile .opx-help{font-size:.78rem;opacity:.7;margin-top:6px}
.opx-charts figure{background:#fff}
section>h2 small{font-weight:400;opacity:.7;font-size:.85rem;margin-left:8px}
@media (prefers-color-scheme: dark){body{background:#0b1220;color:#e5e7eb}
 .opx-tile,.opx-charts figure{background:#111827}}
"""


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def base_path(model: str) -> str:
    """The dashboard's URL path for ``model`` (a ref with a version travels URL-encoded)."""
    return "/dashboard/" + quote(model, safe="@")


def _freshness_tile(fb: Feedback) -> Tile:
    from ..monitoring.panels import _ago

    seconds = fb.kpis().get("freshness_seconds")
    if fb.last_prediction is None:
        return Tile("freshness", "Last prediction", "none yet", "no predictions logged")
    when = pd.Timestamp(fb.last_prediction).strftime("%Y-%m-%d %H:%M UTC")
    tone = "ok" if seconds is not None and seconds < 2 * 86_400 else "warn"
    return Tile("freshness", "Last prediction", _ago(seconds), f"at {when}", tone)


def tiles_html(fb: Feedback) -> str:
    """The KPI tiles of :func:`~jupyter_opx.monitoring.panels.kpi_tiles` plus freshness,
    each with a plain-language explanation."""
    tiles = kpi_tiles(fb)
    tiles.insert(1, _freshness_tile(fb))
    out = []
    for tile in tiles:
        html = tile_html(tile)
        help_text = TILE_HELP.get(tile.key)
        if help_text:
            html = html[: -len("</div>")] + f'<div class="opx-help">{_e(help_text)}</div></div>'
        out.append(html)
    return '<div class="opx-tiles">' + "".join(out) + "</div>"


def _rate(value: Any) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{float(value) * 100:.1f}%"


def _pts(value: Any) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{float(value) * 100:+.1f}".replace("-", "−") + " pts"


def uplift_total_html(fb: Feedback) -> str:
    """The campaign's cumulative effect per arm: customers, outcome rate, uplift ± 95% CI
    and the customers kept."""
    total = fb.uplift_total
    if not len(total) or "arm" not in total:
        return (
            '<p class="opx-muted">No campaign results yet: they appear once customers who '
            "were contacted (or held back as control) have an outcome.</p>"
        )
    rows = []
    for _, r in total.iterrows():
        uplift = r.get("uplift")
        has_uplift = uplift is not None and not pd.isna(uplift)
        ci = f"{_pts(r.get('ci_low'))} to {_pts(r.get('ci_high'))}" if has_uplift else "–"
        kept = r.get("kept")
        kept_text = "–" if kept is None or pd.isna(kept) else f"{float(kept):,.0f}"
        p = r.get("p_value")
        p_text = "–" if p is None or pd.isna(p) else f"{float(p):.2g}"
        rows.append(
            f"<tr><td>{_e(r['arm'])}</td><td>{int(r.get('n') or 0):,}</td>"
            f"<td>{_rate(r.get('outcome_rate'))}</td><td>{_pts(uplift)}</td>"
            f"<td>{ci}</td><td>{p_text}</td><td>{kept_text}</td></tr>"
        )
    return (
        '<table class="opx-table" data-table="uplift-total"><caption class="opx-muted">'
        "Whole campaign so far, among the customers it targeted</caption><thead><tr>"
        "<th>Group</th><th>Customers with an outcome</th><th>Outcome rate</th>"
        "<th>Uplift vs control</th><th>95% interval</th><th>p-value</th>"
        "<th>Customers kept</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def render_content(fb: Feedback, seq: int | None = None) -> str:
    """The live part of the page (what a change replaces): meta line, tiles, sections."""
    svg = feedback_charts(fb)

    def figures(*keys: str) -> str:
        return (
            '<div class="opx-charts">'
            + "".join(f'<figure data-chart="{k}">{svg[k]}</figure>' for k in keys)
            + "</div>"
        )

    updated = pd.Timestamp(fb.computed_at).strftime("%Y-%m-%d %H:%M:%S UTC")
    seq_attr = "" if seq is None else f' data-seq="{int(seq)}"'
    return f"""<div id="opx-content"{seq_attr} data-window="{_e(fb.window)}">
<div class="opx-meta">Compared with model version <b>{_e(fb.reference or "none")}</b> ·
{_e(period(fb))} · figures of <span data-updated>{_e(updated)}</span></div>
<section aria-label="Key figures">{tiles_html(fb)}</section>
<section><h2>Activity and model accuracy
<small>customers scored, and AUC on customers not contacted</small></h2>
{figures("volume", "auc")}</section>
<section><h2>Does today's data still look like the training data?
<small>drift per input</small></h2>
{figures("psi_features", "psi_over_time")}
<h3>Drift per input, latest window</h3>{drift_table_html(fb)}</section>
<section><h2>Does the campaign work? <small>uplift per window and in total</small></h2>
{figures("uplift", "arms")}
<h3>Whole campaign</h3>{uplift_total_html(fb)}</section>
<section><h2>Alerts</h2>{alerts_html(fb)}</section>
</div>"""


def _selector(base: str, window: str) -> str:
    links = []
    for value, label in WINDOWS:
        current = "true" if value == window else "false"
        links.append(
            f'<a href="{_e(base)}?window={value}" data-window="{value}" '
            f'aria-current="{current}">{label}</a>'
        )
    return f'<nav class="opx-windows" aria-label="Window">{"".join(links)}</nav>'


def render_page(fb: Feedback, model: str, seq: int | None = None) -> str:
    """The whole dashboard page of ``model`` (its URL's model: a name or a ref)."""
    from ..monitoring.report import HOW_TO_READ

    base = base_path(model)
    notes = "".join(f"<li>{item}</li>" for item in HOW_TO_READ)
    title = f"{model}: model in production"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>{_e(title)}</title>
<style>{CSS}{DASHBOARD_CSS}</style>
<script src="{SCRIPT}" defer></script></head>
<body><main class="opx-report opx-dashboard" data-base="{_e(base)}"
 data-window="{_e(fb.window)}">
<header><div><h1>{_e(title)}</h1>
<div class="opx-meta">Production dashboard · read-only · updates by itself</div></div>
<div class="opx-controls">{_selector(base, fb.window)}
<span class="opx-live" id="opx-live" data-state="idle" role="status">Connecting…</span></div>
</header>
<div class="opx-banner" id="opx-banner" role="alert"></div>
{render_content(fb, seq)}
<section><h2>How to read this</h2><div class="opx-note"><ul>{notes}</ul></div></section>
<footer class="opx-meta"><p>jupyter_opx {_e(__version__)} · read-only view of the model's
production events; nothing on this page is fetched from the internet.</p></footer>
</main></body></html>
"""


__all__ = [
    "TILE_HELP",
    "WINDOWS",
    "base_path",
    "render_content",
    "render_page",
    "tiles_html",
    "uplift_total_html",
]
