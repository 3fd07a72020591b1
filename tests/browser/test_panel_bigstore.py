"""The panel's first paint on a big store: 1,000 snapshots (20 models) and 10,000 runs.

The store is built in bulk (``bench/bigstore.py``: a few records through the real
code paths, the rest cloned from them, about 10 s). The test opens JupyterLab,
then the opx panel, and measures in the browser's own clock (a MutationObserver
installed before the click, then the next animation frame) the time from the
click on the panel's sidebar tab to the Models list showing every model, and
from the click on the Runs tab to the Runs list showing its first page. It
asserts that the panel asks for pages (no request for more than a page, 50 runs
rendered out of 10,000) and reports the times: printed, and written to
``test-artifacts/panel-first-paint.json`` (bench/README.md quotes them).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from .conftest import ARTIFACTS, Lab

pytestmark = pytest.mark.timeout(240)

BENCH = Path(__file__).resolve().parents[2] / "bench"
SNAPSHOTS, RUNS, MODELS = 1000, 10_000, 20

#: records, in the page, when a list first holds ``n`` rows and the frame after it
OBSERVE = """([key, selector, n]) => {
  window.__opx = window.__opx || {};
  const done = () => document.querySelectorAll(selector).length >= n;
  const seen = () => {
    window.__opx[key] = {dom: performance.now()};
    requestAnimationFrame(() => { window.__opx[key].frame = performance.now(); });
  };
  if (done()) { seen(); return; }
  const observer = new MutationObserver(() => {
    if (done()) { observer.disconnect(); seen(); }
  });
  observer.observe(document.body, {childList: true, subtree: true});
}"""


def _observe_click(page, key: str, selector: str, n: int, target) -> dict:  # type: ignore[no-untyped-def]
    page.evaluate(OBSERVE, [key, selector, n])
    t0 = page.evaluate("performance.now()")
    target.click()
    page.wait_for_function(f"window.__opx && window.__opx.{key} && window.__opx.{key}.frame")
    t = page.evaluate(f"window.__opx.{key}")
    return {"dom_ms": t["dom"] - t0, "frame_ms": t["frame"] - t0}


def test_panel_first_paint_with_1000_snapshots_and_10000_runs(lab: Lab, page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    sys.path.insert(0, str(BENCH))
    from bigstore import build

    made = build(lab.store, SNAPSHOTS, RUNS, names=MODELS)
    assert (made["snapshots"], made["runs"]) == (SNAPSHOTS, RUNS)

    api_calls: list[dict] = []

    def on_response(response) -> None:  # type: ignore[no-untyped-def]
        url = urlparse(response.url)
        if "/opx/api/" in url.path and response.request.method == "GET":
            entry = {"path": url.path.split("/opx/api/", 1)[1], "query": parse_qs(url.query)}
            if response.headers.get("content-type", "").startswith("application/json"):
                body = response.json()
                if isinstance(body, dict) and "items" in body:
                    entry.update(items=len(body["items"]), total=body["total"])
            api_calls.append(entry)

    page.on("response", on_response)
    started = time.perf_counter()
    page.goto(lab.lab_url())
    page.locator("#jp-main-dock-panel").wait_for(state="visible", timeout=60_000)
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=60_000)
    shell_s = time.perf_counter() - started

    # -- Models: from the click on the sidebar tab to every model listed
    models = _observe_click(
        page,
        "models",
        '#jp-opx-panel [aria-label="Model list"] > li',
        MODELS,
        page.get_by_role("tab", name=re.compile(r"^opx")),
    )
    panel = page.locator("#jp-opx-panel")
    model_list = panel.get_by_role("list", name="Model list")
    expect(model_list.locator(":scope > li")).to_have_count(MODELS)
    expect(model_list.get_by_role("button", name="model-03", exact=True)).to_be_visible()
    expect(model_list).to_contain_text(f"v{SNAPSHOTS // MODELS} · {SNAPSHOTS // MODELS} versions")
    page.screenshot(path=str(ARTIFACTS / "panel-bigstore-models.png"))

    # -- Runs: from the click on the tab to its first page listed
    runs = _observe_click(
        page,
        "runs",
        '#jp-opx-panel [aria-label="Run list"] > li',
        50,
        panel.get_by_role("tab", name="Runs"),
    )
    run_list = panel.get_by_role("list", name="Run list")
    expect(run_list.locator(":scope > li").first).to_be_visible()
    page.wait_for_timeout(500)  # nothing more arrives: one page, not 10,000 rows
    rendered_runs = run_list.locator(":scope > li").count()
    assert rendered_runs == 50
    page.screenshot(path=str(ARTIFACTS / "panel-bigstore-runs.png"))

    # the panel asked for pages: no list request for more than 500 items, the runs by 50
    lists = [c for c in api_calls if "items" in c]
    assert lists, api_calls
    assert all(c["items"] <= 500 for c in lists), lists
    run_pages = [c for c in lists if c["path"] == "runs"]
    assert run_pages and all(c["items"] == 50 and c["total"] == RUNS for c in run_pages)
    assert not any(c["path"] == "snapshots" and "name" not in c["query"] for c in lists), (
        "the model list comes from /models, not from every snapshot"
    )

    report = {
        "store": made,
        "jupyterlab_shell_s": round(shell_s, 2),
        "models_list": {k: round(v, 1) for k, v in models.items()},
        "runs_list": {k: round(v, 1) for k, v in runs.items()},
        "rendered": {"models": MODELS, "runs": rendered_runs},
        "requests": lists,
    }
    (ARTIFACTS / "panel-first-paint.json").write_text(json.dumps(report, indent=2))
    print(
        f"\npanel first paint, {SNAPSHOTS} snapshots / {RUNS} runs: JupyterLab shell "
        f"{shell_s:.2f} s; opx tab click → {MODELS} models listed {models['frame_ms']:.0f} ms; "
        f"Runs tab click → 50 of {RUNS} runs listed {runs['frame_ms']:.0f} ms"
    )
