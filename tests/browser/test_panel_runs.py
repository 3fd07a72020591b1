"""Runs in the side panel, in a real browser: a running run's progress bar moves
by itself (cells done / total, no reload), its logs follow it, Cancel in the
panel stops it (status cancelled) and its output notebook shows how far it
got; a failing run shows its error and cell. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from .conftest import ARTIFACTS, Lab
from .test_panel import NOTEBOOKS, _wait_shell

pytestmark = pytest.mark.timeout(120)

STEPS = 5


def _steps_notebook(path: Path, steps: int = STEPS) -> None:
    """A typed parameter, ``steps`` cells of ``pause`` seconds each, then a long nap."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    cells = [new_code_cell("%%opx params\npause: float = 1.0  # seconds per step")]
    cells += [
        new_code_cell(f"import time\nprint('step {i}', flush=True)\ntime.sleep(pause)")
        for i in range(1, steps + 1)
    ]
    cells.append(new_code_cell("print('napping', flush=True)\ntime.sleep(300)"))
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, path)


def _progress(text: str | None) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d+) of (\d+) cells", text or "")
    return (int(match[1]), int(match[2])) if match else None


def test_running_run_progress_logs_and_cancel(lab: Lab, page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    import jupyter_opx as opx

    started = time.monotonic()
    _steps_notebook(lab.root / "steps.ipynb")
    opx.create_job("steps", lab.root / "steps.ipynb", workspace=lab.store)

    page.goto(lab.lab_url())
    _wait_shell(page)
    # no notebook open: the notebook commands are disabled (JupyterLab's palette
    # then hides them), "Open production feedback" is offered
    page.get_by_text("Console", exact=True).click()  # the launcher's heading: focus
    page.keyboard.press("Control+Shift+C")
    page.locator(".lm-CommandPalette-input:visible").fill("opx")
    items = page.locator(".lm-CommandPalette-item")
    for label in ["Snapshot model…", "Create job from notebook"]:
        expect(items.filter(has_text=label)).to_have_class(re.compile(r"lm-mod-disabled"))
        expect(items.filter(has_text=label)).to_be_hidden()
    expect(items.filter(has_text="Open production feedback")).to_be_visible()
    page.keyboard.press("Escape")
    page.get_by_role("tab", name=re.compile(r"^opx")).click()
    panel = page.locator("#jp-opx-panel")
    page.evaluate("window.__opxSamePage = true")  # gone if the page reloads

    # run now from the Jobs section: the panel switches to Runs by itself
    panel.get_by_role("tab", name="Jobs").click()
    job = panel.get_by_role("listitem", name="Job steps")
    job.get_by_role("button", name="Run steps now").click()
    expect(panel.get_by_role("tab", name="Runs")).to_have_attribute("aria-selected", "true")
    run = panel.get_by_role("listitem", name=re.compile(r"^Run \d+ of steps$"))
    status = run.get_by_role("status", name=re.compile(r"^Status of run"))
    expect(status).to_have_text("running", timeout=30_000)
    run_id = int(re.findall(r"\d+", run.get_attribute("aria-label") or "")[0])
    # its logs, opened as it starts, follow it (asserted once the cells ran)
    run.get_by_role("button", name=f"Open logs of run {run_id}").click()
    logs = page.get_by_role("log", name=f"Logs of run {run_id}")
    expect(logs).not_to_contain_text("napping")

    # the progress bar: cells done / total, moving as cells finish, page untouched
    bar = run.get_by_role("progressbar", name=f"Progress of run {run_id}")
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        value = _progress(bar.get_attribute("aria-valuetext", timeout=5_000))
        if value and (not seen or value != seen[-1]):
            seen.append(value)
            if len(seen) == 2:
                page.screenshot(path=str(ARTIFACTS / "panel-run-progress.png"))
        if value and value[0] == value[1] - 1:  # every cell but the nap done
            break
        time.sleep(0.1)
    assert seen, "the progress bar never showed cell counts"
    total = seen[-1][1]
    assert seen[-1][0] == total - 1, f"the run did not reach its last cell: {seen}"
    assert len({done for done, _ in seen}) >= 3, f"the bar did not move live: {seen}"
    assert [d for d, _ in seen] == sorted(d for d, _ in seen), f"went backwards: {seen}"
    expect(bar).to_have_attribute("aria-valuenow", str(round(100 * (total - 1) / total)))
    width = bar.locator("div").evaluate("e => e.style.width")
    assert width == f"{round(100 * (total - 1) / total)}%"
    expect(run.get_by_text(f"{total - 1} of {total} cells", exact=True)).to_be_visible()

    # the logs tab, left open, got the cells' output as it came
    expect(logs).to_contain_text(f"step {STEPS}")
    expect(logs).to_contain_text("napping")
    # a running run has no output yet: no Output button
    expect(run.get_by_role("button", name=f"Open output of run {run_id}")).to_have_count(0)

    # cancel from the panel, confirmed in a dialog: the run ends as cancelled
    run.get_by_role("button", name=f"Cancel run {run_id}").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Stop run {run_id} of steps?")
    expect(dialog.get_by_role("button", name="Keep running")).to_be_visible()
    dialog.get_by_role("button", name="Cancel run").click()
    expect(status).to_have_text("cancelled", timeout=20_000)
    expect(bar).to_have_count(0)
    expect(run.get_by_role("button", name=f"Cancel run {run_id}")).to_have_count(0)
    assert opx.get_run(run_id, workspace=lab.store).status == "cancelled"
    assert page.evaluate("window.__opxSamePage === true"), "the page was reloaded"
    page.screenshot(path=str(ARTIFACTS / "panel-run-cancelled.png"))
    # what it did before it stopped: its output notebook, up to the cancelled cell
    run.get_by_role("button", name=f"Open output of run {run_id}").click()
    output = page.frame_locator(".jp-opx-output iframe, iframe.jp-opx-output")
    expect(output.get_by_text(f"step {STEPS}", exact=True)).to_be_visible()
    expect(output.get_by_text("napping", exact=True)).to_be_visible()

    # a run that fails: its status and the error, with the cell, live
    opx.create_job("boom", NOTEBOOKS / "raises_in_cell_3.ipynb", workspace=lab.store)
    opx.run_job("boom", wait=False, workspace=lab.store)
    failed = panel.get_by_role("listitem", name=re.compile(r"^Run \d+ of boom$"))
    expect(failed.get_by_role("status")).to_have_text("failed", timeout=30_000)
    expect(failed).to_contain_text("ValueError: boom in cell 3 (cell 4)")

    elapsed = time.monotonic() - started
    assert elapsed < 75, f"the browser scenario took {elapsed:.0f} s (budget 75 s)"
