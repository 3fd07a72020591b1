"""SVG charts, the self-contained feedback report, and `opx report` / `opx feedback`."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jupyter_opx as opx
from jupyter_opx.cli import main
from jupyter_opx.demo import FEATURES, churn_customers, train_model
from jupyter_opx.monitoring import charts
from jupyter_opx.monitoring.panels import kpi_tiles
from jupyter_opx.monitoring.report import render_report, write_report
from jupyter_opx.workspace import STORE_DIRNAME, Workspace

T0 = pd.Timestamp("2026-03-02T00:00:00Z")  # a Monday
DAYS = pd.date_range(T0, periods=6, freq="D")
NAN = float("nan")


def svg_tree(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == "svg" and root.get("role") == "img"
    assert root.find("title") is not None and root.find("desc") is not None
    return root


def count(root: ET.Element, tag: str, cls: str) -> int:
    return len(root.findall(f".//{tag}[@class='{cls}']"))


# --- charts: pure functions ----------------------------------------------------------


def test_line_chart_points_gaps_band_and_guides() -> None:
    values = [0.70, 0.72, NAN, 0.75, None, 0.74]
    svg = charts.line_chart(
        DAYS,
        {"untreated": values, "everyone": [0.7] * 6},
        title="AUC <per> window & arm",
        y_label="AUC",
        band=([0.6, 0.6, 0.6, NAN, NAN, 0.6], [0.8] * 6),
        guides=[(0.5, "0.5 = chance")],
        y_range=(0.5, 1.0),
    )
    root = svg_tree(svg)
    assert root.find("title").text == "AUC <per> window & arm"  # escaped, parsed back
    assert count(root, "circle", "pt") == 4 + 6  # missing values draw no point …
    # … and break the line: [0, 1], [3] (a lone point), [5] for the first series
    polylines = root.findall(".//polyline")
    assert len(polylines) == 2  # the first series' [0, 1] run and the whole second series
    assert count(root, "polygon", "band") == 1 and count(root, "line", "band") == 1
    assert count(root, "line", "guide") == 1
    texts = [t.text for t in root.iter("text")]
    assert "Mar 02" in texts and "Mar 07" in texts  # date ticks, the last window labelled
    assert "AUC" in texts and "window (UTC)" in texts  # axis labels
    assert "0.5" in texts and "1.0" in texts
    desc = root.find("desc").text
    assert "6 windows from Mar 02 to Mar 07" in desc and "untreated: latest 0.74" in desc
    assert "http" not in svg and "<script" not in svg


def test_line_chart_hours_years_counts_and_empty() -> None:
    hours = pd.date_range("2026-12-31T22:00Z", periods=4, freq="h")
    labels = charts.format_labels(list(hours))
    assert labels[0] == "2026 Dec 31 22:00" and labels[-1] == "2027 Jan 01 01:00"
    assert charts.format_labels([0, 1, 2]) == ["0", "1", "2"]
    root = svg_tree(charts.line_chart([], {"x": []}, title="empty", y_label="n"))
    assert "no data yet" in [t.text for t in root.iter("text")]
    assert count(root, "circle", "pt") == 0
    root = svg_tree(charts.line_chart(range(3), {"x": [NAN] * 3}, title="t", y_label="n"))
    assert "no data yet" in [t.text for t in root.iter("text")]
    many = pd.date_range(T0, periods=200, freq="h")
    root = svg_tree(charts.line_chart(many, {"x": np.arange(200.0)}, title="t", y_label="n"))
    assert count(root, "circle", "pt") == 200
    ticks = [t for t in root.iter("text") if t.get("y") == str(250 - 44 + 16)]
    assert 2 <= len(ticks) <= 8  # readable: a few labels, not 200
    with pytest.raises(ValueError, match="3 values for 2 windows"):
        charts.line_chart([1, 2], {"x": [1, 2, 3]}, title="t", y_label="n")


def test_bar_chart_psi_levels_and_missing() -> None:
    svg = charts.bar_chart(
        ["tenure", "monthly_charges", "contract", "region"],
        [0.02, 0.31, 0.15, NAN],
        title="PSI per feature",
        x_label="PSI",
    )
    root = svg_tree(svg)
    bars = root.findall(".//rect[@class='bar']")
    assert len(bars) == 3
    assert [b.get("fill") for b in bars] == ["#16a34a", "#dc2626", "#d97706"]
    assert count(root, "line", "guide") == 2  # 0.1 and 0.25
    texts = [t.text for t in root.iter("text")]
    assert "n/a" in texts and "0.310" in texts and "0.1 moderate" in texts
    assert "monthly_charges 0.31" in root.find("desc").text


def test_grouped_bars_with_error_bars() -> None:
    svg = charts.grouped_bar_chart(
        [*DAYS[:3], "total"],
        {"control": [0.4, 0.5, None, 0.45], "email": [0.3, 0.35, 0.3, 0.32]},
        errors={
            "control": ([0.3, 0.4, None, 0.4], [0.5, 0.6, None, 0.5]),
            "email": ([0.2, 0.25, NAN, 0.3], [0.4, 0.45, NAN, 0.35]),
        },
        title="Outcome rate per arm",
        y_label="outcome rate",
        percent=True,
    )
    root = svg_tree(svg)
    assert count(root, "rect", "bar") == 7
    assert count(root, "path", "err") == 6
    texts = [t.text for t in root.iter("text")]
    assert "0%" in texts and "control" in texts and "email" in texts
    assert texts.count("total") == 1  # mixed labels are kept as given


def test_ticks_and_number_format() -> None:
    assert charts.nice_ticks(0.5, 1.0) == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert charts.nice_ticks(0, 300) == [0, 100, 200, 300]
    assert charts.nice_ticks(3, 3)[0] < 3 < charts.nice_ticks(3, 3)[-1]
    assert charts.format_number(0.25, 0.25) == "0.25"
    assert charts.format_number(1200) == "1,200"
    assert charts.format_number(25_000) == "25k"
    assert charts.format_number(-0.135, 0.05, percent=True) == "−14%"
    assert charts.format_number(-0.00001, 0.1) == "0.0"


# --- the report --------------------------------------------------------------------


def log_days(ws: Workspace, model, days: range, n: int = 150) -> int:
    """Predictions with features, a 50/50 email/control campaign on the riskier
    half, and outcomes a day later (the email prevents a third of churners)."""
    rng = np.random.default_rng(days.start)
    for d in days:
        cur = churn_customers(n, seed=100 + d, price_change=0.06 * d)
        ids = [f"d{d}-{i}" for i in range(n)]
        scores = model.predict_proba(cur[FEATURES])[:, 1]
        ts = T0 + pd.Timedelta(days=d, hours=6)
        opx.log_predictions("churn", ids, scores, features=cur[FEATURES], ts=ts, workspace=ws)
        targeted = np.flatnonzero(scores > np.median(scores))
        arm = np.where(np.arange(len(targeted)) % 2 == 0, "email", "control")
        opx.log_treatments("churn", [ids[i] for i in targeted], arm, ts=ts, workspace=ws)
        churned = cur["churned"].to_numpy().copy()
        emailed = targeted[arm == "email"]
        churned[emailed] &= (rng.random(len(emailed)) > 0.33).astype(churned.dtype)
        opx.log_outcomes("churn", ids, churned, ts=ts + pd.Timedelta(days=1), workspace=ws)
    return n * len(days)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose store holds churn/1 and four days of production events."""
    root = tmp_path_factory.mktemp("report")
    ws = Workspace(root / STORE_DIRNAME)
    train = churn_customers(2000, seed=7)
    model = train_model(train, max_iter=10)
    opx.snapshot("churn", model=model, data={"train": train}, workspace=ws)
    log_days(ws, model, range(4))
    ws.close()
    return root


