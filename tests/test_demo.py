"""``opx demo`` end to end in a temporary folder: real papermill runs of the example notebooks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import jupyter_opx as opx
from jupyter_opx.cli import main
from jupyter_opx.monitoring import store
from jupyter_opx.workspace import Workspace


def _demo(folder: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(["demo", "--workspace", str(folder), *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_demo_runs_the_loop_and_writes_the_report(tmp_path, capsys):
    folder = tmp_path / "demo"
    out = _demo(
        folder,
        capsys,
        *("--days", "3", "--customers", "300", "--outcome-delay", "1-2"),
        *("--price-change-day", "3"),  # after the last day: no drift in this run
    )
    ws = Workspace(folder / ".opx")
    runs = opx.list_runs(limit=None, workspace=ws)
    assert {r.status for r in runs} == {"succeeded"}
    scoring = [r for r in runs if r.job_name == "score_customers"]
    assert sorted(r.params["batch_date"] for r in scoring) == [
        "2026-03-02",
        "2026-03-03",
        "2026-03-04",
    ]
    assert all(r.resolved == {"model": "churn/1"} for r in scoring)
    assert [r.job_name for r in runs if r.trigger != "api"] == []
    preds = store.read(ws, "churn", "predictions")
    treats = store.read(ws, "churn", "treatments")
    outs = store.read(ws, "churn", "outcomes")
    assert len(preds) == 900 and preds["id"].is_unique
    # events carry simulated times: one prediction day per simulated day
    assert sorted(preds["ts"].dt.strftime("%Y-%m-%d %H:%M").unique()) == [
        "2026-03-02 06:00",
        "2026-03-03 06:00",
        "2026-03-04 06:00",
    ]
    assert set(treats["arm"]) == {"email", "control"} and set(treats["id"]) <= set(preds["id"])
    assert len(outs) > 300 and set(outs["value"]) == {0.0, 1.0}
    assert (outs["ts"].dt.hour == 5).all()
    assert opx.alerts("churn", workspace=ws)[0].state == "ok"
    assert [s.ref for s in opx.list_snapshots(workspace=ws)] == ["churn/1"]
    report = (folder / "report.html").read_text()
    assert "Production feedback: churn" in report and "<script" not in report
    assert (folder / "notebooks" / "02_score_customers.ipynb").is_file()
    for text in ("day  2 2026-03-04", "AUC per week", "uplift", "report:"):
        assert text in out
    # running it again in the same folder starts from a fresh store
    _demo(folder, capsys, "--days", "1", "--customers", "100", "--price-change-day", "5")
    assert len(opx.list_runs(limit=None, workspace=Workspace(folder / ".opx"))) == 2


@pytest.mark.backends("sqlite", "postgresql")
def test_price_change_fires_the_alert_and_retrains(tmp_path, capsys, backend, request):
    """The whole loop; on PostgreSQL too (``--database``: jobs, alerts and feedback there)."""
    folder = tmp_path / "demo"
    database = ("--database", request.getfixturevalue("pg_url")) if backend == "postgresql" else ()
    out = _demo(
        folder,
        capsys,
        *("--days", "4", "--customers", "400", "--outcome-delay", "1-2"),
        *("--price-change-day", "2"),
        *database,
    )
    ws = Workspace(folder / ".opx")
    assert ws.database_url.startswith("postgresql" if database else "sqlite")
    [rule] = opx.alerts("churn", workspace=ws)
    # it fired on the price change; with 400 customers a day it may resolve a day
    # later (PSI 0.26, then 0.18 against churn/1, the version still serving)
    assert rule.trigger_job == "retrain_churn" and "ALERT FIRING" in out
    assert rule.state in ("firing", "resolved")
    [retrain] = opx.list_runs("retrain_churn", limit=None, workspace=ws)
    assert retrain.trigger == "alert" and retrain.status == "succeeded"
    snaps = opx.list_snapshots("churn", workspace=ws)
    assert [s.version for s in snaps] == [2, 1]
    challenger = snaps[0]
    assert challenger.tags["role"] == "challenger" and challenger.tags["champion"] == "churn/1"
    assert {"auc", "champion_auc"} <= set(challenger.metrics)
    assert "retraining run" in out and "trigger alert" in out
    # the scoring runs after the retraining use whatever production is now
    production = opx.show("churn@production", workspace=ws).ref
    last = opx.list_runs("score_customers", limit=1, workspace=ws)[0]
    assert last.id > retrain.id and last.resolved["model"] == production


def test_demo_refuses_a_store_it_did_not_make(tmp_path, capsys):
    folder = tmp_path / "mine"
    opx.snapshot("precious", data=pd.DataFrame({"x": [1, 2]}), workspace=folder / ".opx")
    assert main(["demo", "--workspace", str(folder), "--days", "1"]) == 1
    assert "not made by opx demo" in capsys.readouterr().err
    assert opx.list_snapshots(workspace=folder / ".opx")[0].name == "precious"


def test_demo_refuses_a_database_holding_opx_data(tmp_path, capsys, pg_url):
    """Removing the store folder would not empty the database: a used one is refused."""
    other = tmp_path / "other" / ".opx"
    other.mkdir(parents=True)
    (other / "config.toml").write_text(f'database = "{pg_url}"\n')
    opx.snapshot("precious", data=pd.DataFrame({"x": [1, 2]}), workspace=other)
    folder = tmp_path / "demo"
    code = main(["demo", "--workspace", str(folder), "--days", "1", "--database", pg_url])
    err = capsys.readouterr().err
    assert code == 1 and "already holds opx data (1 snapshot)" in err
    assert [s.name for s in opx.list_snapshots(workspace=other)] == ["precious"]
