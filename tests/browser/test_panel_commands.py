"""The panel's server check and its commands, in a real browser.

When /opx/api/version is missing or answers another version (intercepted with
Playwright's ``page.route``), the panel says what to install, and "Check
again" recovers once the right server answers; when nothing answers (a
server restarting) it checks again by itself. The three commands are in the
palette (category opx) and in the notebook toolbar, and each steers the
panel: "Open production feedback" shows the model in production,
"Create job from notebook" opens the job form for the notebook,
"Snapshot model…" asks for a name and the model variable. The job form's
cron preview follows the field and the time zone. An alert rule and feedback
written by another process show within a second (the change stream).
"""

from __future__ import annotations

import json
import re
import shutil
import time

import pytest

from .conftest import ARTIFACTS, Lab
from .test_panel import NOTEBOOKS, _wait_shell

pytestmark = pytest.mark.timeout(120)

VERSION_ROUTE = "**/opx/api/version*"


def _two_models(store) -> None:  # type: ignore[no-untyped-def]
    """``alpha`` (first by name, not in production) and ``churn`` (in production)."""
    from sklearn.dummy import DummyClassifier

    import jupyter_opx as opx

    clf = DummyClassifier().fit([[0], [1]], [0, 1])
    opx.snapshot("alpha", model=clf, workspace=store)
    snap = opx.snapshot("churn", model=clf, workspace=store)
    opx.promote(snap.ref, "production", workspace=store)


def _answer(status: int, content_type: str, body: str):  # type: ignore[no-untyped-def]
    """A route handler fulfilling every request with this answer."""
    return lambda route: route.fulfill(status=status, content_type=content_type, body=body)