@pytest.fixture
def ws(project: Path) -> Workspace:
    return Workspace(project / STORE_DIRNAME)


def test_report_is_self_contained_and_readable(ws: Workspace, tmp_path: Path) -> None:
    path = write_report(ws, "churn", tmp_path / "report.html")
    page = path.read_text(encoding="utf-8")
    for external in ("http://", "https://", "<script", "<link", "src=", "url(", "@import"):
        assert external not in page, external
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    fb = opx.feedback("churn", workspace=ws)
    k = fb.kpis()
    assert k["predictions"] == 600
    assert 'data-kpi="predictions"' in page and ">600<" in page
    assert f">{k['auc']:.3f}<" in page and "label coverage" in page
    assert "Drifted features" in page and "Campaign uplift (email − control)" in page
    assert "95% CI" in page and "customers kept" in page
    assert "churn/1" in page and "2026-03-02 to" in page and "generated" in page
    assert "below 0.1 stable" in page and "negative uplift means" in page
    svgs = re.findall(r"<svg .*?</svg>", page, flags=re.S)
    assert len(svgs) == 7
    for svg in svgs:
        svg_tree(svg)
    drift_rows = re.findall(r"<tr><td>([^<]+)</td><td>(numeric|categorical|discrete)", page)
    assert {name for name, _ in drift_rows} == {*FEATURES, "score (prediction)"}
    assert "No alert rules" in page


