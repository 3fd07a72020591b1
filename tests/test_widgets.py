"""The live feedback dashboard, driven without a browser.

The dashboard's thread polls the store's change sequence; these tests log
events from the test thread and watch the widgets' values change (what the
kernel would send to the page), then close the dashboard and check that its
thread is gone and nothing changes any more.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

import jupyter_opx as opx
from jupyter_opx.demo import FEATURES, churn_customers, train_model
from jupyter_opx.exceptions import NotFoundError, ValidationError
from jupyter_opx.monitoring import compute as compute_module
from jupyter_opx.widgets import FeedbackDashboard, live_dashboards
from jupyter_opx.workspace import STORE_DIRNAME, Workspace

T0 = pd.Timestamp("2026-03-02T06:00:00Z")


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return train_model(churn_customers(2000, seed=7), max_iter=10)


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model) -> Workspace:  # type: ignore[no-untyped-def]
    """A store with churn/1 and two days of predictions, treatments and outcomes."""
    monkeypatch.setenv("OPX_HOME", str(tmp_path / STORE_DIRNAME))
    monkeypatch.chdir(tmp_path)
    ws = opx.current_workspace()
    opx.snapshot("churn", model=model, data={"train": churn_customers(2000, seed=7)})
    for day in range(2):
        log(model, day, 100)
    return ws


def log(model, day: int, n: int, prefix: str = "c") -> None:  # type: ignore[no-untyped-def]
    cur = churn_customers(n, seed=50 + day)
    ids = [f"{prefix}{day}-{i}" for i in range(n)]
    ts = T0 + pd.Timedelta(days=day)
    scores = model.predict_proba(cur[FEATURES])[:, 1]
    opx.log_predictions("churn", ids, scores, features=cur[FEATURES], ts=ts)
    opx.log_treatments("churn", ids, np.where(np.arange(n) % 2 == 0, "email", "control"), ts=ts)
    opx.log_outcomes("churn", ids, cur["churned"], ts=ts + pd.Timedelta(hours=20))


def predictions_shown(dash: FeedbackDashboard) -> int:
    match = re.search(r'class="opx-value">([\d,]+)<', dash.tiles["predictions"].value)
    assert match, dash.tiles["predictions"].value
    return int(match.group(1).replace(",", ""))


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> float:
    """Seconds until ``condition()`` held (fails after ``timeout``)."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.01)
    return time.perf_counter() - start


@pytest.fixture
def dashboards() -> Iterator[list[FeedbackDashboard]]:
    """Dashboards made by a test, closed after it whatever happens."""
    made: list[FeedbackDashboard] = []
    yield made
    for dash in made + live_dashboards():
        dash.close()


def test_dashboard_shows_the_feedback_and_follows_new_events(ws, model, dashboards) -> None:
    dash = FeedbackDashboard("churn", window="1d", interval=0.25)
    dashboards.append(dash)
    assert dash.running and dash.updates == 1 and dash.last_seq == ws.change_seq()
    assert predictions_shown(dash) == 200
    fb = opx.feedback("churn")
    assert f">{fb.kpis()['auc']:.3f}<" in dash.tiles["auc"].value
    assert "label coverage" in dash.tiles["auc"].value
    assert "95% CI" in dash.tiles["uplift"].value
    assert "of 6" in dash.tiles["drift"].value
    assert all(w.value.startswith("<svg ") for w in dash.charts.values())
    assert "monthly_charges" in dash.drift_table.value
    assert "No alert rules" in dash.alerts.value
    assert "live" in dash.status.value

    log(model, 2, 150)  # from this thread, as a scoring job or the REST API would
    logged = time.perf_counter()
    wait_for(lambda: predictions_shown(dash) == 350)
    latency = time.perf_counter() - logged
    assert latency < 1.0, f"dashboard updated {latency:.2f} s after the events were logged"
    assert dash.last_seq == ws.change_seq() and dash.updates >= 2
    assert "Mar 04" in dash.charts["volume"].value  # the new day is on the charts

    dash.close()
    assert not dash.running and dash not in live_dashboards()
    updates, shown = dash.updates, predictions_shown(dash)
    log(model, 3, 50)
    time.sleep(4 * dash.interval)
    assert (dash.updates, predictions_shown(dash)) == (updates, shown)