def test_server_check_and_commands(lab: Lab, page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    import jupyter_opx as opx
    from jupyter_opx._version import __version__

    started = time.monotonic()
    _two_models(lab.store)
    shutil.copy(NOTEBOOKS / "typed_params.ipynb", lab.root / "typed_params.ipynb")
    minor = ".".join(__version__.split(".")[:2])
    other = f"{int(minor.split('.')[0]) + 1}.0.0"

    # -- another version answers: the panel says which package to install
    page.route(
        VERSION_ROUTE,
        lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps({"version": other})
        ),
    )
    page.goto(lab.lab_url("lab/tree/typed_params.ipynb"))
    _wait_shell(page)
    expect(page.get_by_role("tab", name="typed_params.ipynb")).to_be_visible()
    page.get_by_role("tab", name=re.compile(r"^opx")).click()
    panel = page.locator("#jp-opx-panel")
    alert = panel.get_by_role("alert")
    expect(alert).to_contain_text(
        f"The jupyter_opx server extension is version {other}, this panel is {__version__}: "
        f"pip install jupyter_opx=={__version__} (or upgrade both) and restart JupyterLab"
    )
    expect(panel.get_by_role("tablist")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "panel-version-mismatch.png"))

    # -- no server extension (404), or something else answering: what to install
    missing = (
        "The jupyter_opx server extension is not installed or not enabled: "
        "pip install jupyter_opx and restart JupyterLab"
    )
    for status, content_type, body in [
        (404, "text/html", "<html><body>404 Not Found</body></html>"),
        (200, "text/html", "<html><body>a proxy's page</body></html>"),
    ]:
        page.unroute(VERSION_ROUTE)
        page.route(VERSION_ROUTE, _answer(status, content_type, body))
        alert.get_by_role("button", name="Check again").click()
        expect(alert).to_contain_text(missing)
    # the server fails outright: it says so, with the server's message
    page.unroute(VERSION_ROUTE)
    page.route(
        VERSION_ROUTE,
        lambda route: route.fulfill(
            status=500,
            content_type="application/json",
            body=json.dumps({"code": "internal", "message": "store unreachable"}),
        ),
    )
    alert.get_by_role("button", name="Check again").click()
    expect(alert).to_contain_text(
        "The jupyter_opx server extension does not answer: store unreachable"
    )
    expect(alert).not_to_contain_text("trying again")
    page.unroute(VERSION_ROUTE)
    alert.get_by_role("button", name="Check again").click()
    expect(panel.get_by_role("alert")).to_have_count(0)

    # -- no answer at all (a server restarting): it says so and checks again by
    # itself; once the server answers the panel comes up, with no click
    page.route(VERSION_ROUTE, lambda route: route.abort())
    page.reload()
    _wait_shell(page)
    try:  # JupyterLab restores the open sidebar only if it saved its layout before the reload
        panel.wait_for(state="visible", timeout=3_000)
    except PlaywrightTimeout:
        page.get_by_role("tab", name=re.compile(r"^opx")).click()
    alert = panel.get_by_role("alert")
    expect(alert).to_contain_text(
        "The jupyter_opx server extension does not answer: cannot reach the Jupyter server"
    )
    expect(alert).to_contain_text("(trying again by itself)")
    page.unroute(VERSION_ROUTE)
    expect(panel.get_by_role("alert")).to_have_count(0, timeout=10_000)
    expect(panel.get_by_role("tab", name="Models")).to_have_attribute("aria-selected", "true")
    expect(panel.get_by_text("live", exact=True)).to_be_visible()

    # -- the palette: the commands, in category opx; the panel collapsed first
    page.get_by_role("tab", name=re.compile(r"^opx")).click()
    expect(panel).to_be_hidden()

    def palette(label: str) -> None:
        page.get_by_role("tabpanel", name="typed_params.ipynb").get_by_role("textbox").first.click()
        page.keyboard.press("Escape")  # command mode: the shortcut is not typed into a cell
        page.keyboard.press("Control+Shift+C")
        search = page.locator(".lm-CommandPalette-input:visible")
        search.fill(label.rstrip("…"))
        item = page.get_by_role("menuitem", name=re.compile(re.escape(label)))
        expect(item).to_have_count(1)
        expect(item).not_to_have_class(re.compile(r"lm-mod-disabled"))
        item.click()

    page.keyboard.press("Control+Shift+C")
    page.locator(".lm-CommandPalette-input:visible").fill("opx")
    items = page.locator(".lm-CommandPalette-item:visible")
    for label in [
        "Snapshot model…",
        "Create job from notebook",
        "Open production feedback",
        "Open opx panel",
    ]:
        expect(items.filter(has_text=label)).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "panel-palette.png"))
    page.keyboard.press("Escape")

    # "Open production feedback": the panel shows itself, Feedback on the model in production
    palette("Open production feedback")
    expect(panel).to_be_visible()
    expect(panel.get_by_role("tab", name="Feedback")).to_have_attribute("aria-selected", "true")
    expect(panel.get_by_role("combobox", name="Model")).to_have_value("churn")
    expect(panel.get_by_role("group", name="Predictions").get_by_role("status")).to_have_text("0")

    # "Create job from notebook": the notebook saved first (a job runs it as on
    # disk), then the Jobs form for it
    notebook_tab = page.get_by_role("tab", name="typed_params.ipynb")
    page.get_by_role("tabpanel", name="typed_params.ipynb").get_by_role("textbox").last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # a new cell below: unsaved
    expect(notebook_tab).to_have_class(re.compile(r"jp-mod-dirty"))
    palette("Create job from notebook")
    expect(notebook_tab).not_to_have_class(re.compile(r"jp-mod-dirty"))
    saved = json.loads((lab.root / "typed_params.ipynb").read_text())
    assert len(saved["cells"]) == 5
    expect(panel.get_by_role("tab", name="Jobs")).to_have_attribute("aria-selected", "true")
    form = panel.get_by_role("form", name="New job")
    expect(form.get_by_label("Notebook")).to_have_value("typed_params.ipynb")
    expect(form.get_by_label("threshold (float)")).to_have_attribute("placeholder", "default: 0.5")

    # the cron field's readable preview follows the field and the time zone;
    # a refused schedule or zone blocks "Create job" and says why
    cron, tz = form.get_by_label("Schedule (cron)"), form.get_by_label("Time zone")
    preview = form.get_by_label("Schedule preview")
    create = form.get_by_role("button", name="Create job")
    expect(form.get_by_text("No schedule: run it by hand.")).to_be_visible()
    cron.fill("*/15 * * * *")
    expect(preview).to_contain_text("every 15 minutes (UTC)")
    cron.fill("30 7 * * 1-5")
    tz.fill("Europe/Paris")
    expect(preview).to_contain_text("at 07:30, Monday through Friday (Europe/Paris)")
    expect(preview).to_contain_text(re.compile(r"next: \d{4}-\d\d-\d\d 0[56]:30"))
    cron.fill("61 * * * *")
    expect(form.get_by_role("alert")).to_contain_text("invalid cron schedule '61 * * * *'")
    expect(cron).to_have_attribute("aria-invalid", "true")
    expect(create).to_be_disabled()
    cron.fill("0 6 * * *")
    expect(preview).to_contain_text("every day at 06:00 Europe/Paris")
    expect(create).to_be_enabled()
    tz.fill("Mars/Base")
    expect(form.get_by_role("alert")).to_contain_text("unknown time zone 'Mars/Base'")
    expect(create).to_be_disabled()
    tz.fill("UTC")
    expect(preview).to_contain_text("every day at 06:00 UTC")
    expect(create).to_be_enabled()
    page.screenshot(path=str(ARTIFACTS / "panel-cron-preview.png"))
    form.get_by_role("button", name="Cancel").click()
    expect(form).to_have_count(0)

    # "Snapshot model…": a dialog for the name (from the notebook's) and the variable
    palette("Snapshot model…")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("textbox", name="Snapshot name")).to_have_value("typed_params")
    expect(dialog.get_by_role("textbox", name="Model variable")).to_have_value("model")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)

    # -- the same three in the notebook toolbar
    toolbar = page.get_by_role("tabpanel", name="typed_params.ipynb").get_by_role("toolbar")
    panel.get_by_role("tab", name="Models").click()
    toolbar.get_by_role("button", name="Feedback", exact=True).click()
    expect(panel.get_by_role("tab", name="Feedback")).to_have_attribute("aria-selected", "true")
    toolbar.get_by_role("button", name="Create job", exact=True).click()
    expect(panel.get_by_role("form", name="New job").get_by_label("Notebook")).to_have_value(
        "typed_params.ipynb"
    )
    page.screenshot(path=str(ARTIFACTS / "panel-toolbar-create-job.png"))
    toolbar.get_by_role("button", name="Snapshot", exact=True).click()
    expect(page.get_by_role("dialog").get_by_role("textbox", name="Snapshot name")).to_be_visible()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()

    # -- live: an alert rule, then feedback, written by another process show
    # within a second (the change stream), without a reload
    toolbar.get_by_role("button", name="Feedback", exact=True).click()
    expect(panel.get_by_text("No alert rules.")).to_be_visible()
    page.evaluate("window.__opxSamePage = true")  # gone if the page reloads
    alerts = panel.get_by_role("list", name="Alerts")
    lags = {}
    opx.add_alert("churn", "predictions > 5", workspace=lab.store)
    written = time.monotonic()  # committed: the lag is the panel's, not the write's
    expect(alerts.get_by_role("listitem")).to_contain_text("ok predictions > 5")
    lags["alert rule"] = time.monotonic() - written
    predictions = panel.get_by_role("group", name="Predictions").get_by_role("status")
    opx.log_predictions(
        "churn@production", [f"c{i}" for i in range(12)], [0.5] * 12, workspace=lab.store
    )
    written = time.monotonic()
    expect(predictions).to_have_text("12")
    lags["feedback"] = time.monotonic() - written
    opx.evaluate_alerts("churn", workspace=lab.store)
    expect(alerts.get_by_role("listitem")).to_contain_text("firing predictions > 5 (now 12)")
    assert page.evaluate("window.__opxSamePage === true"), "the page was reloaded"
    page.screenshot(path=str(ARTIFACTS / "panel-alert-firing.png"))
    print("change stream lag:", {k: f"{v:.2f} s" for k, v in lags.items()})
    # the promise is "within a second" (0.2-0.8 s measured here); the bound leaves
    # room for a machine busy with other work, so that a loaded CI does not flake
    slow = {k: v for k, v in lags.items() if v > 2.0}
    assert not slow, f"shown long after the write: {slow}"

    elapsed = time.monotonic() - started
    assert elapsed < 60, f"the browser scenario took {elapsed:.0f} s (budget 60 s)"
