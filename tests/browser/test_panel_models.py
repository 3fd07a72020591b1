"""Models in the side panel, in a real browser: promote and roll back ask first.

Dismissing any of the dialogs (the alias, moving an alias that points
elsewhere, the roll back) changes nothing; a refused alias shows the server's
reason; a new alias needs no second confirmation; confirming moves the alias,
and the panel shows it without a reload, even when a refresh failed on the
way (it is tried again by itself). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
import time

import pytest

from .conftest import ARTIFACTS, Lab
from .test_panel import _wait_shell

pytestmark = pytest.mark.timeout(120)


def test_promote_and_roll_back_ask_first(lab: Lab, page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect
    from sklearn.dummy import DummyClassifier

    import jupyter_opx as opx

    started = time.monotonic()
    clf = DummyClassifier().fit([[0], [1]], [0, 1])
    first = opx.snapshot("churn", model=clf, message="first", workspace=lab.store)
    opx.promote(first.ref, "production", workspace=lab.store)
    opx.snapshot("churn", model=clf, message="second", workspace=lab.store)
    opx.snapshot("churn", model=clf, message="third", workspace=lab.store)

    page.goto(lab.lab_url())
    _wait_shell(page)
    page.get_by_role("tab", name=re.compile(r"^opx")).click()
    panel = page.locator("#jp-opx-panel")
    page.evaluate("window.__opxSamePage = true")  # gone if the page reloads
    row = panel.get_by_role("listitem", name="Model churn")
    expect(row).to_contain_text("v3 · 3 versions")
    row.get_by_role("button", name="churn", exact=True).click()
    versions = panel.get_by_role("list", name="Versions of churn")
    expect(versions.get_by_role("listitem")).to_have_count(3)
    expect(versions.get_by_role("listitem", name="churn/3")).to_contain_text("from churn/2")
    production = panel.get_by_text(re.compile(r"^@production→\d$"))
    expect(production).to_have_text("@production→1")
    dialog = page.get_by_role("dialog")
    promote = versions.get_by_role("button", name="Promote churn/3")

    def promote_to(alias: str) -> None:
        promote.click()
        dialog.get_by_role("textbox", name="Alias").fill(alias)
        dialog.get_by_role("button", name="Promote").click()

    # dismissed at the first question: nothing moves
    promote.click()
    expect(dialog).to_contain_text("Point an alias at churn/3")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    # dismissed when asked to move production away from churn/1: nothing moves
    promote_to("production")
    expect(dialog).to_contain_text("churn@production points to churn/1. Move it to churn/3?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    page.wait_for_timeout(500)  # a change would have reached the panel by now
    expect(production).to_have_text("@production→1")
    assert opx.show("churn@production", workspace=lab.store).version == 1

    # an alias the server refuses: its reason, and nothing changes
    promote_to("bad alias!")
    expect(dialog).to_contain_text("invalid alias 'bad alias!'")
    dialog.get_by_role("button", name=re.compile("Ok|Dismiss|Close", re.I)).click()
    expect(dialog).to_have_count(0)

    # a new alias: no move to confirm
    promote_to("staging")
    expect(panel.get_by_text("@staging→3", exact=True)).to_be_visible()

    # confirmed: production moves to churn/3, its history says from where
    promote_to("production")
    dialog.get_by_role("button", name="Move alias").click()
    expect(production).to_have_text("@production→3")
    history = panel.get_by_role("list", name="Alias history of churn")
    expect(history).to_contain_text("@production → churn/3 (was churn/1) by tester")
    page.screenshot(path=str(ARTIFACTS / "panel-models-promoted.png"))

    # roll back: dismissed, nothing moves; confirmed, back to churn/1
    rollback = panel.get_by_role("button", name="Roll back churn@production")
    rollback.click()
    expect(dialog).to_contain_text("Move churn@production back from churn/3 to churn/1?")
    dialog.get_by_role("button", name="Cancel").click()
    page.wait_for_timeout(500)
    expect(production).to_have_text("@production→3")
    rollback.click()
    dialog.get_by_role("button", name="Roll back").click()
    expect(production).to_have_text("@production→1")
    assert opx.show("churn@production", workspace=lab.store).version == 1

    # a refresh that fails (the server out of reach for a moment) is tried again
    # by itself: the panel catches up with no further change and no reload
    models_route = "**/opx/api/models?*"
    page.route(models_route, lambda route: route.abort())
    opx.promote("churn/2", "production", workspace=lab.store)
    expect(panel.get_by_role("alert")).to_contain_text("cannot reach the Jupyter server")
    page.unroute(models_route)
    expect(production).to_have_text("@production→2", timeout=5_000)
    expect(panel.get_by_role("alert")).to_have_count(0)
    assert page.evaluate("window.__opxSamePage === true"), "the page was reloaded"

    elapsed = time.monotonic() - started
    assert elapsed < 45, f"the browser scenario took {elapsed:.0f} s (budget 45 s)"
