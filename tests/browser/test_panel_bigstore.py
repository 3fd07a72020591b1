"""The panel's first paint on a big store: 1,000 snapshots (20 models) and 10,000 runs.

The store is built in bulk (``bench/bigstore.py``: a few records through the real
code paths, the rest cloned from them, about 10 s). The test opens JupyterLab and,
as soon as the shell is there, the opx panel, then its Runs tab. Times come from
the browser's own clock (a MutationObserver installed before the page loads, then
the next animation frame): when the Models list first holds every model (since
navigation start: the panel loads while its tab is still closed), how long after
the click on the opx tab it is on screen, and how long after the click on the Runs
tab its first page is listed (that section mounts, and asks for its page, then).
It asserts that the panel asks for pages (no request for more than a page, 50 runs
rendered out of 10,000, the model list from ``/models``) and reports the times:
printed, and written to ``test-artifacts/panel-first-paint.json`` (quoted in
bench/README.md) with every list request and when it was answered.
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

#: in the page from its start: when each list first holds its rows (performance.now(),
#: milliseconds since navigation start), and the animation frame after that
MARKS = """(() => {
  window.__opx = {};
  const lists = {
    models: ['#jp-opx-panel [aria-label="Model list"] > li', %d],
    runs: ['#jp-opx-panel [aria-label="Run list"] > li', %d],
  };
  const check = () => {
    for (const [key, [selector, n]] of Object.entries(lists)) {
      if (!window.__opx[key] && document.querySelectorAll(selector).length >= n) {
        const mark = {dom: performance.now()};
        window.__opx[key] = mark;
        requestAnimationFrame(() => { mark.frame = performance.now(); });
      }
    }
  };
  new MutationObserver(check).observe(document, {childList: true, subtree: true});
})();"""

#: the models list on screen: its rows there and the panel not hidden
VISIBLE = """([selector, n]) => {
  const rows = document.querySelectorAll(selector);
  return rows.length >= n && rows[0].checkVisibility() ? performance.now() : null;
}"""


def test_panel_first_paint_with_1000_snapshots_and_10000_runs(lab: Lab, page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    sys.path.insert(0, str(BENCH))
    from bigstore import build

    made = build(lab.store, SNAPSHOTS, RUNS, names=MODELS)
    assert (made["snapshots"], made["runs"]) == (SNAPSHOTS, RUNS)

    api_calls: list[dict] = []
    started = time.perf_counter()

    def on_response(response) -> None:  # type: ignore[no-untyped-def]
        url = urlparse(response.url)
        if "/opx/api/" in url.path and response.request.method == "GET":
            entry = {
                "path": url.path.split("/opx/api/", 1)[1],
                "query": parse_qs(url.query),
                "answered_s": round(time.perf_counter() - started, 3),
            }
            if response.headers.get("content-type", "").startswith("application/json"):
                body = response.json()
                if isinstance(body, dict) and "items" in body:
                    entry.update(items=len(body["items"]), total=body["total"])
            api_calls.append(entry)

    page.on("response", on_response)
    page.add_init_script(MARKS % (MODELS, 50))
    page.goto(lab.lab_url())
    page.locator("#jp-main-dock-panel").wait_for(state="visible", timeout=60_000)
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=60_000)
    shell_s = time.perf_counter() - started

    # -- Models: the opx sidebar tab clicked as soon as the shell is there
    models_selector = '#jp-opx-panel [aria-label="Model list"] > li'
    clicked = page.evaluate("performance.now()")
    page.get_by_role("tab", name=re.compile(r"^opx")).click()
    shown = page.wait_for_function(VISIBLE, arg=[models_selector, MODELS], polling="raf")
    models = {
        "click_since_navigation_ms": clicked,
        "listed_since_navigation_ms": page.evaluate("window.__opx.models.frame"),
        "visible_after_click_ms": shown.json_value() - clicked,
    }
    panel = page.locator("#jp-opx-panel")
    model_list = panel.get_by_role("list", name="Model list")
    expect(model_list.locator(":scope > li")).to_have_count(MODELS)
    expect(model_list.get_by_role("button", name="model-03", exact=True)).to_be_visible()
    expect(model_list).to_contain_text(f"v{SNAPSHOTS // MODELS} · {SNAPSHOTS // MODELS} versions")
    page.screenshot(path=str(ARTIFACTS / "panel-bigstore-models.png"))

    # -- Runs: from the click on the tab to its first page listed (the Runs section
    # mounts, and asks for its page, when its tab is chosen)
    clicked = page.evaluate("performance.now()")
    runs_clicked_s = time.perf_counter() - started
    panel.get_by_role("tab", name="Runs").click()
    page.wait_for_function("window.__opx.runs && window.__opx.runs.frame")
    runs = {
        "listed_after_click_ms": page.evaluate("window.__opx.runs.frame") - clicked,
        "click_at_s": runs_clicked_s,
    }
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
        f"{shell_s:.2f} s; {MODELS} models listed "
        f"{models['listed_since_navigation_ms']:.0f} ms after navigation start, on screen "
        f"{models['visible_after_click_ms']:.0f} ms after the opx tab click; "
        f"Runs tab click → 50 of {RUNS} runs listed {runs['listed_after_click_ms']:.0f} ms"
    )
