"""The opx command: listings, --json, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import jupyter_opx as opx
from jupyter_opx.cli import main


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("OPX_HOME", str(tmp_path / ".opx"))
    monkeypatch.setenv("OPX_USER", "ada")
    monkeypatch.chdir(tmp_path)
    df = pd.DataFrame({"x": np.arange(30.0), "k": pd.Categorical(["a", "b", "c"] * 10)})
    y = (df.x > 12).astype(int)
    opx.snapshot("churn", model=LogisticRegression().fit(df[["x"]], y), data={"train": df})
    df2 = df.assign(z=df.x * 2)
    opx.snapshot(
        "churn",
        model=LogisticRegression(C=0.1).fit(df[["x"]], y),
        data={"train": df2},
        metrics={"auc": 0.8},
    )
    return tmp_path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_snapshots_listing_text_and_json(project, capsys):
    code, out, _ = run(capsys, "snapshots")
    assert code == 0
    assert out.index("churn/2") < out.index("churn/1")
    code, out, _ = run(capsys, "snapshots", "churn", "--json")
    rows = json.loads(out)
    assert [r["ref"] for r in rows] == ["churn/2", "churn/1"]
    assert rows[0]["metrics"] == {"auc": 0.8}
    assert rows[0]["parent"] == "churn/1"


def test_show_promote_history(project, capsys):
    code, out, _ = run(capsys, "promote", "churn/1", "production")
    assert code == 0 and "churn@production -> churn/1" in out
    code, out, _ = run(capsys, "promote", "churn/2", "production", "--json")
    event = json.loads(out)
    assert event["previous_version"] == 1 and event["version"] == 2 and event["by"] == "ada"
    code, out, _ = run(capsys, "show", "churn@production", "--json")
    assert json.loads(out)["ref"] == "churn/2"
    assert json.loads(out)["aliases"] == ["production"]
    code, out, _ = run(capsys, "history", "churn", "--json")
    assert [e["version"] for e in json.loads(out)] == [2, 1]


def test_diff_reports_schema_and_metrics(project, capsys):
    code, out, _ = run(capsys, "diff", "churn/1", "churn/2", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["data"]["train"]["schema"]["added"] == ["z"]
    assert d["metrics"]["auc"] == {"a": None, "b": 0.8, "delta": None}
    assert d["model"]["changed"] is True
    code, out, _ = run(capsys, "diff", "churn/1", "churn/2")
    assert "+z" in out


def test_errors_are_one_line_and_non_zero(project, capsys):
    code, _, err = run(capsys, "show", "churn/9")
    assert code == 1
    assert err.strip() == "opx: error: churn has no version 9 (versions 1 to 2 exist)"
    code, _, err = run(capsys, "show", "nope@prod")
    assert code == 1 and "no snapshot named 'nope'" in err
    code, _, err = run(capsys, "promote", "churn/1", "123")
    assert code == 1 and "invalid alias" in err
    assert "Traceback" not in err


def test_verify_finds_a_corrupt_blob(project, capsys):
    code, out, _ = run(capsys, "verify")
    assert code == 0 and "all blobs intact" in out
    snap = opx.show("churn/1")
    path = Path(opx.current_workspace().blobs.path(snap.data["train"].digest))
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    code, out, _ = run(capsys, "verify", "--json")
    assert code == 1
    assert json.loads(out)["corrupt"] == [snap.data["train"].digest]


def test_status_and_empty_store(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPX_HOME", str(tmp_path / "empty" / ".opx"))
    code, out, _ = run(capsys, "status", "--json")
    info = json.loads(out)
    assert code == 0 and info["exists"] is False and info["snapshots"] == 0
    code, out, _ = run(capsys, "snapshots")
    assert code == 0 and "no snapshots yet" in out
    assert not (tmp_path / "empty").exists()  # reading creates nothing


def test_workspace_flag_selects_a_project(project, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPX_HOME")
    code, out, _ = run(capsys, "--workspace", str(project), "snapshots", "--json")
    assert code == 0 and len(json.loads(out)) == 2
    code, out, _ = run(capsys, "snapshots", "--workspace", str(project), "--json")
    assert code == 0 and len(json.loads(out)) == 2


def test_real_process_help_and_error(project):
    env = {**os.environ}
    help_out = subprocess.run(
        [sys.executable, "-m", "jupyter_opx.cli", "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert help_out.returncode == 0
    for command in ("snapshots", "show", "promote", "diff", "verify", "demo"):
        assert command in help_out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "jupyter_opx.cli", "show", "churn@nowhere"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "has no alias 'nowhere'" in bad.stderr
