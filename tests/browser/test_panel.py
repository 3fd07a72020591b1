"""The side panel in a real JupyterLab and a real browser, driven by accessible role.

One scenario, end to end: open the panel by its sidebar tab; see a snapshot
made by the test; create a job from the open notebook with the Jobs form
(a parameter typed in, checked client-side first); run it and see it
succeed; post feedback from this process and see the KPI move without
reloading the page (the change stream). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from .conftest import ARTIFACTS, Lab

pytestmark = pytest.mark.timeout(120)

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks" / "jobs"


def _snapshot(store: Path):  # type: ignore[no-untyped-def]
    """churn/1 (promoted to production) and churn/2; returns the fitted model."""
    from conftest import NUMERIC, make_frame
    from sklearn.linear_model import LogisticRegression

    import jupyter_opx as opx

    frame = make_frame()
    model = LogisticRegression().fit(frame[NUMERIC], frame["churned"])
    snap = opx.snapshot(
        "churn", model=model, data={"train": frame}, message="first model", workspace=store
    )
    opx.promote(snap.ref, "production", workspace=store)
    opx.snapshot("churn", model=model, data={"train": frame}, message="retrained", workspace=store)
    return model


def _post_feedback(store: Path, model, n: int = 600) -> None:  # type: ignore[no-untyped-def]
    """Five days of scored customers, half of them emailed, and their outcomes."""
    from conftest import NUMERIC, make_frame

    import jupyter_opx as opx

    frame = make_frame(n, seed=1)
    rng = np.random.default_rng(2)
    now = datetime.now(timezone.utc)
    ts = [now - timedelta(days=5 * (n - i) / n, minutes=5) for i in range(n)]
    ids = [f"c{i}" for i in range(n)]
    arms = np.where(rng.uniform(size=n) < 0.5, "email", "control")
    # the email keeps some customers: fewer churn among the treated
    kept = (arms == "email") & (rng.uniform(size=n) < 0.35)
    churned = frame["churned"].to_numpy() * ~kept
    scores = model.predict_proba(frame[NUMERIC])[:, 1]
    features = frame.drop(columns="churned")
    opx.log_predictions("churn@production", ids, scores, features=features, ts=ts, workspace=store)
    treated_at = [t + timedelta(minutes=1) for t in ts]
    opx.log_treatments("churn", ids, arms, ts=treated_at, workspace=store)
    seen_at = [t + timedelta(minutes=2) for t in ts]
    opx.log_outcomes("churn", ids, churned.astype(int), ts=seen_at, workspace=store)


def _wait_shell(page) -> None:  # type: ignore[no-untyped-def]
    page.locator("#jp-main-dock-panel").wait_for(state="visible", timeout=60_000)
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=60_000)


def test_panel_models_jobs_runs_feedback(lab: Lab, page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    started = time.monotonic()
    model = _snapshot(lab.store)
    shutil.copy(NOTEBOOKS / "typed_params.ipynb", lab.root / "typed_params.ipynb")

    # the notebook open and in focus: the Jobs form starts from it
    page.goto(lab.lab_url("lab/tree/typed_params.ipynb"))
    _wait_shell(page)
    expect(page.get_by_role("tab", name="typed_params.ipynb")).to_be_visible()

    # -- Models: the panel opens from its sidebar tab and lists the snapshot
    page.get_by_role("tab", name=re.compile(r"^opx")).click()
    panel = page.locator("#jp-opx-panel")
    expect(panel.get_by_role("tab", name="Models")).to_have_attribute("aria-selected", "true")
    model_button = panel.get_by_role("button", name="churn", exact=True)
    expect(model_button).to_be_visible()
    expect(panel.get_by_text("@production→1")).to_be_visible()
    model_button.click()
    versions = panel.get_by_role("list", name="Versions of churn")
    expect(versions.get_by_role("listitem", name="churn/2")).to_contain_text("from churn/1")
    page.screenshot(path=str(ARTIFACTS / "panel-models.png"))

    # promote churn/2 (the alias is asked in the dialog, the move confirmed), then roll back
    versions.get_by_role("button", name="Promote churn/2").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("textbox", name="Alias")).to_have_value("production")
    dialog.get_by_role("button", name="Promote").click()
    page.get_by_role("dialog").get_by_role("button", name="Move alias").click()
    expect(panel.get_by_text("@production→2")).to_be_visible()
    panel.get_by_role("button", name="Roll back churn@production").click()
    page.get_by_role("dialog").get_by_role("button", name="Roll back").click()
    expect(panel.get_by_text("@production→1")).to_be_visible()

    # "Snapshot model…" from the notebook toolbar runs %opx snapshot in the kernel;
    # the new model shows in the panel by itself
    notebook = page.get_by_role("tabpanel", name="typed_params.ipynb")
    notebook.get_by_role("textbox").first.click()
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    page.keyboard.press("Enter")
    page.keyboard.type(
        "from sklearn.dummy import DummyClassifier; clf = DummyClassifier().fit([[0], [1]], [0, 1])"
    )
    page.keyboard.press("Shift+Enter")
    notebook.get_by_role("toolbar").get_by_role("button", name="Snapshot", exact=True).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("textbox", name="Snapshot name").fill("scratch")
    dialog.get_by_role("textbox", name="Model variable").fill("clf")
    dialog.get_by_role("button", name="Snapshot").click()
    expect(panel.get_by_role("button", name="scratch", exact=True)).to_be_visible(timeout=30_000)

    # -- Jobs: a form generated from the notebook's typed parameters
    panel.get_by_role("tab", name="Jobs").click()
    panel.get_by_role("button", name="New job from notebook").click()
    form = panel.get_by_role("form", name="New job")
    threshold = form.get_by_label("threshold (float)")
    threshold.fill("abc")  # refused by type before any request, as the CLI would
    expect(form.get_by_role("alert")).to_contain_text("parameter threshold: expected a float")
    expect(form.get_by_role("button", name="Create job")).to_be_disabled()
    threshold.fill("0.25")
    form.get_by_label("repeats (int)").fill("3")
    form.get_by_label("Schedule (cron)").fill("0 6 * * *")
    expect(form.get_by_label("Schedule preview")).to_contain_text("every day at 06:00 UTC")
    page.screenshot(path=str(ARTIFACTS / "panel-job-form.png"))
    form.get_by_role("button", name="Create job").click()
    job = panel.get_by_role("listitem", name="Job typed_params")
    expect(job).to_contain_text("every day at 06:00 UTC")
    page.screenshot(path=str(ARTIFACTS / "panel-jobs.png"))
    job.get_by_role("button", name="Disable typed_params").click()
    expect(job.get_by_text("disabled", exact=True)).to_be_visible()
    job.get_by_role("button", name="Enable typed_params").click()
    expect(job.get_by_text("disabled", exact=True)).to_have_count(0)

    # -- Runs: run now, follow it live until it succeeded
    job.get_by_role("button", name="Run typed_params now").click()
    expect(panel.get_by_role("tab", name="Runs")).to_have_attribute("aria-selected", "true")
    run = panel.get_by_role("listitem", name=re.compile(r"^Run \d+ of typed_params$"))
    expect(run.get_by_role("status", name=re.compile(r"^Status of run"))).to_have_text(
        "succeeded", timeout=60_000
    )
    page.screenshot(path=str(ARTIFACTS / "panel-runs.png"))
    # the parameter reached the kernel: its lines are in the run's log
    run.get_by_role("button", name=re.compile(r"^Open logs of run")).click()
    expect(page.get_by_role("log", name=re.compile(r"^Logs of run \d+$"))).to_contain_text(
        "line 2 threshold=0.25"
    )
    # and its output notebook opens as HTML in the main area
    run.get_by_role("button", name=re.compile(r"^Open output of run")).click()
    output = page.frame_locator("iframe.jp-opx-output, .jp-opx-output iframe")
    expect(output.get_by_text("line 2 threshold=0.25")).to_be_visible()

    # -- Feedback: KPIs move when feedback arrives, without a reload
    panel.get_by_role("tab", name="Feedback").click()
    predictions = panel.get_by_role("group", name="Predictions").get_by_role("status")
    expect(predictions).to_have_text("0")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    _post_feedback(lab.store, model)
    expect(predictions).to_have_text("600", timeout=10_000)
    auc = panel.get_by_role("group", name="AUC").get_by_role("status")
    expect(auc).to_have_text(re.compile(r"^0\.\d{3}$"))
    expect(panel.get_by_role("table", name="Drift by feature")).to_be_visible()
    expect(panel.get_by_role("img", name=re.compile(r"^Uplift email vs control"))).to_be_visible()
    assert not [u for u in navigations if "/lab" in u], "the page was reloaded"
    page.screenshot(path=str(ARTIFACTS / "panel-feedback.png"))

    elapsed = time.monotonic() - started
    assert elapsed < 90, f"the browser scenario took {elapsed:.0f} s (budget 90 s)"


@pytest.mark.parametrize("lab", [{"server_extension": False}], indirect=True)
def test_panel_says_what_to_install_without_the_server_extension(lab: Lab, page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto(lab.lab_url())
    _wait_shell(page)
    page.get_by_role("tab", name=re.compile(r"^opx")).click()
    alert = page.locator("#jp-opx-panel").get_by_role("alert")
    expect(alert).to_contain_text(
        "The jupyter_opx server extension is not installed or not enabled: "
        "pip install jupyter_opx and restart JupyterLab"
    )
    expect(alert.get_by_role("button", name="Check again")).to_be_visible()