def test_report_tiles_match_the_feedback(ws: Workspace) -> None:
    fb = opx.feedback("churn", workspace=ws)
    k = fb.kpis()
    tiles = {t.key: t for t in kpi_tiles(fb)}
    assert list(tiles) == ["predictions", "auc", "drift", "uplift", "alerts"]
    assert tiles["predictions"].value == "600"
    assert tiles["auc"].value == f"{k['auc']:.3f}"
    assert tiles["drift"].value.endswith(f"of {len(FEATURES)}")
    lo, hi = k["uplift_ci"]
    assert lo < k["uplift"] < hi
    assert tiles["uplift"].value == f"{k['uplift'] * 100:+.1f}".replace("-", "−") + " pts"
    assert tiles["uplift"].tone == ("ok" if hi < 0 else "neutral" if lo <= 0 else "bad")
    assert tiles["alerts"].value == "0"


def test_report_escapes_every_text(ws: Workspace) -> None:
    fb = opx.feedback("churn", workspace=ws)
    odd = dataclasses.replace(
        fb,
        model='<blink>"x"&y',
        reference="<marquee>ref</marquee>",
        alerts=pd.DataFrame(
            [
                {
                    "id": 1,
                    "expr": "auc < 0.7 & <script>",
                    "min_n": 500,
                    "window": "1d",
                    "state": "firing",
                    "since": T0,
                    "value": 0.61,
                }
            ]
        ),
    )
    page = render_report(odd)
    assert "<blink" not in page and "<marquee" not in page and "<script" not in page
    assert "&lt;blink&gt;&quot;x&quot;&amp;y" in page and "&lt;marquee&gt;ref" in page
    assert "auc &lt; 0.7 &amp; &lt;script&gt;" in page and "opx-firing" in page
    assert {t.key: t for t in kpi_tiles(odd)}["alerts"].tone == "bad"


def test_report_of_a_model_without_events(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / STORE_DIRNAME)
    frame = pd.DataFrame({"x": np.arange(40.0), "y": np.arange(40) % 2})
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(frame[["x"]], frame["y"])
    opx.snapshot("quiet", model=model, data={"train": frame}, workspace=ws)
    page = write_report(ws, "quiet", tmp_path / "quiet.html", window="1h").read_text()
    assert "no events yet" in page and page.count("no data yet") >= 4
    assert "http" not in page
    for svg in re.findall(r"<svg .*?</svg>", page, flags=re.S):
        svg_tree(svg)


# --- CLI -----------------------------------------------------------------------------


def test_cli_report_and_feedback(project: Path, tmp_path: Path, capsys) -> None:
    out_file = tmp_path / "out" / "r.html"
    out_file.parent.mkdir()
    code = main(["--workspace", str(project), "report", "churn", "-o", str(out_file)])
    out, err = capsys.readouterr()
    assert (code, out.strip(), err) == (0, str(out_file), "")
    assert ">600<" in out_file.read_text()

    code = main(["feedback", "churn", "--json", "--workspace", str(project), "--window", "1w"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["window"] == "1w" and data["kpis"]["predictions"] == 600
    assert len(data["volume"]) == 1 and data["volume"][0]["predictions"] == 600
    assert all(
        v is None or not (isinstance(v, float) and math.isnan(v))
        for row in data["performance"]
        for v in row.values()
    )

    assert main(["--workspace", str(project), "feedback", "churn"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("feedback of churn (reference churn/1") and "600 predictions" in out


def test_cli_errors_are_one_line(project: Path, tmp_path: Path, capsys) -> None:
    cases = [
        ["report", "nope", "-o", str(tmp_path / "x.html")],
        ["report", "churn", "-o", str(tmp_path / "missing" / "x.html")],
        ["feedback", "churn", "--window", "7y"],
    ]
    for argv in cases:
        assert main(["--workspace", str(project), *argv]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("opx: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "missing").exists()