def test_comm_closed_by_the_front_end_stops_the_thread(ws, model, dashboards) -> None:
    dash = FeedbackDashboard("churn", interval=0.05)
    dashboards.append(dash)
    assert dash.running
    dash.comm.handle_close({"content": {"comm_id": dash.comm.comm_id, "data": {}}})
    wait_for(lambda: not dash.running, timeout=1.0)
    updates = dash.updates
    log(model, 5, 20)
    time.sleep(0.3)
    assert dash.updates == updates and "stopped" in dash.status.value


def test_errors_show_in_the_status_line_and_the_thread_survives(
    ws, model, dashboards, monkeypatch
) -> None:
    dash = FeedbackDashboard("churn", interval=0.05)
    dashboards.append(dash)

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("database on fire")

    with monkeypatch.context() as patch:
        patch.setattr(compute_module, "compute", broken)
        log(model, 4, 10)
        wait_for(lambda: "database on fire" in dash.status.value)
        assert dash.running and dash.error == "RuntimeError: database on fire"
        assert predictions_shown(dash) == 200  # the last good figures stay
    log(model, 5, 10)
    wait_for(lambda: predictions_shown(dash) == 220)
    assert dash.error is None and "could not update" not in dash.status.value


def test_hidden_dashboard_skips_work_until_shown_again(ws, model, dashboards) -> None:
    dash = FeedbackDashboard("churn", interval=0.05)
    dashboards.append(dash)
    dash._view_count = 1  # the front end reports one view …
    dash._view_count = 0  # … then the output was cleared
    updates = dash.updates
    log(model, 4, 10)
    time.sleep(0.3)
    assert dash.updates == updates and dash.running
    dash._view_count = 1
    wait_for(lambda: predictions_shown(dash) == 210, timeout=1.0)


def test_bad_arguments_fail_before_anything_shows(ws) -> None:
    with pytest.raises(NotFoundError, match="chrun"):
        FeedbackDashboard("chrun")
    with pytest.raises(ValidationError, match="window"):
        FeedbackDashboard("churn", window="7y")
    with pytest.raises(ValidationError, match="interval"):
        FeedbackDashboard("churn", interval=0)
    assert live_dashboards() == []


def test_refresh_and_text_without_following(ws, model, dashboards) -> None:
    dash = FeedbackDashboard("churn", start=False)
    dashboards.append(dash)
    assert not dash.running and dash.updates == 1
    log(model, 4, 30)
    assert predictions_shown(dash) == 200
    assert dash.refresh() and predictions_shown(dash) == 230
    text = dash._repr_mimebundle_()["text/plain"]  # what a terminal without widgets prints
    assert text.startswith("feedback of churn") and "230 predictions" in text
    assert "not following" in text


def test_magic_displays_a_live_dashboard(ws, model, dashboards, capsys) -> None:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jupyter_opx")
    result = shell.run_line_magic("opx", "feedback churn --window 1d --interval 0.1")
    assert result is None
    live = live_dashboards()
    assert len(live) == 1
    dash = live[0]
    dashboards.append(dash)
    assert (dash.model, dash.window, dash.interval) == ("churn", "1d", 0.1)
    assert "feedback of churn" in capsys.readouterr().out  # the plain-text fallback
    log(model, 4, 10)
    wait_for(lambda: predictions_shown(dash) == 210)
    dash.stop()
    assert not dash.running
    with pytest.raises(NotFoundError):
        shell.run_line_magic("opx", "feedback nothing")
    shell.run_line_magic("opx", "help")
    assert "%opx feedback MODEL [--window 1d]" in capsys.readouterr().out


def test_updates_reach_the_front_end_from_a_real_kernel(ws, model, tmp_path) -> None:
    """In a kernel, the thread's updates leave as comm messages (what the page renders)."""
    import queue

    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        kc.execute("%load_ext jupyter_opx\n%opx feedback churn --interval 0.1")
        reply = kc.get_shell_msg(timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
        shown = []
        while True:  # drain the cell's output: the widget views
            try:
                msg = kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                break
            if msg["msg_type"] == "display_data":
                shown.append(msg["content"]["data"])
        assert shown and "application/vnd.jupyter.widget-view+json" in shown[0]
        assert shown[0]["text/plain"].startswith("feedback of churn")

        log(model, 2, 150)
        logged = time.perf_counter()
        latency = None
        while latency is None and time.perf_counter() - logged < 3:
            try:
                msg = kc.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            state = msg["content"].get("data", {}).get("state", {})
            if msg["msg_type"] == "comm_msg" and 'opx-value">350<' in str(state.get("value")):
                latency = time.perf_counter() - logged
        assert latency is not None and latency < 1.0, latency
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
