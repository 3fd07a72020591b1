"""The %opx / %%opx magics, through IPython's InteractiveShell."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import jupyter_opx as opx
from jupyter_opx.exceptions import OpxError


@pytest.fixture
def ip(tmp_path, monkeypatch):
    monkeypatch.setenv("OPX_HOME", str(tmp_path / ".opx"))
    monkeypatch.chdir(tmp_path)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jupyter_opx")
    shell.user_ns.update(
        np=np,
        pd=pd,
        df=pd.DataFrame({"a": np.arange(40.0), "b": np.arange(40.0) % 3}),
    )
    shell.run_cell("from sklearn.linear_model import LogisticRegression")
    yield shell
    for name in ("clf", "clf2", "train", "metrics", "other"):
        shell.user_ns.pop(name, None)


def test_cell_magic_snapshots_model_data_and_metrics(ip):
    result = ip.run_cell(
        '%%opx snapshot churn -m "from a cell"\n'
        "clf = LogisticRegression().fit(df, (df.a > 20).astype(int))\n"
        "train = df\n"
        'metrics = {"acc": 0.75}\n',
        store_history=True,
    )
    assert result.success, result.error_in_exec
    snap = opx.show("churn/1")
    assert snap.model is not None
    assert snap.model["class"].endswith("LogisticRegression")
    assert set(snap.data) == {"train"}
    assert snap.metrics == {"acc": 0.75}
    assert snap.message == "from a cell"
    assert snap.provenance["cells"] >= 1
    cells = opx.api.kernel_source()["cells"]
    assert any("%%opx snapshot churn" in c or "run_cell_magic" in c for c in cells)
    assert opx.load_data("churn/1", "train").equals(ip.user_ns["df"])


def test_cell_magic_sees_a_model_fitted_in_place(ip):
    ip.run_cell("clf = LogisticRegression()")
    result = ip.run_cell(
        "%%opx snapshot inplace\nclf.fit(df, (df.a > 20).astype(int))\nother = 1\n"
    )
    assert result.success
    assert opx.show("inplace").model["class"].endswith("LogisticRegression")


def test_cell_magic_with_two_models_asks_which(ip):
    with pytest.raises(UsageError, match=r"several models.*--model"):
        ip.run_cell_magic(
            "opx",
            "snapshot two",
            "clf = LogisticRegression().fit(df, (df.a > 20).astype(int))\n"
            "clf2 = LogisticRegression().fit(df, (df.a > 10).astype(int))\n",
        )
    assert opx.list_snapshots() == []
    ip.run_cell_magic(
        "opx",
        "snapshot two --model clf2",
        "clf = LogisticRegression().fit(df, (df.a > 20).astype(int))\n"
        "clf2 = LogisticRegression(C=0.5).fit(df, (df.a > 10).astype(int))\n",
    )
    assert opx.load_model("two").C == 0.5


def test_failing_cell_snapshots_nothing(ip):
    with pytest.raises(UsageError, match="cell failed"):
        ip.run_cell_magic("opx", "snapshot broken", "clf = LogisticRegression()\n1/0\n")
    assert opx.list_snapshots() == []


def test_line_magic_with_variables(ip, capsys):
    ip.run_cell("clf = LogisticRegression().fit(df, (df.a > 20).astype(int))")
    ip.run_line_magic("opx", "snapshot churn --model clf --data train=df df -m line")
    snap = opx.show("churn")
    assert set(snap.data) == {"train", "df"}
    assert (
        snap.data["df"].reused_from == "churn/1"
        or snap.data["df"].digest == snap.data["train"].digest
    )
    out = capsys.readouterr().out
    assert "churn/1" in out


def test_line_magic_errors_are_one_line_usage_errors(ip):
    with pytest.raises(UsageError, match="no variable named 'nope'"):
        ip.run_line_magic("opx", "snapshot churn --model nope")
    with pytest.raises(UsageError, match="needs --model"):
        ip.run_line_magic("opx", "snapshot churn")
    with pytest.raises(UsageError, match="unknown command"):
        ip.run_line_magic("opx", "frobnicate")
    with pytest.raises(OpxError, match=r"ghost.*(no store here yet|not found)"):
        ip.run_line_magic("opx", "show ghost")
    with pytest.raises(OpxError, match="invalid snapshot reference"):
        ip.run_line_magic("opx", "show 'bad ref!'")


def test_errors_in_a_cell_show_one_line_not_a_traceback(ip, capsys):
    result = ip.run_cell("%opx show ghost")
    assert not result.success
    assert isinstance(result.error_in_exec, OpxError)
    result = ip.run_cell("%opx snapshot churn --model nope")
    assert isinstance(result.error_in_exec, UsageError)
    # the Python API's errors render the same way
    result = ip.run_cell("import jupyter_opx as opx\nopx.load_model('ghost')")
    assert not result.success
    shown = capsys.readouterr()
    text = shown.out + shown.err
    assert "NotFoundError" in text and "ghost" in text
    assert "no variable named 'nope'" in text
    assert "Traceback" not in text and "catalog.py" not in text


def test_list_show_promote_history_diff_status(ip, capsys):
    ip.run_cell("clf = LogisticRegression().fit(df, (df.a > 20).astype(int))")
    ip.run_line_magic("opx", "snapshot churn --model clf --data train=df")
    ip.run_cell("clf = LogisticRegression(C=2.0).fit(df, (df.a > 20).astype(int))")
    ip.run_line_magic("opx", "snapshot churn --model clf --data train=df")
    capsys.readouterr()
    ip.run_line_magic("opx", "promote churn/1 production")
    ip.run_line_magic("opx", "promote churn/2 production")
    assert "churn@production -> churn/2 from churn/1" in capsys.readouterr().out
    ip.run_line_magic("opx", "list")
    listing = capsys.readouterr().out
    assert listing.index("churn/2") < listing.index("churn/1")
    ip.run_line_magic("opx", "show churn@production")
    assert "churn/2" in capsys.readouterr().out
    ip.run_line_magic("opx", "history churn")
    assert capsys.readouterr().out.count("churn@production") == 2
    ip.run_line_magic("opx", "diff churn/1 churn/2")
    assert "artifact changed" in capsys.readouterr().out
    ip.run_line_magic("opx", "status")
    assert "2 version(s) of 1 name(s)" in capsys.readouterr().out


def test_output_has_html_and_text(ip):
    ip.run_cell("clf = LogisticRegression().fit(df, (df.a > 20).astype(int))")
    result = ip.run_cell("%opx snapshot churn --model clf")
    assert result.success
    snap = opx.show("churn")
    html = snap._repr_html_()
    assert "<table" in html and "churn/1" in html
    assert "churn/1" in str(snap)


def test_params_cell_runs_the_cell(ip):
    ip.run_cell_magic("opx", "params", "threshold = 0.4  # decision threshold\n")
    assert ip.user_ns["threshold"] == 0.4
    with pytest.raises(UsageError, match="cell magic"):
        ip.run_line_magic("opx", "params")
