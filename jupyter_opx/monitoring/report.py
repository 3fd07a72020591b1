"""The feedback report: one self-contained HTML page a business owner can read.

``write_report(ws, "churn", "report.html")`` renders the :class:`Feedback` of a
model as a page with its styles and charts inline (SVG from :mod:`.charts`):
no script, no stylesheet link, no font or image fetched, so it opens offline
and can be mailed. Its parts (KPI tiles, charts, drift table, alerts) come
from :mod:`.panels`, which the notebook dashboard uses too.
"""

from __future__ import annotations

import os
from datetime import datetime
from html import escape
from pathlib import Path

from .._version import __version__
from ..exceptions import StoreError
from ..store.db import utcnow
from ..workspace import Workspace
from .compute import Feedback, compute
from .panels import (
    CSS,
    alerts_html,
    drift_table_html,
    feedback_charts,
    kpi_tiles,
    period,
    tile_html,
)

HOW_TO_READ = [
    "<b>Predictions</b>: how many customers the model scored. Outcomes (did the customer "
    "churn?) arrive later and are joined to the latest earlier prediction of the same "
    "customer; <i>label coverage</i> is the share of predictions that already have one.",
    "<b>AUC</b> measures how well the scores rank customers who churn above those who stay: "
    "0.5 is chance, 1.0 is perfect. It is measured on the <i>untreated</i> (control) "
    "customers, because an email sent to a predicted churner changes the outcome.",
    "<b>Drift (PSI)</b> compares this period's data with the data the model was trained on: "
    "below 0.1 stable, 0.1 to 0.25 moderate, above 0.25 large. A feature counts as "
    "<i>drifted</i> when the shift is both large enough and statistically clear "
    "(corrected for testing many features at once).",
    "<b>Uplift</b> is the outcome rate of emailed customers minus that of the control "
    "group, among customers targeted by the campaign. For churn, <b>negative uplift means "
    "fewer churners with the email</b>: the campaign works. If the 95% interval includes "
    "0, the effect is not yet distinguishable from chance. <i>Customers kept</i> is the "
    "uplift times the number of emailed customers.",
]


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def render_report(fb: Feedback, *, generated_at: datetime | None = None) -> str:
    """The whole report page of a :class:`Feedback` (a pure function of it)."""
    when = (generated_at or utcnow()).strftime("%Y-%m-%d %H:%M UTC")
    svg = feedback_charts(fb)

    def figures(*keys: str) -> str:
        return (
            '<div class="opx-charts">'
            + "".join(f"<figure>{svg[k]}</figure>" for k in keys)
            + "</div>"
        )

    notes = "".join(f"<li>{item}</li>" for item in HOW_TO_READ)
    title = f"Production feedback: {fb.model}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{CSS}
@media (prefers-color-scheme: dark){{body{{background:#111827;color:#e5e7eb}}}}
body{{margin:0}}</style></head>
<body><main class="opx-report">
<header><h1>{_e(title)}</h1>
<div class="opx-meta">Reference snapshot <b>{_e(fb.reference or "none")}</b> ·
period {_e(period(fb))} · generated {_e(when)}</div></header>
<section aria-label="Key figures"><div class="opx-tiles">
{"".join(tile_html(t) for t in kpi_tiles(fb))}</div></section>
<section><h2>Volume</h2>{figures("volume")}</section>
<section><h2>Model quality</h2>{figures("auc")}</section>
<section><h2>Data drift</h2>{figures("psi_features", "psi_over_time", "drift_share")}
<h3>Drift per feature</h3>{drift_table_html(fb)}</section>
<section><h2>Campaign effect</h2>{figures("uplift", "arms")}</section>
<section><h2>Alerts</h2>{alerts_html(fb)}</section>
<section><h2>How to read this</h2><div class="opx-note"><ul>{notes}</ul></div></section>
<footer class="opx-meta"><p>Made by jupyter_opx {_e(__version__)} from the model's
production events. This page is self-contained: it opens offline.</p></footer>
</main></body></html>
"""


def write_report(
    ws: Workspace, model: str, path: str | os.PathLike[str], window: str | int = "1d"
) -> Path:
    """Write the feedback report of ``model`` to ``path`` (one self-contained HTML file).

    Parameters
    ----------
    ws : Workspace
        The store.
    model : str
        A name or reference (``churn``, ``churn@production``); drift is measured
        against the snapshot it resolves to.
    path : path
        Where to write; the file is replaced atomically.
    window : str or int
        ``"1h"``, ``"1d"``, ``"1w"`` or a number of predictions per window.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    NotFoundError
        Unknown model.
    ValidationError
        Bad window.
    StoreError
        The file cannot be written.
    """
    page = render_report(compute(ws, model, window))
    target = Path(path).expanduser()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target
